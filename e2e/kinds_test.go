package e2e

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokentailor/tokentailor/envoy"
	"github.com/tokentailor/tokentailor/extauthz/authztest"
)

// TestTokenKinds runs tokentailor with the reference config minus
// required_typ (the default typ rules) and checks through its gRPC server
// that JWTs of another kind signed with the issuer's own key, access tokens
// without sub and introspection answers whose active is not the JSON true
// are all denied 401 invalid_token with the generic description, while
// access tokens typed at+jwt, JWT or not at all pass.
func TestTokenKinds(t *testing.T) {
	is := authztest.New(t)
	intro := is.Introspection(t, authztest.WithClientSecret("tokentailor", clientSecret))
	dir := shortTempDir(t)
	cfg, tt := exampleConfig(t, "tokentailor-sidecar.yaml", is, dir, true)
	if !bytes.Contains(cfg, []byte("required_typ: at+jwt")) {
		t.Fatal("the reference config no longer sets required_typ: at+jwt; update this test")
	}
	cfg = bytes.Replace(cfg, []byte("required_typ: at+jwt"), []byte(`required_typ: ""`), 1)
	startTokentailor(t, tt, dir, cfg)
	app := newApp(t, "app", "http://"+tt.admin+"/.well-known/jwks.json", mintIssuer, "orders-api")
	base := harnessFront(t, envoy.Sidecar(), tt, map[string]string{envoy.AppCluster: app.URL})

	exp := time.Now().Add(10 * time.Minute).Unix()
	claims := func(extra jwt.MapClaims) jwt.MapClaims {
		c := jwt.MapClaims{"sub": "alice", "aud": "api.example.com", "scope": "orders:read", "exp": exp}
		for k, v := range extra {
			c[k] = v
		}
		return c
	}
	logout := jwt.MapClaims{"sid": "s1", "events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}}}
	answer := func(active any) map[string]any {
		return map[string]any{"active": active, "sub": "bob", "aud": "api.example.com", "scope": "orders:read", "exp": exp}
	}
	intro.Register("opaque-kinds-active-true-0123", answer(true))
	intro.Register("opaque-kinds-active-string-0123", answer("true"))
	intro.Register("opaque-kinds-active-one-0123", answer(1))

	tests := []struct {
		name       string
		token      string
		wantStatus int
	}{
		{name: "at+jwt", token: is.Sign(t, claims(nil)), wantStatus: http.StatusOK},
		{name: "typ JWT", token: is.Sign(t, claims(nil), authztest.WithTyp("JWT")), wantStatus: http.StatusOK},
		{name: "no typ", token: is.Sign(t, claims(nil), authztest.WithoutTyp()), wantStatus: http.StatusOK},
		{name: "DPoP proof", token: is.Sign(t, claims(jwt.MapClaims{"htm": "GET", "htu": "https://api.example.com/orders"}), authztest.WithTyp("dpop+jwt")), wantStatus: http.StatusUnauthorized},
		{name: "introspection answer", token: is.Sign(t, claims(jwt.MapClaims{"token_introspection": map[string]any{"active": true}}),
			authztest.WithTyp("token-introspection+jwt")), wantStatus: http.StatusUnauthorized},
		{name: "security event", token: is.Sign(t, claims(nil), authztest.WithTyp("secevent+jwt")), wantStatus: http.StatusUnauthorized},
		{name: "logout token", token: is.Sign(t, claims(logout), authztest.WithTyp("logout+jwt")), wantStatus: http.StatusUnauthorized},
		{name: "logout token typed JWT", token: is.Sign(t, claims(logout), authztest.WithTyp("JWT")), wantStatus: http.StatusUnauthorized},
		{name: "no sub", token: is.Sign(t, jwt.MapClaims{"aud": "api.example.com", "scope": "orders:read", "exp": exp}), wantStatus: http.StatusUnauthorized},
		{name: "opaque, active true", token: "opaque-kinds-active-true-0123", wantStatus: http.StatusOK},
		{name: `opaque, active "true"`, token: "opaque-kinds-active-string-0123", wantStatus: http.StatusUnauthorized},
		{name: "opaque, active 1", token: "opaque-kinds-active-one-0123", wantStatus: http.StatusUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, s := do(t, base, "GET", "/orders", bearer(tc.token))
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			if tc.wantStatus == http.StatusOK {
				return
			}
			if s.App != "" {
				t.Error("the app was reached")
			}
			ch := resp.Header.Get("WWW-Authenticate")
			if !strings.Contains(ch, `error="invalid_token"`) {
				t.Errorf("WWW-Authenticate = %q, want invalid_token", ch)
			}
			// The description says no more than before: nothing names typ, sub or the kind.
			for _, leak := range []string{"typ", "sub", "kind", "dpop", "logout", "event"} {
				if strings.Contains(strings.ToLower(ch), leak) {
					t.Errorf("WWW-Authenticate %q names %q", ch, leak)
				}
			}
		})
	}
}
