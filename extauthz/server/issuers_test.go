package server

import (
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokentailor/tokentailor/extauthz/authztest"
)

// twoIssuersConfig has two authorization servers that both introspect:
// {{ISSUER}} (tokens a_…) and {{ISSUER2}} (Hydra-like ory_at_… tokens).
const twoIssuersConfig = `
listen:
  grpc: 127.0.0.1:0
  admin: 127.0.0.1:0
log: {level: debug, format: json}
mint:
  issuer: https://tokentailor.test
  keys: [{file: signing.pem, kid: k1}]
issuers:
  - issuer: {{ISSUER}}
    jwks_url: {{ISSUER}}/jwks.json
    audiences: [api.example.com]
    introspection:
      endpoint: {{ISSUER}}/introspect
      token_shape: {prefix: a_, alphabet: base64url}
    client: {id: tokentailor, secret: {env: TT_TEST_CLIENT_SECRET}}
  - issuer: {{ISSUER2}}
    jwks_url: {{ISSUER2}}/jwks.json
    audiences: [api.example.com]
    introspection:
      endpoint: {{ISSUER2}}/introspect
      token_shape: {prefix: ory_at_, alphabet: base64url}
    client: {id: tokentailor, secret: {env: TT_TEST_CLIENT_SECRET}}
routes:
  - name: both
    require: {}
    match: {path_prefix: /both}
    upstream: {audience: orders-api}
  - name: only-b
    require: {}
    match: {path_prefix: /b}
    issuers: [{{ISSUER2}}]
    upstream: {audience: orders-api}
`

// TestSeveralIssuersIntrospect: an opaque token goes to the one introspecting
// issuer its prefix names among those the route accepts, and nowhere else; a
// route that lists its issuers refuses JWTs and opaque tokens of the others
// with 401 invalid_token, without a call.
func TestSeveralIssuersIntrospect(t *testing.T) {
	t.Setenv("TT_TEST_CLIENT_SECRET", "s3cret")
	b := authztest.New(t)
	introB := b.Introspection(t, authztest.WithClientSecret("tokentailor", "s3cret"))
	var introA *authztest.Introspection
	h := newHarnessWith(t, strings.ReplaceAll(twoIssuersConfig, "{{ISSUER2}}", b.URL()), func(is *authztest.Issuer) {
		introA = is.Introspection(t, authztest.WithClientSecret("tokentailor", "s3cret"))
	})
	exp := time.Now().Add(10 * time.Minute).Unix()
	introA.Register("a_alice", map[string]any{"sub": "alice", "aud": "api.example.com", "exp": exp})
	introB.Register("ory_at_bob", map[string]any{"sub": "bob", "aud": "api.example.com", "exp": exp})
	// The same string registered at A too: if it ever reached A, A would say active.
	introA.Register("ory_at_bob", map[string]any{"sub": "mallory", "aud": "api.example.com", "exp": exp})
	introA.Register("nothing_alice", map[string]any{"sub": "alice", "aud": "api.example.com", "exp": exp})
	jwtB := b.Sign(t, jwt.MapClaims{"iss": b.URL(), "sub": "bob", "aud": "api.example.com", "exp": exp})

	tests := []struct {
		name             string
		path, token      string
		wantStatus       int
		wantSub          string
		wantCallsA       int // introspection calls at A after this check
		wantCallsB       int
		wantChallengeHas string
	}{
		{name: "prefix a_ goes to A", path: "/both", token: "a_alice", wantStatus: 200, wantSub: "alice", wantCallsA: 1},
		{name: "prefix ory_at_ goes to B only", path: "/both", token: "ory_at_bob", wantStatus: 200, wantSub: "bob", wantCallsA: 1, wantCallsB: 1},
		{name: "no known prefix: no call", path: "/both", token: "nothing_alice", wantStatus: 401, wantCallsA: 1, wantCallsB: 1, wantChallengeHas: `error="invalid_token"`},
		{name: "JWT of A on a route of B", path: "/b", token: h.token(nil), wantStatus: 401, wantCallsA: 1, wantCallsB: 1, wantChallengeHas: `error="invalid_token"`},
		{name: "opaque token of A on a route of B: no call", path: "/b", token: "a_alice", wantStatus: 401, wantCallsA: 1, wantCallsB: 1, wantChallengeHas: `error="invalid_token"`},
		{name: "JWT of B on a route of B", path: "/b", token: jwtB, wantStatus: 200, wantSub: "bob", wantCallsA: 1, wantCallsB: 1},
		{name: "JWT of A on a route of both", path: "/both", token: h.token(nil), wantStatus: 200, wantSub: "alice", wantCallsA: 1, wantCallsB: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := h.check("GET", tt.path, bearer(tt.token))
			if got := httpStatus(resp); got != tt.wantStatus {
				t.Fatalf("status %d, want %d: %v", got, tt.wantStatus, resp)
			}
			if tt.wantSub != "" {
				if c := h.minted(resp, "authorization"); c["sub"] != tt.wantSub {
					t.Errorf("minted sub %v, want %s", c["sub"], tt.wantSub)
				}
			}
			if c := header(resp, "www-authenticate"); !strings.Contains(c, tt.wantChallengeHas) {
				t.Errorf("WWW-Authenticate %q lacks %q", c, tt.wantChallengeHas)
			}
			if a, b := introA.Calls(), introB.Calls(); a != tt.wantCallsA || b != tt.wantCallsB {
				t.Errorf("introspection calls A %d, B %d; want %d, %d", a, b, tt.wantCallsA, tt.wantCallsB)
			}
		})
	}
}
