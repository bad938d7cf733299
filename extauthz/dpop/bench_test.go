package dpop

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"
)

// BenchmarkVerify measures a complete proof verification (every check of
// §4.3, thumbprint, replay cache); BenchmarkSignature measures the proof's
// own signature check alone. Their ratio is the cost of DPoP beyond its
// cryptography (see the README's DPoP section for a run).
func BenchmarkVerify(b *testing.B) {
	for _, alg := range []string{"ES256", "EdDSA"} {
		b.Run(alg, func(b *testing.B) {
			k := newTestKey(b, alg)
			proofs := make([]string, b.N)
			for i := range proofs {
				hdr, claims := goodProof(k)
				claims["jti"] = fmt.Sprintf("jti-%d", i)
				proofs[i] = k.sign(b, alg, hdr, claims)
			}
			v, err := New(Options{Now: fixedNow, Replay: NewMemoryReplay(b.N+1, fixedNow)})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := v.Verify(ctx, Request{Proofs: proofs[i : i+1], Method: testMethod, URI: testURI, AccessToken: testToken, JKT: k.jkt}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkSignature(b *testing.B) {
	for _, alg := range []string{"ES256", "EdDSA"} {
		b.Run(alg, func(b *testing.B) {
			k := newTestKey(b, alg)
			hdr, claims := goodProof(k)
			proof := k.sign(b, alg, hdr, claims)
			i := strings.LastIndexByte(proof, '.')
			input := []byte(proof[:i])
			sig, err := base64.RawURLEncoding.DecodeString(proof[i+1:])
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for n := 0; n < b.N; n++ {
				var ok bool
				switch pub := k.signer.Public().(type) {
				case *ecdsa.PublicKey:
					h := sha256.Sum256(input)
					ok = ecdsa.Verify(pub, h[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
				case ed25519.PublicKey:
					ok = ed25519.Verify(pub, input, sig)
				}
				if !ok {
					b.Fatal("signature does not verify")
				}
			}
		})
	}
}

// BenchmarkVerifyRatio times a full Verify and the proof's bare signature
// check in turns within one loop, so that this VM's drift hits both alike,
// and reports verify/signature as "ratio" (plus both in ns).
func BenchmarkVerifyRatio(b *testing.B) {
	for _, alg := range []string{"ES256", "EdDSA"} {
		b.Run(alg, func(b *testing.B) {
			k := newTestKey(b, alg)
			proofs := make([]string, b.N)
			for i := range proofs {
				hdr, claims := goodProof(k)
				claims["jti"] = fmt.Sprintf("jti-%d", i)
				proofs[i] = k.sign(b, alg, hdr, claims)
			}
			v, err := New(Options{Now: fixedNow, Replay: NewMemoryReplay(b.N+1, fixedNow)})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			var full, sig time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				p := proofs[i]
				t0 := time.Now()
				if _, err := v.Verify(ctx, Request{Proofs: proofs[i : i+1], Method: testMethod, URI: testURI, AccessToken: testToken, JKT: k.jkt}); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if !verifySignature(k, p) {
					b.Fatal("signature does not verify")
				}
				full += t1.Sub(t0)
				sig += time.Since(t1)
			}
			b.ReportMetric(float64(full)/float64(sig), "ratio")
			b.ReportMetric(float64(full.Nanoseconds())/float64(b.N), "verify-ns")
			b.ReportMetric(float64(sig.Nanoseconds())/float64(b.N), "signature-ns")
		})
	}
}

// verifySignature checks a proof's signature alone with the client's key.
func verifySignature(k testKey, proof string) bool {
	i := strings.LastIndexByte(proof, '.')
	input := []byte(proof[:i])
	sig, err := base64.RawURLEncoding.DecodeString(proof[i+1:])
	if err != nil {
		return false
	}
	switch pub := k.signer.Public().(type) {
	case *ecdsa.PublicKey:
		h := sha256.Sum256(input)
		return ecdsa.Verify(pub, h[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
	case ed25519.PublicKey:
		return ed25519.Verify(pub, input, sig)
	}
	return false
}
