package tracing

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokentailor/tokentailor/extauthz/config"
)

// parse builds a config from the tracing block text (under a minimal
// valid config).
func parse(t testing.TB, tracing string) *config.Config {
	t.Helper()
	text := "listen: {grpc: 127.0.0.1:0}\nroutes: [{name: p, public: true}]\ntracing:\n" + tracing
	cfg, err := config.Parse([]byte(text), "/etc/tt")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// envOf is a getenv over m.
func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// TestEnabled: the file turns tracing on or off; the standard variables,
// when set, win.
func TestEnabled(t *testing.T) {
	tests := []struct {
		name    string
		enabled bool
		env     map[string]string
		want    bool
	}{
		{name: "off by default", want: false},
		{name: "on in the file", enabled: true, want: true},
		{name: "OTEL_SDK_DISABLED wins", enabled: true, env: map[string]string{"OTEL_SDK_DISABLED": "TRUE"}, want: false},
		{name: "OTEL_TRACES_EXPORTER=none wins", enabled: true, env: map[string]string{"OTEL_TRACES_EXPORTER": "none"}, want: false},
		{name: "OTEL_TRACES_EXPORTER=otlp turns it on", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, want: true},
		{name: "OTEL_SDK_DISABLED wins over OTEL_TRACES_EXPORTER", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, want: false},
		{name: "another exporter's name changes nothing", enabled: true, env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, want: true},
		{name: "OTEL_SDK_DISABLED=false changes nothing", enabled: true, env: map[string]string{"OTEL_SDK_DISABLED": "false"}, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := parse(t, "  enabled: false\n")
			cfg.Tracing.Enabled = tt.enabled
			if got := Enabled(cfg, envOf(tt.env)); got != tt.want {
				t.Fatalf("Enabled = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestResolveEnvironmentWins: each OTEL_* variable that is set wins over
// the field of the tracing block it configures; unset, the file decides.
func TestResolveEnvironmentWins(t *testing.T) {
	file := `  enabled: true
  endpoint: https://127.0.0.1:4318
  protocol: http/protobuf
  sampling_ratio: 0.5
  resource_attributes: {service.name: from-file, team: auth}
  tls: {ca_file: ca.pem}
`
	tests := []struct {
		name    string
		tracing string
		env     map[string]string
		want    Settings
		wantErr error
	}{{
		name: "defaults", tracing: "  enabled: true\n",
		want: Settings{Protocol: "http/protobuf", Endpoint: "http://localhost:4318/v1/traces", Ratio: 1,
			Attributes: map[string]string{"service.name": "tokentailor"}},
	}, {
		name: "grpc default endpoint", tracing: "  enabled: true\n  protocol: grpc\n",
		want: Settings{Protocol: "grpc", Endpoint: "http://localhost:4317", Ratio: 1,
			Attributes: map[string]string{"service.name": "tokentailor"}},
	}, {
		name: "the file alone", tracing: file,
		want: Settings{Protocol: "http/protobuf", Endpoint: "https://127.0.0.1:4318/v1/traces", Ratio: 0.5,
			Attributes: map[string]string{"service.name": "from-file", "team": "auth"}, CAFile: "/etc/tt/ca.pem"},
	}, {
		name: "the environment wins", tracing: file,
		env: map[string]string{
			"OTEL_EXPORTER_OTLP_PROTOCOL":    "grpc",
			"OTEL_EXPORTER_OTLP_ENDPOINT":    "http://collector:4317",
			"OTEL_TRACES_SAMPLER":            "always_off",
			"OTEL_EXPORTER_OTLP_CERTIFICATE": "/env/ca.pem",
		},
		want: Settings{Protocol: "grpc", Endpoint: "", Ratio: 0.5, SamplerFromEnv: true,
			Attributes: map[string]string{"service.name": "from-file", "team": "auth"}, TLSFromEnv: true},
	}, {
		name: "the signal's variable wins over the generic one", tracing: file,
		env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"},
		want: Settings{Protocol: "http/protobuf", Endpoint: "https://127.0.0.1:4318/v1/traces", Ratio: 0.5,
			Attributes: map[string]string{"service.name": "from-file", "team": "auth"}, CAFile: "/etc/tt/ca.pem"},
	}, {
		name: "a protocol the Go exporters lack", tracing: file,
		env:     map[string]string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"},
		wantErr: ErrTracing,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Resolve(parse(t, tt.tracing), envOf(tt.env))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil {
				return
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Fatalf("settings (-want +got):\n%s", d)
			}
		})
	}
}

// TestEveryTracingFieldArrives: the fixture that sets every config field to
// a non-default value (config's TestNonDefaultConfigSetsEveryField) reaches
// the settings tracing runs with, and its TLS files load.
func TestEveryTracingFieldArrives(t *testing.T) {
	cfg, err := config.Load(filepath.Join("..", "config", "testdata", "nondefault.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !Enabled(cfg, envOf(nil)) {
		t.Fatal("tracing.enabled did not arrive")
	}
	s, err := Resolve(cfg, envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	dir := cfg.Dir()
	want := Settings{
		Protocol: "grpc", Endpoint: "https://127.0.0.1:14317", Ratio: 0.25,
		Attributes: map[string]string{"service.name": "tt-nondefault", "deployment.environment.name": "nondefault"},
		CAFile:     filepath.Join(dir, "nondefault/tracing-ca.pem"),
		CertFile:   filepath.Join(dir, "nondefault/tracing-client.pem"),
		KeyFile:    filepath.Join(dir, "nondefault/tracing-client-key.pem"),
	}
	if d := cmp.Diff(want, s); d != "" {
		t.Fatalf("settings (-want +got):\n%s", d)
	}
	c, err := tlsConfig(s)
	if err != nil {
		t.Fatal(err)
	}
	if c == nil || c.RootCAs == nil || len(c.Certificates) != 1 {
		t.Fatalf("TLS config %+v: want the CA and the client certificate", c)
	}
	tr, err := New(context.Background(), cfg, Options{Getenv: envOf(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestTLSFilesFailClearly: a tls block whose files cannot be used stops
// New with an error naming the field.
func TestTLSFilesFailClearly(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "not-pem"), []byte("nothing"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		tls  string
	}{
		{name: "missing CA", tls: "{ca_file: missing.pem}"},
		{name: "CA without PEM", tls: "{ca_file: not-pem}"},
		{name: "client key pair missing", tls: "{cert_file: missing.pem, key_file: missing-key.pem}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := "listen: {grpc: 127.0.0.1:0}\nroutes: [{name: p, public: true}]\ntracing: {enabled: true, endpoint: 'https://127.0.0.1:1', tls: " + tt.tls + "}\n"
			cfg, err := config.Parse([]byte(text), dir)
			if err != nil {
				t.Fatal(err)
			}
			_, err = New(context.Background(), cfg, Options{Getenv: envOf(nil)})
			if !errors.Is(err, ErrTracing) {
				t.Fatalf("err = %v, want ErrTracing", err)
			}
		})
	}
}

// TestNilTracerCostsNothing: tracing off is a nil *Tracer whose methods do
// nothing and hand the transport back unwrapped.
func TestNilTracerCostsNothing(t *testing.T) {
	tr, err := New(context.Background(), parse(t, "  enabled: false\n"), Options{})
	if err != nil || tr != nil {
		t.Fatalf("New = %v, %v; want nil, nil", tr, err)
	}
	rt := http.DefaultTransport
	if got := tr.Transport(rt); got != rt {
		t.Fatal("a nil tracer wrapped the transport")
	}
	if tr.Shutdown(context.Background()) != nil || tr.Flush(context.Background()) != nil {
		t.Fatal("a nil tracer failed")
	}
}

// TestPropagation: Start reads W3C and B3 (single and multi header) trace
// context, W3C winning over B3; Transport makes each call a client child
// span and sends W3C traceparent onward.
func TestPropagation(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tr, err := New(context.Background(), parse(t, "  enabled: true\n"), Options{Getenv: envOf(nil), Exporter: exp})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
	var sent http.Header
	issuer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { sent = r.Header.Clone() }))
	t.Cleanup(issuer.Close)
	client := &http.Client{Transport: tr.Transport(nil)}

	tests := []struct {
		name        string
		headers     map[string]string
		wantTrace   string
		wantParent  string
		wantSampled bool
	}{
		{name: "W3C", headers: map[string]string{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
			wantTrace: "0af7651916cd43dd8448eb211c80319c", wantParent: "b7ad6b7169203331", wantSampled: true},
		{name: "B3 single header", headers: map[string]string{"b3": "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"},
			wantTrace: "80f198ee56343ba864fe8b2a57d3eff7", wantParent: "e457b5a2e4d86bd1", wantSampled: true},
		{name: "B3 multi header", headers: map[string]string{"x-b3-traceid": "463ac35c9f6413ad48485a3953bb6124", "x-b3-spanid": "a2fb4a1d1a96d312", "x-b3-sampled": "1"},
			wantTrace: "463ac35c9f6413ad48485a3953bb6124", wantParent: "a2fb4a1d1a96d312", wantSampled: true},
		{name: "B3 says not sampled", headers: map[string]string{"b3": "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0"},
			wantTrace: "80f198ee56343ba864fe8b2a57d3eff7", wantParent: "e457b5a2e4d86bd1", wantSampled: false},
		{name: "W3C wins over B3", headers: map[string]string{
			"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
			"b3":          "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"},
			wantTrace: "0af7651916cd43dd8448eb211c80319c", wantParent: "b7ad6b7169203331", wantSampled: true},
		{name: "no trace context: a new trace", headers: map[string]string{}, wantSampled: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			exp.Reset()
			ctx, span := tr.Start(context.Background(), "check", tt.headers, time.Now())
			sc := span.SpanContext()
			if tt.wantTrace != "" && sc.TraceID().String() != tt.wantTrace {
				t.Fatalf("trace %s, want %s", sc.TraceID(), tt.wantTrace)
			}
			if sc.IsSampled() != tt.wantSampled {
				t.Fatalf("sampled %v, want %v", sc.IsSampled(), tt.wantSampled)
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, issuer.URL+"/jwks.json", nil)
			res, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			span.End()
			if got := sent.Get("traceparent"); len(got) < 36 || got[3:35] != sc.TraceID().String() {
				t.Fatalf("the issuer got traceparent %q, want trace %s", got, sc.TraceID())
			}
			if sent.Get("b3") != "" || sent.Get("x-b3-traceid") != "" {
				t.Fatalf("B3 headers sent onward: %v", sent)
			}
			spans := exp.GetSpans()
			if !tt.wantSampled {
				if len(spans) != 0 {
					t.Fatalf("%d spans exported for an unsampled trace", len(spans))
				}
				return
			}
			if len(spans) != 2 {
				t.Fatalf("spans %v, want the client span and the check span", names(spans))
			}
			client, check := spans[0], spans[1]
			if check.Name != "check" || check.SpanKind != trace.SpanKindServer {
				t.Fatalf("check span %q kind %v", check.Name, check.SpanKind)
			}
			if tt.wantParent != "" && check.Parent.SpanID().String() != tt.wantParent {
				t.Fatalf("check span's parent %s, want %s", check.Parent.SpanID(), tt.wantParent)
			}
			if client.SpanKind != trace.SpanKindClient || client.Parent.SpanID() != check.SpanContext.SpanID() {
				t.Fatalf("client span %q kind %v parent %s: want a client child of the check span", client.Name, client.SpanKind, client.Parent.SpanID())
			}
		})
	}
}

func names(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return out
}

// TestResourceEnvironmentWinsKeyByKey: OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES win over the file's resource_attributes, each
// key alone; the file's other keys stay.
func TestResourceEnvironmentWinsKeyByKey(t *testing.T) {
	t.Setenv("OTEL_SERVICE_NAME", "from-env")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "team=env-team")
	exp := tracetest.NewInMemoryExporter()
	cfg := parse(t, "  enabled: true\n  resource_attributes: {service.name: from-file, team: file-team, region: eu}\n")
	tr, err := New(context.Background(), cfg, Options{Exporter: exp})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
	_, span := tr.Start(context.Background(), "check", nil, time.Now())
	span.End()
	spans := exp.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("%d spans", len(spans))
	}
	got := map[string]string{}
	for _, a := range spans[0].Resource.Attributes() {
		got[string(a.Key)] = a.Value.Emit()
	}
	for k, v := range map[string]string{"service.name": "from-env", "team": "env-team", "region": "eu", "telemetry.sdk.language": "go"} {
		if got[k] != v {
			t.Errorf("resource %s = %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
}
