package server

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/config"
	"github.com/tokentailor/tokentailor/extauthz/metrics"
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
	Env Env
	// ReadyTimeout bounds how long a reload waits for new issuers' keys
	// before swapping anyway (default 10s).
	ReadyTimeout time.Duration
	// AdminMux, when set, gets extra handlers (dev mode's issuer).
	AdminMux func(*http.ServeMux)
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
	keySets  *KeySets
	authz    *Authz
	health   *health.Server
	grpc     *grpc.Server
	admin    *http.Server

	grpcLn, socketLn, adminLn net.Listener

	reloadMu   sync.Mutex
	closed     bool     // set once Serve stops; Reload then does nothing
	lastSum    [32]byte // files of the config in use
	failedSum  [32]byte // files of the last config refused, not retried until they change
	restartSum string   // the settings that need a restart, as in use
}

// New loads the config, builds the first pipeline and binds every listener.
// It fails, binding nothing, on a bad config or unloadable keys.
func New(ctx context.Context, opts Options) (*Server, error) {
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 10 * time.Second
	}
	cfg := opts.Config
	if cfg == nil {
		var err error
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
	s.keySets = NewKeySets(context.WithoutCancel(ctx))

	// Bind first: an issuer served by this very process (the dev issuer on
	// the admin listener) must be reachable when the first key fetch starts.
	if err := s.listen(cfg); err != nil {
		s.closeListeners()
		return nil, err
	}
	env := s.env()
	p, err := Build(ctx, cfg, env)
	if err != nil {
		s.closeListeners()
		s.keySets.Keep(&Pipeline{})
		return nil, err
	}
	s.lastSum = s.sum(cfg)
	s.restartSum = restartSettings(cfg)
	s.authz = NewAuthz(p, s.log, s.metrics)
	if s.adminLn != nil {
		s.admin = &http.Server{Handler: s.adminHandler(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
	}

	s.grpc = grpc.NewServer(grpc.MaxRecvMsgSize(1 << 20))
	authv3.RegisterAuthorizationServer(s.grpc, s.authz)
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, s.health)
	s.setHealth()

	return s, nil
}

func (s *Server) env() Env {
	env := s.opts.Env
	env.Logger = s.log
	env.Metrics = s.metrics
	env.KeySets = s.keySets
	return env
}

func (s *Server) listen(cfg *config.Config) error {
	var err error
	if cfg.Listen.GRPC != "" {
		if s.grpcLn, err = net.Listen("tcp", cfg.Listen.GRPC); err != nil {
			return fmt.Errorf("listen.grpc: %w", err)
		}
	}
	if path := cfg.Listen.Socket; path != "" {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return fmt.Errorf("listen.socket: %w", err)
		}
		// A socket left by a crashed process would make Listen fail.
		if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
			_ = os.Remove(path)
		}
		if s.socketLn, err = net.Listen("unix", path); err != nil {
			return fmt.Errorf("listen.socket: %w", err)
		}
		// Envoy runs as another user in the same pod: let the group in.
		_ = os.Chmod(path, 0o660)
	}
	if cfg.Listen.Admin != "" {
		if s.adminLn, err = net.Listen("tcp", cfg.Listen.Admin); err != nil {
			return fmt.Errorf("listen.admin: %w", err)
		}
	}
	return nil
}

func (s *Server) closeListeners() {
	for _, ln := range []net.Listener{s.grpcLn, s.socketLn, s.adminLn} {
		if ln != nil {
			_ = ln.Close()
		}
	}
}

// GRPCAddr is the bound TCP address of the gRPC listener, or nil.
func (s *Server) GRPCAddr() net.Addr { return addr(s.grpcLn) }

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
// the config file or the files it names. Then it stops accepting, lets
// in-flight checks finish (at most listen.shutdown_grace) and returns nil.
func (s *Server) Serve(ctx context.Context, reload <-chan struct{}) error {
	errc := make(chan error, 3)
	for _, ln := range []net.Listener{s.grpcLn, s.socketLn} {
		if ln != nil {
			go func(ln net.Listener) { errc <- s.grpc.Serve(ln) }(ln)
		}
	}
	if s.admin != nil {
		go func() {
			if err := s.admin.Serve(s.adminLn); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	wctx, stopWatch := context.WithCancel(ctx)
	var watchers sync.WaitGroup
	watchers.Go(func() { s.watch(wctx, reload) })
	watchers.Go(func() { s.watchReady(wctx) })
	s.log.Info("serving", "grpc", addrString(s.grpcLn), "socket", addrString(s.socketLn), "admin", addrString(s.adminLn))

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
	s.reloadMu.Unlock()
	s.stop()
	return err
}

func addrString(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}

func (s *Server) stop() {
	s.health.Shutdown()
	grace := s.authz.Pipeline().Config.Listen.ShutdownGrace.Duration
	done := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		s.log.Warn("shutdown grace exceeded; closing remaining streams")
		s.grpc.Stop()
	}
	if s.admin != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = s.admin.Shutdown(ctx)
		cancel()
	}
	if s.socketLn != nil {
		_ = os.Remove(s.socketLn.Addr().String())
	}
	s.keySets.Keep(&Pipeline{})
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

// Reload loads the config again and swaps it in if it is valid and its keys
// load. A bad config is refused and the old one keeps serving. Unchanged
// files are not reloaded unless force is set.
func (s *Server) Reload(ctx context.Context, force bool) error {
	if s.opts.Config != nil {
		return nil
	}
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	if s.closed {
		return nil
	}
	cfg, err := config.Load(s.opts.ConfigPath)
	sum := s.sum(cfg)
	if !force && (sum == s.lastSum || sum == s.failedSum) {
		// Unchanged, or the same files that were refused last time.
		return nil
	}
	if err != nil {
		s.failedSum = sum
	} else {
		var p *Pipeline
		if p, err = Build(ctx, cfg, s.env()); err == nil {
			s.waitReady(ctx, p)
			old := s.authz.Swap(p)
			s.keySets.Keep(p)
			s.lastSum, s.failedSum = sum, [32]byte{}
			s.level.Set(parseLevel(cfg.Log.Level))
			s.metrics.Reload(nil)
			s.log.Info("config reloaded", "routes", len(cfg.Routes), "signing_key", signingKey(p), "previous_signing_key", signingKey(old))
			logConfigWarnings(s.log, cfg)
			if restartSettings(cfg) != s.restartSum {
				s.log.Warn("listen addresses, pprof, log format or runtime settings changed: they take effect on restart only")
			}
			return nil
		}
		s.keySets.Keep(s.authz.Pipeline())
		// An unreachable issuer may come back: only other failures wait
		// for the files to change before the next attempt.
		if !errors.Is(err, extauthz.ErrIssuerUnavailable) {
			s.failedSum = sum
		}
	}
	s.metrics.Reload(err)
	s.log.Error("config reload refused; the previous config keeps serving", "error", err)
	return err
}

// logConfigWarnings logs what the config allows but should not (files of
// keys and secrets that other users may read).
func logConfigWarnings(log *slog.Logger, cfg *config.Config) {
	for _, w := range cfg.Warnings() {
		log.Warn("config warning", "warning", w)
	}
}

// restartSettings renders the settings that a reload cannot change.
func restartSettings(cfg *config.Config) string {
	l := cfg.Listen
	// The memory limit is compared as applied: cache.max_entries itself
	// takes effect on reload, but the "auto" limit derived from it does not.
	limit, _ := cfg.Runtime.Limit(cfg.Cache.MaxEntries)
	return fmt.Sprint(l.GRPC, "|", l.Socket, "|", l.Admin, "|", l.Pprof, "|", cfg.Log.Format, "|", cfg.Runtime.GCPercent, "|", limit)
}

// tuneRuntime sets the GC target and the soft memory limit of cfg.Runtime,
// except where the GOGC or GOMEMLIMIT environment variable already did, and
// logs what the process runs with.
func tuneRuntime(cfg *config.Config, log *slog.Logger) {
	from := func(env string) string {
		if os.Getenv(env) != "" {
			return "environment " + env
		}
		return "config runtime"
	}
	gc := os.Getenv("GOGC")
	if gc == "" {
		debug.SetGCPercent(cfg.Runtime.GCPercent)
		gc = strconv.Itoa(cfg.Runtime.GCPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		if n, err := cfg.Runtime.Limit(cfg.Cache.MaxEntries); err == nil { // validated by config.Load
			debug.SetMemoryLimit(n)
		}
	}
	limit := "off"
	if n := debug.SetMemoryLimit(-1); n != math.MaxInt64 {
		limit = fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
	}
	log.Info("go runtime", "gc_percent", gc, "gc_percent_from", from("GOGC"), "memory_limit", limit, "memory_limit_from", from("GOMEMLIMIT"))
}

func signingKey(p *Pipeline) string {
	if p == nil || p.Minter == nil {
		return ""
	}
	return p.Minter.SigningKeyID()
}

// waitReady gives a new pipeline's new key sets a moment to fetch, so the
// swap does not turn valid tokens into 503s.
func (s *Server) waitReady(ctx context.Context, p *Pipeline) {
	deadline := time.Now().Add(s.opts.ReadyTimeout)
	for p.Ready() != nil && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// sum hashes the config file and every file it names (none when cfg is nil:
// a file that does not load), to tell a real change from a touch.
func (s *Server) sum(cfg *config.Config) [32]byte {
	h := sha256.New()
	files := []string{s.opts.ConfigPath}
	if cfg != nil {
		files = append(files, cfg.Files()...)
	}
	for _, f := range files {
		if f == "" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintf(h, "missing:%s\n", f)
			continue
		}
		fmt.Fprintf(h, "%s:%d\n", f, len(b))
		h.Write(b)
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

// watch reloads on a reload signal and when a watched file changes.
// Kubernetes updates mounted ConfigMaps and Secrets by swapping a symlink in
// the directory, so the directories are watched, not the files; a poll every
// few seconds backs fsnotify up where events are lost.
func (s *Server) watch(ctx context.Context, reload <-chan struct{}) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		s.log.Warn("file watching unavailable; reload on SIGHUP and by polling", "error", err)
	}
	var events <-chan fsnotify.Event
	var watchErrs <-chan error
	if w != nil {
		defer w.Close()
		events, watchErrs = w.Events, w.Errors
		s.watchDirs(w)
	}
	poll := time.NewTicker(5 * time.Second)
	defer poll.Stop()
	var debounce <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-reload:
			s.log.Info("reload requested")
			_ = s.Reload(ctx, true)
			if w != nil {
				s.watchDirs(w)
			}
		case <-events:
			debounce = time.After(300 * time.Millisecond)
		case err := <-watchErrs:
			// fsnotify stops delivering until its error is read; an error
			// (e.g. an inotify queue overflow) may also mean lost events.
			s.log.Warn("file watch error; checking the files now", "error", err)
			debounce = time.After(300 * time.Millisecond)
		case <-debounce:
			_ = s.Reload(ctx, false)
			if w != nil {
				s.watchDirs(w)
			}
		case <-poll.C:
			_ = s.Reload(ctx, false)
		}
	}
}

func (s *Server) watchDirs(w *fsnotify.Watcher) {
	files := append([]string{s.opts.ConfigPath}, s.authz.Pipeline().Config.Files()...)
	for _, f := range files {
		if f == "" {
			continue
		}
		if abs, err := filepath.Abs(f); err == nil {
			_ = w.Add(filepath.Dir(abs))
		}
	}
}
