package config

import (
	"fmt"
	"net/url"
	"strings"
)

// Tracing configures OpenTelemetry tracing (extauthz/tracing): one span per
// Check, joined to the trace of the request Envoy authorizes, with a child
// span per call to an issuer, exported over OTLP. Off by default. The
// standard OTEL_* environment variables win over these settings where they
// are set (as GOGC does over runtime.gc_percent), so that an operator that
// injects them into every pod is obeyed; see README "Tracing". Read at
// start only.
type Tracing struct {
	// Enabled turns tracing on (default false). OTEL_TRACES_EXPORTER=otlp
	// turns it on too; OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none
	// turn it off.
	Enabled bool `json:"enabled"`
	// Endpoint is the collector's OTLP URL: http:// (plaintext) or https://,
	// e.g. "http://127.0.0.1:4318" (http/protobuf; an empty path means
	// /v1/traces) or "http://127.0.0.1:4317" (grpc). Empty means
	// http://localhost:4318/v1/traces or http://localhost:4317 by protocol.
	// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT win.
	Endpoint string `json:"endpoint"`
	// Protocol is http/protobuf (default) or grpc.
	// OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or OTEL_EXPORTER_OTLP_PROTOCOL win.
	Protocol string `json:"protocol"`
	// SamplingRatio is the share of Checks traced when Envoy's request
	// carries no trace context, 0 to 1 (default 1). A request whose trace
	// context says sampled or not sampled is traced or not as it says
	// (parent-based), so 0 traces only the requests Envoy's trace samples.
	// OTEL_TRACES_SAMPLER (with OTEL_TRACES_SAMPLER_ARG) wins.
	SamplingRatio *float64 `json:"sampling_ratio"`
	// ResourceAttributes describe this process in every span, e.g.
	// {deployment.environment.name: prod}; service.name is "tokentailor"
	// unless set here. OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME win
	// key by key.
	ResourceAttributes map[string]string `json:"resource_attributes"`
	// TLS configures an https:// endpoint; absent, the system's CAs are
	// trusted and no client certificate is sent.
	TLS *TracingTLS `json:"tls"`
}

// TracingTLS configures TLS toward the collector.
type TracingTLS struct {
	// CAFile is a PEM bundle of trusted CAs (default: the system's).
	// OTEL_EXPORTER_OTLP_(TRACES_)CERTIFICATE wins.
	CAFile string `json:"ca_file"`
	// CertFile and KeyFile are a client certificate, when the collector asks
	// for one. OTEL_EXPORTER_OTLP_(TRACES_)CLIENT_CERTIFICATE and
	// OTEL_EXPORTER_OTLP_(TRACES_)CLIENT_KEY win.
	CertFile string `json:"cert_file"`
	KeyFile  string `json:"key_file"`
}

// Tracing protocols (OTEL_EXPORTER_OTLP_PROTOCOL's values; http/json is
// not offered by the Go exporters).
const (
	TracingProtocolHTTP = "http/protobuf"
	TracingProtocolGRPC = "grpc"
)

// Defaults of the tracing block.
const (
	DefaultTracingProtocol      = TracingProtocolHTTP
	DefaultTracingSamplingRatio = 1.0
	// DefaultTracingServiceName is service.name unless the file or
	// OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES say otherwise.
	DefaultTracingServiceName = "tokentailor"
)

// defaults fills the block's unset fields.
func (t *Tracing) defaults() {
	setDefault(&t.Protocol, DefaultTracingProtocol)
	if t.SamplingRatio == nil {
		r := DefaultTracingSamplingRatio
		t.SamplingRatio = &r
	}
}

// Ratio is the sampling ratio, defaulted.
func (t *Tracing) Ratio() float64 {
	if t.SamplingRatio == nil {
		return DefaultTracingSamplingRatio
	}
	return *t.SamplingRatio
}

// validateTracing reports the tracing block's problems.
func (c *Config) validateTracing(p *problems) {
	t := &c.Tracing
	bad := p.add
	switch t.Protocol {
	case TracingProtocolHTTP, TracingProtocolGRPC:
	default:
		bad("tracing.protocol", "%q is not http/protobuf or grpc", t.Protocol)
	}
	if r := t.Ratio(); !(r >= 0 && r <= 1) {
		bad("tracing.sampling_ratio", "%v is not between 0 and 1", r)
	}
	var scheme string
	if t.Endpoint != "" {
		u, err := url.Parse(t.Endpoint)
		switch {
		case err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https"):
			bad("tracing.endpoint", "%q: want http://host:port or https://host:port (and a path for http/protobuf)", t.Endpoint)
		case u.User != nil || u.RawQuery != "" || u.Fragment != "":
			bad("tracing.endpoint", "must not hold user info, a query or a fragment: send credentials with OTEL_EXPORTER_OTLP_HEADERS")
		case t.Protocol == TracingProtocolGRPC && strings.Trim(u.Path, "/") != "":
			bad("tracing.endpoint", "grpc takes no path: %q", u.Path)
		default:
			scheme = u.Scheme
		}
	}
	for k := range t.ResourceAttributes {
		if strings.TrimSpace(k) == "" {
			bad("tracing.resource_attributes", "a key is empty")
		}
	}
	if s := t.TLS; s != nil {
		if (s.CertFile == "") != (s.KeyFile == "") {
			bad("tracing.tls", "set both cert_file and key_file, or neither")
		}
		if scheme == "http" {
			bad("tracing.tls", "the endpoint is http:// (plaintext): use https:// or drop tls")
		}
	}
}

// Key is the block as a comparable string: tracing is read at start only,
// and a reload that changes it says so.
func (t *Tracing) Key() string {
	tls := TracingTLS{}
	if t.TLS != nil {
		tls = *t.TLS
	}
	return fmt.Sprint(t.Enabled, "|", t.Endpoint, "|", t.Protocol, "|", t.Ratio(), "|", t.ResourceAttributes, "|", tls)
}
