package mint

import (
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	jose "github.com/go-jose/go-jose/v4"
)

// FuzzParseKey feeds arbitrary bytes (seeded with every PEM fixture in
// testdata/ and the corpus in testdata/fuzz/FuzzParseKey) to ParseKey: it
// must never panic, must refuse with ErrBadKey, and any key it accepts must
// be one of the three kinds with a JWK that go-jose reads back and a kid that
// is its thumbprint.
func FuzzParseKey(f *testing.F) {
	files, err := filepath.Glob("testdata/*.pem")
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ParseKey(data, "")
		if err != nil {
			if !errors.Is(err, ErrBadKey) {
				t.Fatalf("error does not wrap ErrBadKey: %v", err)
			}
			return
		}
		switch k.Alg {
		case AlgEdDSA, AlgES256, AlgRS256:
		default:
			t.Fatalf("accepted key with alg %q", k.Alg)
		}
		var jwk jose.JSONWebKey
		if err := jwk.UnmarshalJSON(k.JWK()); err != nil {
			t.Fatalf("JWK %s unreadable: %v", k.JWK(), err)
		}
		tp, err := jwk.Thumbprint(crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		if k.ID != base64.RawURLEncoding.EncodeToString(tp) {
			t.Fatalf("kid %s is not the thumbprint", k.ID)
		}
	})
}

// FuzzAppendJSONString checks the hand-written string encoder that carries
// claim values copied from incoming tokens: its output is always valid JSON
// and decodes to the input, with each invalid UTF-8 byte turned into U+FFFD.
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", `q"uote\`, "ctl\x00\x01\x1f\x7f", "é✓\u2028\u2029", "bad\xff\xfe", "\xe2\x82", "</script>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := appendJSONString(nil, s)
		if !json.Valid(out) {
			t.Fatalf("invalid JSON %q for %q", out, s)
		}
		var back string
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatal(err)
		}
		var want strings.Builder
		for i := 0; i < len(s); {
			r, size := utf8.DecodeRuneInString(s[i:])
			want.WriteRune(r) // RuneError for each invalid byte
			i += size
		}
		if back != want.String() {
			t.Fatalf("round trip %q → %q, want %q", s, back, want.String())
		}
	})
}
