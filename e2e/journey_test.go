package e2e

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokentailor/tokentailor/envoy"
	"github.com/tokentailor/tokentailor/envoy/authzfilter"
	"github.com/tokentailor/tokentailor/extauthz/authztest"
)

// mintIssuer is mint.issuer in docs/examples/.
const mintIssuer = "https://tokentailor.internal"

// frontFunc starts the proxy in front of the apps and returns its base URL.
type frontFunc func(t *testing.T, bootstrap []byte, tt *tokentailor, upstreams map[string]string) string

// eachFront runs a journey through the authzfilter harness and, when one is
// installed, through a real Envoy.
func eachFront(t *testing.T, journey func(t *testing.T, front frontFunc)) {
	t.Run("harness", func(t *testing.T) { journey(t, harnessFront) })
	// Envoy 1.37.0 read append_action's default as "add": a server that
	// relied on it would send two Authorization headers (envoyproxy/envoy#43310).
	t.Run("harness-append-action", func(t *testing.T) { journey(t, harnessFrontMode(authzfilter.AppendAction)) })
	t.Run("envoy", func(t *testing.T) {
		bin := envoyBinary()
		if bin == "" {
			t.Skip("no Envoy binary: set ENVOY_BIN or put envoy on PATH to run this journey through a real Envoy")
		}
		journey(t, envoyFront(bin))
	})
}

func scopesOf(c map[string]any) []string {
	switch v := c["scope"].(type) {
	case string:
		return strings.Fields(v)
	}
	if l, ok := c["scp"].([]any); ok {
		var out []string
		for _, s := range l {
			out = append(out, s.(string))
		}
		return out
	}
	return nil
}

func audOf(c map[string]any) []string {
	switch v := c["aud"].(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, s := range v {
			out = append(out, s.(string))
		}
		return out
	}
	return nil
}

// checkNarrowed asserts the app got exactly one bearer token, not the
// client's, that it verified with tokentailor's JWKS, cut to audience and
// allowed scopes, and living no longer than the incoming token.
func checkNarrowed(t *testing.T, s seen, incoming, audience string, allowed []string, incomingExp int64) string {
	t.Helper()
	auth := s.Header.Values("Authorization")
	if len(auth) != 1 {
		t.Fatalf("app got %d Authorization headers, want exactly 1", len(auth))
	}
	if strings.Contains(auth[0], incoming) {
		t.Fatal("app got the client's token, not a narrowed one")
	}
	if s.VerifyErr != "" {
		t.Fatalf("app could not verify the token with tokentailor's JWKS: %s", s.VerifyErr)
	}
	if s.Claims["iss"] != mintIssuer {
		t.Errorf("iss = %v, want %s", s.Claims["iss"], mintIssuer)
	}
	if aud := audOf(s.Claims); len(aud) != 1 || aud[0] != audience {
		t.Errorf("aud = %v, want [%s]", aud, audience)
	}
	for _, sc := range scopesOf(s.Claims) {
		if !slices.Contains(allowed, sc) {
			t.Errorf("scope %q not in the allowed %v", sc, allowed)
		}
	}
	if exp, _ := s.Claims["exp"].(float64); int64(exp) > incomingExp {
		t.Errorf("exp %d outlives the incoming token's %d", int64(exp), incomingExp)
	}
	return auth[0]
}

func TestSidecarJourney(t *testing.T) {
	eachFront(t, func(t *testing.T, front frontFunc) {
		is := authztest.New(t)
		intro := is.Introspection(t, authztest.WithClientSecret("tokentailor", clientSecret))
		dir := shortTempDir(t)
		cfg, tt := exampleConfig(t, "tokentailor-sidecar.yaml", is, dir, true)
		startTokentailor(t, tt, dir, cfg)
		app := newApp(t, "app", "http://"+tt.admin+"/.well-known/jwks.json", mintIssuer, "orders-api")
		base := front(t, envoy.Sidecar(), tt, map[string]string{envoy.AppCluster: app.URL})

		exp := time.Now().Add(10 * time.Minute).Unix()
		claims := jwt.MapClaims{"sub": "alice", "aud": "api.example.com", "scope": "orders:read orders:write profile",
			"client_id": "web", "tenant": "acme", "email": "alice@example.com", "exp": exp}
		jwtIn := is.Sign(t, claims)

		t.Run("JWT in, narrowed JWT out", func(t *testing.T) {
			resp, s := do(t, base, "GET", "/orders/42?expand=items", bearer(jwtIn))
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status = %d", resp.StatusCode)
			}
			checkNarrowed(t, s, jwtIn, "orders-api", []string{"orders:read"}, exp)
			if s.Claims["tenant"] != "acme" || s.Claims["user_email"] != "alice@example.com" || s.Claims["env"] != "prod" {
				t.Errorf("claims = %v, want tenant, user_email copied and env fixed", s.Claims)
			}
			if s.Path != "/orders/42?expand=items" {
				t.Errorf("app path = %q", s.Path)
			}
		})
		t.Run("opaque in (introspection), narrowed JWT out", func(t *testing.T) {
			const opaque = "opaque-e2e-token-0123456789"
			intro.Register(opaque, map[string]any{"sub": "bob", "aud": "api.example.com", "scope": "orders:read",
				"client_id": "web", "tenant": "acme", "exp": exp, "token_type": "Bearer"})
			resp, s := do(t, base, "GET", "/orders", bearer(opaque))
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status = %d", resp.StatusCode)
			}
			checkNarrowed(t, s, opaque, "orders-api", []string{"orders:read"}, exp)
			if s.Claims["sub"] != "bob" {
				t.Errorf("sub = %v, want bob", s.Claims["sub"])
			}
			if intro.Calls() == 0 {
				t.Error("introspection endpoint never called")
			}
		})
		t.Run("401 and 403 reach the client with WWW-Authenticate", func(t *testing.T) {
			expired := is.Sign(t, jwt.MapClaims{"sub": "alice", "aud": "api.example.com", "scope": "orders:read",
				"iat": time.Now().Add(-2 * time.Hour).Unix(), "exp": time.Now().Add(-time.Hour).Unix()})
			readOnly := is.Sign(t, jwt.MapClaims{"sub": "alice", "aud": "api.example.com", "scope": "orders:read", "exp": exp})
			tests := []struct {
				name       string
				method     string
				header     http.Header
				wantStatus int
				wantChall  string
			}{
				{name: "no token", method: "GET", wantStatus: 401, wantChall: "Bearer"},
				{name: "expired", method: "GET", header: bearer(expired), wantStatus: 401, wantChall: "invalid_token"},
				{name: "unknown opaque", method: "GET", header: bearer("opaque-never-issued-42"), wantStatus: 401, wantChall: "invalid_token"},
				{name: "missing scope", method: "POST", header: bearer(readOnly), wantStatus: 403, wantChall: "insufficient_scope"},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					resp, s := do(t, base, tc.method, "/orders", tc.header)
					if resp.StatusCode != tc.wantStatus {
						t.Fatalf("status = %d, want %d", resp.StatusCode, tc.wantStatus)
					}
					if ch := resp.Header.Get("WWW-Authenticate"); !strings.Contains(ch, tc.wantChall) {
						t.Errorf("WWW-Authenticate = %q, want it to contain %q", ch, tc.wantChall)
					}
					if s.App != "" {
						t.Error("the app was reached")
					}
				})
			}
		})
		t.Run("a client-sent internal token never reaches the app", func(t *testing.T) {
			forged := "Bearer forged.internal.token"
			// /docs is public: tokentailor passes no token on and must strip
			// whatever the client put in the internal token header.
			resp, s := do(t, base, "GET", "/docs/intro", http.Header{"Authorization": {forged}})
			if resp.StatusCode == http.StatusOK {
				for _, v := range s.Header.Values("Authorization") {
					if v == forged {
						t.Fatal("the client's forged internal token reached the app")
					}
				}
			}
			// On a minting route the client's header is replaced, never kept beside.
			resp, s = do(t, base, "GET", "/orders", bearer(jwtIn))
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status = %d", resp.StatusCode)
			}
			checkNarrowed(t, s, jwtIn, "orders-api", []string{"orders:read"}, exp)
		})
		t.Run("health endpoint needs no token", func(t *testing.T) {
			resp, s := do(t, base, "GET", "/healthz", nil)
			if resp.StatusCode != http.StatusOK || s.App != "app" {
				t.Fatalf("status = %d, app = %q", resp.StatusCode, s.App)
			}
		})
		t.Run("tokentailor down: 503, never an allow", func(t *testing.T) {
			tt.stop()
			resp, s := do(t, base, "GET", "/orders", bearer(jwtIn))
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Errorf("status = %d, want 503", resp.StatusCode)
			}
			if s.App != "" {
				t.Error("the app was reached with tokentailor down")
			}
			resp, _ = do(t, base, "GET", "/healthz", nil)
			if resp.StatusCode != http.StatusOK {
				t.Errorf("healthz status = %d with tokentailor down, want 200", resp.StatusCode)
			}
		})
	})
}

func TestGatewayJourney(t *testing.T) {
	eachFront(t, func(t *testing.T, front frontFunc) {
		is := authztest.New(t)
		is.Introspection(t, authztest.WithClientSecret("tokentailor-gateway", clientSecret))
		dir := shortTempDir(t)
		cfg, tt := exampleConfig(t, "tokentailor-gateway.yaml", is, dir, false)
		startTokentailor(t, tt, dir, cfg)
		jwks := "http://" + tt.admin + "/.well-known/jwks.json"
		ups := map[string]string{}
		for _, name := range []string{"orders", "billing", "profile"} {
			ups[name] = newApp(t, name, jwks, mintIssuer, name+"-api").URL
		}
		base := front(t, envoy.Gateway(), tt, ups)

		exp := time.Now().Add(10 * time.Minute).Unix()
		in := is.Sign(t, jwt.MapClaims{"sub": "carol", "aud": "api.example.com", "scope": "orders:read billing profile",
			"tenant": "acme", "email": "carol@example.com", "name": "Carol", "exp": exp})
		tests := []struct {
			path, app, audience string
			allowed             []string
		}{
			{path: "/orders/1", app: "orders", audience: "orders-api", allowed: []string{"orders:read", "orders:write"}},
			{path: "/billing/invoices", app: "billing", audience: "billing-api", allowed: []string{"billing"}},
			{path: "/profile", app: "profile", audience: "profile-api", allowed: []string{"profile"}},
		}
		tokens := map[string]string{}
		for _, tc := range tests {
			t.Run(tc.app, func(t *testing.T) {
				resp, s := do(t, base, "GET", tc.path, bearer(in))
				if resp.StatusCode != http.StatusOK || s.App != tc.app {
					t.Fatalf("status = %d, app = %q", resp.StatusCode, s.App)
				}
				tokens[tc.app] = checkNarrowed(t, s, in, tc.audience, tc.allowed, exp)
			})
		}
		if tokens["orders"] == tokens["billing"] || tokens["billing"] == tokens["profile"] || tokens["orders"] == tokens["profile"] {
			t.Error("upstreams got the same token; want one narrowed token per upstream")
		}
		if resp, _ := do(t, base, "GET", "/unknown", bearer(in)); resp.StatusCode != http.StatusNotFound {
			t.Errorf("unrouted path: status = %d, want 404", resp.StatusCode)
		}
	})
}
