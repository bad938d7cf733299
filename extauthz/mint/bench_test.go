package mint

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/tokentailor/tokentailor/extauthz"
)

// benchPrincipal looks like what jwtverify hands over for a typical access
// token (~800 bytes raw).
func benchPrincipal(now time.Time) *extauthz.Principal {
	raw := make([]byte, 800)
	for i := range raw {
		raw[i] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"[i%64]
	}
	return &extauthz.Principal{
		Issuer:     incomingIss,
		Subject:    "248289761001",
		ClientID:   "s6BhdRkqt3",
		Scopes:     []string{"orders:read", "orders:write", "profile", "email"},
		Claims:     map[string]any{"sub": "248289761001", "email": "jane@example.com"},
		ExpiresAt:  now.Add(100 * 365 * 24 * time.Hour),
		Credential: extauthz.Credential{Raw: string(raw), Kind: extauthz.KindJWT, Header: "authorization"},
	}
}

func benchGrant() *extauthz.Grant {
	return &extauthz.Grant{
		Route:    "orders",
		Mode:     extauthz.ModeMint,
		Audience: "orders-api",
		Scopes:   []string{"orders:read", "orders:write"},
		Claims:   map[string]any{"tenant": "acme", "email": "jane@example.com"},
		TTL:      5 * time.Minute,
	}
}

// BenchmarkMint is a cold mint through Token: a cache miss, signing, and
// storing the new token. The clock jumps past the token's renewal point every
// iteration so no cached token is ever reused.
func BenchmarkMint(b *testing.B) {
	for _, alg := range []string{AlgEdDSA, AlgES256, AlgRS256} {
		b.Run(alg, func(b *testing.B) {
			now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
			m, err := New(Options{CacheEntries: 100, Issuer: testIssuer, Keys: []*Key{testKey(b, alg)}, Now: func() time.Time { return now }})
			if err != nil {
				b.Fatal(err)
			}
			p, g := benchPrincipal(now), benchGrant()
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				now = now.Add(time.Hour)
				if _, err := m.Token(ctx, p, g); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkMintCached is the warm path: the same incoming token and grant
// again, answered from the cache.
func BenchmarkMintCached(b *testing.B) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	m, err := New(Options{CacheEntries: 100, Issuer: testIssuer, Keys: []*Key{testKey(b, AlgEdDSA)}, Now: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	p, g := benchPrincipal(now), benchGrant()
	ctx := context.Background()
	first, err := m.Token(ctx, p, g)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		tok, err := m.Token(ctx, p, g)
		if err != nil || tok.Value != first.Value {
			b.Fatal("cache miss", err)
		}
	}
}

// BenchmarkSignOnly is the bare cryptography of a mint (hash and sign a
// typical signing input), the yardstick for BenchmarkMint's overhead.
func BenchmarkSignOnly(b *testing.B) {
	input := make([]byte, 520)
	for _, alg := range []string{AlgEdDSA, AlgES256, AlgRS256} {
		b.Run(alg, func(b *testing.B) {
			k := testKey(b, alg)
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if k.hash == 0 {
					_, err = k.signer.Sign(nil, input, crypto.Hash(0))
				} else {
					d := sha256.Sum256(input)
					_, err = k.signer.Sign(rand.Reader, d[:], k.hash)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
