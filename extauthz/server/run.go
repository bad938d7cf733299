package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/tokentailor/tokentailor/extauthz/config"
	"github.com/tokentailor/tokentailor/extauthz/dpop"
	"github.com/tokentailor/tokentailor/extauthz/metrics"
	"github.com/tokentailor/tokentailor/extauthz/pipeline"
	"github.com/tokentailor/tokentailor/extauthz/sharedcache"
	"github.com/tokentailor/tokentailor/extauthz/tracing"
)

// Options configures a Server.
type Options struct {
	// ConfigPath is the config file; it and the files it names are watched.
	ConfigPath string
	// Config, when set, is used instead of loading ConfigPath (dev mode); no
	// reload happens then.
	Config *config.Config
	// Logger receives logs. Nil builds one from the config's log settings,
	// writing to LogOutput.
	Logger *slog.Logger
	// LogOutput is where a built logger writes (default os.Stderr).
	LogOutput io.Writer
	// Env carries overrides for building pipelines (clock, transport, minter).
	Env pipeline.Env
	// ReadyTimeout bounds how long a reload waits for new issuers' keys
	// before it returns; the previous config keeps serving until they come
	// (default 10s).
	ReadyTimeout time.Duration
	// Settle is how long a reload waits before reading the config files a
	// second time; it applies them only if both reads agree (default 200ms).
	Settle time.Duration
	// AdminMux, when set, gets extra handlers (dev mode's issuer).
	AdminMux func(*http.ServeMux)
	// SpanExporter, when set and tracing is on, receives the spans instead
	// of the OTLP exporter of the config (tests).
	SpanExporter sdktrace.SpanExporter
	// TuneRuntime applies the config's runtime section (GC target and soft
	// memory limit) to this process. Commands set it; tests, which share one
	// process among many servers, do not.
	TuneRuntime bool
}

// Server is a running tokentailor: gRPC ext_authz and health on TCP and/or
// a unix socket, the admin HTTP listener, and the reload watcher.
type Server struct {
	opts     Options
	log      *slog.Logger
	level    *slog.LevelVar
	registry *prometheus.Registry
	metrics  *metrics.Metrics
	keySets  *pipeline.KeySets
	// dpopReplay outlives reloads: a new config must not forget seen proofs.
	dpopReplay dpop.ReplayCache
	// shared outlives reloads too: connections and client-side copies are
	// the process's (shared_cache; nil when off).
	shared *sharedcache.Cache
	// tracer is tracing's, for the process (nil when off; tracing.go).
	tracer *tracing.Tracer
	authz  *Authz
	health *health.Server
	grpc   *grpc.Server
	admin  *http.Server
	// httpTCP and httpSock serve the HTTP authorization listener (nil when off).
	httpTCP, httpSock *http.Server

	grpcLn, socketLn, adminLn, httpLn, httpSocketLn net.Listener

	draining atomic.Bool // set on shutdown: /readyz and gRPC health say not serving

	reloadMu   sync.Mutex
	closed     bool     // set once Serve stops; Reload then does nothing
	lastSum    [32]byte // files of the config in use
	failedSum  [32]byte // files of the last config refused, not retried until they change
	restartSum string   // the settings that need a restart, as in use
	// pendingCancel gives up a reloaded pipeline waiting for its keys.
	pendingCancel context.CancelFunc
}

// New loads the config, builds the first pipeline and binds every listener.
// It fails, binding nothing, on a bad config or unloadable keys.
func New(ctx context.Context, opts Options) (_ *Server, err error) {
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 10 * time.Second
	}
	if opts.Settle == 0 {
		opts.Settle = 200 * time.Millisecond
	}
	cfg := opts.Config
	if cfg == nil {
		if cfg, err = config.Load(opts.ConfigPath); err != nil {
			return nil, err
		}
	}
	s := &Server{opts: opts, level: new(slog.LevelVar), registry: prometheus.NewRegistry()}
	s.log = opts.Logger
	if s.log == nil {
		s.log = NewLogger(opts.LogOutput, cfg.Log.Format, s.level)
	}
	s.level.Set(parseLevel(cfg.Log.Level))
	logConfigWarnings(s.log, cfg)
	if opts.TuneRuntime {
		tuneRuntime(cfg, s.log)
	}
	s.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.metrics = metrics.New(s.registry)
	s.keySets = pipeline.NewKeySets(context.WithoutCancel(ctx))
	s.dpopReplay = dpop.NewMemoryReplay(cfg.DPoP.ReplayEntries, s.opts.Env.Now)
	if s.tracer, err = s.startTracing(ctx, cfg); err != nil {
		s.keySets.Close()
		return nil, err
	}
	defer func() { s.stopTracingIf(err) }()
	shared, err := sharedcache.FromConfig(cfg, s.log, s.registry)
	if err != nil {
		s.keySets.Close()
		return nil, err
	}
	s.shared = shared

	// Bind first: an issuer served by this very process (the dev issuer on
	// the admin listener) must be reachable when the first key fetch starts.
	if err := s.listen(cfg); err != nil {
		s.closeListeners()
		s.keySets.Close()
		s.shared.Close()
		return nil, err
	}
	env := s.env()
	p, err := pipeline.Build(ctx, cfg, env)
	if err != nil {
		s.closeListeners()
		s.keySets.Close()
		s.shared.Close()
		return nil, err
	}
	s.lastSum = s.sum(cfg)
	s.restartSum = restartSettings(cfg)
	s.authz = NewAuthz(p, s.log, s.metrics)
	s.authz.tracer = s.tracer
	if s.adminLn != nil {
		s.admin = &http.Server{Handler: s.adminHandler(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
	}

	if s.httpLn != nil || s.httpSocketLn != nil {
		trusted, err := trustedPrefixes(cfg)
		if err != nil {
			s.closeListeners()
			s.keySets.Close()
			s.shared.Close()
			return nil, err
		}
		h := NewHTTPAuthz(s.authz, trusted)
		if s.httpLn != nil {
			s.httpTCP = newHTTPServer(h)
		}
		if s.httpSocketLn != nil {
			s.httpSock = newHTTPServer(h.trustingAll())
		}
	}

	s.grpc = grpc.NewServer(grpc.MaxRecvMsgSize(config.MaxGRPCMessageBytes))
	authv3.RegisterAuthorizationServer(s.grpc, s.authz)
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, s.health)
	s.setHealth()

	return s, nil
}

// newHTTPServer serves the HTTP authorization listener. Proxies keep
// connections open, so the idle timeout is generous; a subrequest has no
// body worth reading.
func newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 1 << 20}
}

func (s *Server) env() pipeline.Env {
	env := s.opts.Env
	env.Logger = s.log
	env.Metrics = s.metrics
	env.KeySets = s.keySets
	env.Transport = s.tracer.Transport(env.Transport)
	if env.DPoPReplay == nil {
		env.DPoPReplay = s.dpopReplay
	}
	if env.Shared == nil {
		env.Shared = s.shared
	}
	return env
}

func (s *Server) listen(cfg *config.Config) error {
	var err error
	if cfg.Listen.GRPC != "" {
		if s.grpcLn, err = net.Listen("tcp", cfg.Listen.GRPC); err != nil {
			return fmt.Errorf("listen.grpc: %w", err)
		}
	}
	if s.socketLn, err = listenUnix("listen.socket", cfg.Listen.Socket); err != nil {
		return err
	}
	if cfg.Listen.Admin != "" {
		if s.adminLn, err = net.Listen("tcp", cfg.Listen.Admin); err != nil {
			return fmt.Errorf("listen.admin: %w", err)
		}
	}
	if cfg.Listen.HTTP != "" {
		if s.httpLn, err = net.Listen("tcp", cfg.Listen.HTTP); err != nil {
			return fmt.Errorf("listen.http: %w", err)
		}
	}
	if s.httpSocketLn, err = listenUnix("listen.http_socket", cfg.Listen.HTTPSocket); err != nil {
		return err
	}
	return nil
}

// listenUnix binds the unix socket path (field names it in errors); an empty
// path binds nothing.
func listenUnix(field, path string) (net.Listener, error) {
	if path == "" {
		return nil, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	// A socket left by a crashed process would make Listen fail.
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		_ = os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	// The proxy runs as another user in the same pod: let the group in.
	_ = os.Chmod(path, 0o660)
	return ln, nil
}

func (s *Server) closeListeners() {
	for _, ln := range []net.Listener{s.grpcLn, s.socketLn, s.adminLn, s.httpLn, s.httpSocketLn} {
		if ln != nil {
			_ = ln.Close()
		}
	}
}

// GRPCAddr is the bound TCP address of the gRPC listener, or nil.
func (s *Server) GRPCAddr() net.Addr { return addr(s.grpcLn) }

// HTTPAddr is the bound TCP address of the HTTP authorization listener, or nil.
func (s *Server) HTTPAddr() net.Addr { return addr(s.httpLn) }

// AdminAddr is the bound address of the admin listener, or nil.
func (s *Server) AdminAddr() net.Addr { return addr(s.adminLn) }

// Authz returns the ext_authz service.
func (s *Server) Authz() *Authz { return s.authz }

func addr(ln net.Listener) net.Addr {
	if ln == nil {
		return nil
	}
	return ln.Addr()
}

// Serve serves until ctx ends, reloading on reload signals and on changes of
// the config file or the files it names. Then it drains (listen.drain: not
// ready, still answering), stops accepting, lets in-flight checks finish (at
// most listen.shutdown_grace) and returns nil.
func (s *Server) Serve(ctx context.Context, reload <-chan struct{}) error {
	errc := make(chan error, 5)
	for _, ln := range []net.Listener{s.grpcLn, s.socketLn} {
		if ln != nil {
			go func(ln net.Listener) { errc <- s.grpc.Serve(ln) }(ln)
		}
	}
	for _, hs := range []struct {
		srv *http.Server
		ln  net.Listener
	}{{s.admin, s.adminLn}, {s.httpTCP, s.httpLn}, {s.httpSock, s.httpSocketLn}} {
		if hs.srv != nil {
			go func() {
				if err := hs.srv.Serve(hs.ln); !errors.Is(err, http.ErrServerClosed) {
					errc <- err
				}
			}()
		}
	}
	wctx, stopWatch := context.WithCancel(ctx)
	var watchers sync.WaitGroup
	watchers.Go(func() { s.watch(wctx, reload) })
	watchers.Go(func() { s.watchReady(wctx) })
	s.log.Info("serving", "grpc", addrString(s.grpcLn), "socket", addrString(s.socketLn), "admin", addrString(s.adminLn),
		"http", addrString(s.httpLn), "http_socket", addrString(s.httpSocketLn))

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		if err != nil {
			s.log.Error("listener failed", "error", err)
		}
	}
	// No reload may start or finish once stopping has begun: stop the
	// watchers, wait for them, and bar Reload before the key sets go.
	stopWatch()
	watchers.Wait()
	s.reloadMu.Lock()
	s.closed = true
	s.cancelPending()
	s.reloadMu.Unlock()
	if err == nil {
		s.drain()
	}
	s.stop()
	return err
}

// drain tells everyone who asks that this process is going away — /readyz
// answers 503, gRPC health NOT_SERVING — and keeps answering Checks for
// listen.drain, so that Envoy's health checks and Kubernetes' endpoint
// removal move traffic away before the listener closes. Closing at once
// would turn the Checks still on their way into Unavailable errors, which
// Envoy answers by status_on_error (or lets through, with failure_mode_allow).
func (s *Server) drain() {
	d := s.authz.Pipeline().Config.Listen.Drain.Duration
	s.draining.Store(true)
	s.health.Shutdown()
	s.log.Info("draining: not ready, still answering checks", "drain", d)
	time.Sleep(d)
}

func addrString(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}

func (s *Server) stop() {
	s.draining.Store(true)
	s.health.Shutdown()
	grace := s.authz.Pipeline().Config.Listen.ShutdownGrace.Duration
	done := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(done) }()
	// The HTTP authorization listeners drain within the same grace.
	hctx, hcancel := context.WithTimeout(context.Background(), grace)
	var hwg sync.WaitGroup
	for _, hs := range []*http.Server{s.httpTCP, s.httpSock} {
		if hs != nil {
			hwg.Go(func() {
				if hs.Shutdown(hctx) != nil {
					_ = hs.Close()
				}
			})
		}
	}
	select {
	case <-done:
	case <-time.After(grace):
		s.log.Warn("shutdown grace exceeded; closing remaining streams")
		s.grpc.Stop()
	}
	hwg.Wait()
	hcancel()
	s.flushTraces(grace)
	if s.admin != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = s.admin.Shutdown(ctx)
		cancel()
	}
	for _, ln := range []net.Listener{s.socketLn, s.httpSocketLn} {
		if ln != nil {
			_ = os.Remove(ln.Addr().String())
		}
	}
	s.keySets.Close()
	s.shared.Close()
	s.log.Info("stopped")
}

func (s *Server) setHealth() {
	st := healthpb.HealthCheckResponse_SERVING
	if s.authz.Pipeline().Ready() != nil {
		st = healthpb.HealthCheckResponse_NOT_SERVING
	}
	s.health.SetServingStatus("", st)
	s.health.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, st)
}

// watchReady keeps the gRPC health status in step with readiness.
func (s *Server) watchReady(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.setHealth()
		}
	}
}
