package server

import (
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"strconv"

	"github.com/tokentailor/tokentailor/extauthz/config"
)

// restartSettings renders the settings that a reload cannot change.
func restartSettings(cfg *config.Config) string {
	l := cfg.Listen
	// The memory limit is compared as applied: cache.max_entries itself
	// takes effect on reload, but the "auto" limit derived from it does not.
	limit, _ := cfg.Runtime.Limit(cfg.Cache.MaxEntries)
	return fmt.Sprint(l.GRPC, "|", l.Socket, "|", l.Admin, "|", l.Pprof, "|", l.HTTP, "|", l.HTTPSocket, "|", l.HTTPTrustedProxies, "|",
		cfg.Log.Format, "|", cfg.Runtime.GCPercent, "|", limit, "|", cfg.Tracing.Key())
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
