package metrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Counters resolved once count into the same series as the per-call
// methods, and every method is safe on a nil *Metrics.
func TestResolvedCounters(t *testing.T) {
	m := New(prometheus.NewRegistry())
	route := m.Route("orders")
	route.Allowed(time.Millisecond)
	m.Decision("allow", "ok", "orders", time.Millisecond)
	lookup := m.LookupCounter("mint")
	lookup(true)
	lookup(false)
	lookup(false)
	m.CacheLookup("mint", true)
	tests := []struct {
		name string
		c    prometheus.Metric
		want float64
	}{
		{name: "allowed via route and Decision", c: m.decisions.WithLabelValues("allow", "ok", "orders"), want: 2},
		{name: "other route untouched", c: m.decisions.WithLabelValues("allow", "ok", "billing"), want: 0},
		{name: "cache hits", c: m.cacheLookups.WithLabelValues("mint", "hit"), want: 2},
		{name: "cache misses", c: m.cacheLookups.WithLabelValues("mint", "miss"), want: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d dto.Metric
			if err := tt.c.Write(&d); err != nil {
				t.Fatal(err)
			}
			if got := d.GetCounter().GetValue(); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
	var lat dto.Metric
	if err := m.checkLatency.Write(&lat); err != nil {
		t.Fatal(err)
	}
	if got := lat.GetHistogram().GetSampleCount(); got != 2 {
		t.Errorf("latency observations = %d, want 2", got)
	}

	var none *Metrics
	if none.Route("orders") != nil || none.LookupCounter("mint") != nil {
		t.Error("a nil *Metrics resolved counters")
	}
	none.Route("orders").Allowed(time.Millisecond) // must not panic
}
