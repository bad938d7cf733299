package extauthz

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

func TestTokenHash(t *testing.T) {
	for _, raw := range []string{"", "a", strings.Repeat("x", 33), strings.Repeat("eyJ.", 400)} {
		sum := sha256.Sum256([]byte(raw))
		if got, want := TokenHash(raw), hex.EncodeToString(sum[:]); got != want {
			t.Errorf("TokenHash(%d bytes) = %s, want %s", len(raw), got, want)
		}
	}
	c := Credential{Raw: "tok"}
	if c.Hash() != TokenHash("tok") || c.Short() != TokenHash("tok")[:12] || ShortHash("tok") != c.Short() {
		t.Fatal("Hash/Short disagree with TokenHash")
	}
	c.Sum = "precomputed-sum-of-sixty-four-hex-digits"
	if c.Hash() != c.Sum {
		t.Fatal("Hash ignores a precomputed Sum")
	}
	if (Credential{}).Short() != "" {
		t.Fatal("no token must log as empty")
	}
}
