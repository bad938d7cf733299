package mint

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/metrics"
)

const (
	testIssuer   = "https://tokentailor.internal"
	incomingIss  = "https://as.example.com"
	testAudience = "orders-api"
)

// fakeClock is a settable clock safe for concurrent reads.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 250_000_000, time.UTC)}
}

func (c *fakeClock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func newMinter(t testing.TB, clock *fakeClock, keys ...*Key) *Minter {
	t.Helper()
	m, err := New(Options{CacheEntries: 100, Issuer: testIssuer, Keys: keys, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func principal(clock *fakeClock, raw string, life time.Duration) *extauthz.Principal {
	return &extauthz.Principal{
		Issuer:     incomingIss,
		Subject:    "user-42",
		ClientID:   "web-app",
		Scopes:     []string{"orders:read", "orders:write", "profile"},
		Claims:     map[string]any{"sub": "user-42"},
		ExpiresAt:  clock.Now().Add(life),
		Credential: extauthz.Credential{Raw: raw, Kind: extauthz.KindJWT, Header: "authorization"},
	}
}

func grant() *extauthz.Grant {
	return &extauthz.Grant{
		Route:    "orders",
		Mode:     extauthz.ModeMint,
		Audience: testAudience,
		Scopes:   []string{"orders:read"},
		Claims:   map[string]any{"tenant": "acme"},
		TTL:      5 * time.Minute,
	}
}

// verify parses tok with golang-jwt/jwt/v5, trusting only the keys published
// by m.JWKS() as parsed by go-jose: what an upstream can do.
func verify(t *testing.T, m *Minter, clock *fakeClock, tok string) (jwt.MapClaims, *jwt.Token) {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(m.JWKS(), &set); err != nil {
		t.Fatalf("JWKS does not parse: %v", err)
	}
	claims := jwt.MapClaims{}
	parsed, err := jwt.ParseWithClaims(tok, claims, func(tk *jwt.Token) (any, error) {
		kid, _ := tk.Header["kid"].(string)
		keys := set.Key(kid)
		if len(keys) != 1 {
			return nil, fmt.Errorf("kid %q: %d keys in JWKS", kid, len(keys))
		}
		if keys[0].Algorithm != tk.Method.Alg() {
			return nil, fmt.Errorf("JWKS alg %q, token alg %q", keys[0].Algorithm, tk.Method.Alg())
		}
		return keys[0].Key, nil
	},
		jwt.WithValidMethods([]string{AlgEdDSA, AlgES256, AlgRS256}),
		jwt.WithTimeFunc(clock.Now),
		jwt.WithIssuer(testIssuer),
		jwt.WithAudience(testAudience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithStrictDecoding(),
	)
	if err != nil {
		t.Fatalf("jwt/v5 rejects minted token: %v", err)
	}
	return claims, parsed
}

func TestTokenClaimsAndHeader(t *testing.T) {
	for _, alg := range []string{AlgEdDSA, AlgES256, AlgRS256} {
		t.Run(alg, func(t *testing.T) {
			clock := newClock()
			k := testKey(t, alg)
			m := newMinter(t, clock, k)
			p := principal(clock, "incoming-token", time.Hour)
			tok, err := m.Token(context.Background(), p, grant())
			if err != nil {
				t.Fatal(err)
			}
			claims, parsed := verify(t, m, clock, tok.Value)
			if h := parsed.Header; h["typ"] != "at+jwt" || h["kid"] != k.ID || h["alg"] != alg || len(h) != 3 {
				t.Errorf("header = %v", h)
			}
			now := clock.Now().Unix()
			want := map[string]any{
				"iss": testIssuer, "sub": "user-42", "aud": testAudience,
				"scope": "orders:read", "client_id": "web-app",
				"iat": float64(now), "nbf": float64(now), "exp": float64(now + 300),
				"act":    map[string]any{"sub": "web-app", "iss": incomingIss},
				"tenant": "acme",
			}
			jti, _ := claims["jti"].(string)
			if len(jti) != 22 { // 128 bits, base64url
				t.Errorf("jti = %q, want 22 base64url characters", jti)
			}
			delete(claims, "jti")
			if got, _ := json.Marshal(claims); string(got) != mustJSON(t, want) {
				t.Errorf("claims = %s\nwant     %s", got, mustJSON(t, want))
			}
			if !tok.ExpiresAt.Equal(time.Unix(now+300, 0)) {
				t.Errorf("ExpiresAt = %v", tok.ExpiresAt)
			}
		})
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestJTIUnique(t *testing.T) {
	clock := newClock()
	m := newMinter(t, clock, testKey(t, AlgEdDSA))
	seen := map[string]bool{}
	for i := range 50 {
		tok, err := m.Token(context.Background(), principal(clock, fmt.Sprint("tok-", i), time.Hour), grant())
		if err != nil {
			t.Fatal(err)
		}
		claims, _ := verify(t, m, clock, tok.Value)
		jti := claims["jti"].(string)
		if seen[jti] {
			t.Fatalf("jti %s repeated", jti)
		}
		seen[jti] = true
	}
}

// TestInvariantInternalTokenNeverOutlivesIncoming: README invariant 2, the
// internal token's exp is never later than the incoming token's.
func TestInvariantInternalTokenNeverOutlivesIncoming(t *testing.T) {
	tests := []struct {
		name     string
		incoming time.Duration // incoming token's remaining life
		ttl      time.Duration
		wantLife time.Duration // exp − now, now being whole seconds + 250 ms
	}{
		{name: "ttl shorter than incoming", incoming: time.Hour, ttl: 5 * time.Minute, wantLife: 5*time.Minute - 250*time.Millisecond},
		{name: "incoming shorter than ttl", incoming: 90 * time.Second, ttl: 5 * time.Minute, wantLife: 90*time.Second - 250*time.Millisecond},
		{name: "incoming exp with a fraction rounds down", incoming: 90*time.Second + 900*time.Millisecond, ttl: time.Hour, wantLife: 90*time.Second + 750*time.Millisecond},
		{name: "equal", incoming: time.Minute, ttl: time.Minute, wantLife: time.Minute - 250*time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newClock()
			m := newMinter(t, clock, testKey(t, AlgES256))
			p := principal(clock, "incoming", tt.incoming)
			g := grant()
			g.TTL = tt.ttl
			tok, err := m.Token(context.Background(), p, g)
			if err != nil {
				t.Fatal(err)
			}
			claims, _ := verify(t, m, clock, tok.Value)
			exp, err := claims.GetExpirationTime()
			if err != nil {
				t.Fatal(err)
			}
			if exp.After(p.ExpiresAt) || tok.ExpiresAt.After(p.ExpiresAt) {
				t.Fatalf("exp %v after incoming exp %v", exp.Time, p.ExpiresAt)
			}
			if !exp.Equal(tok.ExpiresAt) {
				t.Errorf("claim exp %v, Token.ExpiresAt %v", exp.Time, tok.ExpiresAt)
			}
			if got := tok.ExpiresAt.Sub(clock.Now()); got != tt.wantLife {
				t.Errorf("lifetime %v, want %v", got, tt.wantLife)
			}
			// Still true for the cached copy, later on.
			clock.Add(tt.wantLife / 2)
			again, err := m.Token(context.Background(), p, g)
			if err != nil {
				t.Fatal(err)
			}
			if again.ExpiresAt.After(p.ExpiresAt) {
				t.Fatalf("cached exp %v after incoming exp %v", again.ExpiresAt, p.ExpiresAt)
			}
		})
	}
}

func TestTokenErrors(t *testing.T) {
	clock := newClock()
	tests := []struct {
		name    string
		p       *extauthz.Principal
		edit    func(*extauthz.Grant)
		nilG    bool
		wantErr error
	}{
		{name: "incoming expired", p: principal(clock, "t", -time.Second), wantErr: extauthz.ErrTokenExpired},
		{name: "incoming expires now", p: principal(clock, "t", 0), wantErr: extauthz.ErrTokenExpired},
		{name: "less than a whole second left", p: principal(clock, "t", 500*time.Millisecond), wantErr: extauthz.ErrTokenExpired},
		{name: "incoming has no exp", p: &extauthz.Principal{Subject: "u", Credential: extauthz.Credential{Raw: "t"}}, wantErr: extauthz.ErrInvalidToken},
		{name: "nil principal", p: nil, wantErr: extauthz.ErrInternal},
		{name: "nil grant", p: principal(clock, "t", time.Hour), nilG: true, wantErr: extauthz.ErrInternal},
		{name: "no ttl", p: principal(clock, "t", time.Hour), edit: func(g *extauthz.Grant) { g.TTL = 0 }, wantErr: extauthz.ErrInternal},
		{name: "negative ttl", p: principal(clock, "t", time.Hour), edit: func(g *extauthz.Grant) { g.TTL = -time.Minute }, wantErr: extauthz.ErrInternal},
		{name: "no audience", p: principal(clock, "t", time.Hour), edit: func(g *extauthz.Grant) { g.Audience = "" }, wantErr: extauthz.ErrInternal},
		{name: "claim that cannot be encoded", p: principal(clock, "t", time.Hour), edit: func(g *extauthz.Grant) { g.Claims = map[string]any{"f": func() {}} }, wantErr: extauthz.ErrInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMinter(t, clock, testKey(t, AlgEdDSA))
			g := grant()
			if tt.edit != nil {
				tt.edit(g)
			}
			if tt.nilG {
				g = nil
			}
			tok, err := m.Token(context.Background(), tt.p, g)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if tok.Value != "" {
				t.Fatalf("token returned with error")
			}
			if tt.p != nil && tt.p.Credential.Raw != "" && strings.Contains(err.Error(), tt.p.Credential.Raw+" ") {
				t.Errorf("error shows the token: %v", err)
			}
		})
	}
}

func TestTokenCanceledContext(t *testing.T) {
	clock := newClock()
	m := newMinter(t, clock, testKey(t, AlgEdDSA))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.Token(ctx, principal(clock, "t", time.Hour), grant()); !errors.Is(err, context.Canceled) {
		t.Fatalf("error = %v, want context.Canceled", err)
	}
}

// TestGrantClaimsNeverOverrideRegistered: claims a route copies or fixes can
// never change who the token is for, for whom, for how long, or with which
// scopes.
func TestGrantClaimsNeverOverrideRegistered(t *testing.T) {
	clock := newClock()
	m := newMinter(t, clock, testKey(t, AlgEdDSA))
	g := grant()
	g.Claims = map[string]any{
		"iss": "https://evil", "sub": "admin", "aud": "everything", "exp": 99999999999,
		"nbf": 0, "iat": 0, "jti": "fixed", "scope": "admin:all", "scp": []string{"admin:all"},
		"client_id": "other", "act": map[string]any{"sub": "evil"},
		"department": "sales",
	}
	tok, err := m.Token(context.Background(), principal(clock, "t", time.Hour), g)
	if err != nil {
		t.Fatal(err)
	}
	claims, _ := verify(t, m, clock, tok.Value)
	checks := map[string]any{
		"iss": testIssuer, "sub": "user-42", "aud": testAudience, "exp": float64(clock.Now().Unix() + 300),
		"scope": "orders:read", "client_id": "web-app", "department": "sales",
	}
	for name, want := range checks {
		if claims[name] != want {
			t.Errorf("%s = %v, want %v", name, claims[name], want)
		}
	}
	if _, ok := claims["scp"]; ok {
		t.Errorf("scp passed through: %v", claims["scp"])
	}
	if claims["jti"] == "fixed" {
		t.Errorf("jti overridden")
	}
	if act := claims["act"].(map[string]any); act["sub"] != "web-app" {
		t.Errorf("act overridden: %v", act)
	}
	// The payload must hold each name once: a duplicate key would let
	// parsers disagree about which value counts.
	raw, err := b64.DecodeString(strings.Split(tok.Value, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	if dup := duplicateTopLevelKeys(t, raw); len(dup) > 0 {
		t.Errorf("duplicate claims %v in %s", dup, raw)
	}
}

// duplicateTopLevelKeys lists the member names that occur more than once in
// the JSON object obj.
func duplicateTopLevelKeys(t *testing.T, obj []byte) []string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(obj)))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not an object: %s", obj)
	}
	seen := map[string]bool{}
	var dup []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		name := tok.(string)
		if seen[name] {
			dup = append(dup, name)
		}
		seen[name] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return dup
}

func TestActClaim(t *testing.T) {
	prior := map[string]any{"sub": "gateway", "iss": incomingIss}
	tests := []struct {
		name     string
		clientID string
		subject  string
		claims   map[string]any
		wantSub  any
		wantAct  any
	}{
		{name: "client acts for user", clientID: "web-app", subject: "u1", wantSub: "u1",
			wantAct: map[string]any{"sub": "web-app", "iss": incomingIss}},
		{name: "prior actor is nested", clientID: "web-app", subject: "u1", claims: map[string]any{"act": prior}, wantSub: "u1",
			wantAct: map[string]any{"sub": "web-app", "iss": incomingIss, "act": prior}},
		{name: "no client keeps prior act", subject: "u1", claims: map[string]any{"act": prior}, wantSub: "u1", wantAct: prior},
		{name: "no client, no act", subject: "u1", wantSub: "u1"},
		{name: "client credentials token: sub is the client", clientID: "batch", wantSub: "batch",
			wantAct: map[string]any{"sub": "batch", "iss": incomingIss}},
		{name: "non-object act is ignored", clientID: "web-app", subject: "u1", claims: map[string]any{"act": "x"}, wantSub: "u1",
			wantAct: map[string]any{"sub": "web-app", "iss": incomingIss}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newClock()
			m := newMinter(t, clock, testKey(t, AlgEdDSA))
			p := principal(clock, "t", time.Hour)
			p.ClientID, p.Subject, p.Claims = tt.clientID, tt.subject, tt.claims
			tok, err := m.Token(context.Background(), p, grant())
			if err != nil {
				t.Fatal(err)
			}
			claims, _ := verify(t, m, clock, tok.Value)
			if claims["sub"] != tt.wantSub {
				t.Errorf("sub = %v, want %v", claims["sub"], tt.wantSub)
			}
			if got, want := mustJSON(t, claims["act"]), mustJSON(t, tt.wantAct); got != want {
				t.Errorf("act = %s, want %s", got, want)
			}
			if _, ok := claims["client_id"]; ok != (tt.clientID != "") {
				t.Errorf("client_id = %v", claims["client_id"])
			}
		})
	}
}

func TestScopeClaim(t *testing.T) {
	tests := []struct {
		name      string
		scopes    []string
		wantScope any
	}{
		{name: "several", scopes: []string{"a", "b:c", "d"}, wantScope: "a b:c d"},
		{name: "none: omitted", scopes: nil, wantScope: nil},
		{name: "a scope with a space would split into two: dropped", scopes: []string{"a", "b admin"}, wantScope: "a"},
		{name: "only unusable scopes: omitted", scopes: []string{"", `x"y`}, wantScope: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newClock()
			m := newMinter(t, clock, testKey(t, AlgEdDSA))
			g := grant()
			g.Scopes = tt.scopes
			tok, err := m.Token(context.Background(), principal(clock, "t", time.Hour), g)
			if err != nil {
				t.Fatal(err)
			}
			claims, _ := verify(t, m, clock, tok.Value)
			if claims["scope"] != tt.wantScope {
				t.Errorf("scope = %#v, want %#v", claims["scope"], tt.wantScope)
			}
		})
	}
}

func TestClaimValuesRoundTrip(t *testing.T) {
	clock := newClock()
	m := newMinter(t, clock, testKey(t, AlgES256))
	g := grant()
	g.Claims = map[string]any{
		"quote":   `a"b\c`,
		"control": "line\nbreak\ttab\x01\x7f",
		"unicode": "héllo ✓ \u2028",
		"badutf8": "a\xffb",
		"num":     float64(12345),
		"frac":    1.5,
		"int":     7,
		"bool":    true,
		"null":    nil,
		"list":    []any{"x", float64(1)},
		"strings": []string{"p", "q"},
		"obj":     map[string]any{"k": "v"},
		"we\"ird": "name",
	}
	tok, err := m.Token(context.Background(), principal(clock, "t", time.Hour), g)
	if err != nil {
		t.Fatal(err)
	}
	claims, _ := verify(t, m, clock, tok.Value)
	want := map[string]any{
		"quote": `a"b\c`, "control": "line\nbreak\ttab\x01\x7f", "unicode": "héllo ✓ \u2028",
		"badutf8": "a\ufffdb", "num": float64(12345), "frac": 1.5, "int": float64(7), "bool": true, "null": nil,
		"list": []any{"x", float64(1)}, "strings": []any{"p", "q"}, "obj": map[string]any{"k": "v"}, "we\"ird": "name",
	}
	for name, w := range want {
		if got := mustJSON(t, claims[name]); got != mustJSON(t, w) {
			t.Errorf("%s = %s, want %s", name, got, mustJSON(t, w))
		}
	}
}

func TestCacheReuseAndRenewal(t *testing.T) {
	clock := newClock()
	m := newMinter(t, clock, testKey(t, AlgEdDSA))
	p := principal(clock, "incoming", time.Hour)
	g := grant() // 5 minutes: reused for 4m30s less the 250 ms fraction
	first, err := m.Token(context.Background(), p, g)
	if err != nil {
		t.Fatal(err)
	}
	life := first.ExpiresAt.Sub(clock.Now())
	steps := []struct {
		name    string
		advance time.Duration
		wantNew bool
	}{
		{name: "immediately", advance: 0, wantNew: false},
		{name: "at half life", advance: life / 2, wantNew: false},
		{name: "just before 90%", advance: life*9/10 - life/2 - time.Millisecond, wantNew: false},
		{name: "at 90%", advance: time.Millisecond, wantNew: true},
	}
	for _, s := range steps {
		clock.Add(s.advance)
		got, err := m.Token(context.Background(), p, g)
		if err != nil {
			t.Fatal(err)
		}
		if isNew := got.Value != first.Value; isNew != s.wantNew {
			t.Fatalf("%s: new token = %v, want %v", s.name, isNew, s.wantNew)
		}
		if !clock.Now().Before(got.ExpiresAt) {
			t.Fatalf("%s: served a token past its exp", s.name)
		}
	}
}

// TestFreshPrincipalKeepsNothing: the token minted for a principal seen for
// the first time is not cached (it may never come back); the next one, for
// the same principal from the validation cache, is, and is reused.
func TestFreshPrincipalKeepsNothing(t *testing.T) {
	clock := newClock()
	m := newMinter(t, clock, testKey(t, AlgEdDSA))
	p := principal(clock, "incoming", time.Hour)
	fresh := *p
	fresh.Fresh = true
	g := grant()
	first, err := m.Token(context.Background(), &fresh, g)
	if err != nil {
		t.Fatal(err)
	}
	if n := m.cache.Len(); n != 0 {
		t.Fatalf("%d tokens cached for a fresh principal", n)
	}
	second, err := m.Token(context.Background(), p, g)
	if err != nil {
		t.Fatal(err)
	}
	third, err := m.Token(context.Background(), p, g)
	if err != nil {
		t.Fatal(err)
	}
	if second.Value == first.Value || third.Value != second.Value || m.cache.Len() != 1 {
		t.Fatalf("first %q, second %q, third %q, %d cached: want the second kept and reused",
			first.Value[:16], second.Value[:16], third.Value[:16], m.cache.Len())
	}
	// A fresh principal still gets the kept token when there is one.
	if again, _ := m.Token(context.Background(), &fresh, g); again.Value != second.Value {
		t.Fatal("a fresh principal did not get the cached token")
	}
}

// TestPrefixedToken: a minted token comes with the grant's prefix in front
// (the header value Envoy gets), sharing its bytes.
func TestPrefixedToken(t *testing.T) {
	clock := newClock()
	m := newMinter(t, clock, testKey(t, AlgEdDSA))
	for _, prefix := range []string{"Bearer ", ""} {
		g := grant()
		g.Prefix = prefix
		tok, err := m.Token(context.Background(), principal(clock, "incoming-"+prefix, time.Hour), g)
		if err != nil {
			t.Fatal(err)
		}
		if tok.Prefixed != prefix+tok.Value || strings.Count(tok.Value, ".") != 2 {
			t.Fatalf("prefix %q: Prefixed %q, Value %q", prefix, tok.Prefixed, tok.Value)
		}
		if got := tok.HeaderValue(prefix); unsafe.StringData(got) != unsafe.StringData(tok.Prefixed) {
			t.Fatalf("prefix %q: HeaderValue copied the token", prefix)
		}
	}
}

func TestCacheKeySeparatesInputs(t *testing.T) {
	clock := newClock()
	m := newMinter(t, clock, testKey(t, AlgEdDSA))
	base := func() (*extauthz.Principal, *extauthz.Grant) { return principal(clock, "incoming", time.Hour), grant() }
	tests := []struct {
		name     string
		edit     func(*extauthz.Principal, *extauthz.Grant)
		wantSame bool
	}{
		{name: "same inputs", edit: func(*extauthz.Principal, *extauthz.Grant) {}, wantSame: true},
		{name: "same claims in a new map", edit: func(_ *extauthz.Principal, g *extauthz.Grant) { g.Claims = map[string]any{"tenant": "acme"} }, wantSame: true},
		{name: "other incoming token", edit: func(p *extauthz.Principal, _ *extauthz.Grant) { p.Credential.Raw = "incoming2" }},
		{name: "other route", edit: func(_ *extauthz.Principal, g *extauthz.Grant) { g.Route = "billing" }},
		{name: "other audience", edit: func(_ *extauthz.Principal, g *extauthz.Grant) { g.Audience = "billing-api" }},
		{name: "other scopes", edit: func(_ *extauthz.Principal, g *extauthz.Grant) { g.Scopes = []string{"orders:write"} }},
		{name: "scopes split differently", edit: func(_ *extauthz.Principal, g *extauthz.Grant) { g.Scopes = []string{"orders:rea", "d"} }},
		{name: "other claim value", edit: func(_ *extauthz.Principal, g *extauthz.Grant) { g.Claims["tenant"] = "umbrella" }},
		{name: "claim value of other type", edit: func(_ *extauthz.Principal, g *extauthz.Grant) { g.Claims["tenant"] = []string{"acme"} }},
		{name: "extra claim", edit: func(_ *extauthz.Principal, g *extauthz.Grant) { g.Claims["x"] = "y" }},
		{name: "other ttl", edit: func(_ *extauthz.Principal, g *extauthz.Grant) { g.TTL = time.Minute }},
		{name: "other subject", edit: func(p *extauthz.Principal, _ *extauthz.Grant) { p.Subject = "user-43" }},
		{name: "other expiry", edit: func(p *extauthz.Principal, _ *extauthz.Grant) { p.ExpiresAt = p.ExpiresAt.Add(-time.Minute) }},
	}
	p0, g0 := base()
	ref, err := m.Token(context.Background(), p0, g0)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, g := base()
			tt.edit(p, g)
			got, err := m.Token(context.Background(), p, g)
			if err != nil {
				t.Fatal(err)
			}
			if same := got.Value == ref.Value; same != tt.wantSame {
				t.Fatalf("same token = %v, want %v", same, tt.wantSame)
			}
		})
	}
}

// A grant the policy compiled (Key and Copied set) is keyed by its route key,
// the principal and the copied claims' values: every one of them separates
// cache entries, and such keys never meet those of hand-built grants.
func TestCompiledCacheKeySeparatesInputs(t *testing.T) {
	clock := newClock()
	m := newMinter(t, clock, testKey(t, AlgEdDSA))
	compiled := func() *extauthz.Grant {
		g := grant()
		g.Claims = map[string]any{"tenant": "acme", "email": "a@example.com", "team": "x"} // team: fixed
		g.Key, g.Copied = "route-orders-v1", []string{"email", "tenant"}
		return g
	}
	base := func() (*extauthz.Principal, *extauthz.Grant) {
		return principal(clock, "incoming", time.Hour), compiled()
	}
	tests := []struct {
		name     string
		edit     func(*extauthz.Principal, *extauthz.Grant)
		wantSame bool
	}{
		{name: "same inputs", edit: func(*extauthz.Principal, *extauthz.Grant) {}, wantSame: true},
		{name: "same claims in a new map", edit: func(_ *extauthz.Principal, g *extauthz.Grant) {
			g.Claims = map[string]any{"team": "x", "tenant": "acme", "email": "a@example.com"}
		}, wantSame: true},
		{name: "other route key", edit: func(_ *extauthz.Principal, g *extauthz.Grant) { g.Key = "route-orders-v2" }},
		{name: "hand-built grant", edit: func(_ *extauthz.Principal, g *extauthz.Grant) { g.Key, g.Copied = "", nil }},
		{name: "other incoming token", edit: func(p *extauthz.Principal, _ *extauthz.Grant) { p.Credential.Raw = "incoming2" }},
		{name: "other subject", edit: func(p *extauthz.Principal, _ *extauthz.Grant) { p.Subject = "user-43" }},
		{name: "other issuer", edit: func(p *extauthz.Principal, _ *extauthz.Grant) { p.Issuer = "https://other.example" }},
		{name: "other expiry", edit: func(p *extauthz.Principal, _ *extauthz.Grant) { p.ExpiresAt = p.ExpiresAt.Add(-time.Minute) }},
		{name: "fewer scopes granted", edit: func(_ *extauthz.Principal, g *extauthz.Grant) { g.Scopes = nil }},
		{name: "other copied value", edit: func(_ *extauthz.Principal, g *extauthz.Grant) { g.Claims["tenant"] = "umbrella" }},
		{name: "copied value of other type", edit: func(_ *extauthz.Principal, g *extauthz.Grant) { g.Claims["tenant"] = []any{"acme"} }},
		{name: "number, not string", edit: func(_ *extauthz.Principal, g *extauthz.Grant) { g.Claims["email"] = 1.0 }},
		{name: "copied claim absent", edit: func(_ *extauthz.Principal, g *extauthz.Grant) { delete(g.Claims, "email") }},
		{name: "copied claim empty", edit: func(_ *extauthz.Principal, g *extauthz.Grant) { g.Claims["email"] = "" }},
		{name: "values moved between claims", edit: func(_ *extauthz.Principal, g *extauthz.Grant) {
			g.Claims["email"], g.Claims["tenant"] = "acme", "a@example.com"
		}},
		{name: "claim outside the route's", edit: func(_ *extauthz.Principal, g *extauthz.Grant) { g.Claims["x"] = "y" }},
	}
	p0, g0 := base()
	ref, err := m.Token(context.Background(), p0, g0)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, g := base()
			tt.edit(p, g)
			got, err := m.Token(context.Background(), p, g)
			if err != nil {
				t.Fatal(err)
			}
			if same := got.Value == ref.Value; same != tt.wantSame {
				t.Fatalf("same token = %v, want %v", same, tt.wantSame)
			}
		})
	}
}

func TestNoCacheWithoutRawToken(t *testing.T) {
	clock := newClock()
	m := newMinter(t, clock, testKey(t, AlgEdDSA))
	p := principal(clock, "", time.Hour)
	a, err := m.Token(context.Background(), p, grant())
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Token(context.Background(), p, grant())
	if err != nil {
		t.Fatal(err)
	}
	if a.Value == b.Value || m.cache.Len() != 0 {
		t.Fatalf("token cached without a raw token to key it on")
	}
}

func TestCacheBounded(t *testing.T) {
	clock := newClock()
	m, err := New(Options{Issuer: testIssuer, Keys: []*Key{testKey(t, AlgEdDSA)}, Now: clock.Now, CacheEntries: 8})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if _, err := m.Token(context.Background(), principal(clock, fmt.Sprint("tok-", i), time.Hour), grant()); err != nil {
			t.Fatal(err)
		}
		if n := m.cache.Len(); n > 8 {
			t.Fatalf("cache holds %d entries, bound 8", n)
		}
	}
}

func TestCacheMetrics(t *testing.T) {
	clock := newClock()
	reg := prometheus.NewRegistry()
	m, err := New(Options{CacheEntries: 100, Issuer: testIssuer, Keys: []*Key{testKey(t, AlgEdDSA)}, Now: clock.Now, Metrics: metrics.New(reg)})
	if err != nil {
		t.Fatal(err)
	}
	p := principal(clock, "t", time.Hour)
	for range 3 {
		if _, err := m.Token(context.Background(), p, grant()); err != nil {
			t.Fatal(err)
		}
	}
	// A token found in a principal's Memo is a hit of this cache too.
	kept := principal(clock, "u", time.Hour)
	kept.Memo = new(extauthz.Memo)
	g := grant()
	kept.KeepGrant(m, g)
	for range 3 { // a miss, then two hits from the Memo
		if _, err := m.Token(context.Background(), kept, g); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "tokentailor_cache_lookups_total" {
			continue
		}
		for _, metric := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range metric.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["cache"] == CacheName {
				got[labels["result"]] = metric.GetCounter().GetValue()
			}
		}
	}
	if got["hit"] != 4 || got["miss"] != 2 {
		t.Fatalf("lookups = %v, want 4 hits and 2 misses", got)
	}
}

// TestRotation: two keys are published, the chosen one signs, and tokens of
// both verify with the published JWKS.
func TestRotation(t *testing.T) {
	clock := newClock()
	oldKey, newKey := testKey(t, AlgES256), testKey(t, AlgEdDSA)
	publishOnly, err := New(Options{CacheEntries: 100, Issuer: testIssuer, Keys: []*Key{oldKey, newKey}, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	signNew, err := New(Options{CacheEntries: 100, Issuer: testIssuer, Keys: []*Key{oldKey, newKey}, SigningKeyID: newKey.ID, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if publishOnly.SigningKeyID() != oldKey.ID || signNew.SigningKeyID() != newKey.ID {
		t.Fatalf("signing keys %s, %s", publishOnly.SigningKeyID(), signNew.SigningKeyID())
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(signNew.JWKS(), &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 2 || len(set.Key(oldKey.ID)) != 1 || len(set.Key(newKey.ID)) != 1 {
		t.Fatalf("JWKS = %s", signNew.JWKS())
	}
	for _, k := range set.Keys {
		if !k.IsPublic() || k.Use != "sig" || k.Algorithm == "" {
			t.Errorf("JWK %s: public %v use %q alg %q", k.KeyID, k.IsPublic(), k.Use, k.Algorithm)
		}
	}
	for _, tc := range []struct {
		m       *Minter
		wantKID string
	}{{publishOnly, oldKey.ID}, {signNew, newKey.ID}} {
		tok, err := tc.m.Token(context.Background(), principal(clock, "t", time.Hour), grant())
		if err != nil {
			t.Fatal(err)
		}
		// Verified against the other minter's JWKS: both publish the same set.
		_, parsed := verify(t, signNew, clock, tok.Value)
		if parsed.Header["kid"] != tc.wantKID {
			t.Errorf("kid = %v, want %s", parsed.Header["kid"], tc.wantKID)
		}
	}
}

func TestJWKSReturnsACopy(t *testing.T) {
	m := newMinter(t, newClock(), testKey(t, AlgEdDSA))
	j := m.JWKS()
	j[0] = 'X'
	if m.JWKS()[0] != '{' {
		t.Fatal("JWKS exposes internal state")
	}
}

func TestNewOptions(t *testing.T) {
	ed, ec := testKey(t, AlgEdDSA), testKey(t, AlgES256)
	tests := []struct {
		name    string
		opts    Options
		wantErr error
		wantAny bool
	}{
		{name: "ok", opts: Options{CacheEntries: 100, Issuer: testIssuer, Keys: []*Key{ed}}},
		{name: "no issuer", opts: Options{CacheEntries: 100, Keys: []*Key{ed}}, wantAny: true},
		{name: "no keys", opts: Options{CacheEntries: 100, Issuer: testIssuer}, wantErr: ErrBadKey},
		{name: "nil key", opts: Options{CacheEntries: 100, Issuer: testIssuer, Keys: []*Key{nil}}, wantErr: ErrBadKey},
		{name: "zero key", opts: Options{CacheEntries: 100, Issuer: testIssuer, Keys: []*Key{{ID: "x", Alg: AlgEdDSA}}}, wantErr: ErrBadKey},
		{name: "duplicate kid", opts: Options{CacheEntries: 100, Issuer: testIssuer, Keys: []*Key{ed, ed}}, wantErr: ErrBadKey},
		{name: "unknown signing kid", opts: Options{CacheEntries: 100, Issuer: testIssuer, Keys: []*Key{ed, ec}, SigningKeyID: "nope"}, wantErr: ErrBadKey},
		{name: "negative cache", opts: Options{Issuer: testIssuer, Keys: []*Key{ed}, CacheEntries: -1}, wantAny: true},
		{name: "no cache bound", opts: Options{Issuer: testIssuer, Keys: []*Key{ed}}, wantAny: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := New(tt.opts)
			switch {
			case tt.wantAny:
				if err == nil {
					t.Fatal("accepted")
				}
			case !errors.Is(err, tt.wantErr):
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if err == nil && m.Options().CacheEntries != tt.opts.CacheEntries {
				t.Errorf("Options().CacheEntries = %d, want %d", m.Options().CacheEntries, tt.opts.CacheEntries)
			}
		})
	}
}

// TestConcurrentMissesShareOneMint: goroutines asking at once for the same
// fresh token either join the one mint in flight or find its result cached.
func TestConcurrentMissesShareOneMint(t *testing.T) {
	clock := newClock()
	m := newMinter(t, clock, testKey(t, AlgRS256)) // slow signing widens the window
	p := principal(clock, "fresh", time.Hour)
	start := make(chan struct{})
	results := make(chan string, 8)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			tok, err := m.Token(context.Background(), p, grant())
			if err != nil {
				t.Error(err)
			}
			results <- tok.Value
		}()
	}
	close(start)
	wg.Wait()
	close(results)
	first := <-results
	for v := range results {
		if v != first {
			t.Fatal("concurrent requests got different tokens")
		}
	}
}

// pausingCtx stops the first request that asks for its Err (Token does,
// between its cache miss and joining a flight) until resume is closed.
type pausingCtx struct {
	context.Context
	once   sync.Once
	paused chan struct{}
	resume chan struct{}
}

func (c *pausingCtx) Err() error {
	c.once.Do(func() {
		close(c.paused)
		<-c.resume
	})
	return c.Context.Err()
}

// TestMissThenFinishedFlightTakesItsToken: a request that missed the cache
// while another request's mint was still in flight, and joins only after
// that flight cached its token, is given that token rather than a second
// signature (the window that made TestConcurrentMissesShareOneMint flaky).
func TestMissThenFinishedFlightTakesItsToken(t *testing.T) {
	clock := newClock()
	m := newMinter(t, clock, testKey(t, AlgEdDSA))
	ctx := &pausingCtx{Context: context.Background(), paused: make(chan struct{}), resume: make(chan struct{})}
	late := make(chan extauthz.Token, 1)
	go func() {
		tok, err := m.Token(ctx, principal(clock, "same", time.Hour), grant())
		if err != nil {
			t.Error(err)
		}
		late <- tok
	}()
	<-ctx.paused // the late request has missed the cache
	first, err := m.Token(context.Background(), principal(clock, "same", time.Hour), grant())
	if err != nil {
		t.Fatal(err)
	}
	close(ctx.resume)
	if got := <-late; got.Value != first.Value {
		t.Fatal("a request that joined after the flight ended minted a second token")
	}
}

func TestTokenConcurrent(t *testing.T) {
	clock := newClock()
	m := newMinter(t, clock, testKey(t, AlgEdDSA))
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				if _, err := m.Token(context.Background(), principal(clock, fmt.Sprint("t", (w*50+i)%20), time.Hour), grant()); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// The minter judges lifetimes at the credential's PresentedAt, the
// request's one clock reading (issue 14), and at its own clock without one.
func TestTokenJudgedAtPresentedAt(t *testing.T) {
	clock := newClock()
	m := newMinter(t, clock, testKey(t, AlgEdDSA))
	g := &extauthz.Grant{Audience: testAudience, Scopes: []string{"orders:read"}, TTL: time.Minute}
	tests := []struct {
		name    string
		at      time.Time
		wantErr error
	}{
		{name: "no PresentedAt: the minter's clock", at: time.Time{}},
		{name: "PresentedAt before the incoming exp", at: clock.Now().Add(5 * time.Minute)},
		{name: "PresentedAt after the incoming exp", at: clock.Now().Add(11 * time.Minute), wantErr: extauthz.ErrTokenExpired},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := principal(clock, "tok-"+tc.name, 10*time.Minute)
			p.Credential.PresentedAt = tc.at
			tok, err := m.Token(context.Background(), p, g)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if err == nil && !tc.at.IsZero() && tok.ExpiresAt.After(tc.at.Add(g.TTL)) {
				t.Errorf("minted exp %v, want at most PresentedAt + ttl %v", tok.ExpiresAt, tc.at.Add(g.TTL))
			}
		})
	}
}

// TestMemoKeepsTheToken: a cached principal's Memo keeps the token minted
// for its kept grant, so that the next Check finds it without a cache
// lookup (the cache is flushed below to tell them apart); it is given back
// only until it would be renewed, and only for the grant it was minted under.
func TestMemoKeepsTheToken(t *testing.T) {
	clock := newClock()
	m := newMinter(t, clock, testKey(t, AlgEdDSA))
	route := new(int)
	p := principal(clock, "incoming", time.Hour)
	p.Memo = new(extauthz.Memo)
	g := grant()
	p.KeepGrant(route, g) // as policy.Route.Authorize does for a cached principal
	first, err := m.Token(context.Background(), p, g)
	if err != nil {
		t.Fatal(err)
	}
	m.cache.Flush()
	copyOf := *p // the next Check's copy of the cached principal
	kept, err := m.Token(context.Background(), &copyOf, g)
	if err != nil || kept.Value != first.Value {
		t.Fatalf("second Token = %v; want the token the Memo kept", err)
	}
	// A grant the Memo does not keep (derived for this request) is minted for.
	if other, _ := m.Token(context.Background(), &copyOf, grant()); other.Value == first.Value {
		t.Fatal("a grant that is not the kept one got the kept token")
	}
	// From nine tenths of its life on, the kept token is renewed, and the
	// new one kept.
	clock.Add(first.ExpiresAt.Sub(clock.Now()) * 9 / 10)
	renewed, err := m.Token(context.Background(), &copyOf, g)
	if err != nil || renewed.Value == first.Value {
		t.Fatalf("near its end: %v; want a new token", err)
	}
	m.cache.Flush()
	if again, _ := m.Token(context.Background(), &copyOf, g); again.Value != renewed.Value {
		t.Fatal("the renewed token was not kept")
	}
}
