package server

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokentailor/tokentailor/extauthz/authztest"
)

const modesConfig = `
listen:
  grpc: 127.0.0.1:0
  admin: 127.0.0.1:0
  shutdown_grace: 5s
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
      max_cache_ttl: 1m
    token_endpoint: {{ISSUER}}/token
    client:
      id: tokentailor
      secret: {env: TT_TEST_CLIENT_SECRET}
routes:
  - name: orders
    match: {path_prefix: /orders}
    require: {scopes: [orders:read]}
    min_lifetime: 60s
    upstream:
      audience: orders-api
      scopes: [orders:read]
      ttl: 2m
  - name: forward
    match: {path_prefix: /forward}
    upstream: {mode: forward}
  - name: exchange
    match: {path_prefix: /exchange}
    upstream:
      mode: exchange
      audience: billing-api
      scopes: [billing]
  - name: embedded
    match: {path_prefix: /embedded}
    upstream:
      mode: embedded
      audience: profile-api
      scopes: [profile]
      embedded_claim: tokens
`

func newModesHarness(t *testing.T) (*harness, *authztest.Introspection, *authztest.Exchange) {
	t.Setenv("TT_TEST_CLIENT_SECRET", "s3cret")
	var intro *authztest.Introspection
	var ex *authztest.Exchange
	h := newHarnessWith(t, modesConfig, func(is *authztest.Issuer) {
		intro = is.Introspection(t, authztest.WithClientSecret("tokentailor", "s3cret"))
		ex = is.Exchange(t, authztest.WithClientSecret("tokentailor", "s3cret"))
	})
	return h, intro, ex
}

func bearer(tok string) map[string]string { return map[string]string{"authorization": "Bearer " + tok} }

func TestOpaqueTokenIsIntrospectedAndNarrowed(t *testing.T) {
	h, intro, _ := newModesHarness(t)
	exp := time.Now().Add(10 * time.Minute).Unix()
	intro.Register("opaque-abc", map[string]any{"active": true, "sub": "bob", "scope": "orders:read admin", "client_id": "web", "aud": "api.example.com", "exp": exp})
	resp := h.check("GET", "/orders/1", bearer("opaque-abc"))
	if httpStatus(resp) != 200 {
		t.Fatalf("want allow: %v", resp)
	}
	c := h.minted(resp, "authorization")
	if c["sub"] != "bob" || c["scope"] != "orders:read" {
		t.Fatalf("claims = %v", c)
	}
	if mexp, _ := c.GetExpirationTime(); mexp.Unix() > exp {
		t.Fatal("minted token outlives the opaque token")
	}
	// Cached: a second check makes no new call.
	h.check("GET", "/orders/2", bearer("opaque-abc"))
	if n := intro.Calls(); n != 1 {
		t.Fatalf("introspection calls = %d, want 1", n)
	}
	// Unknown opaque token: 401.
	if st := httpStatus(h.check("GET", "/orders", bearer("opaque-unknown"))); st != 401 {
		t.Fatalf("inactive token: %d", st)
	}
}

func TestConcurrentIdenticalOpaqueChecksMakeOneCall(t *testing.T) {
	h, intro, _ := newModesHarness(t)
	intro.Register("opaque-same", map[string]any{"active": true, "sub": "bob", "scope": "orders:read", "aud": "api.example.com", "exp": time.Now().Add(time.Hour).Unix()})
	release := intro.Hold()
	var wg sync.WaitGroup
	codes := make(chan int, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := h.client.Check(context.Background(), checkRequest("GET", "/orders", bearer("opaque-same")))
			if err != nil {
				codes <- -1
				return
			}
			codes <- httpStatus(resp)
		}()
	}
	time.Sleep(100 * time.Millisecond)
	release()
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 200 {
			t.Fatalf("a concurrent check got %d", c)
		}
	}
	if n := intro.Calls(); n != 1 {
		t.Fatalf("introspection calls = %d, want 1", n)
	}
}

// README invariant 5 (opaque side): the authorization server down means 503,
// except for answers still valid in cache.
func TestInvariantIntrospectionDownFailsClosedExceptCached(t *testing.T) {
	h, intro, _ := newModesHarness(t)
	intro.Register("opaque-cached", map[string]any{"active": true, "sub": "bob", "scope": "orders:read", "aud": "api.example.com", "exp": time.Now().Add(time.Hour).Unix()})
	intro.Register("opaque-new", map[string]any{"active": true, "sub": "eve", "scope": "orders:read", "aud": "api.example.com", "exp": time.Now().Add(time.Hour).Unix()})
	if st := httpStatus(h.check("GET", "/orders", bearer("opaque-cached"))); st != 200 {
		t.Fatalf("warm-up: %d", st)
	}
	intro.FailWith(500)
	if st := httpStatus(h.check("GET", "/orders", bearer("opaque-cached"))); st != 200 {
		t.Fatalf("cached answer must still pass: %d", st)
	}
	if st := httpStatus(h.check("GET", "/orders", bearer("opaque-new"))); st != 503 {
		t.Fatalf("uncached token with the AS failing: %d, want 503", st)
	}
}

func TestMinLifetimeRefusesTokensExpiringSoon(t *testing.T) {
	h, _, _ := newModesHarness(t)
	resp := h.check("GET", "/orders", bearer(h.token(jwt.MapClaims{"exp": time.Now().Add(30 * time.Second).Unix()})))
	if httpStatus(resp) != 401 {
		t.Fatalf("status %d, want 401", httpStatus(resp))
	}
	if ch := header(resp, "www-authenticate"); !strings.Contains(ch, `error="invalid_token"`) || !strings.Contains(ch, "expires") {
		t.Fatalf("challenge %q should say the token expires too soon", ch)
	}
}

func TestForwardModePassesTheValidatedToken(t *testing.T) {
	h, _, _ := newModesHarness(t)
	tok := h.token(nil)
	resp := h.check("GET", "/forward", bearer(tok))
	if got := header(resp, "authorization"); got != "Bearer "+tok {
		t.Fatalf("forwarded %q", got)
	}
}

func TestExchangeModeUsesTheTokenEndpoint(t *testing.T) {
	h, _, ex := newModesHarness(t)
	tok := h.token(jwt.MapClaims{"scope": "billing orders:read"})
	resp := h.check("GET", "/exchange", bearer(tok))
	if httpStatus(resp) != 200 {
		t.Fatalf("want allow: %v", resp)
	}
	forms := ex.Forms()
	if len(forms) != 1 {
		t.Fatalf("token endpoint calls = %d", len(forms))
	}
	f := forms[0]
	if f.Get("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange" || f.Get("subject_token") != tok ||
		f.Get("audience") != "billing-api" || f.Get("scope") != "billing" {
		t.Fatalf("exchange form = %v", f)
	}
	got := strings.TrimPrefix(header(resp, "authorization"), "Bearer ")
	if got == "" || got == tok {
		t.Fatalf("upstream got %q", got)
	}
	ex.RefuseWith("invalid_target")
	if st := httpStatus(h.check("GET", "/exchange", bearer(h.token(jwt.MapClaims{"sub": "other"})))); st != 403 {
		t.Fatalf("refused exchange: %d, want 403", st)
	}
	ex.FailWith(502)
	if st := httpStatus(h.check("GET", "/exchange", bearer(h.token(jwt.MapClaims{"sub": "third"})))); st != 503 {
		t.Fatalf("exchange endpoint down: %d, want 503", st)
	}
}

func TestEmbeddedModePicksTheTokenForTheAudience(t *testing.T) {
	h, _, _ := newModesHarness(t)
	exp := time.Now().Add(30 * time.Minute).Unix()
	inner := h.token(jwt.MapClaims{"aud": "profile-api", "scope": "profile", "exp": exp - 60})
	other := h.token(jwt.MapClaims{"aud": "billing-api", "exp": exp - 60})
	outer := h.token(jwt.MapClaims{"exp": exp, "scope": "profile orders:read", "tokens": map[string]any{"profile-api": inner, "billing-api": other}})
	resp := h.check("GET", "/embedded", bearer(outer))
	if got := header(resp, "authorization"); got != "Bearer "+inner {
		t.Fatalf("upstream got %q, %v", got, resp)
	}
	// Only a token for another audience: 403.
	wrong := h.token(jwt.MapClaims{"exp": exp, "tokens": map[string]any{"profile-api": other}})
	if st := httpStatus(h.check("GET", "/embedded", bearer(wrong))); st != 403 {
		t.Fatalf("embedded token for another audience: %d, want 403", st)
	}
	none := h.token(jwt.MapClaims{"exp": exp})
	if st := httpStatus(h.check("GET", "/embedded", bearer(none))); st != 403 {
		t.Fatalf("no embedded token: %d, want 403", st)
	}
	// An embedded token with scopes beyond the route's (or the carrier's) is
	// refused (invariant 2).
	wide := h.token(jwt.MapClaims{"aud": "profile-api", "scope": "profile admin", "exp": exp - 60})
	if st := httpStatus(h.check("GET", "/embedded", bearer(h.token(jwt.MapClaims{"exp": exp, "scope": "profile admin", "tokens": map[string]any{"profile-api": wide}})))); st != 403 {
		t.Fatalf("embedded token with a scope beyond the route's: %d, want 403", st)
	}
	noCarrierScope := h.token(jwt.MapClaims{"exp": exp, "scope": "orders:read", "tokens": map[string]any{"profile-api": inner}})
	if st := httpStatus(h.check("GET", "/embedded", bearer(noCarrierScope))); st != 403 {
		t.Fatalf("embedded scope the carrier lacks: %d, want 403", st)
	}
	// An embedded token that outlives its carrier is refused (invariant 2).
	long := h.token(jwt.MapClaims{"aud": "profile-api", "exp": exp + 3600})
	carrier := h.token(jwt.MapClaims{"exp": exp, "tokens": map[string]any{"profile-api": long}})
	if st := httpStatus(h.check("GET", "/embedded", bearer(carrier))); st != 403 {
		t.Fatalf("embedded token outliving its carrier: %d, want 403", st)
	}
}

func TestGracefulShutdownFinishesHeldChecks(t *testing.T) {
	h, intro, _ := newModesHarness(t)
	intro.Register("opaque-slow", map[string]any{"active": true, "sub": "bob", "scope": "orders:read", "aud": "api.example.com", "exp": time.Now().Add(time.Hour).Unix()})
	release := intro.Hold()
	result := make(chan int, 1)
	go func() {
		resp, err := h.client.Check(context.Background(), checkRequest("GET", "/orders", bearer("opaque-slow")))
		if err != nil {
			result <- -1
			return
		}
		result <- httpStatus(resp)
	}()
	deadline := time.Now().Add(2 * time.Second)
	for intro.Calls() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	h.cancel() // SIGTERM: stop accepting, finish in-flight
	time.Sleep(100 * time.Millisecond)
	select {
	case <-h.done:
		t.Fatal("server stopped before its in-flight check finished")
	default:
	}
	release()
	if st := <-result; st != 200 {
		t.Fatalf("in-flight check answered %d, want 200", st)
	}
	<-h.done
}

func TestOtherRoutesInternalHeadersAreRemoved(t *testing.T) {
	h := newHarness(t, baseConfig)
	hdr := bearer(h.token(nil))
	hdr["x-internal-token"] = "forged"
	resp := h.check("GET", "/orders", hdr)
	if !contains(resp.GetOkResponse().GetHeadersToRemove(), "x-internal-token") {
		t.Fatalf("a client-sent internal header of another route reaches the app: %v", resp)
	}
}

// README invariant 6: cached validations, introspection answers and minted
// tokens never outlive the token they came from, whatever the cache bounds.
func TestInvariantCachesNeverOutliveTheToken(t *testing.T) {
	t.Setenv("TT_TEST_CLIENT_SECRET", "s3cret")
	var mu sync.Mutex
	clock := time.Now()
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }
	var intro *authztest.Introspection
	h := newHarnessClock(t, strings.Replace(modesConfig, "max_cache_ttl: 1m", "max_cache_ttl: 1h", 1), func(is *authztest.Issuer) {
		intro = is.Introspection(t, authztest.WithClientSecret("tokentailor", "s3cret"))
		is.Exchange(t, authztest.WithClientSecret("tokentailor", "s3cret"))
	}, now)
	exp := clock.Add(5 * time.Minute)
	jwtTok := h.token(jwt.MapClaims{"exp": exp.Unix(), "iat": clock.Unix()})
	intro.Register("opaque-short", map[string]any{"active": true, "sub": "bob", "scope": "orders:read", "aud": "api.example.com", "exp": exp.Unix()})
	for _, tok := range []string{jwtTok, "opaque-short"} {
		if st := httpStatus(h.check("GET", "/forward", bearer(tok))); st != 200 {
			t.Fatalf("before exp: %d", st)
		}
	}
	// /forward has no min_lifetime, so only the caches stand between the
	// expired token and an allow.
	advance(5*time.Minute + time.Second + 30*time.Second /* beyond any skew */)
	for _, tok := range []string{jwtTok, "opaque-short"} {
		if st := httpStatus(h.check("GET", "/forward", bearer(tok))); st != 401 {
			t.Fatalf("after exp, a cached result let the token pass: %d", st)
		}
	}
}

// An issuer of opaque tokens only (introspection, no JWKS) is a valid config
// and serves; JWTs from it are refused, not verified against nothing.
func TestIntrospectionOnlyIssuer(t *testing.T) {
	t.Setenv("TT_TEST_CLIENT_SECRET", "s3cret")
	var intro *authztest.Introspection
	cfg := strings.Replace(modesConfig, "    jwks_url: {{ISSUER}}/jwks.json\n", "", 1)
	cfg, _, _ = strings.Cut(cfg, "  - name: embedded\n") // embedded mode needs JWT verification; it is the last route
	h := newHarnessWith(t, cfg, func(is *authztest.Issuer) {
		intro = is.Introspection(t, authztest.WithClientSecret("tokentailor", "s3cret"))
		is.Exchange(t, authztest.WithClientSecret("tokentailor", "s3cret"))
	})
	intro.Register("opaque-only", map[string]any{"active": true, "sub": "bob", "scope": "orders:read", "aud": "api.example.com", "exp": time.Now().Add(time.Hour).Unix()})
	if st := httpStatus(h.check("GET", "/orders", bearer("opaque-only"))); st != 200 {
		t.Fatalf("opaque token: %d", st)
	}
	if st := httpStatus(h.check("GET", "/orders", bearer(h.token(nil)))); st != 401 {
		t.Fatalf("a JWT with no issuer to verify it: %d, want 401", st)
	}
}
