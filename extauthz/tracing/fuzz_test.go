package tracing

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// FuzzStart feeds Start the trace-context headers a client controls
// (Envoy passes them on): whatever they hold, a span starts and ends, and
// its trace and span IDs are valid: a broken header starts a new trace,
// never a panic or an invalid context sent on to issuers.
func FuzzStart(f *testing.F) {
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "vendor=x", "", "", "", "")
	f.Add("", "", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90", "", "", "")
	f.Add("", "", "", "463ac35c9f6413ad48485a3953bb6124", "a2fb4a1d1a96d312", "1")
	f.Add("00-00000000000000000000000000000000-0000000000000000-01", "", "0", "0", "0", "d")
	f.Add("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", ",,,=", "-", "x", "y", "true")
	exp := tracetest.NewInMemoryExporter()
	tr, err := New(context.Background(), parse(f, "  enabled: true\n"), Options{Getenv: envOf(nil), Exporter: exp})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, traceparent, tracestate, b3single, b3trace, b3span, b3sampled string) {
		h := map[string]string{"traceparent": traceparent, "tracestate": tracestate, "b3": b3single,
			"x-b3-traceid": b3trace, "x-b3-spanid": b3span, "x-b3-sampled": b3sampled}
		_, span := tr.Start(context.Background(), "check", h, time.Now())
		sc := span.SpanContext()
		if !sc.TraceID().IsValid() || !sc.SpanID().IsValid() {
			t.Fatalf("invalid span context %v from %q", sc, h)
		}
		span.End()
		exp.Reset()
	})
}
