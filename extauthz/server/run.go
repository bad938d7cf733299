package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

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
	// pending is a reloaded pipeline waiting for its keys (nil: none);
	// pendingCancel gives it up.
	pending       *pipeline.Pipeline
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

	s.grpc = grpc.NewServer(GRPCOptions()...)
	s.grpc.RegisterService(&checkService, s.authz)
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, s.health)
	s.setHealth()

	return s, nil
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
	if env.EncodeAnswer == nil && (s.grpcLn != nil || s.socketLn != nil) {
		// Only the gRPC listeners send encodings: a server that answers
		// over HTTP alone keeps none.
		env.EncodeAnswer = encodeAnswer
	}
	if env.Shared == nil {
		env.Shared = s.shared
	}
	return env
}

// Authz returns the ext_authz service.
func (s *Server) Authz() *Authz { return s.authz }

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
