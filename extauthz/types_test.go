package extauthz

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"unsafe"
)

func TestTokenHash(t *testing.T) {
	for _, raw := range []string{"", "a", strings.Repeat("x", 33), strings.Repeat("eyJ.", 400)} {
		sum := sha256.Sum256([]byte(raw))
		if got, want := TokenHash(raw), hex.EncodeToString(sum[:]); got != want {
			t.Errorf("TokenHash(%d bytes) = %s, want %s", len(raw), got, want)
		}
	}
	c := Credential{Raw: "tok"}
	if c.TokenHash() != TokenHash("tok") || c.ShortTokenHash() != TokenHash("tok")[:12] || ShortTokenHash("tok") != c.ShortTokenHash() {
		t.Fatal("Credential.TokenHash/ShortTokenHash disagree with TokenHash")
	}
	c.CachedTokenHash = "precomputed-sum-of-sixty-four-hex-digits"
	if c.TokenHash() != c.CachedTokenHash {
		t.Fatal("TokenHash ignores CachedTokenHash")
	}
	if (Credential{}).ShortTokenHash() != "" {
		t.Fatal("no token must log as empty")
	}
}

func TestTokenHeaderValue(t *testing.T) {
	prefixed := "Bearer abc.def.ghi"
	tests := []struct {
		name   string
		tok    Token
		prefix string
		want   string
		shared bool // the answer is Prefixed itself, not a copy
	}{
		{name: "prefixed matches", tok: Token{Value: prefixed[7:], Prefixed: prefixed}, prefix: "Bearer ", want: prefixed, shared: true},
		{name: "no prefixed", tok: Token{Value: "abc.def.ghi"}, prefix: "Bearer ", want: prefixed},
		{name: "other prefix", tok: Token{Value: prefixed[7:], Prefixed: prefixed}, prefix: "DPoP ", want: "DPoP abc.def.ghi"},
		{name: "empty prefix", tok: Token{Value: prefixed[7:], Prefixed: prefixed}, prefix: "", want: "abc.def.ghi"},
		{name: "prefixed of another token", tok: Token{Value: "xyz.def.ghi", Prefixed: prefixed}, prefix: "Bearer ", want: "Bearer xyz.def.ghi"},
	}
	for _, tc := range tests {
		got := tc.tok.HeaderValue(tc.prefix)
		if got != tc.want {
			t.Errorf("%s: HeaderValue = %q, want %q", tc.name, got, tc.want)
		}
		if shared := len(got) > 0 && unsafe.StringData(got) == unsafe.StringData(tc.tok.Prefixed); shared != tc.shared {
			t.Errorf("%s: shared = %v, want %v", tc.name, shared, tc.shared)
		}
	}
}
