package jwtverify

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/authztest"
	"github.com/tokentailor/tokentailor/extauthz/jwks"
)

type clock = authztest.Clock

func newClock() *clock { return authztest.NewClock(time.Now().Truncate(time.Second)) }

// countingKeys counts Key calls of the source it wraps.
type countingKeys struct {
	KeySource
	n atomic.Int64
}

func (c *countingKeys) Key(ctx context.Context, kid, alg string) (crypto.PublicKey, error) {
	c.n.Add(1)
	return c.KeySource.Key(ctx, kid, alg)
}

var hmacSecret = []byte("0123456789abcdef0123456789abcdef")

type fixture struct {
	cfg  Issuer
	is   *authztest.Issuer
	clk  *clock
	keys *countingKeys
	v    *Verifier
}

func setupB(b *testing.B) *fixture { return setupTB(b, nil) }

func authztestAlg(alg string) authztest.SignOption { return authztest.WithAlg(alg) }

func setup(t *testing.T, mutate func(*Issuer)) *fixture { return setupTB(t, mutate) }

func setupTB(t testing.TB, mutate func(*Issuer)) *fixture {
	t.Helper()
	clk := newClock()
	is := authztest.New(t, authztest.WithNow(clk.Now))
	set := newKeySet(t, jwks.Options{Issuer: is.URL(), Client: is.Client(), Now: clk.Now})
	if err := set.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	keys := &countingKeys{KeySource: set}
	cfg := Issuer{Issuer: is.URL(), Audiences: []string{"api"}, ClockSkew: 30 * time.Second, Keys: keys}
	if mutate != nil {
		mutate(&cfg)
	}
	v, err := New(settled(Options{Issuers: []Issuer{cfg}, Now: clk.Now, MaxTokenBytes: 8 << 10}))
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{cfg: cfg, is: is, clk: clk, keys: keys, v: v}
}

func (f *fixture) auth(raw string) (*extauthz.Principal, error) {
	return f.v.Authenticate(context.Background(), extauthz.Credential{Raw: raw, Kind: extauthz.KindJWT, Header: "authorization"})
}

func TestAuthenticateBadInput(t *testing.T) {
	f := setup(t, nil)
	now := f.clk.Now()
	base := func() jwt.MapClaims { return jwt.MapClaims{"sub": "alice", "aud": "api", "scope": "read"} }
	with := func(k string, v any) jwt.MapClaims { c := base(); c[k] = v; return c }
	without := func(k string) jwt.MapClaims { c := base(); delete(c, k); return c }
	esKey, _ := f.is.Key("ES256")

	tests := []struct {
		name    string
		token   func(t *testing.T) string
		wantErr error
	}{
		{name: "valid RS256", token: func(t *testing.T) string { return f.is.Sign(t, base()) }},
		{name: "valid PS512", token: func(t *testing.T) string { return f.is.Sign(t, base(), authztest.WithAlg("PS512")) }},
		{name: "valid ES256", token: func(t *testing.T) string { return f.is.Sign(t, base(), authztest.WithAlg("ES256")) }},
		{name: "valid ES512", token: func(t *testing.T) string { return f.is.Sign(t, base(), authztest.WithAlg("ES512")) }},
		{name: "valid EdDSA", token: func(t *testing.T) string { return f.is.Sign(t, base(), authztest.WithAlg("EdDSA")) }},
		{name: "valid EdDSA without kid", token: func(t *testing.T) string {
			return f.is.Sign(t, base(), authztest.WithAlg("EdDSA"), authztest.WithoutKid())
		}},
		{name: "alg none", wantErr: extauthz.ErrInvalidToken,
			token: func(t *testing.T) string { return f.is.Sign(t, base(), authztest.Broken(authztest.BreakAlgNone)) }},
		{name: "HS256 signed with the RSA public key", wantErr: extauthz.ErrInvalidToken, token: func(t *testing.T) string {
			k, _ := f.is.Key("RS256")
			return f.is.Sign(t, base(), authztest.WithAlg("HS256"), authztest.WithKid(k.Kid),
				authztest.WithHMACKey(f.is.PublicKeyPEM("RS256")))
		}},
		{name: "unknown kid", wantErr: extauthz.ErrUnknownKey,
			token: func(t *testing.T) string { return f.is.Sign(t, base(), authztest.WithKid("no-such-key")) }},
		{name: "kid of another key type", wantErr: extauthz.ErrUnknownKey,
			token: func(t *testing.T) string { return f.is.Sign(t, base(), authztest.WithKid(esKey.Kid)) }},
		{name: "kid not a string", wantErr: extauthz.ErrInvalidToken,
			token: func(t *testing.T) string { return f.is.Sign(t, base(), authztest.WithHeader("kid", 7)) }},
		{name: "bad signature", wantErr: extauthz.ErrInvalidToken,
			token: func(t *testing.T) string { return f.is.Sign(t, base(), authztest.Broken(authztest.BreakSignature)) }},
		{name: "expired", wantErr: extauthz.ErrTokenExpired,
			token: func(t *testing.T) string { return f.is.Sign(t, with("exp", now.Add(-time.Minute).Unix())) }},
		{name: "expired within skew", token: func(t *testing.T) string {
			return f.is.Sign(t, with("exp", now.Add(-10*time.Second).Unix()))
		}},
		{name: "exp missing", wantErr: extauthz.ErrInvalidToken,
			token: func(t *testing.T) string {
				return f.is.Sign(t, jwt.MapClaims{"iss": f.is.URL(), "aud": "api"}, authztest.WithoutDefaults())
			}},
		{name: "exp a string", wantErr: extauthz.ErrInvalidToken,
			token: func(t *testing.T) string { return f.is.Sign(t, with("exp", "tomorrow")) }},
		{name: "nbf in future", wantErr: extauthz.ErrTokenNotYetValid,
			token: func(t *testing.T) string { return f.is.Sign(t, with("nbf", now.Add(time.Minute).Unix())) }},
		{name: "nbf within skew", token: func(t *testing.T) string {
			return f.is.Sign(t, with("nbf", now.Add(10*time.Second).Unix()))
		}},
		{name: "iat in future", wantErr: extauthz.ErrTokenNotYetValid,
			token: func(t *testing.T) string { return f.is.Sign(t, with("iat", now.Add(time.Hour).Unix())) }},
		{name: "wrong iss", wantErr: extauthz.ErrUnknownIssuer,
			token: func(t *testing.T) string { return f.is.Sign(t, with("iss", "https://evil.example")) }},
		{name: "iss with trailing slash", wantErr: extauthz.ErrUnknownIssuer,
			token: func(t *testing.T) string { return f.is.Sign(t, with("iss", f.is.URL()+"/")) }},
		{name: "iss not a string", wantErr: extauthz.ErrInvalidToken,
			token: func(t *testing.T) string { return f.is.Sign(t, with("iss", []string{f.is.URL()})) }},
		{name: "wrong aud", wantErr: extauthz.ErrWrongAudience,
			token: func(t *testing.T) string { return f.is.Sign(t, with("aud", "other")) }},
		{name: "aud missing", wantErr: extauthz.ErrWrongAudience,
			token: func(t *testing.T) string { return f.is.Sign(t, without("aud")) }},
		{name: "aud array holding api", token: func(t *testing.T) string {
			return f.is.Sign(t, with("aud", []string{"other", "api"}))
		}},
		{name: "aud a number", wantErr: extauthz.ErrInvalidToken,
			token: func(t *testing.T) string { return f.is.Sign(t, with("aud", 42)) }},
		{name: "garbage base64 header", wantErr: extauthz.ErrInvalidToken,
			token: func(t *testing.T) string { return f.is.Sign(t, base(), authztest.Broken(authztest.BreakHeaderBase64)) }},
		{name: "garbage base64 claims", wantErr: extauthz.ErrInvalidToken,
			token: func(t *testing.T) string { return f.is.Sign(t, base(), authztest.Broken(authztest.BreakClaimsBase64)) }},
		{name: "header not JSON", wantErr: extauthz.ErrInvalidToken,
			token: func(t *testing.T) string { return f.is.Sign(t, base(), authztest.Broken(authztest.BreakHeaderJSON)) }},
		{name: "not a JWT at all", wantErr: extauthz.ErrInvalidToken,
			token: func(*testing.T) string { return "hello" }},
		{name: "two segments", wantErr: extauthz.ErrInvalidToken,
			token: func(t *testing.T) string { return f.is.Sign(t, base(), authztest.Broken(authztest.BreakSegments)) }},
		{name: "JWE", wantErr: extauthz.ErrInvalidToken,
			token: func(t *testing.T) string { return f.is.Sign(t, base(), authztest.Broken(authztest.BreakJWE)) }},
		{name: "huge token", wantErr: extauthz.ErrInvalidToken,
			token: func(t *testing.T) string { return f.is.Sign(t, with("pad", strings.Repeat("a", 9<<10))) }},
		{name: "crit header", wantErr: extauthz.ErrInvalidToken,
			token: func(t *testing.T) string {
				return f.is.Sign(t, base(), authztest.WithHeader("crit", []string{"exp"}), authztest.WithHeader("exp", 1))
			}},
		{name: "enc header", wantErr: extauthz.ErrInvalidToken,
			token: func(t *testing.T) string { return f.is.Sign(t, base(), authztest.WithHeader("enc", "A128GCM")) }},
		{name: "b64 false", wantErr: extauthz.ErrInvalidToken,
			token: func(t *testing.T) string { return f.is.Sign(t, base(), authztest.WithHeader("b64", false)) }},
		{name: "scope a number", wantErr: extauthz.ErrInvalidToken,
			token: func(t *testing.T) string { return f.is.Sign(t, with("scope", 3)) }},
		{name: "scp array with a number", wantErr: extauthz.ErrInvalidToken,
			token: func(t *testing.T) string {
				return f.is.Sign(t, with("scp", []any{"a", 1}), authztest.WithoutDefaults())
			}},
		{name: "sub not a string", wantErr: extauthz.ErrInvalidToken,
			token: func(t *testing.T) string { return f.is.Sign(t, with("sub", 12)) }},
		{name: "client_id not a string", wantErr: extauthz.ErrInvalidToken,
			token: func(t *testing.T) string { return f.is.Sign(t, with("client_id", true)) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw := tc.token(t)
			p, err := f.auth(raw)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				if p != nil {
					t.Fatal("principal returned with an error")
				}
				if strings.Contains(err.Error(), raw) || (len(raw) > 20 && strings.Contains(err.Error(), raw[len(raw)-20:])) {
					t.Fatal("error quotes the token")
				}
			}
		})
	}
}

func TestKeyHeadersAreNeverFetched(t *testing.T) {
	f := setup(t, nil)
	var hits atomic.Int64
	evil := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	defer evil.Close()
	// A key of the attacker's own, announced in the header.
	other := authztest.New(t)
	other.Rotate(false)
	attackerKey, _ := other.Key("ES256")
	claims := jwt.MapClaims{"sub": "alice", "aud": "api", "iss": f.is.URL()}

	tests := []struct {
		name    string
		opts    []authztest.SignOption
		wantErr error
	}{
		{name: "issuer key with jku and x5u", opts: []authztest.SignOption{
			authztest.WithHeader("jku", evil.URL+"/jwks"), authztest.WithHeader("x5u", evil.URL+"/cert"),
		}},
		{name: "attacker key embedded as jwk", wantErr: extauthz.ErrUnknownKey, opts: []authztest.SignOption{
			authztest.WithAlg("ES256"), authztest.WithKey(attackerKey),
			authztest.WithHeader("jwk", authztest.PublicJWK(attackerKey)), authztest.WithHeader("jku", evil.URL),
		}},
		{name: "attacker key under the issuer's kid", wantErr: extauthz.ErrInvalidToken, opts: []authztest.SignOption{
			authztest.WithAlg("ES256"), authztest.WithKey(attackerKey), authztest.WithKid(mustKid(f.is, "ES256")),
			authztest.WithHeader("jwk", authztest.PublicJWK(attackerKey)),
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.auth(f.is.Sign(t, claims, tc.opts...))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
	if hits.Load() != 0 {
		t.Fatalf("a URL from a token header was fetched %d times", hits.Load())
	}
}

func mustKid(is *authztest.Issuer, alg string) string {
	k, _ := is.Key(alg)
	return k.Kid
}

// TestTokenKinds: a JWT of another kind signed by the issuer's own key never
// passes as an access token, with or without RequiredType, and a token
// without sub is refused unless the issuer allows it (RFC 9068 §2.2,
// RFC 8725 §3.11). The accepted rows show which typ values and claims an
// access token may carry without RequiredType.
func TestTokenKinds(t *testing.T) {
	access := func(extra jwt.MapClaims) jwt.MapClaims {
		c := jwt.MapClaims{"sub": "alice", "aud": "api", "scope": "read"}
		for k, v := range extra {
			c[k] = v
		}
		return c
	}
	typ := authztest.WithTyp
	logoutEvents := map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}}
	tests := []struct {
		name    string
		issuer  func(*Issuer) // nil: no RequiredType, sub required
		claims  jwt.MapClaims
		opts    []authztest.SignOption
		wantErr error
	}{
		// typ header, no RequiredType.
		{name: "at+jwt", claims: access(nil), opts: []authztest.SignOption{typ("at+jwt")}},
		{name: "application/AT+JWT", claims: access(nil), opts: []authztest.SignOption{typ("application/AT+JWT")}},
		{name: "JWT", claims: access(nil), opts: []authztest.SignOption{typ("JWT")}},
		{name: "jwt", claims: access(nil), opts: []authztest.SignOption{typ("jwt")}},
		{name: "application/jwt", claims: access(nil), opts: []authztest.SignOption{typ("application/jwt")}},
		{name: "typ missing", claims: access(nil), opts: []authztest.SignOption{authztest.WithoutTyp()}},
		{name: "typ empty", claims: access(nil), opts: []authztest.SignOption{typ("")}},
		{name: "DPoP proof", claims: access(jwt.MapClaims{"jti": "j", "htm": "GET", "htu": "https://api/x"}),
			opts: []authztest.SignOption{typ("dpop+jwt")}, wantErr: extauthz.ErrInvalidToken},
		{name: "dpop+jwt typ alone", claims: access(nil), opts: []authztest.SignOption{typ("dpop+jwt")}, wantErr: extauthz.ErrInvalidToken},
		{name: "DPOP+JWT", claims: access(nil), opts: []authztest.SignOption{typ("DPOP+JWT")}, wantErr: extauthz.ErrInvalidToken},
		{name: "introspection answer", claims: access(jwt.MapClaims{"token_introspection": map[string]any{"active": true, "sub": "alice"}}),
			opts: []authztest.SignOption{typ("token-introspection+jwt")}, wantErr: extauthz.ErrInvalidToken},
		{name: "application/token-introspection+jwt typ alone", claims: access(nil),
			opts: []authztest.SignOption{typ("application/token-introspection+jwt")}, wantErr: extauthz.ErrInvalidToken},
		{name: "secevent+jwt typ alone", claims: access(nil), opts: []authztest.SignOption{typ("secevent+jwt")}, wantErr: extauthz.ErrInvalidToken},
		{name: "logout token", claims: access(jwt.MapClaims{"jti": "j", "sid": "s", "events": logoutEvents}),
			opts: []authztest.SignOption{typ("logout+jwt")}, wantErr: extauthz.ErrInvalidToken},
		{name: "logout+jwt typ alone", claims: access(nil), opts: []authztest.SignOption{typ("Logout+JWT")}, wantErr: extauthz.ErrInvalidToken},
		{name: "any other +jwt", claims: access(nil), opts: []authztest.SignOption{typ("txntoken+jwt")}, wantErr: extauthz.ErrInvalidToken},
		{name: "bare +jwt", claims: access(nil), opts: []authztest.SignOption{typ("+jwt")}, wantErr: extauthz.ErrInvalidToken},
		{name: "at+jwt with a space", claims: access(nil), opts: []authztest.SignOption{typ("at+jwt ")}, wantErr: extauthz.ErrInvalidToken},
		{name: "prefix twice", claims: access(nil), opts: []authztest.SignOption{typ("application/application/at+jwt")}, wantErr: extauthz.ErrInvalidToken},
		{name: "JOSE", claims: access(nil), opts: []authztest.SignOption{typ("JOSE")}, wantErr: extauthz.ErrInvalidToken},
		{name: "Bearer", claims: access(nil), opts: []authztest.SignOption{typ("Bearer")}, wantErr: extauthz.ErrInvalidToken},

		// Claims that reveal another kind, whatever the typ header says.
		{name: "logout token typed JWT", claims: access(jwt.MapClaims{"sid": "s", "events": logoutEvents}),
			opts: []authztest.SignOption{typ("JWT")}, wantErr: extauthz.ErrInvalidToken},
		{name: "security event without typ", claims: access(jwt.MapClaims{"events": map[string]any{"urn:x": map[string]any{}}}),
			opts: []authztest.SignOption{authztest.WithoutTyp()}, wantErr: extauthz.ErrInvalidToken},
		{name: "introspection answer without typ", claims: access(jwt.MapClaims{"token_introspection": map[string]any{"active": true}}),
			opts: []authztest.SignOption{authztest.WithoutTyp()}, wantErr: extauthz.ErrInvalidToken},
		{name: "DPoP claims typed at+jwt", claims: access(jwt.MapClaims{"htm": "GET", "htu": "https://api/x"}), wantErr: extauthz.ErrInvalidToken},
		{name: "ID token with at_hash", claims: access(jwt.MapClaims{"at_hash": "x", "nonce": "n"}),
			opts: []authztest.SignOption{typ("JWT")}, wantErr: extauthz.ErrInvalidToken},
		{name: "ID token with c_hash", claims: access(jwt.MapClaims{"c_hash": "x"}), wantErr: extauthz.ErrInvalidToken},
		{name: "ID token with s_hash", claims: access(jwt.MapClaims{"s_hash": "x"}), wantErr: extauthz.ErrInvalidToken},
		{name: "Keycloak ID token", claims: access(jwt.MapClaims{"typ": "ID", "azp": "web"}),
			opts: []authztest.SignOption{typ("JWT")}, wantErr: extauthz.ErrInvalidToken},
		{name: "Keycloak refresh token", claims: access(jwt.MapClaims{"typ": "Refresh"}), wantErr: extauthz.ErrInvalidToken},
		{name: "Keycloak logout token", claims: access(jwt.MapClaims{"typ": "Logout"}), wantErr: extauthz.ErrInvalidToken},
		{name: "Keycloak access token", claims: access(jwt.MapClaims{"typ": "Bearer", "azp": "web", "nonce": "n"}),
			opts: []authztest.SignOption{typ("JWT")}},
		{name: "kind claims refused even with RequiredType", issuer: func(c *Issuer) { c.RequiredType = "at+jwt" },
			claims: access(jwt.MapClaims{"events": logoutEvents}), wantErr: extauthz.ErrInvalidToken},

		// sub (RFC 9068 §2.2).
		{name: "sub missing", claims: jwt.MapClaims{"aud": "api"}, wantErr: extauthz.ErrInvalidToken},
		{name: "sub empty", claims: jwt.MapClaims{"aud": "api", "sub": ""}, wantErr: extauthz.ErrInvalidToken},
		{name: "sub missing, allowed", issuer: func(c *Issuer) { c.AllowMissingSub = true }, claims: jwt.MapClaims{"aud": "api"}},
		{name: "sub not a string, even when allowed to be missing", issuer: func(c *Issuer) { c.AllowMissingSub = true },
			claims: jwt.MapClaims{"aud": "api", "sub": 7}, wantErr: extauthz.ErrInvalidToken},

		// RequiredType set: exactly that type.
		{name: "required JWT", issuer: func(c *Issuer) { c.RequiredType = "JWT" }, claims: access(nil), opts: []authztest.SignOption{typ("application/jwt")}},
		{name: "required JWT, at+jwt sent", issuer: func(c *Issuer) { c.RequiredType = "JWT" }, claims: access(nil), wantErr: extauthz.ErrInvalidToken},
		{name: "required vendor type", issuer: func(c *Issuer) { c.RequiredType = "application/vnd.example.at+jwt" },
			claims: access(nil), opts: []authztest.SignOption{typ("vnd.example.at+jwt")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := setup(t, tc.issuer)
			raw := f.is.Sign(t, tc.claims, tc.opts...)
			p, err := f.auth(raw)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Authenticate: err = %v, want %v", err, tc.wantErr)
			}
			if err != nil && p != nil {
				t.Fatal("principal returned with an error")
			}
			// Embedded tokens follow the same rules.
			if _, err := f.v.VerifyForAudience(context.Background(), raw, []string{"api"}); !errors.Is(err, tc.wantErr) {
				t.Fatalf("VerifyForAudience: err = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestRequiredType(t *testing.T) {
	f := setup(t, func(c *Issuer) { c.RequiredType = "at+jwt" })
	claims := jwt.MapClaims{"sub": "alice", "aud": "api"}
	tests := []struct {
		name    string
		opts    []authztest.SignOption
		wantErr error
	}{
		{name: "at+jwt", opts: []authztest.SignOption{authztest.WithTyp("at+jwt")}},
		{name: "application/AT+JWT", opts: []authztest.SignOption{authztest.WithTyp("application/AT+JWT")}},
		{name: "JWT", opts: []authztest.SignOption{authztest.WithTyp("JWT")}, wantErr: extauthz.ErrInvalidToken},
		{name: "missing", opts: []authztest.SignOption{authztest.WithoutTyp()}, wantErr: extauthz.ErrInvalidToken},
		{name: "not a string", opts: []authztest.SignOption{authztest.WithHeader("typ", 1)}, wantErr: extauthz.ErrInvalidToken},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := f.auth(f.is.Sign(t, claims, tc.opts...)); !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestHMAC(t *testing.T) {
	f := setup(t, func(c *Issuer) {
		c.Algorithms = []string{"RS256", "HS256"}
		c.HMACSecret = hmacSecret
	})
	claims := jwt.MapClaims{"sub": "alice", "aud": "api"}
	tests := []struct {
		name    string
		opts    []authztest.SignOption
		wantErr error
	}{
		{name: "HS256 with the secret", opts: []authztest.SignOption{authztest.WithAlg("HS256"), authztest.WithHMACKey(hmacSecret)}},
		{name: "HS256 with the RSA public key", wantErr: extauthz.ErrInvalidToken,
			opts: []authztest.SignOption{authztest.WithAlg("HS256"), authztest.WithHMACKey(f.is.PublicKeyPEM("RS256"))}},
		{name: "HS384 not listed", wantErr: extauthz.ErrInvalidToken,
			opts: []authztest.SignOption{authztest.WithAlg("HS384"), authztest.WithHMACKey(hmacSecret)}},
		{name: "ES256 not listed", wantErr: extauthz.ErrInvalidToken, opts: []authztest.SignOption{authztest.WithAlg("ES256")}},
		{name: "RS256", opts: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := f.auth(f.is.Sign(t, claims, tc.opts...)); !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	keys := &countingKeys{}
	tests := []struct {
		name string
		cfg  Issuer
	}{
		{name: "empty issuer", cfg: Issuer{Keys: keys}},
		{name: "alg none", cfg: Issuer{Issuer: "i", Keys: keys, Algorithms: []string{"RS256", "none"}}},
		{name: "alg NONE", cfg: Issuer{Issuer: "i", Keys: keys, Algorithms: []string{"NONE"}}},
		{name: "HS256 without secret", cfg: Issuer{Issuer: "i", Keys: keys, Algorithms: []string{"HS256"}}},
		{name: "HS512 with short secret", cfg: Issuer{Issuer: "i", Algorithms: []string{"HS512"}, HMACSecret: hmacSecret}},
		{name: "unknown alg", cfg: Issuer{Issuer: "i", Keys: keys, Algorithms: []string{"RS1"}}},
		{name: "no key source", cfg: Issuer{Issuer: "i"}},
		{name: "negative skew", cfg: Issuer{Issuer: "i", Keys: keys, ClockSkew: -time.Second}},
		{name: "DPoP proofs required", cfg: Issuer{Issuer: "i", Keys: keys, RequiredType: "dpop+jwt"}},
		{name: "introspection answers required", cfg: Issuer{Issuer: "i", Keys: keys, RequiredType: "application/Token-Introspection+JWT"}},
		{name: "logout tokens required", cfg: Issuer{Issuer: "i", Keys: keys, RequiredType: "logout+jwt"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(settled(Options{Issuers: []Issuer{tc.cfg}})); err == nil {
				t.Fatal("New accepted a bad issuer")
			}
		})
	}
	if _, err := New(settled(Options{Issuers: []Issuer{{Issuer: "i", Keys: keys}, {Issuer: "i", Keys: keys}}})); err == nil {
		t.Fatal("New accepted a duplicate issuer")
	}
	for _, o := range []Options{
		{Issuers: []Issuer{{Issuer: "i", Keys: keys, Algorithms: []string{"RS256"}, ScopeClaims: []string{"scope"}}}},
		{Issuers: []Issuer{{Issuer: "i", Keys: keys, ScopeClaims: []string{"scope"}}}, MaxTokenBytes: 1, CacheEntries: 1},
		{Issuers: []Issuer{{Issuer: "i", Keys: keys, Algorithms: []string{"RS256"}}}, MaxTokenBytes: 1, CacheEntries: 1},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) filled a setting config owns", o)
		}
	}
	if _, err := New(settled(Options{})); err == nil {
		t.Fatal("New accepted no issuer")
	}
	if _, err := New(settled(Options{Issuers: []Issuer{{Issuer: "i", Algorithms: []string{"HS256"}, HMACSecret: hmacSecret}}})); err != nil {
		t.Fatalf("HMAC-only issuer without keys: %v", err)
	}
}

func TestPrincipal(t *testing.T) {
	tests := []struct {
		name         string
		scopeClaims  []string
		claims       jwt.MapClaims
		wantScopes   []string
		wantClientID string
		wantAud      []string
		wantBound    bool // Principal.Unbound false: its claims hold a cnf
	}{
		{name: "scope string, client_id", claims: jwt.MapClaims{"aud": "api", "scope": "read  write", "client_id": "web", "azp": "x"},
			wantScopes: []string{"read", "write"}, wantClientID: "web", wantAud: []string{"api"}},
		{name: "scp array, azp", claims: jwt.MapClaims{"aud": []string{"api", "b"}, "scp": []string{"read", "write"}, "azp": "spa"},
			wantScopes: []string{"read", "write"}, wantClientID: "spa", wantAud: []string{"api", "b"}},
		{name: "scope wins over scp, cid", claims: jwt.MapClaims{"aud": "api", "scope": "a", "scp": []string{"b"}, "cid": "okta"},
			wantScopes: []string{"a"}, wantClientID: "okta", wantAud: []string{"api"}},
		{name: "configured claim order", scopeClaims: []string{"scp", "scope"},
			claims:     jwt.MapClaims{"aud": "api", "scope": "a", "scp": []string{"b"}},
			wantScopes: []string{"b"}, wantAud: []string{"api"}},
		{name: "no scopes", claims: jwt.MapClaims{"aud": "api"}, wantAud: []string{"api"}},
		{name: "bound to a key", claims: jwt.MapClaims{"aud": "api", "cnf": map[string]any{"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}},
			wantAud: []string{"api"}, wantBound: true},
		{name: "cnf null", claims: jwt.MapClaims{"aud": "api", "cnf": nil}, wantAud: []string{"api"}, wantBound: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := setup(t, func(c *Issuer) { c.ScopeClaims = tc.scopeClaims })
			claims := jwt.MapClaims{"sub": "alice", "tenant": "t1"}
			for k, v := range tc.claims {
				claims[k] = v
			}
			p, err := f.auth(f.is.Sign(t, claims))
			if err != nil {
				t.Fatal(err)
			}
			if p.Issuer != f.is.URL() || p.Subject != "alice" || p.ClientID != tc.wantClientID || p.Claims["tenant"] != "t1" {
				t.Fatalf("principal = %+v", p)
			}
			if strings.Join(p.Scopes, " ") != strings.Join(tc.wantScopes, " ") || strings.Join(p.Audience, " ") != strings.Join(tc.wantAud, " ") {
				t.Fatalf("scopes %q aud %q", p.Scopes, p.Audience)
			}
			if !p.ExpiresAt.Equal(f.clk.Now().Add(authztest.DefaultTTL)) || !p.IssuedAt.Equal(f.clk.Now()) {
				t.Fatalf("exp %v iat %v", p.ExpiresAt, p.IssuedAt)
			}
			if p.Unbound == tc.wantBound {
				t.Fatalf("Unbound = %v for claims %v", p.Unbound, p.Claims)
			}
		})
	}
}

func TestCache(t *testing.T) {
	f := setup(t, nil)
	raw := f.is.Sign(t, jwt.MapClaims{"sub": "alice", "aud": "api", "exp": f.clk.Now().Add(time.Minute).Unix()})
	p1, err := f.auth(raw)
	if err != nil {
		t.Fatal(err)
	}
	// A token seen once leaves its claims segment, not its principal.
	if e, ok := f.v.cache.Get(extauthz.TokenHash(raw)); !ok || e.p != nil || !strings.Contains(string(e.claims), `"sub":"alice"`) {
		t.Fatalf("entry after the first check (found %v): %+v, want the claims segment alone", ok, e)
	}
	p2, err := f.auth(raw)
	if err != nil {
		t.Fatal(err)
	}
	// Its second check judges the kept claims again, without the key or the
	// signature, and keeps the principal.
	if !reflect.DeepEqual(p1.Claims, p2.Claims) || p2.Subject != "alice" || !p2.ExpiresAt.Equal(p1.ExpiresAt) {
		t.Fatalf("second check's principal differs: %+v", p2)
	}
	p3, err := f.auth(raw)
	if err != nil {
		t.Fatal(err)
	}
	// A hit shares the parsed claims (no third parse) but gives each caller
	// its own principal carrying its own request's token.
	if reflect.ValueOf(p2.Claims).UnsafePointer() != reflect.ValueOf(p3.Claims).UnsafePointer() {
		t.Fatal("third check did not come from the cached principal")
	}
	if p2 == p3 || p3.Credential.Raw != raw {
		t.Fatalf("hit returned a shared principal or lost the token")
	}
	// Only the Check that parsed the token gets a fresh principal.
	if !p1.Fresh || p2.Fresh || p3.Fresh {
		t.Fatalf("Fresh: first %v, second %v, hit %v; want true, false, false", p1.Fresh, p2.Fresh, p3.Fresh)
	}
	// The cache keeps the token's hash, not the token.
	if e, ok := f.v.cache.Get(extauthz.TokenHash(raw)); !ok || e.p == nil || e.p.Credential.Raw != "" || e.p.Fresh {
		t.Fatalf("cached entry (found %v) is no principal, holds the raw token or says fresh", ok)
	}
	if n := f.keys.n.Load(); n != 1 {
		t.Fatalf("key looked up %d times, want 1", n)
	}
	// The same token from another header shares the cached result but names its own header.
	p4, err := f.v.Authenticate(context.Background(), extauthz.Credential{Raw: raw, Kind: extauthz.KindJWT, Header: "x-token"})
	if err != nil || p4.Credential.Header != "x-token" || p1.Credential.Header != "authorization" {
		t.Fatalf("other header: %v %+v", err, p4)
	}

	t.Run("never outlives exp", func(t *testing.T) {
		f.clk.Advance(time.Minute) // now == exp: skew lets the parser accept, the cache must not
		if p, err := f.auth(raw); err != nil || f.keys.n.Load() != 2 {
			t.Fatalf("at exp: %v, key lookups %d (want a fresh validation)", err, f.keys.n.Load())
		} else if p == p1 {
			t.Fatal("expired cache entry served")
		}
		f.clk.Advance(time.Minute)
		if _, err := f.auth(raw); !errors.Is(err, extauthz.ErrTokenExpired) {
			t.Fatalf("after exp+skew: err = %v, want ErrTokenExpired", err)
		}
	})
}

// TestCompactEntry: the entry a token leaves at its first Check (its
// claims segment) is judged again at the second, as strictly as a first
// validation but without the key: for an embedded token's audience, at the
// Check's own time (a refusal leaves the entry for a later Check), and
// never at or after exp.
func TestCompactEntry(t *testing.T) {
	t.Run("for an audience, three times", func(t *testing.T) {
		f := setup(t, nil)
		raw := f.is.Sign(t, jwt.MapClaims{"sub": "alice", "aud": "orders", "exp": f.clk.Now().Add(time.Minute).Unix()})
		for i := range 3 {
			p, err := f.v.VerifyForAudience(context.Background(), raw, []string{"orders"})
			if err != nil || p.Subject != "alice" || p.Fresh != (i == 0) {
				t.Fatalf("check %d: %v, %+v", i+1, err, p)
			}
			if _, err := f.v.VerifyForAudience(context.Background(), raw, []string{"billing"}); !errors.Is(err, extauthz.ErrWrongAudience) {
				t.Fatalf("check %d for billing: err = %v, want ErrWrongAudience", i+1, err)
			}
		}
		// orders once; billing each time (a refusal is not cached).
		if n := f.keys.n.Load(); n != 4 {
			t.Fatalf("key looked up %d times, want 4", n)
		}
	})
	t.Run("judged at the Check's time; a refusal keeps the entry", func(t *testing.T) {
		f := setup(t, nil)
		now := f.clk.Now()
		raw := f.is.Sign(t, jwt.MapClaims{"sub": "alice", "aud": "api", "nbf": now.Unix(), "exp": now.Add(time.Minute).Unix()})
		at := func(t time.Time) (*extauthz.Principal, error) {
			return f.v.Authenticate(context.Background(), extauthz.Credential{Raw: raw, Kind: extauthz.KindJWT, PresentedAt: t})
		}
		if _, err := at(now); err != nil {
			t.Fatal(err)
		}
		// A second Check presented before nbf − skew (out of order) is
		// refused, as a first validation then would be.
		if _, err := at(now.Add(-time.Minute)); !errors.Is(err, extauthz.ErrTokenNotYetValid) {
			t.Fatalf("before nbf: err = %v, want ErrTokenNotYetValid", err)
		}
		if e, ok := f.v.cache.Get(extauthz.TokenHash(raw)); !ok || e.p != nil {
			t.Fatalf("after a refused second Check the entry is %+v (found %v), want the claims segment", e, ok)
		}
		if p, err := at(now.Add(time.Second)); err != nil || p.Fresh {
			t.Fatalf("a later Check: %v, %+v", err, p)
		}
		if n := f.keys.n.Load(); n != 1 {
			t.Fatalf("key looked up %d times, want 1", n)
		}
	})
	t.Run("never at or after exp", func(t *testing.T) {
		f := setup(t, nil)
		raw := f.is.Sign(t, jwt.MapClaims{"sub": "alice", "aud": "api", "exp": f.clk.Now().Add(time.Minute).Unix()})
		if _, err := f.auth(raw); err != nil {
			t.Fatal(err)
		}
		f.clk.Advance(time.Minute) // now == exp: the entry is not used, a full validation runs
		if p, err := f.auth(raw); err != nil || !p.Fresh || f.keys.n.Load() != 2 {
			t.Fatalf("at exp: %v, fresh %v, key lookups %d; want a full validation", err, p != nil && p.Fresh, f.keys.n.Load())
		}
		f.clk.Advance(time.Minute)
		if _, err := f.auth(raw); !errors.Is(err, extauthz.ErrTokenExpired) {
			t.Fatalf("after exp+skew: err = %v, want ErrTokenExpired", err)
		}
	})
}

func TestVerifyForAudience(t *testing.T) {
	f := setup(t, nil)
	raw := f.is.Sign(t, jwt.MapClaims{"sub": "alice", "aud": "orders", "scope": "orders:read"})
	ctx := context.Background()
	if _, err := f.v.VerifyForAudience(ctx, raw, []string{"orders"}); err != nil {
		t.Fatal(err)
	}
	// Cached under "orders" must not let it pass for "billing".
	if _, err := f.v.VerifyForAudience(ctx, raw, []string{"billing"}); !errors.Is(err, extauthz.ErrWrongAudience) {
		t.Fatalf("err = %v, want ErrWrongAudience", err)
	}
	if _, err := f.v.VerifyForAudience(ctx, raw, nil); !errors.Is(err, extauthz.ErrWrongAudience) {
		t.Fatalf("no audiences: err = %v", err)
	}
	// Nor does the embedded token pass as a token for the issuer's own audience.
	if _, err := f.auth(raw); !errors.Is(err, extauthz.ErrWrongAudience) {
		t.Fatalf("Authenticate: err = %v, want ErrWrongAudience", err)
	}
}

func TestKeysUnavailable(t *testing.T) {
	clk := newClock()
	is := authztest.New(t, authztest.WithNow(clk.Now))
	is.SetDown(true)
	set := newKeySet(t, jwks.Options{Issuer: is.URL(), URL: is.Endpoint(authztest.PathJWKS), Client: is.Client(), Now: clk.Now})
	v, err := New(settled(Options{Issuers: []Issuer{{Issuer: is.URL(), Keys: set}}, Now: clk.Now}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Authenticate(context.Background(), extauthz.Credential{Raw: is.Sign(t, jwt.MapClaims{}), Kind: extauthz.KindJWT})
	if !errors.Is(err, extauthz.ErrKeysUnavailable) {
		t.Fatalf("err = %v, want ErrKeysUnavailable", err)
	}
}

// TestRotationAndOutage: a token signed with a key the verifier has not
// fetched yet is judged by whether the issuer could be asked: accepted once
// the key is fetched, 503 (ErrKeysUnavailable) while the issuer is down, and
// 401 (ErrUnknownKey) only when a fresh key set lacks its kid.
func TestRotationAndOutage(t *testing.T) {
	tests := []struct {
		name    string
		since   time.Duration // time since the last fetch
		down    bool
		forged  bool // the kid is one the issuer never published
		wantErr error
		notErr  error
	}{
		{name: "new key, issuer up: accepted at first use", since: configMinRefetch},
		{name: "new key, issuer down: 503", since: configMinRefetch, down: true,
			wantErr: extauthz.ErrKeysUnavailable, notErr: extauthz.ErrUnknownKey},
		{name: "unpublished kid, set just fetched: 401", since: time.Second, forged: true, wantErr: extauthz.ErrUnknownKey},
		{name: "unpublished kid, set refetched: 401", since: time.Hour, forged: true, wantErr: extauthz.ErrUnknownKey},
		{name: "unpublished kid, issuer down: 503", since: time.Hour, forged: true, down: true,
			wantErr: extauthz.ErrKeysUnavailable, notErr: extauthz.ErrUnknownKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := setup(t, nil)
			f.is.Rotate(true)
			f.is.SetDown(tc.down)
			f.clk.Advance(tc.since)
			var opts []authztest.SignOption
			if tc.forged {
				opts = append(opts, authztest.WithKid("never-published"))
			}
			_, err := f.auth(f.is.Sign(t, jwt.MapClaims{"sub": "alice", "aud": "api"}, opts...))
			if tc.wantErr == nil && err != nil {
				t.Fatalf("err = %v, want accepted", err)
			}
			if !errors.Is(err, tc.wantErr) || (tc.notErr != nil && errors.Is(err, tc.notErr)) {
				t.Fatalf("err = %v, want %v and not %v", err, tc.wantErr, tc.notErr)
			}
		})
	}
}

// TestStrictJSON: header and claims are read by encoding/json/v2 rules, so a
// token whose JSON could read one way here and another way upstream is
// refused: duplicate names (RFC 7519 §4, RFC 8725 §3.7), names that only
// match case-insensitively, invalid UTF-8, and header parameters of the
// wrong type. The control row shows the same shape is otherwise accepted.
func TestStrictJSON(t *testing.T) {
	const (
		goodHeader = `{"alg":"EdDSA","typ":"at+jwt","kid":"k1"}`
		goodClaims = `{"iss":"https://as.example","aud":"api","exp":1893456300,"sub":"alice"}`
	)
	tests := []struct {
		name           string
		header, claims string
		wantErr        bool
	}{
		{name: "control", header: goodHeader, claims: goodClaims},
		{name: "duplicate iss", header: goodHeader,
			claims: `{"iss":"https://evil.example","aud":"api","exp":1893456300,"iss":"https://as.example"}`, wantErr: true},
		{name: "duplicate exp", header: goodHeader,
			claims: `{"iss":"https://as.example","aud":"api","exp":1,"exp":1893456300}`, wantErr: true},
		{name: "duplicate sub", header: goodHeader,
			claims: `{"iss":"https://as.example","aud":"api","exp":1893456300,"sub":"alice","sub":"admin"}`, wantErr: true},
		{name: "duplicate alg", header: `{"alg":"none","typ":"at+jwt","alg":"EdDSA"}`, claims: goodClaims, wantErr: true},
		{name: "duplicate typ", header: `{"alg":"EdDSA","typ":"JWT","typ":"at+jwt"}`, claims: goodClaims, wantErr: true},
		{name: "ALG in capitals only", header: `{"ALG":"EdDSA","typ":"at+jwt"}`, claims: goodClaims, wantErr: true},
		{name: "Crit in other case is not crit", header: `{"alg":"EdDSA","typ":"at+jwt","Crit":["x"]}`, claims: goodClaims},
		{name: "crit null", header: `{"alg":"EdDSA","typ":"at+jwt","crit":null}`, claims: goodClaims, wantErr: true},
		{name: "b64 true", header: `{"alg":"EdDSA","typ":"at+jwt","b64":true}`, claims: goodClaims},
		{name: "kid a number", header: `{"alg":"EdDSA","typ":"at+jwt","kid":1}`, claims: goodClaims, wantErr: true},
		{name: "typ a number", header: `{"alg":"EdDSA","typ":1}`, claims: goodClaims, wantErr: true},
		{name: "alg an array", header: `{"alg":["EdDSA"],"typ":"at+jwt"}`, claims: goodClaims, wantErr: true},
		{name: "header an array", header: `["EdDSA"]`, claims: goodClaims, wantErr: true},
		{name: "claims an array", header: goodHeader, claims: `["https://as.example"]`, wantErr: true},
		{name: "invalid UTF-8 in a claim", header: goodHeader,
			claims: "{\"iss\":\"https://as.example\",\"aud\":\"api\",\"exp\":1893456300,\"name\":\"\xff\"}", wantErr: true},
		{name: "trailing garbage after claims", header: goodHeader, claims: goodClaims + `x`, wantErr: true},
		{name: "nested duplicate", header: goodHeader,
			claims: `{"iss":"https://as.example","aud":"api","exp":1893456300,"act":{"sub":"a","sub":"b"}}`, wantErr: true},
	}
	v, priv := fuzzVerifier(t)
	enc := base64.RawURLEncoding.EncodeToString
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			signing := enc([]byte(tc.header)) + "." + enc([]byte(tc.claims))
			raw := signing + "." + enc(ed25519.Sign(priv, []byte(signing)))
			p, err := v.Authenticate(context.Background(), extauthz.Credential{Raw: raw, Kind: extauthz.KindJWT})
			if tc.wantErr {
				if !errors.Is(err, extauthz.ErrInvalidToken) || p != nil {
					t.Fatalf("got %v, %v; want ErrInvalidToken", p, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
		})
	}
}

// TestClaimsNotAnObject: a claims segment that is valid JSON but not an
// object, signed by a trusted key, is refused as an invalid token whose
// message names the problem (before the signature is looked at), and is
// refused the same way when presented again. The JSON null is the case json.Unmarshal
// does not refuse itself: it decodes into a nil map without an error, so
// decodeClaims refuses it explicitly. The control row shows the same
// signing is otherwise accepted, so the refusals are the claims'.
func TestClaimsNotAnObject(t *testing.T) {
	const header = `{"alg":"EdDSA","typ":"at+jwt","kid":"k1"}`
	tests := []struct {
		name   string
		claims string
	}{
		{name: "control", claims: `{"iss":"https://as.example","aud":"api","exp":1893456300,"sub":"alice"}`},
		{name: "null", claims: `null`},
		{name: "null in whitespace", claims: " null\n"},
		{name: "empty array", claims: `[]`},
		{name: "string", claims: `"x"`},
		{name: "number", claims: `1`},
		{name: "true", claims: `true`},
	}
	v, priv := fuzzVerifier(t)
	enc := base64.RawURLEncoding.EncodeToString
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			signing := enc([]byte(header)) + "." + enc([]byte(tc.claims))
			raw := signing + "." + enc(ed25519.Sign(priv, []byte(signing)))
			for range 2 {
				p, err := v.Authenticate(context.Background(), extauthz.Credential{Raw: raw, Kind: extauthz.KindJWT})
				if tc.name == "control" {
					if err != nil || p == nil {
						t.Fatalf("refused: %v", err)
					}
					continue
				}
				if !errors.Is(err, extauthz.ErrInvalidToken) || p != nil {
					t.Fatalf("claims %q: got %v, %v; want ErrInvalidToken", tc.claims, p, err)
				}
				if !strings.Contains(err.Error(), "claims are not a JSON object") {
					t.Fatalf("claims %q: error %q does not say the claims are not a JSON object", tc.claims, err)
				}
			}
		})
	}
}

// TestHeaderCacheBounded: distinct headers beyond the bound neither grow the
// cache past it nor change any result; the usual header is decoded again
// after the cache starts over.
func TestHeaderCacheBounded(t *testing.T) {
	v, priv := fuzzVerifier(t)
	enc := base64.RawURLEncoding.EncodeToString
	tok := func(header string, i int) string {
		claims := fmt.Sprintf(`{"iss":"https://as.example","sub":"alice","aud":"api","exp":1893456300,"jti":"%d"}`, i)
		signing := enc([]byte(header)) + "." + enc([]byte(claims))
		return signing + "." + enc(ed25519.Sign(priv, []byte(signing)))
	}
	count := func() int {
		n := 0
		v.headers.m.Range(func(any, any) bool { n++; return true })
		return n
	}
	for i := range 3 * maxCachedHeaders {
		// Every header differs (an unknown parameter), every token is valid.
		h := fmt.Sprintf(`{"alg":"EdDSA","typ":"at+jwt","x":%d}`, i)
		if _, err := v.Authenticate(context.Background(), extauthz.Credential{Raw: tok(h, i), Kind: extauthz.KindJWT}); err != nil {
			t.Fatalf("token %d: %v", i, err)
		}
		if n := count(); n > maxCachedHeaders {
			t.Fatalf("header cache holds %d entries, bound %d", n, maxCachedHeaders)
		}
	}
	// A refused header is refused the same way whether cached or not.
	bad := tok(`{"alg":"EdDSA","typ":"JWT"}`, 0)
	for range 2 {
		if _, err := v.Authenticate(context.Background(), extauthz.Credential{Raw: bad, Kind: extauthz.KindJWT}); !errors.Is(err, extauthz.ErrInvalidToken) {
			t.Fatalf("typ JWT accepted or wrong error: %v", err)
		}
	}
}

// settled fills the settings config would give (New has no defaults of its
// own) where o leaves them zero.
func settled(o Options) Options {
	if o.MaxTokenBytes == 0 {
		o.MaxTokenBytes = 8 << 10
	}
	if o.CacheEntries == 0 {
		o.CacheEntries = 1000
	}
	o.Issuers = slices.Clone(o.Issuers)
	for i := range o.Issuers {
		if len(o.Issuers[i].Algorithms) == 0 {
			o.Issuers[i].Algorithms = asymmetricAlgs
		}
		if len(o.Issuers[i].ScopeClaims) == 0 {
			o.Issuers[i].ScopeClaims = []string{"scope", "scp"}
		}
	}
	return o
}

// configMinRefetch is config's default jwks_min_refetch.
const configMinRefetch = 5 * time.Second

// newKeySet builds a key set with config's default settings where o
// leaves them zero.
func newKeySet(t testing.TB, o jwks.Options) *jwks.Set {
	t.Helper()
	if o.RefreshInterval == 0 {
		o.RefreshInterval = 5 * time.Minute
	}
	if o.MinRefetchInterval == 0 {
		o.MinRefetchInterval = configMinRefetch
	}
	if o.Client != nil && o.Client.Timeout == 0 {
		c := *o.Client
		c.Timeout = 5 * time.Second
		o.Client = &c
	}
	s, err := jwks.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A Check reads the clock once (issue 14): the cached path judges expiry at
// the credential's PresentedAt, the request's time, and reads its own clock
// only without one.
func TestCachedPrincipalJudgedAtPresentedAt(t *testing.T) {
	f := setup(t, nil)
	raw := f.is.Sign(t, jwt.MapClaims{"sub": "alice", "aud": "api", "exp": f.clk.Now().Add(time.Minute).Unix()})
	if _, err := f.auth(raw); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		at      time.Time
		wantErr error
	}{
		{name: "no PresentedAt: the verifier's clock, within exp", at: time.Time{}},
		{name: "PresentedAt within exp", at: f.clk.Now().Add(30 * time.Second)},
		{name: "PresentedAt after exp", at: f.clk.Now().Add(2 * time.Minute), wantErr: extauthz.ErrTokenExpired},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.v.Authenticate(context.Background(), extauthz.Credential{Raw: raw, Kind: extauthz.KindJWT, PresentedAt: tc.at})
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
		})
	}
}
