package dpop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// testKey is a client's DPoP key.
type testKey struct {
	alg    string
	signer crypto.Signer
	jwk    map[string]any // public JWK members
	jkt    string
}

func newTestKey(t testing.TB, alg string) testKey {
	t.Helper()
	var s crypto.Signer
	var err error
	switch alg {
	case "ES256":
		s, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ES384":
		s, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "EdDSA":
		_, s, err = ed25519.GenerateKey(rand.Reader)
	case "RS256", "PS256":
		s, err = rsa.GenerateKey(rand.Reader, 2048)
	case "RS256-1024":
		s, err = rsa.GenerateKey(rand.Reader, 1024)
		alg = "RS256"
	default:
		t.Fatalf("no test key for %s", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return keyFrom(t, alg, s)
}

func keyFrom(t testing.TB, alg string, s crypto.Signer) testKey {
	t.Helper()
	pub := jose.JSONWebKey{Key: s.Public()}
	b, err := pub.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{alg: alg, signer: s, jwk: m, jkt: base64.RawURLEncoding.EncodeToString(tp)}
}

// sign makes a compact JWS with the given header and claims, signed by k
// with alg (which may differ from k.alg to build bad proofs).
func (k testKey) sign(t testing.TB, alg string, hdr, claims map[string]any) string {
	t.Helper()
	hb, err := json.Marshal(hdr)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	input := b64(hb) + "." + b64(cb)
	return input + "." + b64(rawSign(t, k.signer, alg, []byte(input)))
}

func rawSign(t testing.TB, s crypto.Signer, alg string, msg []byte) []byte {
	t.Helper()
	switch alg {
	case "EdDSA":
		return ed25519.Sign(s.(ed25519.PrivateKey), msg)
	case "ES256", "ES384":
		k := s.(*ecdsa.PrivateKey)
		var d []byte
		size := 32
		if alg == "ES256" {
			h := sha256.Sum256(msg)
			d = h[:]
		} else {
			h := sha512.Sum384(msg)
			d = h[:]
			size = 48
		}
		r, ss, err := ecdsa.Sign(rand.Reader, k, d)
		if err != nil {
			t.Fatal(err)
		}
		out := make([]byte, 2*size)
		r.FillBytes(out[:size])
		ss.FillBytes(out[size:])
		return out
	case "RS256":
		h := sha256.Sum256(msg)
		sig, err := rsa.SignPKCS1v15(rand.Reader, s.(*rsa.PrivateKey), crypto.SHA256, h[:])
		if err != nil {
			t.Fatal(err)
		}
		return sig
	case "PS256":
		h := sha256.Sum256(msg)
		sig, err := rsa.SignPSS(rand.Reader, s.(*rsa.PrivateKey), crypto.SHA256, h[:], nil)
		if err != nil {
			t.Fatal(err)
		}
		return sig
	case "HS256", "none":
		return []byte("not-a-signature")
	}
	t.Fatalf("cannot sign %s", alg)
	return nil
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// privateJWK returns k's JWK with its private members included.
func (k testKey) privateJWK(t testing.TB) map[string]any {
	t.Helper()
	b, err := (&jose.JSONWebKey{Key: k.signer}).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}
