package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokentailor/tokentailor/extauthz/config"
)

// The tests in this file run tokentailor against a real Ory Hydra v2, an
// authorization server nobody on this project wrote, built from the Go module
// proxy by .ci/build-hydra.sh and started here on loopback ports. They skip
// when the binary has not been built.

// hydraServer is Hydra as .ci/build-hydra.sh builds it.
var hydraServer = externalServer{name: "hydra", env: "HYDRA", dir: "hydra", file: "hydra", script: ".ci/build-hydra.sh"}

// hydra is one Hydra server: its config, ports and SQLite database stay
// the same across stop and restart, so a restart keeps its clients, tokens
// and signing keys, as a real deployment's database does.
type hydra struct {
	public string // public URL, no trailing slash
	admin  string // admin URL, no trailing slash
	issuer string // the issuer exactly as Hydra advertises it
	http   *http.Client

	t       *testing.T
	bin     string
	dir     string
	cfgPath string
	proc    *process // nil while stopped
}

// freePort asks the kernel for a free loopback port. Another process may take
// it before Hydra binds it; startHydra retries for that case.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func randomString(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// startHydra runs `hydra serve all --dev` with testdata/hydra/hydra.yaml on
// free loopback ports and a SQLite database in a temp dir (migrated first),
// and waits until its admin API reports ready.
func startHydra(t *testing.T, bin string) *hydra {
	t.Helper()
	tmpl, err := os.ReadFile(filepath.Join("testdata", "hydra", "hydra.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return startRetrying(t, "hydra", func() (*hydra, error) { return tryStartHydra(t, bin, string(tmpl)) })
}

func tryStartHydra(t *testing.T, bin, tmpl string) (*hydra, error) {
	dir := t.TempDir()
	pub, adm := freePort(t), freePort(t)
	cfg := strings.NewReplacer(
		"{{PUBLIC_PORT}}", strconv.Itoa(pub),
		"{{ADMIN_PORT}}", strconv.Itoa(adm),
		"{{SYSTEM_SECRET}}", randomString(t, 32),
		"{{DB}}", filepath.Join(dir, "hydra.sqlite"),
	).Replace(tmpl)
	hy := &hydra{
		public:  fmt.Sprintf("http://127.0.0.1:%d", pub),
		admin:   fmt.Sprintf("http://127.0.0.1:%d", adm),
		http:    &http.Client{Timeout: 10 * time.Second},
		t:       t,
		bin:     bin,
		dir:     dir,
		cfgPath: filepath.Join(dir, "hydra.yaml"),
	}
	if err := os.WriteFile(hy.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	migrate := hy.command("migrate", "sql", "up", "--read-from-env", "--yes", "-c", hy.cfgPath)
	if out, err := migrate.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("hydra migrate: %w:\n%s", err, tail(string(out), 4000))
	}
	if err := hy.launch(); err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		out := hy.output()
		hy.stop()
		if t.Failed() {
			t.Logf("hydra output:\n%s", tail(out, 8000))
		}
	})
	var meta struct {
		Issuer string `json:"issuer"`
	}
	if code := hy.do(t, http.MethodGet, hy.public+"/.well-known/openid-configuration", nil, "", &meta); code != http.StatusOK {
		hy.stop()
		return nil, fmt.Errorf("discovery: HTTP %d", code)
	}
	hy.issuer = meta.Issuer
	// Hydra generates its RSA signing keys at the first JWKS request, which
	// can take many seconds on a busy machine: have it done before
	// tokentailor's readiness wait starts.
	warm := &http.Client{Timeout: 90 * time.Second}
	res, err := warm.Get(hy.public + "/.well-known/jwks.json")
	if err != nil {
		hy.stop()
		return nil, fmt.Errorf("jwks: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 1<<20))
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		hy.stop()
		return nil, fmt.Errorf("jwks: HTTP %d", res.StatusCode)
	}
	return hy, nil
}

// command is a hydra command with a clean environment.
func (hy *hydra) command(args ...string) *exec.Cmd {
	return cleanCommand(hy.bin, hy.dir, nil, args...)
}

// launch starts `hydra serve all` and waits until it is ready.
func (hy *hydra) launch() error {
	cmd := hy.command("serve", "all", "--dev", "--sqa-opt-out", "-c", hy.cfgPath)
	p, err := startProcess("hydra", cmd, 90*time.Second, hy.ready)
	if err != nil {
		return err
	}
	hy.proc = p
	return nil
}

// stop ends the running Hydra process and waits until it has exited, so its
// ports are free. Its database stays.
func (hy *hydra) stop() {
	if hy.proc != nil {
		hy.proc.stop()
		hy.proc = nil
	}
}

// kill ends the running Hydra process at once, as a crash does.
func (hy *hydra) kill() {
	if hy.proc != nil {
		hy.proc.kill()
		hy.proc = nil
	}
}

// restart starts Hydra again on the same ports with the same database.
func (hy *hydra) restart(t *testing.T) {
	t.Helper()
	if err := hy.launch(); err != nil {
		t.Fatalf("hydra restart: %v", err)
	}
}

// output is what the running process wrote so far.
func (hy *hydra) output() string {
	if hy.proc == nil {
		return ""
	}
	return hy.proc.out.String()
}

func (hy *hydra) ready() bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, hy.admin+"/health/ready", nil)
	res, err := hy.http.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 1<<16))
	res.Body.Close()
	return res.StatusCode == http.StatusOK
}

// do sends one request to Hydra; body is a url.Values (form) or any other
// value (JSON); basic is "id:secret" or empty. It decodes a JSON answer into
// out when out is not nil and returns the status code.
func (hy *hydra) do(t *testing.T, method, u string, body any, basic string, out any) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var rd io.Reader
	ctype := ""
	switch b := body.(type) {
	case nil:
	case url.Values:
		rd, ctype = strings.NewReader(b.Encode()), "application/x-www-form-urlencoded"
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd, ctype = bytes.NewReader(j), "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	req.Header.Set("Accept", "application/json")
	if id, secret, ok := strings.Cut(basic, ":"); ok {
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	}
	res, err := hy.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	if out != nil && len(raw) > 0 && res.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: answer is not JSON: %v", method, u, err)
		}
	}
	if res.StatusCode >= 300 {
		t.Logf("%s %s: HTTP %d %s", method, u, res.StatusCode, tail(string(raw), 500))
	}
	return res.StatusCode
}

// hydraClient is an OAuth client registered at Hydra.
type hydraClient struct {
	id, secret string
}

func (c hydraClient) basic() string { return c.id + ":" + c.secret }

// createClient registers a client_credentials client through Hydra's admin
// API; strategy is Hydra's per-client access_token_strategy (jwt or opaque).
func (hy *hydra) createClient(t *testing.T, name, strategy string) hydraClient {
	t.Helper()
	secret := randomString(t, 24)
	body := map[string]any{
		"client_name":                name,
		"client_secret":              secret,
		"grant_types":                []string{"client_credentials"},
		"response_types":             []string{"token"},
		"scope":                      "orders:read orders:write profile",
		"audience":                   []string{"api.example.com"},
		"token_endpoint_auth_method": "client_secret_basic",
		"access_token_strategy":      strategy,
	}
	var created struct {
		ClientID            string `json:"client_id"`
		AccessTokenStrategy string `json:"access_token_strategy"`
	}
	if code := hy.do(t, http.MethodPost, hy.admin+"/admin/clients", body, "", &created); code != http.StatusCreated {
		t.Fatalf("create client %s: HTTP %d", name, code)
	}
	if created.ClientID == "" || created.AccessTokenStrategy != strategy {
		t.Fatalf("create client %s: answer %+v", name, created)
	}
	return hydraClient{id: created.ClientID, secret: secret}
}

// token gets an access token with the client_credentials grant.
func (hy *hydra) token(t *testing.T, c hydraClient, scope, audience string) string {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {scope}}
	if audience != "" {
		form.Set("audience", audience)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
	}
	if code := hy.do(t, http.MethodPost, hy.public+"/oauth2/token", form, c.basic(), &tok); code != http.StatusOK {
		t.Fatalf("token for %s: HTTP %d", c.id, code)
	}
	if tok.AccessToken == "" || !strings.EqualFold(tok.TokenType, "bearer") {
		t.Fatalf("token answer: type %q, token empty %v", tok.TokenType, tok.AccessToken == "")
	}
	return tok.AccessToken
}

// revoke revokes a token at Hydra's RFC 7009 endpoint.
func (hy *hydra) revoke(t *testing.T, c hydraClient, token string) {
	t.Helper()
	if code := hy.do(t, http.MethodPost, hy.public+"/oauth2/revoke", url.Values{"token": {token}}, c.basic(), nil); code != http.StatusOK {
		t.Fatalf("revoke: HTTP %d", code)
	}
}

// introspectActive asks Hydra itself whether a token is active.
func (hy *hydra) introspectActive(t *testing.T, token string) bool {
	t.Helper()
	var ans struct {
		Active bool `json:"active"`
	}
	if code := hy.do(t, http.MethodPost, hy.admin+"/admin/oauth2/introspect", url.Values{"token": {token}}, "", &ans); code != http.StatusOK {
		t.Fatalf("introspect: HTTP %d", code)
	}
	return ans.Active
}

// rotateAccessTokenKey adds a new signing key to the key set Hydra signs JWT
// access tokens with (hydra.jwt.access-token), through its admin API, and
// returns its kid. Hydra signs new tokens with the newest key and publishes
// it in its JWKS beside the older ones. The key is ES256: quick to generate,
// and a key type Hydra's first keys (RSA) do not have.
func (hy *hydra) rotateAccessTokenKey(t *testing.T) string {
	t.Helper()
	kid := "rotated-" + randomString(t, 6)
	body := map[string]any{"alg": "ES256", "use": "sig", "kid": kid}
	if code := hy.do(t, http.MethodPost, hy.admin+"/admin/keys/hydra.jwt.access-token", body, "", nil); code != http.StatusCreated {
		t.Fatalf("create key: HTTP %d", code)
	}
	return kid
}

// kidOf returns the kid header of a JWT.
func kidOf(t *testing.T, token string) string {
	t.Helper()
	tok, _, err := jwt.NewParser().ParseUnverified(token, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	kid, _ := tok.Header["kid"].(string)
	return kid
}

// statusWithin checks token on /orders until it gets want or limit passes,
// and returns how long that took and every other status seen.
func statusWithin(h *harness, token string, want int, limit time.Duration) (took time.Duration, others []int, ok bool) {
	start := time.Now()
	for {
		st := httpStatus(h.check("GET", "/orders", bearer(token)))
		if st == want {
			return time.Since(start), others, true
		}
		if len(others) == 0 || others[len(others)-1] != st {
			others = append(others, st)
		}
		if time.Since(start) > limit {
			return time.Since(start), others, false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// newHydraHarness runs tokentailor (through the shared harness, so through
// New and Build) with testdata/hydra/tokentailor.yaml pointed at hy, with
// tokentailor's own client registered at Hydra.
func newHydraHarness(t *testing.T, hy *hydra, self hydraClient) *harness {
	t.Helper()
	tmpl, err := os.ReadFile(filepath.Join("testdata", "hydra", "tokentailor.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("TT_HYDRA_CLIENT_SECRET", self.secret)
	cfg := strings.NewReplacer(
		"{{HYDRA_ISSUER}}", hy.issuer,
		"{{HYDRA_ADMIN}}", hy.admin,
		"{{CLIENT_ID}}", self.id,
	).Replace(string(tmpl))
	return newHarness(t, cfg)
}

func TestHydra(t *testing.T) {
	bin := hydraServer.binary(t)
	hy := startHydra(t, bin)
	if want := hy.public + "/"; hy.issuer != want {
		t.Fatalf("Hydra advertises issuer %q, want %q", hy.issuer, want)
	}
	jwtClient := hy.createClient(t, "jwt-app", "jwt")
	opaqueClient := hy.createClient(t, "opaque-app", "opaque")
	self := hy.createClient(t, "tokentailor", "opaque")
	h := newHydraHarness(t, hy, self)

	t.Run("jwt access token is verified with Hydra's JWKS and narrowed", func(t *testing.T) {
		in := hy.token(t, jwtClient, "orders:read profile", "api.example.com")
		if strings.Count(in, ".") != 2 {
			t.Fatal("Hydra did not issue a JWT for the jwt client")
		}
		// What Hydra put in it: scopes as the scp array, iss with its slash.
		var claims jwt.MapClaims
		if _, _, err := jwt.NewParser().ParseUnverified(in, &claims); err != nil {
			t.Fatal(err)
		}
		if claims["iss"] != hy.issuer {
			t.Fatalf("Hydra's iss = %v, want %q", claims["iss"], hy.issuer)
		}
		if _, ok := claims["scp"].([]any); !ok {
			t.Fatalf("Hydra's JWT has no scp array: %v", claims["scp"])
		}
		resp := h.check("GET", "/orders/1", bearer(in))
		if httpStatus(resp) != 200 {
			t.Fatalf("want allow: %v", resp)
		}
		m := h.minted(resp, "authorization")
		if m["sub"] != jwtClient.id || m["aud"] != "orders-api" || m["scope"] != "orders:read" {
			t.Fatalf("minted claims = %v", m)
		}
		mexp, _ := m.GetExpirationTime()
		iexp, _ := claims.GetExpirationTime()
		if mexp == nil || iexp == nil || mexp.After(iexp.Time) {
			t.Fatalf("minted exp %v outlives Hydra's exp %v", mexp, iexp)
		}
		if header(resp, "authorization") == "Bearer "+in {
			t.Fatal("Hydra's token reached the upstream")
		}
	})

	t.Run("opaque access token is introspected at Hydra and narrowed", func(t *testing.T) {
		in := hy.token(t, opaqueClient, "orders:read orders:write", "api.example.com")
		if strings.Count(in, ".") == 2 {
			t.Fatal("Hydra issued a JWT for the opaque client")
		}
		resp := h.check("GET", "/orders/1", bearer(in))
		if httpStatus(resp) != 200 {
			t.Fatalf("want allow: %v", resp)
		}
		m := h.minted(resp, "authorization")
		if m["sub"] != opaqueClient.id || m["scope"] != "orders:read orders:write" {
			t.Fatalf("minted claims = %v", m)
		}
	})

	t.Run("revoked opaque token is denied once the cache cap passes", func(t *testing.T) {
		in := hy.token(t, opaqueClient, "orders:read", "api.example.com")
		warmed := time.Now()
		if st := httpStatus(h.check("GET", "/orders", bearer(in))); st != 200 {
			t.Fatalf("before revocation: %d", st)
		}
		hy.revoke(t, opaqueClient, in)
		if hy.introspectActive(t, in) {
			t.Fatal("Hydra still calls the revoked token active")
		}
		// Within max_cache_ttl (2s) the cached answer may still pass: that
		// cap is the documented revocation delay.
		st := httpStatus(h.check("GET", "/orders", bearer(in)))
		if time.Since(warmed) < time.Second && st != 200 {
			t.Fatalf("cached active answer not used: %d", st)
		}
		deadline := time.Now().Add(15 * time.Second)
		for st != 401 {
			if time.Now().After(deadline) {
				t.Fatalf("revoked token still gets %d after 15s (max_cache_ttl 2s)", st)
			}
			time.Sleep(200 * time.Millisecond)
			st = httpStatus(h.check("GET", "/orders", bearer(in)))
		}
		if ch := header(h.check("GET", "/orders", bearer(in)), "www-authenticate"); !strings.Contains(ch, `error="invalid_token"`) {
			t.Fatalf("challenge = %q", ch)
		}
	})

	t.Run("revoked before first use is denied at once", func(t *testing.T) {
		in := hy.token(t, opaqueClient, "orders:read", "api.example.com")
		hy.revoke(t, opaqueClient, in)
		if st := httpStatus(h.check("GET", "/orders", bearer(in))); st != 401 {
			t.Fatalf("got %d, want 401", st)
		}
	})

	tests := []struct {
		name      string
		client    hydraClient
		scope     string
		audience  string
		want      int
		challenge string
	}{
		{name: "jwt without the route's scope", client: jwtClient, scope: "profile", audience: "api.example.com", want: 403, challenge: `error="insufficient_scope"`},
		{name: "opaque without the route's scope", client: opaqueClient, scope: "profile orders:write", audience: "api.example.com", want: 403, challenge: `error="insufficient_scope"`},
		{name: "jwt for no audience", client: jwtClient, scope: "orders:read", want: 401, challenge: `error="invalid_token"`},
		{name: "opaque for no audience", client: opaqueClient, scope: "orders:read", want: 401, challenge: `error="invalid_token"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := hy.token(t, tt.client, tt.scope, tt.audience)
			resp := h.check("GET", "/orders", bearer(in))
			if got := httpStatus(resp); got != tt.want {
				t.Fatalf("status = %d, want %d (%v)", got, tt.want, resp)
			}
			if ch := header(resp, "www-authenticate"); !strings.Contains(ch, tt.challenge) {
				t.Fatalf("challenge %q lacks %q", ch, tt.challenge)
			}
		})
	}

	t.Run("token unknown to Hydra is denied", func(t *testing.T) {
		for _, in := range []string{"ory_at_" + randomString(t, 32) + "." + randomString(t, 32), randomString(t, 40)} {
			if st := httpStatus(h.check("GET", "/orders", bearer(in))); st != 401 {
				t.Fatalf("got %d, want 401", st)
			}
		}
	})

	// Hydra v2 has no RFC 8693 grant (ory/hydra#1218): its refusal is a
	// token-endpoint error, which tokentailor answers with 403, not an allow
	// and not a 503.
	t.Run("exchange refused by Hydra is 403", func(t *testing.T) {
		in := hy.token(t, jwtClient, "orders:read", "api.example.com")
		if st := httpStatus(h.check("GET", "/exchange/x", bearer(in))); st != 403 {
			t.Fatalf("got %d, want 403", st)
		}
		if logs := h.logs.String(); !strings.Contains(logs, `"reason":"exchange_refused"`) {
			t.Fatalf("the denial is not Hydra's refusal of the exchange:\n%s", tail(logs, 2000))
		}
	})

	// Issue 12 item 5. jwks_min_refetch is left at its default here, so
	// these are the figures a user gets.
	minRefetch := config.DefaultJWKSMinRefetch
	var lastFetch time.Time // when tokentailor last fetched Hydra's keys, at the latest

	t.Run("key rotated at Hydra is accepted at its first use", func(t *testing.T) {
		kid := hy.rotateAccessTokenKey(t)
		in := hy.token(t, jwtClient, "orders:read", "api.example.com")
		if got := kidOf(t, in); got != kid {
			t.Fatalf("Hydra signed with kid %q, not the new key %q", got, kid)
		}
		// The first use fetches the new key unless a fetch happened within
		// jwks_min_refetch; meanwhile the answer may only be 401 from a set
		// fetched moments ago, never 503.
		took, others, ok := statusWithin(h, in, 200, minRefetch+2*time.Second)
		lastFetch = time.Now()
		t.Logf("figure: token signed with a newly created Hydra key accepted %v after its first use (other answers before: %v)", took.Round(time.Millisecond), others)
		if !ok {
			t.Fatalf("not accepted within %v (answers %v)", minRefetch+2*time.Second, others)
		}
		for _, st := range others {
			if st != 401 {
				t.Fatalf("answer %d before acceptance", st)
			}
		}
	})

	t.Run("outage: held keys and cached answers serve, the rest is 503, recovery at once", func(t *testing.T) {
		knownKey := hy.token(t, jwtClient, "orders:read", "api.example.com")
		uncachedOpaque := hy.token(t, opaqueClient, "orders:read", "api.example.com")
		kid := hy.rotateAccessTokenKey(t)
		newKey := hy.token(t, jwtClient, "orders:read", "api.example.com")
		if kidOf(t, newKey) != kid || kidOf(t, knownKey) == kid {
			t.Fatal("tokens not signed with the keys expected")
		}
		cachedOpaque := hy.token(t, opaqueClient, "orders:read", "api.example.com")
		if st := httpStatus(h.check("GET", "/orders", bearer(cachedOpaque))); st != 200 {
			t.Fatalf("opaque token before the outage: %d", st)
		}
		warmed := time.Now()
		hy.kill()
		down := time.Now()

		// The answer cached before the outage serves until max_cache_ttl (2s).
		if st := httpStatus(h.check("GET", "/orders", bearer(cachedOpaque))); st != 200 && time.Since(warmed) < 1500*time.Millisecond {
			t.Fatalf("cached opaque token during the outage: %d, want 200", st)
		}
		// A JWT signed with a key held is verified locally.
		if st := httpStatus(h.check("GET", "/orders", bearer(knownKey))); st != 200 {
			t.Fatalf("JWT with a key held during the outage: %d, want 200", st)
		}
		// What needs Hydra is not the token's fault: 503.
		if st := httpStatus(h.check("GET", "/orders", bearer(uncachedOpaque))); st != 503 {
			t.Fatalf("uncached opaque token during the outage: %d, want 503", st)
		}
		if took, others, ok := statusWithin(h, cachedOpaque, 503, 10*time.Second); !ok {
			t.Fatalf("cached opaque token still passes %v into the outage (answers %v)", took, others)
		}
		t.Logf("figure: cached opaque token served %v into the outage (max_cache_ttl 2s after first use)", time.Since(warmed).Round(100*time.Millisecond))
		// The key set last fetched more than jwks_min_refetch ago is not
		// fresh: a kid it lacks cannot be looked up, so 503, not 401.
		time.Sleep(time.Until(lastFetch.Add(minRefetch)))
		resp := h.check("GET", "/orders", bearer(newKey))
		if st := httpStatus(resp); st != 503 {
			t.Fatalf("JWT signed with a key not fetched yet during the outage: %d, want 503 (%v)", st, resp)
		}
		if ch := header(resp, "www-authenticate"); ch != "" {
			t.Fatalf("503 blames the token: %q", ch)
		}

		hy.restart(t)
		back := time.Now()
		tookJWT, othersJWT, okJWT := statusWithin(h, newKey, 200, minRefetch+5*time.Second)
		_, othersOpaque, okOpaque := statusWithin(h, uncachedOpaque, 200, 5*time.Second)
		tookOpaque := time.Since(back)
		t.Logf("figure: Hydra down %v (kill to ready again); then the JWT with the key not fetched before was accepted after %v (answers before: %v), the uncached opaque token after %v (answers before: %v)",
			back.Sub(down).Round(100*time.Millisecond), tookJWT.Round(time.Millisecond), othersJWT, tookOpaque.Round(time.Millisecond), othersOpaque)
		if !okJWT || !okOpaque {
			t.Fatalf("no recovery: JWT %v %v, opaque %v %v", okJWT, othersJWT, okOpaque, othersOpaque)
		}
		for _, st := range append(othersJWT, othersOpaque...) {
			if st != 503 {
				t.Fatalf("answer %d while recovering, want only 503 before 200", st)
			}
		}
	})

	t.Run("no Hydra token in logs", func(t *testing.T) {
		logs := h.logs.String()
		for _, secret := range []string{self.secret, jwtClient.secret, opaqueClient.secret} {
			if strings.Contains(logs, secret) {
				t.Fatal("client secret in logs")
			}
		}
		if strings.Contains(logs, "ory_at_") {
			t.Fatal("opaque token material in logs")
		}
	})
}
