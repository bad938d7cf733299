package config

import (
	"strings"
	"testing"
)

// twoIntrospecting is a config with two issuers that introspect; PREFIX_A and
// PREFIX_B become their token_shape prefixes (none when empty) and ROUTE_B
// the route's extra lines.
const twoIntrospecting = `
listen: {grpc: 127.0.0.1:1}
issuers:
  - issuer: https://a.test
    audiences: [api]
    introspection: {endpoint: https://a.test/i SHAPE_A}
    client: {id: c, secret: {env: X}}
  - issuer: https://b.test
    audiences: [api]
    jwks_url: https://b.test/jwks
    introspection: {endpoint: https://b.test/i SHAPE_B}
    client: {id: c, secret: {env: X}}
routes:
  - name: r
    require: {}
    ROUTE
    upstream: {mode: forward}
`

func TestRouteIssuers(t *testing.T) {
	shape := func(p string) string { return ", token_shape: {prefix: " + p + ", alphabet: base64url}" }
	tests := []struct {
		name           string
		shapeA, shapeB string
		route          string
		wantErr        string // "" when the config is valid
	}{
		{name: "two without prefixes, route accepts both", route: "public: false",
			wantErr: `routes[0].issuers: accepts issuers "https://a.test", "https://b.test", which all introspect opaque tokens, and "https://a.test" has no introspection.token_shape.prefix`},
		{name: "two without prefixes, route narrows to one", route: "issuers: [https://b.test]"},
		{name: "two with distinct prefixes", shapeA: shape("a_"), shapeB: shape("ory_at_"), route: "public: false"},
		{name: "overlapping prefixes", shapeA: shape("ory_"), shapeB: shape("ory_at_"), route: "public: false",
			wantErr: `routes[0].issuers: issuers "https://a.test" and "https://b.test" introspect tokens with overlapping prefixes "ory_" and "ory_at_"`},
		{name: "one prefix missing", shapeB: shape("ory_at_"), route: "public: false",
			wantErr: `"https://a.test" has no introspection.token_shape.prefix`},
		{name: "a public route needs none", route: "public: true"},
		{name: "unknown issuer", route: "issuers: [https://a.test/]",
			wantErr: `routes[0].issuers[0]: "https://a.test/" is not the issuer of any issuers[] entry`},
		{name: "issuer twice", route: "issuers: [https://b.test, https://b.test]",
			wantErr: `routes[0].issuers[1]: "https://b.test" listed twice`},
		{name: "empty name", route: `issuers: [""]`, wantErr: "routes[0].issuers[0]: must not be empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			y := strings.NewReplacer(" SHAPE_A", tt.shapeA, " SHAPE_B", tt.shapeB, "ROUTE", tt.route).Replace(twoIntrospecting)
			cfg, err := Parse([]byte(y), t.TempDir())
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("valid config refused: %v", err)
				}
				if strings.Contains(tt.route, "issuers:") && len(cfg.Routes[0].Issuers) != 1 {
					t.Errorf("routes[0].issuers = %v", cfg.Routes[0].Issuers)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}
