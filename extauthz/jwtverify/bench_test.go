package jwtverify

import (
	"context"
	"fmt"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokentailor/tokentailor/extauthz"
)

func BenchmarkAuthenticateWarm(b *testing.B) {
	f := setupB(b)
	cred := extauthz.Credential{Raw: f.is.Sign(b, jwt.MapClaims{"sub": "alice", "aud": "api", "scope": "a b"}), Kind: extauthz.KindJWT, Header: "authorization"}
	ctx := context.Background()
	if _, err := f.v.Authenticate(ctx, cred); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := f.v.Authenticate(ctx, cred); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAuthenticateCold(b *testing.B) {
	for _, alg := range []string{"RS256", "ES256", "EdDSA"} {
		b.Run(alg, func(b *testing.B) {
			f := setupB(b)
			ctx := context.Background()
			toks := make([]string, 256)
			for i := range toks {
				toks[i] = f.is.Sign(b, jwt.MapClaims{"sub": "alice", "aud": "api", "jti": fmt.Sprint(i)}, authztestAlg(alg))
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				// A fresh verifier per round of tokens keeps every check cold.
				if i%len(toks) == 0 {
					b.StopTimer()
					f.v, _ = New(Options{Issuers: []Issuer{f.cfg}, Now: f.clk.Now})
					b.StartTimer()
				}
				if _, err := f.v.Authenticate(ctx, extauthz.Credential{Raw: toks[i%len(toks)], Kind: extauthz.KindJWT}); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
