package txntoken

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/mint"
)

const trustDomain = "shop.example"

var testNow = time.Unix(1_800_000_000, 0)

func fixedNow() time.Time { return testNow }

func newKey(t testing.TB, alg string) *mint.Key {
	t.Helper()
	k, err := mint.GenerateKey(alg)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newMinter(t testing.TB, k *mint.Key, mut func(*MinterOptions)) *Minter {
	t.Helper()
	o := MinterOptions{TrustDomain: trustDomain, Key: k, Workload: "gateway.shop.example", Issuer: "https://tokentailor.shop.example",
		Context: map[string]any{"tenant": "acme", "channel": "web"}, Now: fixedNow}
	if mut != nil {
		mut(&o)
	}
	m, err := NewMinter(o)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func newVerifier(t testing.TB, keys KeySource) *Verifier {
	t.Helper()
	v, err := NewVerifier(VerifierOptions{TrustDomain: trustDomain, Keys: keys, Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// joseClaims verifies tok with go-jose, a JOSE implementation independent
// of the golang-jwt that signed it, and returns its header and claims.
func joseClaims(t *testing.T, tok string, pub crypto.PublicKey) (jose.Header, map[string]any) {
	t.Helper()
	jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.EdDSA, jose.ES256, jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	payload, err := jws.Verify(pub)
	if err != nil {
		t.Fatalf("go-jose does not verify the Txn-Token: %v", err)
	}
	var c map[string]any
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	return jws.Signatures[0].Protected, c
}

// TestMintClaims: every header and claim of draft §8, checked by go-jose.
func TestMintClaims(t *testing.T) {
	k := newKey(t, "EdDSA")
	m := newMinter(t, k, nil)
	tests := []struct {
		name     string
		in       Input
		wantTxn  string // "" means a UUID
		wantExp  time.Time
		wantWL   string
		wantRctx map[string]any
	}{
		{
			name:    "request id kept as txn, TTL bounds exp",
			in:      Input{Subject: "alice", Scopes: []string{"orders:read"}, NotAfter: testNow.Add(time.Hour), RequestID: "7b2c9f1e-req", ClientIP: "203.0.113.7", AuthMethod: "dpop"},
			wantTxn: "7b2c9f1e-req", wantExp: testNow.Add(DefaultTTL), wantWL: "gateway.shop.example",
			wantRctx: map[string]any{"req_ip": "203.0.113.7", "authn": "dpop"},
		},
		{
			name:    "incoming token's exp bounds exp; caller's SPIFFE ID as req_wl",
			in:      Input{Subject: "alice", Scopes: []string{"orders:read", "orders:write"}, NotAfter: testNow.Add(20 * time.Second), Workload: "spiffe://shop.example/ns/shop/sa/web"},
			wantExp: testNow.Add(20 * time.Second), wantWL: "spiffe://shop.example/ns/shop/sa/web",
		},
		{
			name:    "request id with a space: a UUID instead",
			in:      Input{Subject: "alice", Scopes: []string{"orders:read"}, RequestID: "a b"},
			wantExp: testNow.Add(DefaultTTL), wantWL: "gateway.shop.example",
		},
		{
			name:    "request id too long: a UUID instead",
			in:      Input{Subject: "alice", Scopes: []string{"orders:read"}, RequestID: strings.Repeat("x", maxRequestID+1)},
			wantExp: testNow.Add(DefaultTTL), wantWL: "gateway.shop.example",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := m.Mint(context.Background(), tt.in)
			if err != nil {
				t.Fatal(err)
			}
			h, c := joseClaims(t, tok.Value, k.Public())
			if h.ExtraHeaders["typ"] != Type || h.KeyID != k.ID {
				t.Errorf("header typ %v kid %q", h.ExtraHeaders["typ"], h.KeyID)
			}
			if !tok.ExpiresAt.Equal(tt.wantExp) || c["exp"] != float64(tt.wantExp.Unix()) || c["iat"] != float64(testNow.Unix()) {
				t.Errorf("exp %v (%v), iat %v; want exp %v", c["exp"], tok.ExpiresAt, c["iat"], tt.wantExp)
			}
			if c["aud"] != trustDomain || c["sub"] != "alice" || c["req_wl"] != tt.wantWL || c["iss"] != "https://tokentailor.shop.example" {
				t.Errorf("aud %v sub %v req_wl %v iss %v", c["aud"], c["sub"], c["req_wl"], c["iss"])
			}
			if c["scope"] != strings.Join(tt.in.Scopes, " ") {
				t.Errorf("scope %v", c["scope"])
			}
			txn, _ := c["txn"].(string)
			if tt.wantTxn != "" && txn != tt.wantTxn || tt.wantTxn == "" && len(txn) != 36 {
				t.Errorf("txn %q, want %q", txn, tt.wantTxn)
			}
			if tctx, _ := c["tctx"].(map[string]any); tctx["tenant"] != "acme" || tctx["channel"] != "web" {
				t.Errorf("tctx %v", c["tctx"])
			}
			rctx, _ := c["rctx"].(map[string]any)
			if tt.wantRctx != nil && !maps.Equal(rctx, tt.wantRctx) || tt.wantRctx == nil && c["rctx"] != nil {
				t.Errorf("rctx %v, want %v", c["rctx"], tt.wantRctx)
			}
		})
	}
}

func TestMintRefuses(t *testing.T) {
	m := newMinter(t, newKey(t, "ES256"), nil)
	tests := []struct {
		name    string
		in      Input
		wantErr error
	}{
		{name: "no scope", in: Input{Subject: "alice"}, wantErr: extauthz.ErrInsufficientScope},
		{name: "no subject", in: Input{Scopes: []string{"a"}}, wantErr: ErrMissingClaim},
		{name: "incoming token expired", in: Input{Subject: "alice", Scopes: []string{"a"}, NotAfter: testNow.Add(-time.Second)}, wantErr: ErrOutlives},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := m.Mint(context.Background(), tt.in); !errors.Is(err, tt.wantErr) {
				t.Fatalf("Mint: %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// signRaw signs arbitrary claims and header with k via golang-jwt, to make
// tokens that Minter never would.
func signRaw(t *testing.T, k *mint.Key, hdr map[string]any, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.GetSigningMethod(k.Alg), c)
	tok.Header["kid"] = k.ID
	tok.Header["typ"] = Type
	for n, v := range hdr {
		if v == nil {
			delete(tok.Header, n)
		} else {
			tok.Header[n] = v
		}
	}
	s, err := tok.SignedString(k.Signer())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func goodClaims() jwt.MapClaims {
	return jwt.MapClaims{
		"iat": testNow.Unix(), "exp": testNow.Add(time.Minute).Unix(), "aud": trustDomain,
		"txn": "97053963-771d-49cc-a4e3-20aad399c312", "sub": "alice", "scope": "orders:read orders:write",
		"req_wl": "gateway.shop.example", "tctx": map[string]any{"tenant": "acme"}, "rctx": map[string]any{"req_ip": "203.0.113.7"},
	}
}

// TestVerifyEveryRule: one failing case per check of draft §10.2 and of
// the claims §8.2 requires.
func TestVerifyEveryRule(t *testing.T) {
	k := newKey(t, "ES256")
	other := newKey(t, "ES256")
	v := newVerifier(t, KeysOf(k))
	tests := []struct {
		name    string
		hdr     map[string]any
		mutate  func(c jwt.MapClaims)
		key     *mint.Key
		raw     string
		wantErr error
	}{
		{name: "good"},
		{name: "aud as an array holding the trust domain", mutate: func(c jwt.MapClaims) { c["aud"] = []string{"x", trustDomain} }},
		{name: "typ at+jwt", hdr: map[string]any{"typ": "at+jwt"}, wantErr: ErrType},
		{name: "no typ", hdr: map[string]any{"typ": nil}, wantErr: ErrType},
		{name: "unknown kid", hdr: map[string]any{"kid": "nope"}, wantErr: extauthz.ErrUnknownKey},
		{name: "signed by another key under our kid", key: other, hdr: map[string]any{"kid": k.ID}, wantErr: jwt.ErrTokenSignatureInvalid},
		{name: "alg none", raw: "eyJhbGciOiJub25lIiwidHlwIjoidHhudG9rZW4rand0In0.e30.", wantErr: ErrInvalid},
		{name: "another trust domain", mutate: func(c jwt.MapClaims) { c["aud"] = "other.example" }, wantErr: ErrWrongTrustDomain},
		{name: "no aud", mutate: func(c jwt.MapClaims) { delete(c, "aud") }, wantErr: ErrWrongTrustDomain},
		{name: "expired", mutate: func(c jwt.MapClaims) { c["exp"] = testNow.Add(-time.Minute).Unix() }, wantErr: ErrExpired},
		{name: "no exp", mutate: func(c jwt.MapClaims) { delete(c, "exp") }, wantErr: ErrMissingClaim},
		{name: "iat in the future", mutate: func(c jwt.MapClaims) { c["iat"] = testNow.Add(time.Minute).Unix() }, wantErr: ErrInvalid},
		{name: "lives longer than MaxTTL", mutate: func(c jwt.MapClaims) { c["exp"] = testNow.Add(MaxTTL + time.Second).Unix() }, wantErr: ErrLifetime},
		{name: "no iat", mutate: func(c jwt.MapClaims) { delete(c, "iat") }, wantErr: ErrMissingClaim},
		{name: "no txn", mutate: func(c jwt.MapClaims) { delete(c, "txn") }, wantErr: ErrMissingClaim},
		{name: "no sub", mutate: func(c jwt.MapClaims) { delete(c, "sub") }, wantErr: ErrMissingClaim},
		{name: "no scope", mutate: func(c jwt.MapClaims) { delete(c, "scope") }, wantErr: ErrMissingClaim},
		{name: "blank scope", mutate: func(c jwt.MapClaims) { c["scope"] = " " }, wantErr: ErrMissingClaim},
		{name: "no req_wl", mutate: func(c jwt.MapClaims) { delete(c, "req_wl") }, wantErr: ErrMissingClaim},
		{name: "tctx not an object", mutate: func(c jwt.MapClaims) { c["tctx"] = "x" }, wantErr: ErrMissingClaim},
		{name: "req_wl_chain not strings", mutate: func(c jwt.MapClaims) { c[ChainClaim] = []any{1} }, wantErr: ErrMissingClaim},
		{name: "empty", raw: "", wantErr: ErrInvalid},
		{name: "too large", raw: strings.Repeat("a", DefaultMaxBytes+1), wantErr: ErrInvalid},
		{name: "garbage", raw: "a.b.c", wantErr: ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := tt.raw
			if raw == "" && tt.name != "empty" {
				c := goodClaims()
				if tt.mutate != nil {
					tt.mutate(c)
				}
				key := k
				if tt.key != nil {
					key = tt.key
				}
				raw = signRaw(t, key, tt.hdr, c)
			}
			got, err := v.Verify(context.Background(), raw)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Verify: %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if !errors.Is(err, extauthz.ErrInvalidToken) && !errors.Is(err, extauthz.ErrTokenExpired) && !errors.Is(err, extauthz.ErrWrongAudience) {
					t.Errorf("%v is no 401 reason", err)
				}
				if raw != "" && strings.Contains(err.Error(), raw) {
					t.Error("the error holds the token")
				}
				return
			}
			if got.Txn != "97053963-771d-49cc-a4e3-20aad399c312" || got.Subject != "alice" || !slices.Equal(got.Scopes, []string{"orders:read", "orders:write"}) ||
				got.Workload != "gateway.shop.example" || got.TransactionContext["tenant"] != "acme" || got.RequestContext["req_ip"] != "203.0.113.7" {
				t.Errorf("Token = %+v", got)
			}
		})
	}
}

// TestNarrow: the replacement keeps txn, sub, aud, tctx and rctx, never
// widens scope, never outlives the original, and records the chain.
func TestNarrow(t *testing.T) {
	k := newKey(t, "EdDSA")
	m := newMinter(t, k, func(o *MinterOptions) { o.Workload = "orders.shop.example" })
	v := newVerifier(t, KeysOf(k))
	orig, err := v.Verify(context.Background(), signRaw(t, k, nil, goodClaims()))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		scopes    []string
		advance   time.Duration
		wantScope []string
		wantErr   error
	}{
		{name: "narrower", scopes: []string{"orders:read"}, wantScope: []string{"orders:read"}},
		{name: "asking for more gets no more", scopes: []string{"orders:read", "admin"}, wantScope: []string{"orders:read"}},
		{name: "same", scopes: []string{"orders:write", "orders:read"}, wantScope: []string{"orders:read", "orders:write"}},
		{name: "nothing in common", scopes: []string{"admin"}, wantErr: extauthz.ErrInsufficientScope},
		{name: "original expired", scopes: []string{"orders:read"}, advance: time.Minute, wantErr: ErrOutlives},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m.now = func() time.Time { return testNow.Add(tt.advance) }
			tok, err := m.Narrow(context.Background(), orig, tt.scopes, "")
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Narrow: %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				var se *extauthz.ScopeError
				if errors.Is(err, extauthz.ErrInsufficientScope) && !errors.As(err, &se) {
					t.Error("no ScopeError to name the scope in the challenge")
				}
				return
			}
			got, err := v.Verify(context.Background(), tok.Value)
			if err != nil {
				t.Fatal(err)
			}
			if got.Txn != orig.Txn || got.Subject != orig.Subject || !maps.Equal(got.TransactionContext, orig.TransactionContext) || !maps.Equal(got.RequestContext, orig.RequestContext) {
				t.Errorf("txn/sub/tctx/rctx changed: %+v", got)
			}
			if !slices.Equal(got.Scopes, tt.wantScope) {
				t.Errorf("scope %v, want %v", got.Scopes, tt.wantScope)
			}
			if got.ExpiresAt.After(orig.ExpiresAt) {
				t.Errorf("exp %v outlives the original %v", got.ExpiresAt, orig.ExpiresAt)
			}
			if got.Workload != "orders.shop.example" || !slices.Equal(got.Chain, []string{"gateway.shop.example"}) {
				t.Errorf("req_wl %q chain %v", got.Workload, got.Chain)
			}
		})
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	k := newKey(t, "EdDSA")
	for name, o := range map[string]MinterOptions{
		"no trust domain": {Key: k, Workload: "w"},
		"no key":          {TrustDomain: "d", Workload: "w"},
		"no workload":     {TrustDomain: "d", Key: k},
		"ttl too long":    {TrustDomain: "d", Key: k, Workload: "w", TTL: MaxTTL + time.Second},
	} {
		if _, err := NewMinter(o); err == nil {
			t.Errorf("NewMinter accepted %s", name)
		}
	}
	if _, err := NewVerifier(VerifierOptions{TrustDomain: "d", Keys: KeysOf(k), Algorithms: []string{"HS256"}}); err == nil {
		t.Error("NewVerifier accepted HS256")
	}
}
