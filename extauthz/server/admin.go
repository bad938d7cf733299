package server

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tokentailor/tokentailor/extauthz/config"
)

// adminHandler serves the admin endpoints:
//
//	/.well-known/jwks.json  public keys of minted tokens
//	/healthz                the process is alive
//	/readyz                 keys are loaded and every issuer's JWKS was fetched once;
//	                        503 from the start of a shutdown's drain
//	/metrics                Prometheus metrics
//	/revocations/push       POST: revocations pushed as SETs (RFC 8935), when an issuer has revocation_push
func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/jwks.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Header().Set("Cache-Control", "public, max-age=60")
		_, _ = w.Write(s.authz.Pipeline().JWKS())
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if s.draining.Load() {
			http.Error(w, "draining: shutting down", http.StatusServiceUnavailable)
			return
		}
		if err := s.authz.Pipeline().Ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}))
	// Pushed revocations (issuers[].revocation_push), reload-aware: the
	// current pipeline's receiver answers, 404 when none is configured.
	mux.HandleFunc(config.RevocationPushPath, func(w http.ResponseWriter, r *http.Request) {
		rp := s.authz.Pipeline().RevocationPush
		if rp == nil {
			http.NotFound(w, r)
			return
		}
		rp.ServeHTTP(w, r)
	})
	if s.authz.Pipeline().Config.Listen.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	if s.opts.AdminMux != nil {
		s.opts.AdminMux(mux)
	}
	return mux
}

// NewLogger returns a JSON or text slog logger writing to w (default
// os.Stderr) at the level held by level.
func NewLogger(w io.Writer, format string, level *slog.LevelVar) *slog.Logger {
	if w == nil {
		w = os.Stderr
	}
	o := &slog.HandlerOptions{Level: level}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, o))
	}
	return slog.New(slog.NewJSONHandler(w, o))
}

func parseLevel(s string) slog.Level {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}
