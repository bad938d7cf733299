package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckConfigBuildsTheTracer: with tracing on, check-config builds the
// tracer as serve would: TLS files that cannot be used fail it, naming the
// field; a good block says where spans go; tracing off says nothing.
func TestCheckConfigBuildsTheTracer(t *testing.T) {
	for _, k := range []string{"OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
		t.Setenv(k, "")
	}
	tests := []struct {
		name     string
		tracing  string
		wantCode int
		want     string
	}{
		{name: "off", tracing: "{enabled: false}", wantCode: 0, want: ": ok ("},
		{name: "on", tracing: "{enabled: true, endpoint: 'http://127.0.0.1:4318'}", wantCode: 0,
			want: "ok   tracing: OTLP http/protobuf to http://127.0.0.1:4318/v1/traces"},
		{name: "grpc default endpoint", tracing: "{enabled: true, protocol: grpc}", wantCode: 0,
			want: "ok   tracing: OTLP grpc to http://localhost:4317"},
		{name: "missing CA file", tracing: "{enabled: true, endpoint: 'https://127.0.0.1:4318', tls: {ca_file: missing.pem}}", wantCode: 1,
			want: "FAIL tracing: tracing.tls.ca_file: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := "listen: {grpc: 127.0.0.1:1}\nroutes: [{name: r, public: true}]\ntracing: " + tt.tracing + "\n"
			path := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			code, out := capture(t, "check-config", path)
			if code != tt.wantCode || !strings.Contains(out, tt.want) {
				t.Fatalf("exit %d, want %d with %q:\n%s", code, tt.wantCode, tt.want, out)
			}
			if tt.name == "off" && strings.Contains(out, "tracing") {
				t.Errorf("tracing off, yet:\n%s", out)
			}
		})
	}
}
