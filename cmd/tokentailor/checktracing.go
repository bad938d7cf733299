package main

import (
	"context"
	"fmt"
	"io"

	"github.com/tokentailor/tokentailor/extauthz/config"
	"github.com/tokentailor/tokentailor/extauthz/tracing"
)

// checkTracing builds the tracer serve would build (the tracing block under
// the OTEL_* environment, its TLS files loaded) and says where spans will
// go, or why serve would refuse to start. It sends nothing. It returns the
// number of failures (0 or 1); tracing off is no check.
func checkTracing(ctx context.Context, w io.Writer, cfg *config.Config) int {
	if !tracing.Enabled(cfg, nil) {
		return 0
	}
	t, err := tracing.New(ctx, cfg, tracing.Options{})
	if err != nil {
		fmt.Fprintf(w, "FAIL %v\n", err)
		return 1
	}
	_ = t.Shutdown(ctx) // nothing was queued
	s, err := tracing.Resolve(cfg, nil)
	if err != nil { // New resolved the same settings
		fmt.Fprintf(w, "FAIL %v\n", err)
		return 1
	}
	to := s.Endpoint
	if to == "" {
		to = "OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT"
	}
	fmt.Fprintf(w, "ok   tracing: OTLP %s to %s\n", s.Protocol, to)
	return 0
}
