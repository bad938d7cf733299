package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokentailor/tokentailor/extauthz/config"
	"github.com/tokentailor/tokentailor/extauthz/jwks"
)

// The tests in this file run tokentailor against the example OpenID Provider
// of github.com/zitadel/oidc/v3, built from the Go module proxy by
// .ci/build-zitadel.sh (with a small main that registers the clients used
// here) and started on a loopback port. They skip when it has not been built.
//
// What zitadel does that Hydra does not: RFC 8693 token exchange; opaque
// access tokens that are compact JWEs; introspection answers that are
// active only for a caller in the token's audience and carry no aud (and no
// sub without the openid scope).

// zitadelLifetime is the lifetime of svc-jwt's tokens, short so that the
// exchange test sees a renewal before the incoming token expires.
const zitadelLifetime = 20 * time.Second

// zitadelServer is the example OP as .ci/build-zitadel.sh builds it.
var zitadelServer = externalServer{name: "zitadel example OP", env: "ZITADEL", dir: "zitadel", file: "zitadel-example-op", script: ".ci/build-zitadel.sh"}

// zitadel is one running example OP.
type zitadel struct {
	base   string // http://127.0.0.1:port, no trailing slash
	issuer string // as its discovery document says
	secret string // every client's secret
	http   *http.Client
}

// startZitadel runs the example OP on a free loopback port, retrying when
// another process took the port first.
func startZitadel(t *testing.T, bin string) *zitadel {
	t.Helper()
	return startRetrying(t, "zitadel example OP", func() (*zitadel, error) { return tryStartZitadel(t, bin) })
}

func tryStartZitadel(t *testing.T, bin string) (*zitadel, error) {
	port := freePort(t)
	z := &zitadel{
		base:   fmt.Sprintf("http://127.0.0.1:%d", port),
		secret: randomString(t, 24),
		http:   &http.Client{Timeout: 10 * time.Second},
	}
	cmd := cleanCommand(bin, t.TempDir(), []string{"ZITADEL_EXAMPLE_SECRET=" + z.secret}, "-port", strconv.Itoa(port), "-jwt-lifetime", zitadelLifetime.String())
	p, err := startProcess("zitadel example OP", cmd, 30*time.Second, func() bool {
		var meta struct {
			Issuer string `json:"issuer"`
		}
		if z.getJSON(z.base+"/.well-known/openid-configuration", &meta) != nil || meta.Issuer == "" {
			return false
		}
		z.issuer = meta.Issuer
		return true
	})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("zitadel output:\n%s", tail(p.out.String(), 8000))
		}
	})
	return z, nil
}

func (z *zitadel) getJSON(u string, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	res, err := z.http.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d", res.StatusCode)
	}
	return json.NewDecoder(io.LimitReader(res.Body, 1<<20)).Decode(out)
}

// post sends a form authenticated as client; it returns the status and body.
func (z *zitadel) post(t *testing.T, path, client string, form url.Values) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, z.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if client != "" {
		req.SetBasicAuth(client, z.secret)
	}
	res, err := z.http.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, body
}

// token gets an access token for client with the client credentials grant.
func (z *zitadel) token(t *testing.T, client, scope string) string {
	t.Helper()
	code, body := z.post(t, "/oauth/token", client, url.Values{"grant_type": {"client_credentials"}, "scope": {scope}})
	var tok struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
	}
	if code != http.StatusOK || json.Unmarshal(body, &tok) != nil || tok.AccessToken == "" {
		t.Fatalf("token for %s: HTTP %d %s", client, code, tail(string(body), 300))
	}
	return tok.AccessToken
}

// introspect asks zitadel itself, as tokentailor's client, about a token.
func (z *zitadel) introspect(t *testing.T, token string) map[string]any {
	t.Helper()
	code, body := z.post(t, "/oauth/introspect", "tokentailor", url.Values{"token": {token}})
	var ans map[string]any
	if code != http.StatusOK || json.Unmarshal(body, &ans) != nil {
		t.Fatalf("introspect: HTTP %d", code)
	}
	return ans
}

// newZitadelHarness runs tokentailor with testdata/zitadel/tokentailor.yaml
// pointed at z; audience is the issuer's introspection.audience.
func newZitadelHarness(t *testing.T, z *zitadel, audience string) *harness {
	t.Helper()
	tmpl, err := os.ReadFile(filepath.Join("testdata", "zitadel", "tokentailor.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("TT_ZITADEL_CLIENT_SECRET", z.secret)
	cfg := strings.NewReplacer("{{ZITADEL_ISSUER}}", z.issuer, "{{INTROSPECTION_AUDIENCE}}", audience).Replace(string(tmpl))
	return newHarness(t, cfg)
}

// unverified reads a JWT's claims without checking it.
func unverified(t *testing.T, tok string) jwt.MapClaims {
	t.Helper()
	var c jwt.MapClaims
	if _, _, err := jwt.NewParser().ParseUnverified(tok, &c); err != nil {
		t.Fatalf("not a JWT: %v", err)
	}
	return c
}

func expOf(t *testing.T, c jwt.MapClaims) time.Time {
	t.Helper()
	e, err := c.GetExpirationTime()
	if err != nil || e == nil {
		t.Fatalf("no exp in %v", c)
	}
	return e.Time
}

func TestZitadel(t *testing.T) {
	bin := zitadelServer.binary(t)
	z := startZitadel(t, bin)
	if want := z.base + "/"; z.issuer != want {
		t.Fatalf("zitadel advertises issuer %q, want %q", z.issuer, want)
	}
	h := newZitadelHarness(t, z, "server")
	var seen []string // every zitadel token, to be kept out of the logs

	t.Run("jwt access token is verified with zitadel's JWKS and narrowed", func(t *testing.T) {
		in := z.token(t, "svc-jwt", "orders:read")
		seen = append(seen, in)
		if strings.Count(in, ".") != 2 {
			t.Fatal("zitadel did not issue a JWT for svc-jwt")
		}
		ic := unverified(t, in)
		resp := h.check("GET", "/whoami", bearer(in))
		if httpStatus(resp) != 200 {
			t.Fatalf("want allow: %v", resp)
		}
		m := h.minted(resp, "authorization")
		if m["sub"] != "svc-jwt" || m["aud"] != "internal-api" || m["iss"] != "https://tokentailor.test" {
			t.Fatalf("minted claims = %v", m)
		}
		if mexp := expOf(t, m); mexp.After(expOf(t, ic)) {
			t.Fatalf("minted exp %v outlives zitadel's %v", mexp, expOf(t, ic))
		}
		// zitadel's JWT access tokens have no scope claim.
		if st := httpStatus(h.check("GET", "/orders", bearer(in))); st != 403 {
			t.Fatalf("route requiring a scope: %d, want 403", st)
		}
	})

	t.Run("encrypted opaque token is introspected with client authentication and narrowed", func(t *testing.T) {
		in := z.token(t, "svc-opaque", "profile orders:read orders:write")
		seen = append(seen, in)
		if parts := strings.Split(in, "."); len(parts) != 5 || !strings.HasPrefix(in, "eyJ") {
			t.Fatalf("zitadel's opaque token has %d parts, want a compact JWE", len(parts))
		}
		// What zitadel answers: active, scope, exp, username; no aud, no sub.
		ans := z.introspect(t, in)
		if ans["active"] != true || ans["aud"] != nil || ans["sub"] != nil || ans["username"] != "svc-opaque" {
			t.Fatalf("zitadel's introspection answer = %v", ans)
		}
		resp := h.check("GET", "/orders/1", bearer(in))
		if httpStatus(resp) != 200 {
			t.Fatalf("want allow: %v", resp)
		}
		m := h.minted(resp, "authorization")
		if m["sub"] != "svc-opaque" || m["aud"] != "orders-api" || m["scope"] != "orders:read orders:write" {
			t.Fatalf("minted claims = %v", m)
		}
		if exp, ok := ans["exp"].(float64); !ok || expOf(t, m).After(time.Unix(int64(exp), 0)) {
			t.Fatalf("minted exp %v outlives zitadel's exp %v", expOf(t, m), ans["exp"])
		}
	})

	t.Run("openid scope: zitadel says sub", func(t *testing.T) {
		in := z.token(t, "svc-opaque", "openid orders:read")
		seen = append(seen, in)
		resp := h.check("GET", "/orders", bearer(in))
		if httpStatus(resp) != 200 || h.minted(resp, "authorization")["sub"] != "svc-opaque" {
			t.Fatalf("want allow with sub svc-opaque: %v", resp)
		}
	})

	tests := []struct {
		name   string
		client string
		scope  string
		path   string
		want   int
		reason string
	}{
		{name: "answer without any subject claim is refused", client: "svc-opaque", scope: "orders:read", path: "/orders", want: 401, reason: "token_invalid"},
		{name: "token not meant for tokentailor: zitadel says inactive", client: "svc-foreign", scope: "profile orders:read", path: "/orders", want: 401, reason: "token_inactive"},
		{name: "opaque token without the route's scope", client: "svc-opaque", scope: "profile", path: "/orders", want: 403, reason: "scope_insufficient"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := z.token(t, tt.client, tt.scope)
			seen = append(seen, in)
			before := len(h.logs.String())
			resp := h.check("GET", tt.path, bearer(in))
			if got := httpStatus(resp); got != tt.want {
				t.Fatalf("status = %d, want %d (%v)", got, tt.want, resp)
			}
			if logs := h.logs.String()[before:]; !strings.Contains(logs, `"reason":"`+tt.reason+`"`) {
				t.Fatalf("no denial with reason %s in the log:\n%s", tt.reason, tail(logs, 2000))
			}
		})
	}

	t.Run("unknown JWE-shaped token is introspected and denied", func(t *testing.T) {
		forged := "eyJhbGciOiJBMjU2R0NNS1ciLCJlbmMiOiJBMjU2R0NNIn0." + randomString(t, 32) + "." + randomString(t, 12) + "." + randomString(t, 40) + "." + randomString(t, 16)
		if st := httpStatus(h.check("GET", "/orders", bearer(forged))); st != 401 {
			t.Fatalf("got %d, want 401", st)
		}
	})

	t.Run("exchange: the upstream gets zitadel's token, cached no longer than the incoming one", func(t *testing.T) {
		keys, err := jwks.New(jwks.Options{
			Issuer: z.issuer, URL: z.base + "/keys", RefreshInterval: config.DefaultJWKSRefresh,
			MinRefetchInterval: config.DefaultJWKSMinRefetch, Client: &http.Client{Timeout: config.DefaultHTTPTimeout},
		})
		if err != nil {
			t.Fatal(err)
		}
		in := z.token(t, "svc-jwt", "orders:read")
		seen = append(seen, in)
		inExp := expOf(t, unverified(t, in))
		first := func() string {
			resp := h.check("GET", "/exchange/x", bearer(in))
			if httpStatus(resp) != 200 {
				t.Fatalf("exchange: %v\n%s", resp, tail(h.logs.String(), 2000))
			}
			v, ok := strings.CutPrefix(header(resp, "authorization"), "Bearer ")
			if !ok || v == in {
				t.Fatal("the upstream did not get an exchanged token")
			}
			return v
		}
		t1 := first()
		seen = append(seen, t1)
		// The token is zitadel's, signed with its key, for the route's audience.
		var c jwt.MapClaims
		if _, err := jwt.ParseWithClaims(t1, &c, func(tok *jwt.Token) (any, error) {
			kid, _ := tok.Header["kid"].(string)
			return keys.Key(context.Background(), kid, tok.Method.Alg())
		}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuer(z.issuer), jwt.WithAudience("billing-api")); err != nil {
			t.Fatalf("exchanged token does not verify with zitadel's keys: %v (claims %v)", err, c)
		}
		if c["sub"] != "svc-jwt" || c["client_id"] != "tokentailor" {
			t.Fatalf("exchanged token claims = %v", c)
		}
		if t1Exp := expOf(t, c); !t1Exp.After(inExp.Add(time.Minute)) {
			t.Fatalf("zitadel's exchanged token expires %v, not well after the incoming %v: the cap would not show", t1Exp, inExp)
		}
		if again := first(); again != t1 {
			t.Fatal("second check did not use the cached exchanged token")
		}
		// Renewed at 90% of min(its exp, the incoming exp): a new token before
		// the incoming one expires, although t1 is good for minutes.
		var t2 string
		for {
			if !time.Now().Before(inExp) {
				t.Fatalf("the exchanged token was still served at the incoming token's expiry %v", inExp)
			}
			if v := first(); v != t1 {
				t2 = v
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		seen = append(seen, t2)
		t.Logf("exchanged token renewed %v before the incoming token's expiry", time.Until(inExp).Round(100*time.Millisecond))
		// Past the incoming token's expiry nothing is served.
		time.Sleep(time.Until(inExp) + 1500*time.Millisecond)
		if st := httpStatus(h.check("GET", "/exchange/x", bearer(in))); st != 401 {
			t.Fatalf("after the incoming token expired: %d, want 401", st)
		}
	})

	t.Run("exchange of an encrypted opaque token", func(t *testing.T) {
		in := z.token(t, "svc-opaque", "profile orders:read")
		seen = append(seen, in)
		resp := h.check("GET", "/exchange/y", bearer(in))
		if httpStatus(resp) != 200 {
			t.Fatalf("exchange: %v\n%s", resp, tail(h.logs.String(), 2000))
		}
		out, _ := strings.CutPrefix(header(resp, "authorization"), "Bearer ")
		seen = append(seen, out)
		if c := unverified(t, out); c["sub"] != "svc-opaque" || c["iss"] != z.issuer {
			t.Fatalf("exchanged token claims = %v", c)
		}
	})

	t.Run("the token types sent before issue 12 are refused by zitadel, and the log says why", func(t *testing.T) {
		in := z.token(t, "svc-jwt", "orders:read")
		seen = append(seen, in)
		before := len(h.logs.String())
		if st := httpStatus(h.check("GET", "/legacy-exchange", bearer(in))); st != 403 {
			t.Fatalf("got %d, want 403", st)
		}
		t.Logf("log: %s", tail(h.logs.String()[before:], 600))
		if logs := h.logs.String()[before:]; !strings.Contains(logs, `invalid_request: \"subject_token is invalid\"`) {
			t.Fatalf("zitadel's error_description is not in the log:\n%s", tail(logs, 2000))
		}
	})

	t.Run("introspection.audience claim refuses zitadel's answers without aud", func(t *testing.T) {
		strict := newZitadelHarness(t, z, "claim")
		in := z.token(t, "svc-opaque", "profile orders:read")
		seen = append(seen, in)
		if st := httpStatus(strict.check("GET", "/orders", bearer(in))); st != 401 {
			t.Fatalf("got %d, want 401", st)
		}
		if !strings.Contains(strict.logs.String(), "introspection answer has no aud") {
			t.Fatalf("the refusal does not name the missing aud:\n%s", tail(strict.logs.String(), 2000))
		}
	})

	t.Run("no zitadel token or secret in logs", func(t *testing.T) {
		logs := h.logs.String()
		if strings.Contains(logs, z.secret) {
			t.Fatal("client secret in logs")
		}
		for _, tok := range seen {
			for _, part := range strings.Split(tok, ".") {
				if len(part) >= 16 && strings.Contains(logs, part) {
					t.Fatal("token material in logs")
				}
			}
		}
	})
}
