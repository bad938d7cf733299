// Package metrics declares tokentailor's Prometheus metrics. A *Metrics is
// created once per process on a registry passed in (no globals) and handed to
// every stage; all methods are safe on a nil *Metrics, so tests may pass nil.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds every collector tokentailor exports.
type Metrics struct {
	decisions    *prometheus.CounterVec
	checkLatency prometheus.Histogram
	cacheLookups *prometheus.CounterVec
	issuerCalls  *prometheus.CounterVec
	issuerLimit  *prometheus.CounterVec
	reloads      *prometheus.CounterVec
}

// New creates the collectors and registers them on reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "tokentailor", Name: "decisions_total",
			Help: "Check decisions by result (allow, deny, error), reason and route.",
		}, []string{"result", "reason", "route"}),
		checkLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "tokentailor", Name: "check_duration_seconds",
			Help:    "Time spent answering one Check call.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}),
		cacheLookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "tokentailor", Name: "cache_lookups_total",
			Help: "Cache lookups by cache and result (hit, miss).",
		}, []string{"cache", "result"}),
		issuerCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "tokentailor", Name: "issuer_requests_total",
			Help: "Outbound calls toward each issuer by endpoint (jwks, discovery, introspection, token) and result (ok, error).",
		}, []string{"issuer", "endpoint", "result"}),
		issuerLimit: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "tokentailor", Name: "issuer_requests_limited_total",
			Help: "Outbound calls toward each issuer not made because its rate limit was reached, by endpoint (introspection); each one denied a Check with 503.",
		}, []string{"issuer", "endpoint"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "tokentailor", Name: "config_reloads_total",
			Help: "Configuration reloads by result (ok, error).",
		}, []string{"result"}),
	}
	reg.MustRegister(m.decisions, m.checkLatency, m.cacheLookups, m.issuerCalls, m.issuerLimit, m.reloads)
	return m
}

// Decision counts one Check outcome. reason is a stable label such as
// "ok", "insufficient_scope" or "token_expired"; never a token or a message.
func (m *Metrics) Decision(result, reason, route string, took time.Duration) {
	if m == nil {
		return
	}
	m.decisions.WithLabelValues(result, reason, route).Inc()
	m.checkLatency.Observe(took.Seconds())
}

// CacheLookup counts a hit or a miss in the named cache.
func (m *Metrics) CacheLookup(cache string, hit bool) {
	if m == nil {
		return
	}
	result := "miss"
	if hit {
		result = "hit"
	}
	m.cacheLookups.WithLabelValues(cache, result).Inc()
}

// IssuerCall counts one outbound call to an issuer's endpoint.
func (m *Metrics) IssuerCall(issuer, endpoint string, err error) {
	if m == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.issuerCalls.WithLabelValues(issuer, endpoint, result).Inc()
}

// IssuerCallLimited counts one call to an issuer's endpoint that its rate
// limit refused.
func (m *Metrics) IssuerCallLimited(issuer, endpoint string) {
	if m == nil {
		return
	}
	m.issuerLimit.WithLabelValues(issuer, endpoint).Inc()
}

// Reload counts one configuration reload attempt.
func (m *Metrics) Reload(err error) {
	if m == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.reloads.WithLabelValues(result).Inc()
}
