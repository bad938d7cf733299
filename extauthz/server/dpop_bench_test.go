package server

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/tokentailor/tokentailor/extauthz/authztest"
)

// dpopBenchConfig is benchConfig's minting route twice: orders-read takes
// Bearer tokens, orders-dpop only DPoP-bound tokens with a proof.
const dpopBenchConfig = benchConfigHead + `dpop:
  algorithms: [ES256, EdDSA]
  replay_entries: 4000000
routes:
  - name: orders-read
    require: {scopes: [orders:read]}
    upstream: {audience: orders-api, scopes: [orders:read], copy_claims: {email: "", tenant: ""}, ttl: 2m}
  - name: orders-dpop
    require: {scopes: [orders:read]}
    sender_constraint: required
    upstream: {audience: orders-api, scopes: [orders:read], copy_claims: {email: "", tenant: ""}, ttl: 2m}
`

// dpopBenchHTU is the htu of benchCheckRequest's request (no query).
const dpopBenchHTU = "https://orders.example.com/orders/42"

// newDPoPBenchAuthz builds dpopBenchConfig's pipeline behind an Authz.
func newDPoPBenchAuthz(b *testing.B, is *authztest.Issuer) *Authz {
	b.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	_, a := buildBenchAuthz(b, strings.ReplaceAll(dpopBenchConfig, "{{ISSUER}}", is.URL()), k, nil)
	return a
}

// benchProofKey is a DPoP client key: go-jose signs its proofs (not the
// code under test), and verify checks one proof's bare signature.
type benchProofKey struct {
	signer jose.Signer
	jkt    string
	verify func(input, sig []byte) bool
}

func newBenchProofKey(b *testing.B, alg string) benchProofKey {
	b.Helper()
	var priv, pub any
	var verify func(input, sig []byte) bool
	switch alg {
	case "ES256":
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		priv, pub = k, k.Public()
		verify = func(input, sig []byte) bool {
			h := sha256.Sum256(input)
			return len(sig) == 64 && ecdsa.Verify(&k.PublicKey, h[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
		}
	case "EdDSA":
		p, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		priv, pub = k, p
		verify = func(input, sig []byte) bool { return ed25519.Verify(p, input, sig) }
	default:
		b.Fatalf("proof alg %q", alg)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: priv}, (&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt"))
	if err != nil {
		b.Fatal(err)
	}
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		b.Fatal(err)
	}
	return benchProofKey{signer: s, jkt: base64.RawURLEncoding.EncodeToString(tp), verify: verify}
}

// proofs makes n fresh proofs (distinct jti) for GET dpopBenchHTU bound to token.
func (k benchProofKey) proofs(b *testing.B, n int, token string) []string {
	b.Helper()
	ath := sha256.Sum256([]byte(token))
	out := make([]string, n)
	for i := range out {
		body, _ := json.Marshal(map[string]any{"jti": fmt.Sprintf("bench-%d", i), "htm": "GET", "htu": dpopBenchHTU,
			"iat": time.Now().Unix(), "ath": base64.RawURLEncoding.EncodeToString(ath[:])})
		jws, err := k.signer.Sign(body)
		if err != nil {
			b.Fatal(err)
		}
		if out[i], err = jws.CompactSerialize(); err != nil {
			b.Fatal(err)
		}
	}
	return out
}

// splitSig returns a compact JWS's signing input and signature.
func splitSig(b *testing.B, jws string) ([]byte, []byte) {
	i := strings.LastIndexByte(jws, '.')
	sig, err := base64.RawURLEncoding.DecodeString(jws[i+1:])
	if err != nil {
		b.Fatal(err)
	}
	return []byte(jws[:i]), sig
}

// BenchmarkCheckWarmDPoPRatio: a warm Check of a DPoP-bound token with a
// fresh proof per request (RFC 9449: a proof is single-use, so its check
// cannot be cached; the token's validation and the minted token are), timed
// in turns with a warm Bearer Check of the same kind of token and with the
// proof's bare signature verification, in one loop so that this shared
// VM's drift hits all three alike. Reports x-bearer (DPoP Check / Bearer
// Check) and x-signature (DPoP Check / the proof's signature alone), plus
// each in ns.
func BenchmarkCheckWarmDPoPRatio(b *testing.B) {
	for _, alg := range []string{"ES256", "EdDSA"} {
		b.Run(alg, func(b *testing.B) {
			is := authztest.New(b)
			a := newDPoPBenchAuthz(b, is)
			key := newBenchProofKey(b, alg)
			claims := func(sub string, cnf bool) jwt.MapClaims {
				c := jwt.MapClaims{"sub": sub, "aud": "api.example.com", "scope": "orders:read", "client_id": "web",
					"email": sub + "@example.com", "tenant": "acme", "exp": time.Now().Add(time.Hour).Unix()}
				if cnf {
					c["cnf"] = map[string]any{"jkt": key.jkt}
				}
				return c
			}
			bound := is.Sign(b, claims("alice", true), authztest.WithAlg("ES256"), authztest.WithTyp("at+jwt"))
			plain := is.Sign(b, claims("bob", false), authztest.WithAlg("ES256"), authztest.WithTyp("at+jwt"))
			proofs := key.proofs(b, b.N+1, bound)

			bearerReq := benchCheckRequest(plain)
			dpopReq := func(proof string) *authv3.CheckRequest {
				r := benchCheckRequest(bound)
				h := r.Attributes.Request.Http.Headers
				h["authorization"], h["dpop"] = "DPoP "+bound, proof
				r.Attributes.ContextExtensions["route"] = "orders-dpop"
				return r
			}
			reqs := make([]*authv3.CheckRequest, len(proofs))
			for i, p := range proofs {
				reqs[i] = dpopReq(p)
			}
			e := &benchEnv{authz: a}
			e.check(b, bearerReq) // warm: validation and minted token cached
			e.check(b, reqs[b.N]) // the same for the bound token (its proof is spent here)

			var dpopT, bearerT, sigT time.Duration
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				input, sig := splitSig(b, proofs[i])
				t0 := time.Now()
				e.check(b, reqs[i])
				t1 := time.Now()
				e.check(b, bearerReq)
				t2 := time.Now()
				if !key.verify(input, sig) {
					b.Fatal("proof signature does not verify")
				}
				t3 := time.Now()
				dpopT += t1.Sub(t0)
				bearerT += t2.Sub(t1)
				sigT += t3.Sub(t2)
			}
			n := float64(b.N)
			b.ReportMetric(float64(dpopT.Nanoseconds())/n, "dpop-ns")
			b.ReportMetric(float64(bearerT.Nanoseconds())/n, "bearer-ns")
			b.ReportMetric(float64(sigT.Nanoseconds())/n, "signature-ns")
			b.ReportMetric(float64(dpopT)/float64(bearerT), "x-bearer")
			b.ReportMetric(float64(dpopT)/float64(sigT), "x-signature")
		})
	}
}
