package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokentailor/tokentailor/extauthz/authztest"
)

// TestCheckConfigReachesIssuers: without -offline, check-config fetches each
// issuer's discovery document and JWKS, compares the issuer the document
// names with the configured one and says what it compared, and reports
// endpoints the config needs that neither it nor the document gives.
func TestCheckConfigReachesIssuers(t *testing.T) {
	t.Setenv("TT_CHECK_SECRET", "s3cret")
	is := authztest.New(t)
	// A metadata document with keys only, no introspection or token endpoint.
	is.Handle("GET /bare/metadata", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"issuer":"` + is.URL() + `","jwks_uri":"` + is.Endpoint(authztest.PathJWKS) + `"}`))
	}))
	client := "\n    client: {id: tokentailor, secret: {env: TT_CHECK_SECRET}}"
	route := "\nroutes: [{name: r, require: {}, upstream: {mode: forward}}]\n"
	tests := []struct {
		name     string
		issuer   string // the issuers[0] block after "- "
		routes   string
		wantCode int
		want     []string
		wantNot  []string
	}{
		{name: "all reachable", issuer: "issuer: ISS\n    discovery: true\n    audiences: [api]\n    introspection: {}" + client, routes: route,
			wantCode: 0, want: []string{
				"ok   issuers[0]: discovery ISS/.well-known/openid-configuration",
				`ok   issuers[0]: token iss "ISS" (named by the discovery document) vs configured "ISS": equal`,
				"ok   issuers[0]: jwks ISS/jwks.json: usable keys fetched",
				"ok   issuers[0]: introspection endpoint ISS/introspect (from discovery)",
			}},
		{name: "trailing slash", issuer: "issuer: ISS/\n    discovery: true\n    audiences: [api]", routes: route,
			wantCode: 1, want: []string{`FAIL issuers[0]: token iss "ISS" (named by the discovery document) vs configured "ISS/": differ by a trailing slash`},
			wantNot: []string{"jwks ISS/jwks.json: usable keys fetched"}},
		{name: "no introspection endpoint", issuer: "issuer: ISS\n    discovery: true\n    discovery_url: ISS/bare/metadata\n    audiences: [api]\n    introspection: {}" + client, routes: route,
			wantCode: 1, want: []string{"FAIL issuers[0].introspection.endpoint: not configured and the discovery document has no introspection_endpoint"}},
		{name: "no token endpoint for an exchange route", issuer: "issuer: ISS\n    discovery: true\n    discovery_url: ISS/bare/metadata\n    audiences: [api]" + client,
			routes:   "\nroutes: [{name: r, require: {}, upstream: {mode: exchange, audience: x}}]\n",
			wantCode: 1, want: []string{"FAIL issuers[0].token_endpoint: a route exchanges tokens at this issuer"}},
		{name: "jwks unreachable", issuer: "issuer: ISS\n    jwks_url: ISS/nope.json\n    audiences: [api]", routes: route,
			wantCode: 1, want: []string{"FAIL issuers[0]: jwks ISS/nope.json: "}},
		{name: "discovery unreachable", issuer: "issuer: ISS\n    discovery: true\n    discovery_url: ISS/missing\n    audiences: [api]", routes: route,
			wantCode: 1, want: []string{"FAIL issuers[0]: discovery ISS/missing: "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := "listen: {grpc: 127.0.0.1:1}\nissuers:\n  - " + tt.issuer + tt.routes
			path := filepath.Join(t.TempDir(), "c.yaml")
			os.WriteFile(path, []byte(strings.ReplaceAll(cfg, "ISS", is.URL())), 0o600)
			code, out := capture(t, "check-config", path)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d:\n%s", code, tt.wantCode, out)
			}
			for _, w := range tt.want {
				if w = strings.ReplaceAll(w, "ISS", is.URL()); !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tt.wantNot {
				if w = strings.ReplaceAll(w, "ISS", is.URL()); strings.Contains(out, w) {
					t.Errorf("output has %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, "s3cret") {
				t.Error("check-config printed a secret")
			}
		})
	}
}
