package server

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/tokentailor/tokentailor/extauthz/config"
	"github.com/tokentailor/tokentailor/extauthz/tracing"
)

// discardExporter takes spans and drops them: the benchmark measures the
// SDK's cost in the Check path, not a collector's.
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

// BenchmarkCheckWarmJWTTracing is BenchmarkCheckWarmJWT with tracing off,
// on at sampling ratio 0.01 and on at 1 (every Check a recorded span, its
// attributes set and exported). The request carries no trace context, so
// the ratio decides. docs/performance.md keeps the figures.
func BenchmarkCheckWarmJWTTracing(b *testing.B) {
	for _, bc := range []struct {
		name  string
		on    bool
		ratio float64
	}{
		{name: "off"},
		{name: "ratio=0.01", on: true, ratio: 0.01},
		{name: "ratio=1", on: true, ratio: 1},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e := newBenchEnv(b, "EdDSA", 100_000)
			if bc.on {
				cfg := *e.pipe.Config
				cfg.Tracing = config.Tracing{Enabled: true, SamplingRatio: &bc.ratio}
				tr, err := tracing.New(context.Background(), &cfg, tracing.Options{Getenv: func(string) string { return "" }, Exporter: discardExporter{}})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
				e.authz.tracer = tr
			}
			req := benchCheckRequest(e.jwt(b, "ES256", "alice"))
			e.check(b, req)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				e.check(b, req)
			}
		})
	}
}
