package jwtverify

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-json-experiment/json"

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

// fuzzVerifier requires typ at+jwt; see fuzzVerifierTyped.
func fuzzVerifier(t testing.TB) (*Verifier, ed25519.PrivateKey) {
	return fuzzVerifierTyped(t, "at+jwt")
}

// fuzzVerifierTyped trusts one issuer whose RequiredType is requiredTyp
// (empty: the default rules of Token kinds).
func fuzzVerifierTyped(t testing.TB, requiredTyp string) (*Verifier, ed25519.PrivateKey) {
	seed := make([]byte, ed25519.SeedSize) // a fixed key keeps the corpus meaningful
	priv := ed25519.NewKeyFromSeed(seed)
	v, err := New(Options{
		Issuers: []Issuer{{
			Issuer: fuzzIssuer, Audiences: []string{"api"}, RequiredType: requiredTyp,
			Algorithms: []string{"EdDSA", "HS256"}, HMACSecret: hmacSecret,
			Keys: fixedKey{pub: priv.Public().(ed25519.PublicKey)},
		}},
		Now: func() time.Time { return fuzzNow },
	})
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
	if sub, _ := p.Claims["sub"].(string); sub == "" || p.Subject != sub {
		t.Fatalf("accepted sub %v", p.Claims["sub"])
	}
	if err := checkKind(p.Claims); err != nil {
		t.Fatalf("accepted a token of another kind: %v", err)
	}
}

// acceptedType reports whether a verifier without RequiredType may accept
// a token with this header: its typ must be one an access token carries.
func acceptedType(header []byte) bool {
	var h jwsHeader
	if err := json.Unmarshal(header, &h); err != nil {
		return false
	}
	return accessTypes[normType(h.Typ)]
}

// FuzzHeaderClaims signs arbitrary header and claims JSON with the trusted
// key, so the fuzzer explores everything after the signature check: alg,
// typ, crit, kid handling, token kinds and every claim's type. Each token
// goes to a verifier requiring typ at+jwt and to one with the default typ
// rules (Token kinds).
func FuzzHeaderClaims(f *testing.F) {
	f.Add([]byte(`{"alg":"EdDSA","typ":"at+jwt","kid":"k1"}`), []byte(`{"iss":"https://as.example","sub":"a","aud":"api","exp":1893456300}`))
	f.Add([]byte(`{"alg":"none","typ":"at+jwt"}`), []byte(`{"iss":"https://as.example","sub":"a","aud":"api","exp":1893456300}`))
	f.Add([]byte(`{"alg":"EdDSA","typ":"at+jwt","crit":["exp"]}`), []byte(`{"iss":"https://as.example","sub":"a","aud":["api"],"exp":1893456300}`))
	f.Add([]byte(`{"alg":"EdDSA","typ":"dpop+jwt"}`), []byte(`{"iss":"https://as.example","sub":"a","aud":"api","exp":1893456300,"htm":"GET"}`))
	strict, priv := fuzzVerifier(f)
	plain, _ := fuzzVerifierTyped(f, "")
	f.Fuzz(func(t *testing.T, header, claims []byte) {
		enc := base64.RawURLEncoding.EncodeToString
		signing := enc(header) + "." + enc(claims)
		raw := signing + "." + enc(ed25519.Sign(priv, []byte(signing)))
		cred := extauthz.Credential{Raw: raw, Kind: extauthz.KindJWT}
		p, err := strict.Authenticate(context.Background(), cred)
		checkOutcome(t, raw, p, err)
		if err == nil && !strings.Contains(string(header), "EdDSA") {
			t.Fatalf("accepted a header without alg EdDSA: %s", header)
		}
		if err == nil && !strings.Contains(strings.ToLower(string(header)), "at+jwt") {
			t.Fatalf("accepted a header without typ at+jwt: %s", header)
		}
		p, err = plain.Authenticate(context.Background(), cred)
		checkOutcome(t, raw, p, err)
		if err == nil && !acceptedType(header) {
			t.Fatalf("accepted typ of another kind: %s", header)
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
		enc([]byte(`{"iss":"https://as.example","sub":"alice","aud":"api","exp":1893456300,"scp":["a"]}`))
	raw := signing + "." + enc(ed25519.Sign(priv, []byte(signing)))
	p, err := v.Authenticate(context.Background(), extauthz.Credential{Raw: raw, Kind: extauthz.KindJWT})
	if err != nil || len(p.Scopes) != 1 {
		t.Fatalf("seed token: %v", err)
	}
}

// TestKindSeeds keeps the token-kind seeds of FuzzHeaderClaims meaningful:
// the verifier with the default typ rules accepts the access tokens among
// them and refuses every other kind.
func TestKindSeeds(t *testing.T) {
	tests := []struct {
		seed       string
		wantAccept bool
	}{
		{seed: "valid", wantAccept: true},
		{seed: "typ-missing", wantAccept: true},
		{seed: "typ-jwt", wantAccept: true},
		{seed: "typ-application", wantAccept: true},
		{seed: "typ-application-jwt", wantAccept: true},
		{seed: "typ-dpop"},
		{seed: "typ-token-introspection"},
		{seed: "typ-secevent"},
		{seed: "typ-logout"},
		{seed: "typ-other-plus-jwt"},
		{seed: "typ-jose"},
		{seed: "claims-logout-untyped"},
		{seed: "claims-id-token"},
		{seed: "claims-keycloak-id"},
		{seed: "sub-missing"},
		{seed: "sub-empty"},
	}
	v, priv := fuzzVerifierTyped(t, "")
	enc := base64.RawURLEncoding.EncodeToString
	for _, tt := range tests {
		t.Run(tt.seed, func(t *testing.T) {
			header, claims := readSeed(t, filepath.Join("testdata", "fuzz", "FuzzHeaderClaims", tt.seed))
			signing := enc(header) + "." + enc(claims)
			raw := signing + "." + enc(ed25519.Sign(priv, []byte(signing)))
			_, err := v.Authenticate(context.Background(), extauthz.Credential{Raw: raw, Kind: extauthz.KindJWT})
			if tt.wantAccept && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tt.wantAccept && !errors.Is(err, extauthz.ErrInvalidToken) {
				t.Fatalf("err = %v, want ErrInvalidToken", err)
			}
		})
	}
}

// readSeed reads a two-[]byte corpus file of FuzzHeaderClaims.
func readSeed(t *testing.T, path string) (header, claims []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var vals [][]byte
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n")[1:] {
		s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(line, "[]byte("), ")"))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		vals = append(vals, []byte(s))
	}
	if len(vals) != 2 {
		t.Fatalf("%s: %d values, want 2", path, len(vals))
	}
	return vals[0], vals[1]
}
