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

// TestMemoKeepWith: what a stage keeps beside a principal's kept grant is
// given back for that grant, slot and owner only, to copies of the cached
// principal holding the Scopes and Claims the grant was derived from; a
// fresh principal, another grant or another route's kept grant keep nothing.
func TestMemoKeepWith(t *testing.T) {
	route, otherRoute, minter, builder := new(int), new(int), new(int), new(int)
	cached := &Principal{Scopes: []string{"a"}, Claims: map[string]any{"k": "v"}, Memo: new(Memo)}
	g := &Grant{Route: "r"}
	cached.KeepGrant(route, g)
	cached.KeepWith(g, MemoToken, minter, "token")

	copyOf := *cached // a cache hit hands out a copy sharing the Memo
	if v, ok := copyOf.KeptWith(g, MemoToken, minter); !ok || v != "token" {
		t.Fatalf("KeptWith = %v, %v; want the kept token", v, ok)
	}
	otherScopes, otherClaims, noMemo := copyOf, copyOf, copyOf
	otherScopes.Scopes = []string{"a"} // equal, but not the slice the grant came from
	otherClaims.Claims = map[string]any{"k": "v"}
	noMemo.Memo = nil
	misses := []struct {
		name  string
		p     *Principal
		g     *Grant
		slot  MemoSlot
		owner any
	}{
		{"other owner", &copyOf, g, MemoToken, builder},
		{"other slot", &copyOf, g, MemoAnswer, minter},
		{"other grant", &copyOf, &Grant{Route: "r"}, MemoToken, minter},
		{"nil grant", &copyOf, nil, MemoToken, minter},
		{"other scopes", &otherScopes, g, MemoToken, minter},
		{"other claims", &otherClaims, g, MemoToken, minter},
		{"no memo", &noMemo, g, MemoToken, minter},
	}
	for _, m := range misses {
		if v, ok := m.p.KeptWith(m.g, m.slot, m.owner); ok {
			t.Errorf("%s: KeptWith = %v, want nothing", m.name, v)
		}
	}

	// Keeping beside a grant that is not the kept one, or for a fresh
	// principal, keeps nothing.
	fresh := copyOf
	fresh.Fresh = true
	fresh.KeepWith(g, MemoAnswer, builder, "fresh answer")
	copyOf.KeepWith(&Grant{}, MemoAnswer, builder, "stray answer")
	if v, ok := copyOf.KeptWith(g, MemoAnswer, builder); ok {
		t.Fatalf("kept %v", v)
	}
	// Another route's grant replaces the kept one, and what was kept with it.
	g2 := &Grant{Route: "r2"}
	copyOf.KeepGrant(otherRoute, g2)
	if _, ok := copyOf.KeptWith(g, MemoToken, minter); ok {
		t.Fatal("the token kept with the replaced grant is still given back")
	}
	if _, ok := copyOf.KeptWith(g2, MemoToken, minter); ok {
		t.Fatal("the new grant came with the old grant's token")
	}
}
