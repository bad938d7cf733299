// Package tracing is tokentailor's OpenTelemetry tracing: a tracer provider
// built from the config's tracing block and the standard OTEL_* environment
// variables, exporting over OTLP (HTTP or gRPC); the propagators that read
// the trace context of the request Envoy authorizes (W3C traceparent and
// tracestate, B3 single and multi header); and the HTTP transport that makes
// every call to an issuer a child span (otelhttp).
//
// Nothing is global: the provider is passed to whoever traces, and a nil
// *Tracer (tracing off) answers every method at the cost of a nil check.
package tracing

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/contrib/propagators/b3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/credentials"

	"github.com/tokentailor/tokentailor/extauthz/config"
)

// ScopeName names tokentailor's instrumentation scope in exported spans.
const ScopeName = "github.com/tokentailor/tokentailor"

// ErrTracing wraps every error New returns: a setting of the tracing block
// or an OTEL_* variable that cannot be used.
var ErrTracing = errors.New("tracing")

// Tracer traces Checks and calls to issuers; nil when tracing is off.
type Tracer struct {
	provider *sdktrace.TracerProvider
	tracer   trace.Tracer
	// w3c reads W3C trace context and writes it into calls to issuers.
	w3c propagation.TraceContext
	// b3 reads B3 trace context, single or multi header; W3C wins when a
	// request carries both.
	b3 propagation.TextMapPropagator
	// server is the span kind option of every Check span, made once.
	server trace.SpanStartOption
}

// Options are what New takes besides the config.
type Options struct {
	// Getenv reads the environment; nil means os.Getenv. The OTLP
	// exporters themselves read the process environment.
	Getenv func(string) string
	// Exporter, when set, receives every span as it ends instead of an
	// OTLP exporter batching them (tests: tracetest.InMemoryExporter).
	Exporter sdktrace.SpanExporter
	// Logger receives the settings tracing runs with; nil discards.
	Logger *slog.Logger
}

// Settings are what tracing runs with once the tracing block and the
// environment are merged.
type Settings struct {
	// Protocol is config.TracingProtocolHTTP or config.TracingProtocolGRPC.
	Protocol string
	// Endpoint is the collector URL from the file (or the default), ""
	// when OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT decides.
	Endpoint string
	// Ratio is the parent-based sampler's ratio for root spans; ignored
	// when SamplerFromEnv.
	Ratio float64
	// SamplerFromEnv: OTEL_TRACES_SAMPLER decides.
	SamplerFromEnv bool
	// Attributes are the resource attributes of the file over the defaults
	// (OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME win over them later).
	Attributes map[string]string
	// CAFile, CertFile and KeyFile are the tls block, resolved against the
	// config's directory; empty when TLSFromEnv.
	CAFile, CertFile, KeyFile string
	// TLSFromEnv: an OTEL_EXPORTER_OTLP_(TRACES_)CERTIFICATE, _CLIENT_CERTIFICATE
	// or _CLIENT_KEY variable is set, and the exporter reads them all.
	TLSFromEnv bool
}

// Enabled reports whether cfg and the environment turn tracing on. Like
// every other setting, the environment wins: OTEL_SDK_DISABLED=true or
// OTEL_TRACES_EXPORTER=none turn it off, OTEL_TRACES_EXPORTER=otlp on;
// otherwise the file's enabled decides (other exporters than otlp are not
// offered, and their names change nothing).
func Enabled(cfg *config.Config, getenv func(string) string) bool {
	if getenv == nil {
		getenv = os.Getenv
	}
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return false
	}
	switch strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER"))) {
	case "none":
		return false
	case "otlp":
		return true
	}
	return cfg.Tracing.Enabled
}

// Resolve merges cfg's tracing block with the environment: each OTEL_*
// variable that is set wins over the field it configures.
func Resolve(cfg *config.Config, getenv func(string) string) (Settings, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	env := func(names ...string) (string, string) {
		for _, n := range names {
			if v := strings.TrimSpace(getenv(n)); v != "" {
				return n, v
			}
		}
		return "", ""
	}
	t := cfg.Tracing
	s := Settings{Protocol: t.Protocol, Ratio: t.Ratio(), Attributes: map[string]string{"service.name": config.DefaultTracingServiceName}}
	if name, v := env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"); v != "" {
		if v != config.TracingProtocolHTTP && v != config.TracingProtocolGRPC {
			return s, fmt.Errorf("%w: %s=%q: tokentailor exports http/protobuf or grpc", ErrTracing, name, v)
		}
		s.Protocol = v
	}
	if s.Protocol == "" {
		s.Protocol = config.DefaultTracingProtocol
	}
	if _, v := env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"); v == "" {
		s.Endpoint = endpointURL(t.Endpoint, s.Protocol)
	}
	_, sampler := env("OTEL_TRACES_SAMPLER")
	s.SamplerFromEnv = sampler != ""
	for k, v := range t.ResourceAttributes {
		s.Attributes[k] = v
	}
	if _, v := env("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "OTEL_EXPORTER_OTLP_CERTIFICATE",
		"OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
		"OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "OTEL_EXPORTER_OTLP_CLIENT_KEY"); v != "" {
		s.TLSFromEnv = true
	} else if t.TLS != nil {
		s.CAFile, s.CertFile, s.KeyFile = cfg.Path(t.TLS.CAFile), cfg.Path(t.TLS.CertFile), cfg.Path(t.TLS.KeyFile)
	}
	return s, nil
}

// endpointURL is the file's endpoint, or the default of protocol, with
// http/protobuf's /v1/traces where the path is empty.
func endpointURL(endpoint, protocol string) string {
	if endpoint == "" {
		if protocol == config.TracingProtocolGRPC {
			return "http://localhost:4317"
		}
		return "http://localhost:4318/v1/traces"
	}
	if protocol == config.TracingProtocolHTTP {
		if u, err := url.Parse(endpoint); err == nil && (u.Path == "" || u.Path == "/") {
			u.Path = "/v1/traces"
			return u.String()
		}
	}
	return endpoint
}

// New builds the tracer of cfg, or returns nil (tracing off) when Enabled
// says so. Nothing connects yet: the exporter dials on its first batch, and
// an unreachable collector costs dropped spans, never a Check.
func New(ctx context.Context, cfg *config.Config, opts Options) (*Tracer, error) {
	if !Enabled(cfg, opts.Getenv) {
		return nil, nil
	}
	s, err := Resolve(cfg, opts.Getenv)
	if err != nil {
		return nil, err
	}
	res, err := resource.New(ctx, resource.WithAttributes(attributes(s.Attributes)...), resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil {
		return nil, fmt.Errorf("%w: OTEL_RESOURCE_ATTRIBUTES: %w", ErrTracing, err)
	}
	po := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if !s.SamplerFromEnv {
		po = append(po, sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(s.Ratio))))
	}
	if opts.Exporter != nil {
		po = append(po, sdktrace.WithSyncer(opts.Exporter))
	} else {
		exp, err := exporter(ctx, s)
		if err != nil {
			return nil, err
		}
		po = append(po, sdktrace.WithBatcher(exp))
	}
	if opts.Logger != nil {
		opts.Logger.Info("tracing on", "protocol", s.Protocol, "endpoint", orEnv(s.Endpoint), "sampler", sampler(s))
	}
	tp := sdktrace.NewTracerProvider(po...)
	return &Tracer{
		provider: tp,
		tracer:   tp.Tracer(ScopeName),
		b3:       b3.New(),
		server:   trace.WithSpanKind(trace.SpanKindServer),
	}, nil
}

func orEnv(endpoint string) string {
	if endpoint == "" {
		return "from OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT"
	}
	return endpoint
}

func sampler(s Settings) string {
	if s.SamplerFromEnv {
		return "from OTEL_TRACES_SAMPLER"
	}
	return fmt.Sprintf("parentbased_traceidratio %v", s.Ratio)
}

func attributes(m map[string]string) []attribute.KeyValue {
	out := make([]attribute.KeyValue, 0, len(m))
	for k, v := range m {
		out = append(out, attribute.String(k, v))
	}
	return out
}

// exporter is the OTLP exporter of s. Options given here win over the
// exporter's own reading of OTEL_*, so only what the environment does not
// set is given.
func exporter(ctx context.Context, s Settings) (sdktrace.SpanExporter, error) {
	tlsCfg, err := tlsConfig(s)
	if err != nil {
		return nil, err
	}
	var exp sdktrace.SpanExporter
	switch s.Protocol {
	case config.TracingProtocolGRPC:
		var o []otlptracegrpc.Option
		if s.Endpoint != "" {
			o = append(o, otlptracegrpc.WithEndpointURL(s.Endpoint))
		}
		if tlsCfg != nil {
			o = append(o, otlptracegrpc.WithTLSCredentials(credentials.NewTLS(tlsCfg)))
		}
		exp, err = otlptracegrpc.New(ctx, o...)
	default:
		var o []otlptracehttp.Option
		if s.Endpoint != "" {
			o = append(o, otlptracehttp.WithEndpointURL(s.Endpoint))
		}
		if tlsCfg != nil {
			o = append(o, otlptracehttp.WithTLSClientConfig(tlsCfg))
		}
		exp, err = otlptracehttp.New(ctx, o...)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: OTLP exporter: %w", ErrTracing, err)
	}
	return exp, nil
}

// tlsConfig is the tls block's TLS config; nil when the block is absent
// (or the environment's TLS variables replace it) or the endpoint is
// plaintext.
func tlsConfig(s Settings) (*tls.Config, error) {
	if s.CAFile == "" && s.CertFile == "" {
		return nil, nil
	}
	if u, err := url.Parse(s.Endpoint); err == nil && u.Scheme == "http" {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.CAFile != "" {
		pem, err := os.ReadFile(s.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: tracing.tls.ca_file: %w", ErrTracing, err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: tracing.tls.ca_file: no PEM certificate in %s", ErrTracing, s.CAFile)
		}
	}
	if s.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(s.CertFile, s.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: tracing.tls.cert_file/key_file: %w", ErrTracing, err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// Shutdown sends the spans still queued and stops the exporter; ctx bounds
// how long it may take (the server gives it listen.shutdown_grace).
func (t *Tracer) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.provider.Shutdown(ctx)
}

// Transport wraps rt (nil: http.DefaultTransport) so that every call is a
// client span, a child of the span in the request's context (a Check's), or
// a root span sampled by the ratio for calls outside any Check (key
// refreshes), and carries the W3C trace context to the issuer. Tracing off
// returns rt itself.
func (t *Tracer) Transport(rt http.RoundTripper) http.RoundTripper {
	if t == nil {
		return rt
	}
	return otelhttp.NewTransport(rt,
		otelhttp.WithTracerProvider(t.provider),
		otelhttp.WithPropagators(t.w3c),
	)
}

// Start starts a server span called name at start, a child of the trace
// context in headers (lower-case names, as Envoy sends them); it returns
// ctx with the span.
func (t *Tracer) Start(ctx context.Context, name string, headers map[string]string, start time.Time) (context.Context, trace.Span) {
	carrier := propagation.MapCarrier(headers)
	// B3 is asked only when its headers are there: its extractor costs
	// two context values per request even when it finds nothing.
	if _, ok := headers["b3"]; ok {
		ctx = t.b3.Extract(ctx, carrier)
	} else if _, ok := headers["x-b3-traceid"]; ok {
		ctx = t.b3.Extract(ctx, carrier)
	}
	ctx = t.w3c.Extract(ctx, carrier)
	return t.tracer.Start(ctx, name, t.server, trace.WithTimestamp(start))
}

// Flush sends the spans queued so far and returns once they are sent or
// ctx ends.
func (t *Tracer) Flush(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.provider.ForceFlush(ctx)
}
