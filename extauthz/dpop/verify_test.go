package dpop

import (
	"context"
	"errors"
	"maps"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tokentailor/tokentailor/extauthz"
)

const (
	testToken  = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln"
	testMethod = "GET"
	testURI    = "https://api.example.com/orders/42"
)

var testNow = time.Unix(1_800_000_000, 0)

func fixedNow() time.Time { return testNow }

// goodProof returns header and claims of a proof that passes every check
// for testMethod, testURI and testToken.
func goodProof(k testKey) (hdr, claims map[string]any) {
	hdr = map[string]any{"typ": "dpop+jwt", "alg": k.alg, "jwk": k.jwk}
	claims = map[string]any{
		"jti": "4f1c2f6a-9d0b-4c1e-8f7a-2b3c4d5e6f70",
		"htm": testMethod,
		"htu": testURI,
		"iat": testNow.Unix(),
		"ath": TokenHash(testToken),
	}
	return hdr, claims
}

func newVerifier(t *testing.T, opts Options) *Verifier {
	t.Helper()
	if opts.Now == nil {
		opts.Now = fixedNow
	}
	v, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestVerifyEveryRule has one failing case per check of RFC 9449 §4.3 (and
// the size bound, the replay cache and the key binding), beside passing
// proofs of each algorithm family.
func TestVerifyEveryRule(t *testing.T) {
	es := newTestKey(t, "ES256")
	other := newTestKey(t, "ES256")
	ed := newTestKey(t, "EdDSA")
	rs := newTestKey(t, "RS256")
	ps := keyFrom(t, "PS256", rs.signer)
	p384 := newTestKey(t, "ES384")
	small := newTestKey(t, "RS256-1024")

	type mutate func(hdr, claims map[string]any)
	tests := []struct {
		name    string
		key     testKey
		signAs  string // alg used to sign; default key.alg
		mutate  mutate
		proofs  func(p string) []string
		req     func(r *Request)
		opts    Options
		wantErr error
	}{
		{name: "ES256 passes", key: es},
		{name: "EdDSA passes", key: ed},
		{name: "RS256 passes", key: rs},
		{name: "PS256 passes", key: ps},
		{name: "typ in upper case with application/ passes", key: es, mutate: func(h, _ map[string]any) { h["typ"] = "application/DPoP+JWT" }},
		{name: "htu differing only by normalisation passes", key: es, mutate: func(_, c map[string]any) {
			c["htu"] = "HTTPS://API.Example.COM:443/orders/%34%32?q=1#f"
		}},
		{name: "fractional iat passes", key: es, mutate: func(_, c map[string]any) { c["iat"] = float64(testNow.Unix()) + 0.5 }},

		// check 1
		{name: "no DPoP header", key: es, proofs: func(string) []string { return nil }, wantErr: ErrProofMissing},
		{name: "empty DPoP header", key: es, proofs: func(string) []string { return []string{""} }, wantErr: ErrProofMissing},
		{name: "two DPoP headers", key: es, proofs: func(p string) []string { return []string{p, p} }, wantErr: ErrProofMultiple},
		{name: "two proofs joined by Envoy", key: es, proofs: func(p string) []string { return []string{p + "," + p} }, wantErr: ErrProofMalformed},
		// check 2
		{name: "not a JWS", key: es, proofs: func(string) []string { return []string{"a.b"} }, wantErr: ErrProofMalformed},
		{name: "header not base64url", key: es, proofs: func(p string) []string { return []string{"!" + p} }, wantErr: ErrProofMalformed},
		{name: "larger than the bound", key: es, opts: Options{MaxProofBytes: 64}, wantErr: ErrProofMalformed},
		{name: "iat a string", key: es, mutate: func(_, c map[string]any) { c["iat"] = "1800000000" }, wantErr: ErrProofMalformed},
		{name: "jti a number", key: es, mutate: func(_, c map[string]any) { c["jti"] = 7 }, wantErr: ErrProofMalformed},
		{name: "unknown crit header", key: es, mutate: func(h, _ map[string]any) { h["crit"] = []string{"x"}; h["x"] = 1 }, wantErr: ErrProofMalformed},
		// check 3
		{name: "no jti", key: es, mutate: func(_, c map[string]any) { delete(c, "jti") }, wantErr: ErrProofMissingClaim},
		{name: "empty jti", key: es, mutate: func(_, c map[string]any) { c["jti"] = "" }, wantErr: ErrProofMissingClaim},
		{name: "no htm", key: es, mutate: func(_, c map[string]any) { delete(c, "htm") }, wantErr: ErrProofMissingClaim},
		{name: "no htu", key: es, mutate: func(_, c map[string]any) { delete(c, "htu") }, wantErr: ErrProofMissingClaim},
		{name: "no iat", key: es, mutate: func(_, c map[string]any) { delete(c, "iat") }, wantErr: ErrProofMissingClaim},
		{name: "no ath with an access token", key: es, mutate: func(_, c map[string]any) { delete(c, "ath") }, wantErr: ErrProofMissingClaim},
		// check 4
		{name: "typ JWT", key: es, mutate: func(h, _ map[string]any) { h["typ"] = "JWT" }, wantErr: ErrProofType},
		{name: "no typ", key: es, mutate: func(h, _ map[string]any) { delete(h, "typ") }, wantErr: ErrProofType},
		// check 5
		{name: "alg none", key: es, signAs: "none", mutate: func(h, _ map[string]any) { h["alg"] = "none" }, wantErr: ErrProofAlgorithm},
		{name: "alg HS256", key: es, signAs: "HS256", mutate: func(h, _ map[string]any) { h["alg"] = "HS256" }, wantErr: ErrProofAlgorithm},
		{name: "alg outside the allowlist", key: ed, opts: Options{Algorithms: []string{"ES256"}}, wantErr: ErrProofAlgorithm},
		// check 6
		{name: "signed by another key", key: es, mutate: func(h, _ map[string]any) { h["jwk"] = other.jwk }, wantErr: ErrProofSignature},
		{name: "P-384 key under ES256", key: p384, signAs: "ES384", mutate: func(h, _ map[string]any) { h["alg"] = "ES256" }, wantErr: ErrProofSignature},
		{name: "payload changed after signing", key: es, proofs: func(p string) []string {
			parts := strings.Split(p, ".")
			parts[1] = b64([]byte(`{"jti":"x","htm":"GET","htu":"` + testURI + `","iat":1800000000,"ath":"` + TokenHash(testToken) + `"}`))
			return []string{strings.Join(parts, ".")}
		}, wantErr: ErrProofSignature},
		// check 7 and the key itself
		{name: "no jwk", key: es, mutate: func(h, _ map[string]any) { delete(h, "jwk") }, wantErr: ErrProofKey},
		{name: "jwk with the private key", key: es, mutate: func(h, _ map[string]any) { h["jwk"] = es.privateJWK(t) }, wantErr: ErrProofKey},
		{name: "jwk symmetric", key: es, mutate: func(h, _ map[string]any) { h["jwk"] = map[string]any{"kty": "oct", "k": "c2VjcmV0"} }, wantErr: ErrProofKey},
		{name: "jwk not an object", key: es, mutate: func(h, _ map[string]any) { h["jwk"] = "key" }, wantErr: ErrProofKey},
		{name: "RSA key of 1024 bits", key: small, wantErr: ErrProofKey},
		// check 8
		{name: "htm POST for GET", key: es, mutate: func(_, c map[string]any) { c["htm"] = "POST" }, wantErr: ErrProofMethod},
		{name: "htm in lower case", key: es, mutate: func(_, c map[string]any) { c["htm"] = "get" }, wantErr: ErrProofMethod},
		// check 9
		{name: "htu another path", key: es, mutate: func(_, c map[string]any) { c["htu"] = "https://api.example.com/orders/43" }, wantErr: ErrProofURI},
		{name: "htu another host", key: es, mutate: func(_, c map[string]any) { c["htu"] = "https://evil.example.com/orders/42" }, wantErr: ErrProofURI},
		{name: "htu http for https", key: es, mutate: func(_, c map[string]any) { c["htu"] = "http://api.example.com/orders/42" }, wantErr: ErrProofURI},
		{name: "htu relative", key: es, mutate: func(_, c map[string]any) { c["htu"] = "/orders/42" }, wantErr: ErrProofURI},
		// check 10 (server nonces)
		{name: "nonce required, none sent", key: es, opts: Options{Nonces: testNonces(t)}, wantErr: ErrUseNonce},
		{name: "nonce not issued here", key: es, opts: Options{Nonces: testNonces(t)}, mutate: func(_, c map[string]any) { c["nonce"] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" }, wantErr: ErrUseNonce},
		{name: "nonce expired", key: es, opts: Options{Nonces: testNonces(t)}, mutate: func(_, c map[string]any) {
			old, _ := NewNonces([][]byte{nonceKey}, time.Minute, func() time.Time { return testNow.Add(-time.Hour) })
			c["nonce"] = old.Issue()
		}, wantErr: ErrUseNonce},
		{name: "valid nonce passes", key: es, opts: Options{Nonces: testNonces(t)}, mutate: func(_, c map[string]any) { c["nonce"] = testNonces(t).Issue() }},
		// check 11
		{name: "iat too old", key: es, mutate: func(_, c map[string]any) { c["iat"] = testNow.Add(-DefaultMaxAge - time.Second).Unix() }, wantErr: ErrProofTime},
		{name: "iat in the future", key: es, mutate: func(_, c map[string]any) { c["iat"] = testNow.Add(DefaultLeeway + time.Second).Unix() }, wantErr: ErrProofTime},
		{name: "iat negative", key: es, mutate: func(_, c map[string]any) { c["iat"] = -1 }, wantErr: ErrProofTime},
		// check 12
		{name: "ath of another token", key: es, mutate: func(_, c map[string]any) { c["ath"] = TokenHash("other") }, wantErr: ErrProofTokenHash},
		{name: "key not the token's cnf.jkt", key: es, req: func(r *Request) { r.JKT = other.jkt }, wantErr: ErrKeyBinding},
		{name: "token not bound", key: es, req: func(r *Request) { r.JKT = "" }, wantErr: ErrKeyBinding},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr, claims := goodProof(tt.key)
			if tt.mutate != nil {
				tt.mutate(hdr, claims)
			}
			alg := tt.signAs
			if alg == "" {
				alg = tt.key.alg
			}
			proof := tt.key.sign(t, alg, hdr, claims)
			proofs := []string{proof}
			if tt.proofs != nil {
				proofs = tt.proofs(proof)
			}
			r := Request{Proofs: proofs, Method: testMethod, URI: testURI, AccessToken: testToken, JKT: tt.key.jkt}
			if tt.req != nil {
				tt.req(&r)
			}
			v := newVerifier(t, tt.opts)
			got, err := v.Verify(context.Background(), r)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Verify: %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if !errors.Is(err, extauthz.ErrInvalidToken) {
					t.Errorf("%v does not wrap ErrInvalidToken: an unaware renderer would not deny with 401", err)
				}
				if strings.Contains(err.Error(), testToken) || strings.Contains(err.Error(), proof) {
					t.Errorf("error %q contains the token or the proof", err)
				}
				return
			}
			if got.JKT != tt.key.jkt || !got.IssuedAt.Truncate(time.Second).Equal(testNow) {
				t.Errorf("Proof = %+v, want jkt %s iat %v", got, tt.key.jkt, testNow)
			}
		})
	}
}

// TestVerifyRefusesReplay: the same proof twice is refused, and a proof
// with the same jti for another URI is not a replay (§11.1 keys by URI).
func TestVerifyRefusesReplay(t *testing.T) {
	k := newTestKey(t, "ES256")
	v := newVerifier(t, Options{})
	hdr, claims := goodProof(k)
	proof := k.sign(t, k.alg, hdr, claims)
	r := Request{Proofs: []string{proof}, Method: testMethod, URI: testURI, AccessToken: testToken, JKT: k.jkt}
	if _, err := v.Verify(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), r); !errors.Is(err, ErrProofReplay) {
		t.Fatalf("second use: %v, want ErrProofReplay", err)
	}
	c2 := maps.Clone(claims)
	c2["htu"] = "https://api.example.com/orders/7"
	r.Proofs = []string{k.sign(t, k.alg, hdr, c2)}
	r.URI = "https://api.example.com/orders/7"
	if _, err := v.Verify(context.Background(), r); err != nil {
		t.Fatalf("same jti, other URI: %v", err)
	}
}

// TestVerifyReplayStoreFailureDenies: a replay cache that cannot record
// the proof makes it refused (fail closed) with a 503 reason.
func TestVerifyReplayStoreFailureDenies(t *testing.T) {
	k := newTestKey(t, "ES256")
	v := newVerifier(t, Options{Replay: NewMemoryReplay(1, fixedNow)})
	for i, jti := range []string{"a", "b"} {
		hdr, claims := goodProof(k)
		claims["jti"] = jti
		_, err := v.Verify(context.Background(), Request{Proofs: []string{k.sign(t, k.alg, hdr, claims)}, Method: testMethod, URI: testURI, AccessToken: testToken, JKT: k.jkt})
		if i == 0 && err != nil {
			t.Fatal(err)
		}
		if i == 1 && (!errors.Is(err, ErrReplayStore) || !errors.Is(err, extauthz.ErrInternal)) {
			t.Fatalf("full cache: %v, want ErrReplayStore (ErrInternal)", err)
		}
	}
}

// TestVerifyRFCExample verifies the proof printed in RFC 9449 §7.1, made by
// another implementation, at its own iat, with the access token and cnf.jkt
// of the RFC's examples.
func TestVerifyRFCExample(t *testing.T) {
	proof, err := os.ReadFile("testdata/rfc9449-7.1-proof.jwt")
	if err != nil {
		t.Fatal(err)
	}
	v := newVerifier(t, Options{Now: func() time.Time { return time.Unix(1562262618, 0) }})
	got, err := v.Verify(context.Background(), Request{
		Proofs:      []string{string(proof)},
		Method:      "GET",
		URI:         "https://resource.example.org/protectedresource",
		AccessToken: "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU",
		JKT:         "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I",
	})
	if err != nil {
		t.Fatalf("RFC 9449 §7.1 proof: %v", err)
	}
	if got.Algorithm != "ES256" {
		t.Errorf("alg %q", got.Algorithm)
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	tests := []struct {
		name string
		opts Options
	}{
		{name: "HS256 in the allowlist", opts: Options{Algorithms: []string{"ES256", "HS256"}}},
		{name: "none in the allowlist", opts: Options{Algorithms: []string{"none"}}},
		{name: "empty allowlist", opts: Options{Algorithms: []string{}}},
		{name: "negative leeway", opts: Options{Leeway: -time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.opts); err == nil {
				t.Fatal("New accepted it")
			}
		})
	}
}

var nonceKey = []byte("0123456789abcdef0123456789abcdef")

func testNonces(t *testing.T) *Nonces {
	t.Helper()
	n, err := NewNonces([][]byte{nonceKey}, time.Minute, fixedNow)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
