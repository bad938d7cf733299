package tracing

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// BenchmarkStartUnsampled is the cost of a Check's span when the ratio
// says no: extraction, the sampler's decision and a non-recording span.
func BenchmarkStartUnsampled(b *testing.B) {
	cfg := parse(b, "  enabled: true\n  sampling_ratio: 0\n")
	tr, err := New(context.Background(), cfg, Options{Getenv: envOf(nil), Exporter: tracetest.NewInMemoryExporter()})
	if err != nil {
		b.Fatal(err)
	}
	h := map[string]string{":path": "/orders", "authorization": "Bearer x", "x-request-id": "1"}
	b.ReportAllocs()
	for b.Loop() {
		_, span := tr.Start(context.Background(), "check", h, time.Now())
		if span.IsRecording() {
			b.Fatal("sampled")
		}
		span.End()
	}
}
