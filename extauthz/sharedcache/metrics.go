package sharedcache

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
)

// collectors are the package's metrics; a nil *collectors records nothing.
type collectors struct {
	requests *prometheus.CounterVec
	breaker  prometheus.Gauge
	notices  *prometheus.CounterVec
}

func newCollectors(reg prometheus.Registerer) (m *collectors, err error) {
	if reg == nil {
		return nil, nil
	}
	m = &collectors{
		requests: register(reg, &err, prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "tokentailor", Name: "shared_cache_requests_total",
			Help: "Shared cache calls by op (get, set, add, revoke), kind and result (hit, local_hit, miss, ok, seen, error, breaker_open).",
		}, []string{"op", "kind", "result"})),
		breaker: register(reg, &err, prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "tokentailor", Name: "shared_cache_breaker_state",
			Help: "The shared cache circuit breaker: 0 closed, 1 half-open, 2 open; in cluster mode the most open breaker in use.",
		})),
		notices: register(reg, &err, prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "tokentailor", Name: "shared_cache_revocation_notices_total",
			Help: "Revocation notices read from the channel by result (received, malformed).",
		}, []string{"result"})),
	}
	return m, err
}

// register registers col, or returns the collector already registered
// under its name (a reload builds a new Cache on the same registry). Any
// other failure is kept in *errp.
func register[C prometheus.Collector](reg prometheus.Registerer, errp *error, col C) C {
	if err := reg.Register(col); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		*errp = errors.Join(*errp, err)
	}
	return col
}

func (m *collectors) request(op string, kind Kind, result string) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(op, kind.String(), result).Inc()
}

func (m *collectors) breakerState(s gobreaker.State) {
	if m == nil {
		return
	}
	m.breaker.Set(float64(s))
}

func (m *collectors) notice(result string) {
	if m == nil {
		return
	}
	m.notices.WithLabelValues(result).Inc()
}
