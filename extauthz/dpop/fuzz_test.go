package dpop

import (
	"context"
	"os"
	"testing"
)

// FuzzVerify feeds arbitrary DPoP header values to the verifier: it must
// never panic, and whatever it accepts must be bound to the expected key.
func FuzzVerify(f *testing.F) {
	k := newTestKey(f, "ES256")
	hdr, claims := goodProof(k)
	f.Add(k.sign(f, k.alg, hdr, claims))
	if rfc, err := os.ReadFile("testdata/rfc9449-7.1-proof.jwt"); err == nil {
		f.Add(string(rfc))
	}
	hdr["jwk"] = k.privateJWK(f)
	f.Add(k.sign(f, k.alg, hdr, claims))
	f.Add("eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6Im5vbmUifQ.e30.")
	f.Add("a.b.c")
	f.Add("..")
	f.Add("")
	v, err := New(Options{Now: fixedNow, Replay: NewMemoryReplay(1<<20, fixedNow)})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, proof string) {
		got, err := v.Verify(context.Background(), Request{Proofs: []string{proof}, Method: testMethod, URI: testURI, AccessToken: testToken, JKT: k.jkt})
		if err == nil && got.JKT != k.jkt {
			t.Fatalf("accepted a proof of key %s", got.JKT)
		}
	})
}

// FuzzNormalizeURI: normalising never panics and is idempotent, so htu and
// the request URI meet in one form.
func FuzzNormalizeURI(f *testing.F) {
	for _, s := range []string{testURI, "HTTPS://A.b:443/%7e/./x/../y?q#f", "http://[::1]:80", "https://h/%2f%2F", "https://h/a%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := NormalizeURI(s)
		if err != nil {
			return
		}
		again, err := NormalizeURI(n)
		if err != nil || again != n {
			t.Fatalf("NormalizeURI(%q) = %q, then %q, %v", s, n, again, err)
		}
	})
}
