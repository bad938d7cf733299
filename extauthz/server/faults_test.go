package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tokentailor/tokentailor/extauthz/authztest"
)

// TestReloadKeepsKeysWhileJWKSIsDown: a reload that keeps the issuer (and
// where its keys come from) keeps the keys it holds, whatever else changes,
// so valid JWTs keep passing while the JWKS endpoint fails (issue 11
// "Faults"). Before, a changed jwks_refresh or http_timeout started a new,
// empty key set that could not fetch: every token became a 503.
func TestReloadKeepsKeysWhileJWKSIsDown(t *testing.T) {
	tests := []struct {
		name   string
		change string // issuer settings added by the reload
	}{
		{name: "jwks_refresh", change: "    jwks_refresh: 1m\n"},
		{name: "http_timeout", change: "    http_timeout: 3s\n"},
		{name: "both", change: "    jwks_refresh: 2m\n    http_timeout: 4s\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, baseConfig)
			hdr := map[string]string{"authorization": "Bearer " + h.token(nil)}
			if st := httpStatus(h.check("GET", "/orders", hdr)); st != 200 {
				t.Fatalf("before the outage: %d", st)
			}
			h.is.SetDown(true)
			cfg := strings.Replace(strings.ReplaceAll(baseConfig, "{{ISSUER}}", h.is.URL()), "    jwks_min_refetch: 1h\n", "    jwks_min_refetch: 1h\n"+tt.change, 1)
			h.write("config.yaml", cfg)
			old := h.srv.Authz().Pipeline()
			if err := h.srv.Reload(context.Background(), false); err != nil {
				t.Fatalf("reload: %v", err)
			}
			if h.srv.Authz().Pipeline() == old {
				t.Fatal("the reload swapped nothing in")
			}
			if err := h.srv.Authz().Pipeline().Ready(); err != nil {
				t.Errorf("not ready after the reload: %v", err)
			}
			if st := httpStatus(h.check("GET", "/orders", hdr)); st != 200 {
				t.Errorf("valid JWT after the reload, JWKS down: %d, want 200", st)
			}
		})
	}
}

const discoveryConfig = `
listen: {grpc: 127.0.0.1:0, admin: 127.0.0.1:0}
log: {level: debug, format: json}
issuers:
  - issuer: {{ISSUER}}
    discovery: true
    audiences: [api]
    introspection: {}
    client: {id: tt, secret: {env: TT_DISCOVERY_SECRET}}
routes:
  - name: r
    match: {path_prefix: /}
    upstream: {mode: forward}
`

// TestServeStartsWithDiscoveryDown: an issuer whose metadata cannot be had
// at start does not stop serve (issue 12 item 5). The server starts not
// ready, its requests are 503, and it turns ready and allows once the issuer
// answers. Before, Build fetched the metadata and serve exited.
func TestServeStartsWithDiscoveryDown(t *testing.T) {
	t.Setenv("TT_DISCOVERY_SECRET", "pw")
	h := startHarness(t, discoveryConfig, func(is *authztest.Issuer) {
		x := is.Introspection(t, authztest.WithClientSecret("tt", "pw"))
		x.Register("opaque-token-1", map[string]any{"sub": "alice", "aud": "api", "exp": time.Now().Add(time.Hour).Unix()})
		is.SetDown(true)
	}, nil)
	hdr := map[string]string{"authorization": "Bearer opaque-token-1"}

	time.Sleep(300 * time.Millisecond) // a few failed attempts
	if err := h.srv.Authz().Pipeline().Ready(); err == nil {
		t.Fatal("ready while the issuer's metadata was never fetched")
	}
	if st := httpStatus(h.check("GET", "/x", hdr)); st != 503 {
		t.Fatalf("discovery down: %d, want 503\n%s", st, tail(h.logs.String(), 2000))
	}

	h.is.SetDown(false)
	h.waitReady()
	if st := httpStatus(h.check("GET", "/x", hdr)); st != 200 {
		t.Fatalf("discovery up: %d, want 200\n%s", st, tail(h.logs.String(), 2000))
	}
}
