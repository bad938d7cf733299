package server

// Benchmarks of the Check path without the network: go test -bench . -benchmem
// ./extauthz/server. CI runs them with -benchtime=1x only, so that they keep
// compiling and stay correct; each one fails on a denial, so a benchmark can
// never measure the cost of a refusal by mistake. The load test against the
// real gRPC server is cmd/tokentailor-load; figures are in docs/performance.md.

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/authztest"
	"github.com/tokentailor/tokentailor/extauthz/cache"
	"github.com/tokentailor/tokentailor/extauthz/config"
	"github.com/tokentailor/tokentailor/extauthz/metrics"
	"github.com/tokentailor/tokentailor/extauthz/pipeline"
	"github.com/tokentailor/tokentailor/extauthz/request"
	"github.com/tokentailor/tokentailor/extauthz/sharedcache"
	"github.com/tokentailor/tokentailor/extauthz/sharedcache/redistest"
	"github.com/tokentailor/tokentailor/extauthz/sharedcache/sharedtest"
)

// benchConfigHead is what every benchmark config starts with: the mint key
// and one issuer of JWTs.
const benchConfigHead = `
listen: {grpc: 127.0.0.1:0}
log: {level: error}
mint:
  issuer: https://tokentailor.bench
  keys: [{file: signing.pem}]
issuers:
  - issuer: {{ISSUER}}
    jwks_url: {{ISSUER}}/jwks.json
    audiences: [api.example.com]
    algorithms: [RS256, ES256, EdDSA]
    required_typ: at+jwt
`

// benchConfig is the sidecar-like config of every benchmark: one issuer for
// JWTs and opaque tokens, one minting route named by Envoy's context
// extensions, as in cmd/tokentailor-load.
const benchConfig = benchConfigHead + `    introspection: {endpoint: {{ISSUER}}/introspect}
    client: {id: tokentailor, secret: {env: TOKENTAILOR_BENCH_SECRET}}
cache: {max_entries: {{CACHE}}}
routes:
  - name: orders-read
    match: {path_prefix: /orders, methods: [GET, HEAD]}
    require: {scopes: [orders:read]}
    upstream:
      audience: orders-api
      scopes: [orders:read]
      copy_claims: {email: "", tenant: ""}
      ttl: 2m
`

// benchEnv is a ready pipeline behind an Authz, with its issuer double.
type benchEnv struct {
	is    *authztest.Issuer
	intro *authztest.Introspection
	authz *Authz
	pipe  *pipeline.Pipeline
	// signer is the mint key, for the crypto-only benchmarks.
	signer crypto.Signer
}

// newBenchEnv builds a pipeline minting with mintAlg ("EdDSA" or "ES256")
// whose caches hold cacheEntries entries each, and waits for the issuer's keys.
func newBenchEnv(b *testing.B, mintAlg string, cacheEntries int) *benchEnv {
	return newBenchEnvShared(b, mintAlg, cacheEntries, nil)
}

// newBenchEnvShared is newBenchEnv with a shared cache (nil: none).
func newBenchEnvShared(b testing.TB, mintAlg string, cacheEntries int, shared *sharedcache.Cache) *benchEnv {
	b.Helper()
	b.Setenv("TOKENTAILOR_BENCH_SECRET", "bench-secret")
	e := &benchEnv{is: authztest.New(b)}
	e.intro = e.is.Introspection(b, authztest.WithClientSecret("tokentailor", "bench-secret"))
	var key any
	switch mintAlg {
	case "EdDSA":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		key, e.signer = k, k
	case "ES256":
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		key, e.signer = k, k
	default:
		b.Fatalf("mint alg %q", mintAlg)
	}
	text := strings.NewReplacer("{{ISSUER}}", e.is.URL(), "{{CACHE}}", strconv.Itoa(cacheEntries)).Replace(benchConfig)
	e.pipe, e.authz = buildBenchAuthz(b, text, key, shared)
	return e
}

// buildBenchAuthz parses cfgText with key written to signing.pem beside it,
// builds its pipeline (with shared, nil: none) behind an Authz and waits
// for the issuer's keys.
func buildBenchAuthz(b testing.TB, cfgText string, key any, shared *sharedcache.Cache) (*pipeline.Pipeline, *Authz) {
	b.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "signing.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		b.Fatal(err)
	}
	cfg, err := config.Parse([]byte(cfgText), dir)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	m := metrics.New(prometheus.NewRegistry())
	p, err := pipeline.Build(ctx, cfg, pipeline.Env{Metrics: m, KeySets: pipeline.NewKeySets(ctx), Shared: shared, EncodeAnswer: encodeAnswer})
	if err != nil {
		b.Fatal(err)
	}
	for deadline := time.Now().Add(60 * time.Second); p.Ready() != nil; {
		if time.Now().After(deadline) {
			b.Fatal("issuer keys not fetched within 60s (slow under valgrind)")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return p, NewAuthz(p, nil, m)
}

// jwt signs an access token for sub with the issuer's alg key.
func (e *benchEnv) jwt(b testing.TB, alg, sub string) string {
	return e.is.Sign(b, jwt.MapClaims{
		"sub": sub, "aud": "api.example.com", "scope": "orders:read", "client_id": "web",
		"email": sub + "@example.com", "tenant": "acme", "exp": time.Now().Add(time.Hour).Unix(),
	}, authztest.WithAlg(alg))
}

// opaque registers an active opaque token for sub and returns it.
func (e *benchEnv) opaque(sub string) string {
	tok := "opq-" + sub + "-0123456789abcdef"
	e.intro.Register(tok, map[string]any{
		"sub": sub, "aud": "api.example.com", "scope": "orders:read", "client_id": "web",
		"token_type": "Bearer", "exp": time.Now().Add(time.Hour).Unix(),
	})
	return tok
}

// benchCheckRequest is the CheckRequest Envoy sends for GET /orders/42,
// with the headers of a typical API call and what Envoy's filter always adds
// (peers, time, stream id, empty metadata contexts): the same as
// cmd/tokentailor-load's.
func benchCheckRequest(token string) *authv3.CheckRequest {
	h := map[string]string{
		":authority": "orders.example.com", ":path": "/orders/42?view=full", ":method": "GET",
		":scheme": "https", "accept": "application/json", "accept-encoding": "gzip, br",
		"user-agent": "bench/1", "x-forwarded-proto": "https", "x-request-id": "3f1b2c4d-9e8a-4c7b-a6d5-000000000001",
		"content-length": "0",
		"authorization":  "Bearer " + token,
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      &authv3.AttributeContext_Peer{Address: socket("10.244.1.17", 43512)},
		Destination: &authv3.AttributeContext_Peer{Address: socket("10.244.2.23", 8080)},
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.New(time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)),
			Http: &authv3.AttributeContext_HttpRequest{
				Id: "11400714819323198485", Method: "GET", Scheme: "https", Host: "orders.example.com",
				Path: "/orders/42?view=full", Protocol: "HTTP/1.1", Headers: h,
			},
		},
		ContextExtensions:    map[string]string{"route": "orders-read"},
		MetadataContext:      &corev3.Metadata{},
		RouteMetadataContext: &corev3.Metadata{},
	}}
}

// check runs one Check and fails the benchmark on anything but an allow.
func (e *benchEnv) check(b testing.TB, req *authv3.CheckRequest) {
	resp, err := e.authz.Check(context.Background(), req)
	if err != nil {
		b.Fatal(err)
	}
	if resp.GetStatus().GetCode() != 0 {
		b.Fatalf("denied: %v", resp.GetDeniedResponse())
	}
}

// BenchmarkCheckWarmJWT: the same token again; validation and minted token
// both come from cache. Target: ≤ 5 µs and ≤ 25 allocs/op.
func BenchmarkCheckWarmJWT(b *testing.B) {
	e := newBenchEnv(b, "EdDSA", 100_000)
	req := benchCheckRequest(e.jwt(b, "ES256", "alice"))
	e.check(b, req)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		e.check(b, req)
	}
}

// BenchmarkCheckWarmJWTParallel is the warm path from every P at once:
// cache shards, metrics and the pipeline pointer under contention.
func BenchmarkCheckWarmJWTParallel(b *testing.B) {
	e := newBenchEnv(b, "EdDSA", 100_000)
	reqs := make([]*authv3.CheckRequest, 64)
	for i := range reqs {
		reqs[i] = benchCheckRequest(e.jwt(b, "ES256", fmt.Sprintf("user-%d", i)))
		e.check(b, reqs[i])
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			resp, err := e.authz.Check(context.Background(), reqs[i%len(reqs)])
			if err != nil || resp.GetStatus().GetCode() != 0 {
				b.Errorf("not allowed: %v %v", err, resp.GetStatus())
				return
			}
		}
	})
}

// BenchmarkCheckWarmOpaque: an opaque token whose introspection answer and
// minted token are cached. Target: within 10 % of warm JWT.
func BenchmarkCheckWarmOpaque(b *testing.B) {
	e := newBenchEnv(b, "EdDSA", 100_000)
	req := benchCheckRequest(e.opaque("alice"))
	e.check(b, req)
	calls := e.intro.Calls()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		e.check(b, req)
	}
	b.StopTimer()
	if n := e.intro.Calls() - calls; n != 0 {
		b.Fatalf("%d introspection calls on the warm path", n)
	}
}

// BenchmarkCheckWarmOpaqueShared is BenchmarkCheckWarmOpaque with a shared
// cache on a real redis-server: the warm path must not touch it, so the
// two should cost the same.
func BenchmarkCheckWarmOpaqueShared(b *testing.B) {
	srv := redistest.Start(b)
	shared := sharedtest.Connect(b, srv.Addr(), 0)
	e := newBenchEnvShared(b, "EdDSA", 100_000, shared)
	req := benchCheckRequest(e.opaque("alice"))
	e.check(b, req)
	calls := e.intro.Calls()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		e.check(b, req)
	}
	b.StopTimer()
	if n := e.intro.Calls() - calls; n != 0 {
		b.Fatalf("%d introspection calls on the warm path", n)
	}
}

// coldCases are the two cold combinations issue 6 sets targets for.
var coldCases = []struct {
	name, in, out string
}{
	{name: "RS256-in-EdDSA-out", in: "RS256", out: "EdDSA"},
	{name: "ES256-in-ES256-out", in: "ES256", out: "ES256"},
}

// fillCaches runs cold Checks (EdDSA tokens, cheap to sign) until the
// caches of the default size have filled and started to evict, so that a
// cold benchmark measures a server in its steady state rather than one whose
// heap is still growing (fresh pages cost more than reused ones).
func (e *benchEnv) fillCaches(b *testing.B) {
	for i := range 2 * config.DefaultMaxEntries {
		e.check(b, benchCheckRequest(e.jwt(b, "EdDSA", "fill-"+strconv.Itoa(i))))
	}
}

// BenchmarkCheckColdJWT: a new token every time, so a signature check, a
// principal and a minted token each time, with the caches at the default
// size and already full. Compare with BenchmarkColdCrypto (target ≤ 1.3 ×
// its cost; BenchmarkColdRatio measures the ratio itself). Tokens are signed
// before the timer starts.
func BenchmarkCheckColdJWT(b *testing.B) {
	for _, c := range coldCases {
		b.Run(c.name, func(b *testing.B) {
			e := newBenchEnv(b, c.out, config.DefaultMaxEntries)
			e.fillCaches(b)
			reqs := make([]*authv3.CheckRequest, b.N)
			for i := range reqs {
				reqs[i] = benchCheckRequest(e.jwt(b, c.in, "cold-"+strconv.Itoa(i)))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				e.check(b, reqs[i])
				reqs[i] = nil
			}
		})
	}
}

// BenchmarkColdCrypto is the cryptography a cold Check cannot avoid, alone:
// SHA-256 and signature verification of the incoming token, and signing a
// minted token of the same size as the real one with the mint key.
func BenchmarkColdCrypto(b *testing.B) {
	for _, c := range coldCases {
		b.Run(c.name, func(b *testing.B) {
			e := newBenchEnv(b, c.out, 100_000)
			cryptoOnce := coldCrypto(b, e, c.in, c.out)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := cryptoOnce(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// coldCrypto returns a function that does, once, the cryptography a cold
// Check cannot avoid: verify an incoming token signed with inAlg, and sign a
// minted token of the real size (one minted through the pipeline) with the
// mint key.
func coldCrypto(b *testing.B, e *benchEnv, inAlg, outAlg string) func() error {
	raw := e.jwt(b, inAlg, "alice")
	verify := verifier(b, e, inAlg, raw)
	out := e.pipe.Decide(context.Background(), mustRequest(b, benchCheckRequest(raw)))
	if out.Err != nil {
		b.Fatal(out.Err)
	}
	mintedInput := signingInput(out.Token.Value)
	sign := mintSigner(b, e.signer, outAlg)
	return func() error {
		if err := verify(); err != nil {
			return err
		}
		return sign(mintedInput)
	}
}

// BenchmarkColdRatio measures issue 6's cold target directly: each
// iteration runs the cryptography alone (as BenchmarkColdCrypto) and then a
// cold Check of a new token, timing each, so that drift in the machine's
// speed falls on both alike. It reports check-ns and crypto-ns per op and
// their ratio, x-crypto (target ≤ 1.3). ns/op is the sum of the two. Each
// request is built just before its Check, as gRPC would have just decoded
// it, and the caches are full, as in a server that has run for a while.
func BenchmarkColdRatio(b *testing.B) {
	for _, c := range coldCases {
		b.Run(c.name, func(b *testing.B) {
			e := newBenchEnv(b, c.out, config.DefaultMaxEntries)
			cryptoOnce := coldCrypto(b, e, c.in, c.out)
			toks := make([]string, b.N)
			for i := range toks {
				toks[i] = e.jwt(b, c.in, "ratio-"+strconv.Itoa(i))
			}
			e.fillCaches(b)
			var cryptoTime, checkTime time.Duration
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				req := benchCheckRequest(strings.Clone(toks[i]))
				t0 := time.Now()
				if err := cryptoOnce(); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				e.check(b, req)
				checkTime += time.Since(t1)
				cryptoTime += t1.Sub(t0)
			}
			b.ReportMetric(float64(checkTime.Nanoseconds())/float64(b.N), "check-ns/op")
			b.ReportMetric(float64(cryptoTime.Nanoseconds())/float64(b.N), "crypto-ns/op")
			b.ReportMetric(float64(checkTime)/float64(cryptoTime), "x-crypto")

		})
	}
}

// signingInput returns header.payload of a compact JWS.
func signingInput(tok string) []byte {
	i := strings.LastIndexByte(tok, '.')
	return []byte(tok[:i])
}

// verifier returns a function that checks raw's signature with the
// issuer's public key, the way any JWS library must at the least.
func verifier(b *testing.B, e *benchEnv, alg, raw string) func() error {
	k, ok := e.is.Key(alg)
	if !ok {
		b.Fatalf("no %s key", alg)
	}
	input := signingInput(raw)
	sig, err := base64.RawURLEncoding.DecodeString(raw[len(input)+1:])
	if err != nil {
		b.Fatal(err)
	}
	switch pub := k.Private.(crypto.Signer).Public().(type) {
	case *rsa.PublicKey:
		return func() error {
			sum := sha256.Sum256(input)
			return rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig)
		}
	case *ecdsa.PublicKey:
		return func() error {
			sum := sha256.Sum256(input)
			if !ecdsa.VerifyASN1(pub, sum[:], rawToASN1(b, sig)) {
				return fmt.Errorf("bad ES256 signature")
			}
			return nil
		}
	}
	b.Fatalf("unexpected key type for %s", alg)
	return nil
}

// rawToASN1 turns a JWS r||s ECDSA signature into ASN.1, once, outside the
// timed loop.
func rawToASN1(b *testing.B, sig []byte) []byte {
	r, s := sig[:len(sig)/2], sig[len(sig)/2:]
	enc := func(x []byte) []byte {
		for len(x) > 1 && x[0] == 0 {
			x = x[1:]
		}
		if x[0]&0x80 != 0 {
			x = append([]byte{0}, x...)
		}
		return append([]byte{0x02, byte(len(x))}, x...)
	}
	body := append(enc(r), enc(s)...)
	if len(body) > 127 {
		b.Fatal("signature too long")
	}
	return append([]byte{0x30, byte(len(body))}, body...)
}

// mintSigner returns a function that signs a minted token's input with the
// mint key, as the minter must.
func mintSigner(b *testing.B, s crypto.Signer, alg string) func([]byte) error {
	switch alg {
	case "EdDSA":
		return func(in []byte) error { _, err := s.Sign(rand.Reader, in, crypto.Hash(0)); return err }
	case "ES256":
		return func(in []byte) error {
			sum := sha256.Sum256(in)
			_, err := s.Sign(rand.Reader, sum[:], crypto.SHA256)
			return err
		}
	}
	b.Fatalf("mint alg %q", alg)
	return nil
}

func mustRequest(b *testing.B, req *authv3.CheckRequest) *extauthz.Request {
	r, err := request.FromCheck(req)
	if err != nil {
		b.Fatal(err)
	}
	return &r
}

// BenchmarkStage measures each stage of a warm Check alone.
func BenchmarkStage(b *testing.B) {
	e := newBenchEnv(b, "EdDSA", 100_000)
	raw := e.jwt(b, "ES256", "alice")
	req := benchCheckRequest(raw)
	e.check(b, req)
	r := mustRequest(b, req)
	route, err := e.pipe.Policy.Select(r)
	if err != nil {
		b.Fatal(err)
	}
	cred, err := e.pipe.Credential.Extract(r)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	principal, err := e.pipe.Authenticate(ctx, route, cred)
	if err != nil {
		b.Fatal(err)
	}
	grant, err := route.Authorize(principal, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	tok, err := e.pipe.Minter.Token(ctx, principal, grant)
	if err != nil {
		b.Fatal(err)
	}
	stages := []struct {
		name string
		run  func() error
	}{
		{name: "request-view", run: func() error { _, err := request.FromCheck(req); return err }},
		{name: "policy-select", run: func() error { _, err := e.pipe.Policy.Select(r); return err }},
		{name: "credential-extract", run: func() error { _, err := e.pipe.Credential.Extract(r); return err }},
		{name: "token-hash", run: func() error { _ = extauthz.TokenHash(cred.Raw); return nil }},
		{name: "authenticate-cached", run: func() error { _, err := e.pipe.Authenticate(ctx, route, cred); return err }},
		{name: "policy-authorize", run: func() error { _, err := route.Authorize(principal, time.Now()); return err }},
		{name: "mint-cached", run: func() error { _, err := e.pipe.Minter.Token(ctx, principal, grant); return err }},
		{name: "response-allow", run: func() error { _ = e.pipe.Response.Allow(grant, tok, cred, r.Headers); return nil }},
		{name: "decide", run: func() error { return e.pipe.Decide(ctx, r).Err }},
	}
	for _, s := range stages {
		b.Run(s.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := s.run(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCacheLookup is the bounded cache's Get alone, from one goroutine
// and from every P (go-cache holds one RWMutex per shard).
func BenchmarkCacheLookup(b *testing.B) {
	c := cache.New[int]("bench", 100_000, metrics.New(prometheus.NewRegistry()))
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = extauthz.TokenHash(strconv.Itoa(i))
		c.Set(keys[i], i, time.Hour)
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			if _, ok := c.Get(keys[i%len(keys)]); !ok {
				b.Fatal("miss")
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				i++
				if _, ok := c.Get(keys[i%len(keys)]); !ok {
					b.Error("miss")
					return
				}
			}
		})
	})
}

// benchForwardAuth is the subrequest nginx's auth_request sends for the same
// GET /orders/42 as benchCheckRequest (docs/proxies/nginx.conf): the
// client's headers plus the X-Original-* description of the request.
func benchForwardAuth(token string) http.Header {
	return http.Header{
		"Accept": {"application/json"}, "Accept-Encoding": {"gzip, br"}, "User-Agent": {"bench/1"},
		"X-Request-Id": {"3f1b2c4d-1"}, "Authorization": {"Bearer " + token},
		"X-Original-Method": {"GET"}, "X-Original-Uri": {"/orders/42?view=full"},
		"X-Forwarded-Host": {"orders.example.com"}, "X-Forwarded-Proto": {"https"},
	}
}

// BenchmarkHTTPvsGRPCWarm compares the HTTP authorization listener's warm
// check with the gRPC one, timed in turns in one loop so that drift in the
// machine's speed falls on both alike: "handler" calls both handlers in
// process (ServeHTTP on a recorder, Check on a decoded request), "loopback"
// goes through real servers on 127.0.0.1 with keep-alive clients. It reports
// http-ns/op, grpc-ns/op and x-grpc, their ratio.
func BenchmarkHTTPvsGRPCWarm(b *testing.B) {
	e := newBenchEnv(b, "EdDSA", 100_000)
	tok := e.jwt(b, "ES256", "alice")
	creq := benchCheckRequest(tok)
	hdr := benchForwardAuth(tok)
	h := NewHTTPAuthz(e.authz, []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")})

	b.Run("handler", func(b *testing.B) {
		// As net/http hands it over; ServeHTTP only reads it.
		r := httptest.NewRequest(http.MethodGet, "/forward-auth", nil)
		r.RemoteAddr = "127.0.0.1:40000"
		r.Header = hdr
		w := &discardWriter{h: http.Header{}}
		serve := func() {
			clear(w.h)
			h.ServeHTTP(w, r)
			if w.code != http.StatusOK {
				b.Fatalf("HTTP denied: %d", w.code)
			}
		}
		ratio(b, serve, func() { e.check(b, creq) })
	})

	b.Run("loopback", func(b *testing.B) {
		hl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		hs := newHTTPServer(h)
		go func() { _ = hs.Serve(hl) }()
		b.Cleanup(func() { _ = hs.Close() })
		gl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		gs := grpc.NewServer()
		authv3.RegisterAuthorizationServer(gs, e.authz)
		go func() { _ = gs.Serve(gl) }()
		b.Cleanup(gs.Stop)
		conn, err := grpc.NewClient(gl.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { conn.Close() })
		gc := authv3.NewAuthorizationClient(conn)
		hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
		b.Cleanup(hc.CloseIdleConnections)
		u := "http://" + hl.Addr().String() + "/forward-auth"
		viaHTTP := func() {
			req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, u, nil)
			req.Header = hdr.Clone()
			resp, err := hc.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("HTTP denied: %d", resp.StatusCode)
			}
		}
		viaGRPC := func() {
			resp, err := gc.Check(context.Background(), creq)
			if err != nil || resp.GetStatus().GetCode() != 0 {
				b.Fatalf("gRPC: %v %v", err, resp.GetDeniedResponse())
			}
		}
		ratio(b, viaHTTP, viaGRPC)
	})
}

// ratio runs viaHTTP and viaGRPC in turns (each warmed once) and reports
// their times per op and x-grpc = HTTP time / gRPC time.
func ratio(b *testing.B, viaHTTP, viaGRPC func()) {
	viaHTTP()
	viaGRPC()
	var ht, gt time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		viaHTTP()
		t1 := time.Now()
		viaGRPC()
		gt += time.Since(t1)
		ht += t1.Sub(t0)
	}
	b.ReportMetric(float64(ht.Nanoseconds())/float64(b.N), "http-ns/op")
	b.ReportMetric(float64(gt.Nanoseconds())/float64(b.N), "grpc-ns/op")
	b.ReportMetric(float64(ht)/float64(gt), "x-grpc")
}

// discardWriter is the cheapest http.ResponseWriter: the handler's own cost,
// not a recorder's, is measured.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }

// serveUnix serves what register registers on a gRPC server with
// tokentailor's options on a unix socket of its own, and returns a client
// of it; both stop when tb ends.
func serveUnix(tb testing.TB, register func(*grpc.Server)) authv3.AuthorizationClient {
	tb.Helper()
	ln, err := net.Listen("unix", filepath.Join(tb.TempDir(), "grpc.sock"))
	if err != nil {
		tb.Fatal(err)
	}
	s := grpc.NewServer(GRPCOptions()...)
	register(s)
	go func() { _ = s.Serve(ln) }()
	tb.Cleanup(s.Stop)
	conn, err := grpc.NewClient("unix://"+ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return authv3.NewAuthorizationClient(conn)
}

// BenchmarkWarmVsFloorLoopback measures what a warm JWT Check costs the
// process beyond the load tool's floor (an ext_authz server answering a
// pre-built OK response), each through its own real gRPC server with
// tokentailor's options over a unix socket, driven by 16 concurrent callers:
// batches of Checks to the floor and to tokentailor in turns, the process's
// CPU time (getrusage) read around each, so that the machine's drift falls on
// both alike. Clients and servers share the process, so the difference
// extra-cpu-ns/op is what tokentailor's side of a Check costs beyond the
// floor's, gRPC and the transport included on both sides.
func BenchmarkWarmVsFloorLoopback(b *testing.B) {
	e := newBenchEnv(b, "EdDSA", 100_000)
	creq := benchCheckRequest(e.jwt(b, "ES256", "alice"))
	floor := serveUnix(b, func(s *grpc.Server) { authv3.RegisterAuthorizationServer(s, floorAnswer{}) })
	warm := serveUnix(b, func(s *grpc.Server) { s.RegisterService(&checkService, e.authz) })
	const callers, batch = 16, 2000
	run := func(c authv3.AuthorizationClient) time.Duration {
		before := processCPU(b)
		var wg sync.WaitGroup
		for range callers {
			wg.Go(func() {
				for range batch / callers {
					resp, err := c.Check(context.Background(), creq)
					if err != nil || resp.GetStatus().GetCode() != 0 {
						b.Errorf("Check: %v %v", err, resp.GetDeniedResponse())
						return
					}
				}
			})
		}
		wg.Wait()
		return processCPU(b) - before
	}
	run(floor)
	run(warm)
	var ft, wt time.Duration
	n := 0
	b.ResetTimer()
	for b.Loop() {
		ft += run(floor)
		wt += run(warm)
		n += batch
	}
	b.ReportMetric(float64(ft.Nanoseconds())/float64(n), "floor-cpu-ns/op")
	b.ReportMetric(float64(wt.Nanoseconds())/float64(n), "warm-cpu-ns/op")
	b.ReportMetric(float64((wt-ft).Nanoseconds())/float64(n), "extra-cpu-ns/op")
}

// processCPU returns the user and system CPU time the process used so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// floorAnswer is the load tool's floor: the same pre-built OK answer with
// one header for every Check.
type floorAnswer struct {
	authv3.UnimplementedAuthorizationServer
}

var floorOK = &authv3.CheckResponse{
	Status: &rpcstatus.Status{},
	HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
		Headers: []*corev3.HeaderValueOption{{
			Header:       &corev3.HeaderValue{Key: "x-floor", Value: "ok"},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		}},
	}},
}

func (floorAnswer) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return floorOK, nil
}
