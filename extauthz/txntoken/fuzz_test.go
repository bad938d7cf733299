package txntoken

import (
	"context"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// FuzzVerify feeds arbitrary Txn-Token header values to the verifier: it
// must never panic, and what it accepts must carry every required claim.
func FuzzVerify(f *testing.F) {
	k := newKey(f, "EdDSA")
	m := newMinter(f, k, nil)
	good, err := m.Mint(context.Background(), Input{Subject: "alice", Scopes: []string{"orders:read"}, RequestID: "r1", ClientIP: "203.0.113.7"})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good.Value)
	f.Add("eyJhbGciOiJub25lIiwidHlwIjoidHhudG9rZW4rand0In0.e30.")
	f.Add("a.b.c")
	f.Add("")
	v, err := NewVerifier(VerifierOptions{TrustDomain: trustDomain, Keys: KeysOf(k), Now: fixedNow})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		tok, err := v.Verify(context.Background(), raw)
		if err != nil {
			return
		}
		if tok.Txn == "" || tok.Subject == "" || len(tok.Scopes) == 0 || tok.Workload == "" || tok.ExpiresAt.IsZero() {
			t.Fatalf("accepted a token without a required claim: %+v", tok)
		}
		if _, _, err := jwt.NewParser().ParseUnverified(raw, jwt.MapClaims{}); err != nil {
			t.Fatalf("accepted what is not a JWT: %v", err)
		}
	})
}
