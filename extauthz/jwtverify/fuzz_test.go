package jwtverify

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokentailor/tokentailor/extauthz"
)

// fixedKey is a KeySource holding one Ed25519 key under kid "k1".
type fixedKey struct{ pub ed25519.PublicKey }

func (f fixedKey) Key(_ context.Context, kid, alg string) (crypto.PublicKey, error) {
	if alg != "EdDSA" || (kid != "" && kid != "k1") {
		return nil, extauthz.ErrUnknownKey
	}
	return f.pub, nil
}

var fuzzNow = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

const fuzzIssuer = "https://as.example"

func fuzzVerifier(t testing.TB) (*Verifier, ed25519.PrivateKey) {
	seed := make([]byte, ed25519.SeedSize) // a fixed key keeps the corpus meaningful
	priv := ed25519.NewKeyFromSeed(seed)
	v, err := New(settled(Options{
		Issuers: []Issuer{{
			Issuer: fuzzIssuer, Audiences: []string{"api"}, RequiredType: "at+jwt",
			Algorithms: []string{"EdDSA", "HS256"}, HMACSecret: hmacSecret,
			Keys: fixedKey{pub: priv.Public().(ed25519.PublicKey)},
		}},
		Now: func() time.Time { return fuzzNow },
	}))
	if err != nil {
		t.Fatal(err)
	}
	return v, priv
}

var sentinels = []error{
	extauthz.ErrInvalidToken, extauthz.ErrTokenExpired, extauthz.ErrTokenNotYetValid,
	extauthz.ErrUnknownIssuer, extauthz.ErrWrongAudience, extauthz.ErrUnknownKey, extauthz.ErrKeysUnavailable,
}

func checkOutcome(t *testing.T, raw string, p *extauthz.Principal, err error) {
	t.Helper()
	if err != nil {
		if p != nil {
			t.Fatal("principal with an error")
		}
		ok := false
		for _, s := range sentinels {
			ok = ok || errors.Is(err, s)
		}
		if !ok {
			t.Fatalf("error wraps no sentinel: %v", err)
		}
		if len(raw) > 16 && strings.Contains(err.Error(), raw) {
			t.Fatal("error quotes the token")
		}
		return
	}
	if p.Issuer != fuzzIssuer || p.Claims["iss"] != fuzzIssuer {
		t.Fatalf("accepted iss %v", p.Claims["iss"])
	}
	if !p.ExpiresAt.After(fuzzNow.Add(-time.Minute)) {
		t.Fatalf("accepted exp %v", p.ExpiresAt)
	}
	found := false
	for _, a := range p.Audience {
		found = found || a == "api"
	}
	if !found {
		t.Fatalf("accepted aud %v", p.Audience)
	}
}

// FuzzHeaderClaims signs arbitrary header and claims JSON with the trusted
// key, so the fuzzer explores everything after the signature check: alg,
// typ, crit, kid handling and every claim's type.
func FuzzHeaderClaims(f *testing.F) {
	f.Add([]byte(`{"alg":"EdDSA","typ":"at+jwt","kid":"k1"}`), []byte(`{"iss":"https://as.example","aud":"api","exp":1893456300}`))
	f.Add([]byte(`{"alg":"none","typ":"at+jwt"}`), []byte(`{"iss":"https://as.example","aud":"api","exp":1893456300}`))
	f.Add([]byte(`{"alg":"EdDSA","typ":"at+jwt","crit":["exp"]}`), []byte(`{"iss":"https://as.example","aud":["api"],"exp":1893456300}`))
	v, priv := fuzzVerifier(f)
	f.Fuzz(func(t *testing.T, header, claims []byte) {
		enc := base64.RawURLEncoding.EncodeToString
		signing := enc(header) + "." + enc(claims)
		raw := signing + "." + enc(ed25519.Sign(priv, []byte(signing)))
		p, err := v.Authenticate(context.Background(), extauthz.Credential{Raw: raw, Kind: extauthz.KindJWT})
		checkOutcome(t, raw, p, err)
		if err == nil && !strings.Contains(string(header), "EdDSA") {
			t.Fatalf("accepted a header without alg EdDSA: %s", header)
		}
	})
}

// FuzzAuthenticate feeds arbitrary strings as tokens.
func FuzzAuthenticate(f *testing.F) {
	f.Add("eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwczovL2FzLmV4YW1wbGUifQ.")
	f.Add("a.b.c.d.e")
	f.Add("....")
	v, _ := fuzzVerifier(f)
	f.Fuzz(func(t *testing.T, raw string) {
		p, err := v.Authenticate(context.Background(), extauthz.Credential{Raw: raw, Kind: extauthz.KindJWT})
		checkOutcome(t, raw, p, err)
	})
}

// TestFuzzCorpusPresent keeps the seed corpus from silently disappearing.
func TestFuzzCorpusPresent(t *testing.T) {
	for _, target := range []string{"FuzzHeaderClaims", "FuzzAuthenticate"} {
		entries, err := os.ReadDir(filepath.Join("testdata", "fuzz", target))
		if err != nil || len(entries) == 0 {
			t.Errorf("no seed corpus for %s: %v", target, err)
		}
	}
}

// TestFuzzSeedAccepted proves the fuzz setup can accept a token at all, so
// FuzzHeaderClaims explores past the signature.
func TestFuzzSeedAccepted(t *testing.T) {
	v, priv := fuzzVerifier(t)
	enc := base64.RawURLEncoding.EncodeToString
	signing := enc([]byte(`{"alg":"EdDSA","typ":"at+jwt","kid":"k1"}`)) + "." +
		enc([]byte(`{"iss":"https://as.example","aud":"api","exp":1893456300,"scp":["a"]}`))
	raw := signing + "." + enc(ed25519.Sign(priv, []byte(signing)))
	p, err := v.Authenticate(context.Background(), extauthz.Credential{Raw: raw, Kind: extauthz.KindJWT})
	if err != nil || len(p.Scopes) != 1 {
		t.Fatalf("seed token: %v", err)
	}
}
