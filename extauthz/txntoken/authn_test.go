package txntoken

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/tokentailor/tokentailor/extauthz"
)

// TestAuthenticatorPrincipal: a verified Txn-Token becomes a principal
// whose claims give the Token back for a replacement.
func TestAuthenticatorPrincipal(t *testing.T) {
	k := newKey(t, "EdDSA")
	raw := signRaw(t, k, nil, goodClaims())
	a := &Authenticator{Verifier: newVerifier(t, KeysOf(k))}
	cred := extauthz.Credential{Raw: raw, Kind: extauthz.KindJWT, Header: HeaderName}
	p, err := a.Authenticate(context.Background(), cred)
	if err != nil {
		t.Fatal(err)
	}
	if p.Subject != "alice" || !slices.Equal(p.Scopes, []string{"orders:read", "orders:write"}) || !slices.Equal(p.Audience, []string{trustDomain}) ||
		!p.ExpiresAt.Equal(testNow.Add(60e9)) || !IsTxnToken(p) {
		t.Errorf("principal = %+v", p)
	}
	if !p.Fresh {
		t.Error("a Txn-Token's principal is not Fresh: no cache knows it, and nothing may keep what is derived from it")
	}
	back, err := FromPrincipal(p)
	if err != nil || back.Txn != "97053963-771d-49cc-a4e3-20aad399c312" || back.Workload != "gateway.shop.example" || back.Raw != raw {
		t.Errorf("FromPrincipal = %+v, %v", back, err)
	}
	if _, err := a.Authenticate(context.Background(), extauthz.Credential{Raw: "a.b.c", Header: HeaderName}); !errors.Is(err, extauthz.ErrInvalidToken) {
		t.Errorf("garbage: %v", err)
	}
	access := &extauthz.Principal{Subject: "alice", Claims: map[string]any{"txn": "x", "req_wl": "y"}, Credential: extauthz.Credential{Header: "authorization"}}
	if IsTxnToken(access) {
		t.Error("an access token with txn and req_wl claims is not a Txn-Token: it did not come from the Txn-Token header")
	}
	if _, err := FromPrincipal(access); !errors.Is(err, extauthz.ErrInternal) {
		t.Errorf("FromPrincipal(access token) = %v", err)
	}
}

// stubKeys answers with a fixed key or error.
type stubKeys struct {
	k   crypto.PublicKey
	err error
}

func (s stubKeys) Key(context.Context, string, string) (crypto.PublicKey, error) { return s.k, s.err }

// TestKeysOrder: the first source that has the key wins; an unavailable
// source makes a miss a 503 rather than a 401.
func TestKeysOrder(t *testing.T) {
	miss := stubKeys{err: fmt.Errorf("%w: no", extauthz.ErrUnknownKey)}
	down := stubKeys{err: fmt.Errorf("%w: down", extauthz.ErrKeysUnavailable)}
	hit := stubKeys{k: "key"}
	tests := []struct {
		name    string
		keys    Keys
		wantKey crypto.PublicKey
		wantErr error
	}{
		{name: "own keys first", keys: Keys{hit, down}, wantKey: "key"},
		{name: "then the TTS's", keys: Keys{miss, hit}, wantKey: "key"},
		{name: "nobody has it", keys: Keys{miss, miss}, wantErr: extauthz.ErrUnknownKey},
		{name: "the TTS's JWKS is down", keys: Keys{miss, down}, wantErr: extauthz.ErrKeysUnavailable},
		{name: "no source", keys: Keys{}, wantErr: extauthz.ErrUnknownKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := tt.keys.Key(context.Background(), "kid", "ES256")
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) || k != tt.wantKey {
				t.Fatalf("Key = %v, %v; want %v, %v", k, err, tt.wantKey, tt.wantErr)
			}
		})
	}
}
