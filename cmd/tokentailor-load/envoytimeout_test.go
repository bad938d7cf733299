package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	envoyconfig "github.com/tokentailor/tokentailor/envoy"
)

func TestEnvoyTimeout(t *testing.T) {
	sidecar := string(envoyconfig.Sidecar())
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name    string
		path    string
		want    time.Duration
		wantErr error
	}{
		{name: "embedded sidecar", path: "", want: mustDuration(t, sidecar)},
		{name: "changed timeout", path: write("short.yaml", strings.Replace(sidecar, "timeout: "+mustDuration(t, sidecar).String(), "timeout: 0.25s", 1)), want: 250 * time.Millisecond},
		{name: "no ext_authz", path: write("none.yaml", "static_resources: {}\n"), wantErr: errNoExtAuthz},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, err := envoyTimeout(tt.path)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("timeout = %v, want %v", got, tt.want)
			}
		})
	}
}

// mustDuration reads the ext_authz timeout written in the sidecar YAML, the
// line under envoy_grpc, independently of envoyTimeout.
func mustDuration(t *testing.T, yaml string) time.Duration {
	t.Helper()
	_, after, ok := strings.Cut(yaml, "envoy_grpc: {cluster_name: tokentailor}")
	if !ok {
		t.Fatal("sidecar.yaml: envoy_grpc line not found")
	}
	for _, line := range strings.Split(after, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "timeout: "); ok {
			d, err := time.ParseDuration(v)
			if err != nil {
				t.Fatal(err)
			}
			return d
		}
	}
	t.Fatal("sidecar.yaml: timeout not found")
	return 0
}
