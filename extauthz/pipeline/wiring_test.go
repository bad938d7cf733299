package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/authztest"
	"github.com/tokentailor/tokentailor/extauthz/config"
	"github.com/tokentailor/tokentailor/extauthz/credential"
	"github.com/tokentailor/tokentailor/extauthz/discovery"
	"github.com/tokentailor/tokentailor/extauthz/exchange"
	"github.com/tokentailor/tokentailor/extauthz/introspect"
	"github.com/tokentailor/tokentailor/extauthz/jwks"
	"github.com/tokentailor/tokentailor/extauthz/jwtverify"
	"github.com/tokentailor/tokentailor/extauthz/sharedcache"
	"github.com/tokentailor/tokentailor/extauthz/sharedcache/redistest"
	"github.com/tokentailor/tokentailor/extauthz/txntoken"
	"github.com/tokentailor/tokentailor/extauthz/upstream"
)

// buildFrom builds a pipeline from cfg text whose file paths resolve
// against dir; the key sets stop with the test.
func buildFrom(t *testing.T, text, dir string, env Env) *Pipeline {
	t.Helper()
	cfg, err := config.Parse([]byte(text), dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	env.KeySets = NewKeySets(ctx)
	p, err := Build(ctx, cfg, env)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func keySetOf(t *testing.T, p *Pipeline, issuer string) jwks.Options {
	t.Helper()
	for _, u := range p.keySets {
		if o := u.set.Options(); o.Issuer == issuer {
			return o
		}
	}
	t.Fatalf("no key set for %s", issuer)
	return jwks.Options{}
}

// TestEveryFieldReachesItsComponent builds the pipeline from the config
// that sets every field to a non-default value (config's
// TestNonDefaultConfigSetsEveryField keeps it so) and checks what each
// component was built with. A knob that Build drops fails here.
func TestEveryFieldReachesItsComponent(t *testing.T) {
	a, b := authztest.New(t), authztest.New(t)
	dir, err := filepath.Abs(filepath.Join("..", "config", "testdata"))
	if err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(filepath.Join(dir, "nondefault.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("TT_NONDEFAULT_HMAC", strings.Repeat("h", 32))
	t.Setenv("TT_NONDEFAULT_SECRET", "secret-of-a")
	t.Setenv("TT_NONDEFAULT_NONCE", strings.Repeat("n", 40))
	t.Setenv("TT_NONDEFAULT_TTS_SECRET", "secret-of-tts")
	cfgText := strings.NewReplacer("https://issuer-a.test", a.URL(), "https://issuer-b.test", b.URL()).Replace(string(text))
	// A shared cache nothing answers for: revocation_push needs one to be built.
	shared, err := sharedcache.New(sharedcache.Options{Addresses: []string{redistest.ClosedAddr(t)}, Secret: []byte(strings.Repeat("s", 32))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(shared.Close)
	p := buildFrom(t, cfgText, dir, Env{Shared: shared})

	rt := p.routes[p.Policy.Route("r-exchange")]
	push := p.RevocationPush.Transmitters()[0]
	v := rt.jwt.(*jwtverify.Verifier).Options()
	in := rt.opaque.(*introspect.Introspector).Options()
	exA := rt.source.(upstream.Exchange)[a.URL()].(*exchange.Exchanger).Options()
	exB := rt.source.(upstream.Exchange)[b.URL()].(*exchange.Exchanger).Options()
	ksA, ksB := keySetOf(t, p, a.URL()), keySetOf(t, p, b.URL())
	m := p.Minter.Options()
	mint, exch, emb := p.Policy.Route("r-mint").Grant(), p.Policy.Route("r-exchange").Grant(), p.Policy.Route("r-embedded").Grant()
	got := map[string]any{
		"credential":                        p.Credential,
		"mint.realm":                        p.Response.Realm,
		"mint.issuer":                       m.Issuer,
		"mint.keys":                         []string{m.Keys[0].ID, m.Keys[1].ID},
		"mint.signing_key":                  m.SigningKeyID,
		"cache.max_entries (mint)":          m.CacheEntries,
		"cache.max_entries (jwt)":           v.CacheEntries,
		"cache.max_entries (introspection)": in.CacheEntries,
		"cache.max_entries (exchange)":      exA.CacheEntries,
		"credential.max_bytes (jwt)":        v.MaxTokenBytes,
		"credential.max_bytes (intro)":      in.MaxTokenBytes,
		"issuers[0].audiences":              v.Issuers[0].Audiences,
		"issuers[0].algorithms":             v.Issuers[0].Algorithms,
		"issuers[0].hmac_secret":            string(v.Issuers[0].HMACSecret),
		"issuers[0].clock_skew":             v.Issuers[0].ClockSkew,
		"issuers[0].required_typ":           v.Issuers[0].RequiredType,
		"issuers[0].allow_missing_sub":      []bool{v.Issuers[0].AllowMissingSub, v.Issuers[1].AllowMissingSub},
		"issuers[0].scope_claims":           v.Issuers[0].ScopeClaims,
		"issuers[1].algorithms":             v.Issuers[1].Algorithms,
		"issuers[1].hmac_secret bytes":      len(v.Issuers[1].HMACSecret),
		"issuers[0].jwks_url":               ksA.URL,
		"issuers[0].jwks_refresh":           ksA.RefreshInterval,
		"issuers[0].jwks_min_refetch":       ksA.MinRefetchInterval,
		"issuers[0].http_timeout (jwks)":    ksA.Client.Timeout,
		"issuers[1].discovery_url":          ksB.DiscoveryURL,
		"issuers[0].introspection":          []any{in.Endpoint, in.JWTResponse, in.MaxCacheTTL, in.NegativeTTL, in.MaxInFlight, in.AudienceByServer, in.SubjectClaims},
		"issuers[0].http_timeout (intro)":   []time.Duration{in.Timeout, in.Client.Timeout},
		"issuers[0].clock_skew (intro)":     in.Leeway,
		"issuers[0].introspection limits":   []any{in.RateLimit, in.RateBurst, *in.TokenShape},
		"issuers[0].scope_claims (intro)":   in.ScopeClaims,
		"issuers[0].audiences (intro)":      in.Audiences,
		"issuers[0].client (intro)":         []string{in.Auth.Name(), in.Auth.ClientID()},
		"issuers[0].token_endpoint":         exA.TokenEndpoint,
		"issuers[0].http_timeout (exch)":    exA.Timeout,
		"issuers[1].client":                 []string{exB.Auth.Name(), exB.Auth.ClientID()},
		"issuers[1].token_endpoint":         []any{exB.TokenEndpoint, exB.TokenEndpointFunc != nil, len(p.resolvers)},
		"issuers[1].http_timeout (exch)":    exB.Timeout,
		"routes[0].upstream":                []any{mint.Audience, mint.Scopes, mint.Claims, mint.TTL, mint.Header, mint.Prefix, mint.StripCredential},
		"routes[1].upstream.exchange":       *exch.Exchange,
		"routes[2].upstream.embedded_claim": emb.EmbeddedClaim,
		"routes[3].public":                  p.Policy.Route("r-public").Public,
		"issuers[0].revocation_push":        []any{push.SETIssuer, push.TokenIssuer, push.Audience, push.MaxAge, push.RevokeFor, push.Leeway, push.Algorithms},
	}
	want := map[string]any{
		"credential":                        credential.Options{Header: "x-token", Scheme: "Token", MaxBytes: 4321, DPoP: true},
		"mint.realm":                        "nondefault-realm",
		"mint.issuer":                       "https://tt.nondefault.test",
		"mint.keys":                         []string{"k-ed", "k-p256"},
		"mint.signing_key":                  "k-p256",
		"cache.max_entries (mint)":          1234,
		"cache.max_entries (jwt)":           1234,
		"cache.max_entries (introspection)": 1234,
		"cache.max_entries (exchange)":      1234,
		"credential.max_bytes (jwt)":        4321,
		"credential.max_bytes (intro)":      4321,
		"issuers[0].audiences":              []string{"api-a", "api-a2"},
		"issuers[0].algorithms":             []string{"ES256", "HS256"},
		"issuers[0].hmac_secret":            strings.Repeat("h", 32),
		"issuers[0].clock_skew":             7 * time.Second,
		"issuers[0].required_typ":           "at+jwt",
		"issuers[0].allow_missing_sub":      []bool{true, false},
		"issuers[0].scope_claims":           []string{"scp"},
		"issuers[1].algorithms":             []string{"EdDSA", "HS512"},
		"issuers[1].hmac_secret bytes":      64,
		"issuers[0].jwks_url":               a.URL() + "/jwks.json",
		"issuers[0].jwks_refresh":           7 * time.Minute,
		"issuers[0].jwks_min_refetch":       11 * time.Second,
		"issuers[0].http_timeout (jwks)":    13 * time.Second,
		"issuers[1].discovery_url":          b.URL() + "/.well-known/openid-configuration",
		"issuers[0].introspection":          []any{a.URL() + "/introspect", true, 17 * time.Second, 3 * time.Second, 5, true, []string{"username", "client_id"}},
		"issuers[0].http_timeout (intro)":   []time.Duration{13 * time.Second, 13 * time.Second},
		"issuers[0].clock_skew (intro)":     7 * time.Second,
		"issuers[0].introspection limits": []any{7.5, 3, introspect.Shape{
			Prefix: "tt_at_", Alphabet: "hex", Segments: 2, MinLength: 20, MaxLength: 80,
		}},
		"issuers[0].scope_claims (intro)": []string{"scp"},
		"issuers[0].audiences (intro)":    []string{"api-a", "api-a2"},
		"issuers[0].client (intro)":       []string{"client_secret_post", "tt-a"},
		"issuers[0].token_endpoint":       a.URL() + "/token",
		"issuers[0].http_timeout (exch)":  13 * time.Second,
		"issuers[1].client":               []string{"private_key_jwt", "tt-b"},
		"issuers[1].token_endpoint":       []any{"", true, 1}, // from discovery, per call
		"issuers[1].http_timeout (exch)":  config.DefaultHTTPTimeout,
		"routes[0].upstream":              []any{"mint-api", []string{"s1"}, map[string]any{"env": "test"}, 4 * time.Minute, "x-internal", "Tok ", false},
		"routes[1].upstream.exchange": extauthz.ExchangeSpec{
			Issuer: a.URL(), Resource: "https://res.nondefault.test", Actor: true,
			SubjectTokenType: "urn:ietf:params:oauth:token-type:jwt", RequestedTokenType: "urn:ietf:params:oauth:token-type:jwt",
		},
		"routes[2].upstream.embedded_claim": "nested",
		"routes[3].public":                  true,
		"issuers[0].revocation_push": []any{"https://ssf.issuer-a.test", a.URL(), []string{"https://tt.nondefault.test/push"},
			2 * time.Minute, 17 * time.Second, 7 * time.Second, []string{"ES256", "HS256"}},
	}
	// The credential's memory of token hashes is state, not config.
	if diff := cmp.Diff(want, got, cmpopts.IgnoreUnexported(credential.Options{})); diff != "" {
		t.Errorf("values built into the components differ from the config (-want +got):\n%s", diff)
	}
	checkTxnTokenWiring(t, p, cfgText, dir, a.URL())
}

// checkTxnTokenWiring checks the txn_token and txn_token_service fields of
// the non-default config: the TTS client and the verifier from the full
// config, the minter (which a TTS replaces) from the same config without
// txn_token_service.
func checkTxnTokenWiring(t *testing.T, p *Pipeline, cfgText, dir, issuerA string) {
	t.Helper()
	rt := p.routes[p.Policy.Route("r-txn")]
	src := rt.source.(interface{ Unwrap() extauthz.TokenSource }).Unwrap().(*txntoken.Source)
	vo := rt.jwt.(*txntoken.Authenticator).Verifier.Options()
	ex := src.Service.Poster().(*exchange.Exchanger).Options()
	ks := keySetOf(t, p, "txn_token_service")
	var txnSet *jwks.Set
	for _, u := range p.keySets {
		if u.opts.Issuer == "txn_token_service" {
			txnSet = u.set
		}
	}
	cfg, err := config.Parse([]byte(cfgText), dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg.TxnTokenService = nil
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	local, err := Build(ctx, cfg, Env{KeySets: NewKeySets(ctx)})
	if err != nil {
		t.Fatal(err)
	}
	lsrc := local.routes[local.Policy.Route("r-txn")].source.(interface{ Unwrap() extauthz.TokenSource }).Unwrap().(*txntoken.Source)
	mo := lsrc.Minter.Options()
	got := map[string]any{
		"routes[4].accept":                  []any{rt.credential.Header, rt.opaque == nil},
		"txn_token.trust_domain":            []string{vo.TrustDomain, src.Service.TrustDomain(), mo.TrustDomain},
		"txn_token.leeway":                  vo.Leeway,
		"txn_token.jwks_url":                []any{ks.URL, vo.Keys.(txntoken.Keys)[1] == txntoken.KeySource(txnSet)},
		"txn_token.request_id_header":       []string{src.RequestIDHeader, lsrc.RequestIDHeader},
		"txn_token.context":                 []any{src.Context, mo.Context},
		"txn_token.workload, ttl":           []any{mo.Workload, mo.TTL, mo.Key.ID},
		"txn_token_service.token_endpoint":  ex.TokenEndpoint,
		"txn_token_service.client":          []string{ex.Auth.Name(), ex.Auth.ClientID()},
		"txn_token_service.http_timeout":    []time.Duration{ex.Timeout, ex.Client.Timeout, ks.Client.Timeout},
		"credential.max_bytes (txn tokens)": []int{vo.MaxBytes, rt.credential.MaxBytes},
	}
	want := map[string]any{
		"routes[4].accept":                  []any{"txn-token", true},
		"txn_token.trust_domain":            []string{"trust.nondefault.test", "trust.nondefault.test", "trust.nondefault.test"},
		"txn_token.leeway":                  9 * time.Second,
		"txn_token.jwks_url":                []any{issuerA + "/txn-jwks.json", true},
		"txn_token.request_id_header":       []string{"x-request-id", "x-request-id"},
		"txn_token.context":                 []any{map[string]any{"env": "test"}, map[string]any{"env": "test"}},
		"txn_token.workload, ttl":           []any{"wl-nondefault", 2 * time.Minute, "k-p256"},
		"txn_token_service.token_endpoint":  issuerA + "/tts",
		"txn_token_service.client":          []string{"client_secret_post", "tt-tts"},
		"txn_token_service.http_timeout":    []time.Duration{3 * time.Second, 3 * time.Second, 3 * time.Second},
		"credential.max_bytes (txn tokens)": []int{4321, 4321},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("txn_token values built into the components differ from the config (-want +got):\n%s", diff)
	}
}

// slowTransport answers every call after delay, as a slow issuer would.
type slowTransport struct{ delay time.Duration }

func (s slowTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	select {
	case <-time.After(s.delay):
	case <-r.Context().Done():
		return nil, r.Context().Err()
	}
	return http.DefaultTransport.RoundTrip(r)
}

const slowIssuerConfig = `
listen: {grpc: "127.0.0.1:0"}
issuers:
  - issuer: {{ISSUER}}
    jwks_url: {{ISSUER}}/jwks.json
    audiences: [api]
    http_timeout: 5s
    introspection: {endpoint: {{ISSUER}}/introspect}
    token_endpoint: {{ISSUER}}/token
    client: {id: tt, secret: {env: TT_SLOW_SECRET}}
routes:
  - name: ex
    require: {}
    upstream: {mode: exchange, audience: api}
`

// TestHTTPTimeoutIsTheOutboundDeadline: an issuer that answers after 3s is
// served within http_timeout 5s by every client toward it. Before, JWKS ran
// under its own 10s and introspection and exchange under a fixed 2s, so
// http_timeout above 2s did nothing for them.
func TestHTTPTimeoutIsTheOutboundDeadline(t *testing.T) {
	is := authztest.New(t)
	x := is.Introspection(t, authztest.WithClientSecret("tt", "pw"))
	is.Exchange(t, authztest.WithClientSecret("tt", "pw"))
	t.Setenv("TT_SLOW_SECRET", "pw")
	x.Register("opaque-1", map[string]any{"sub": "alice", "aud": "api", "exp": time.Now().Add(time.Hour).Unix()})
	p := buildFrom(t, strings.ReplaceAll(slowIssuerConfig, "{{ISSUER}}", is.URL()), "", Env{Transport: slowTransport{delay: 3 * time.Second}})
	ctx := context.Background()

	if err := p.keySets[0].set.Refresh(ctx); err != nil {
		t.Errorf("jwks: %v", err)
	}
	cred := extauthz.Credential{Raw: "opaque-1", Kind: extauthz.KindOpaque, CachedTokenHash: extauthz.TokenHash("opaque-1")}
	rt := p.routes[p.Policy.Route("ex")]
	pr, err := rt.opaque.Authenticate(ctx, cred)
	if err != nil {
		t.Fatalf("introspection: %v", err)
	}
	g := p.Policy.Route("ex").Grant()
	if _, err := rt.source.Token(ctx, pr, g); err != nil {
		t.Errorf("exchange: %v", err)
	}
}

// TestClockSkewReachesIntrospection: an authorization server whose clock
// runs 2s ahead signs RFC 9701 answers with an iat in our future and
// answers with an nbf in our future. With the issuer's clock_skew (default
// 30s) both pass; before, introspection checked them with no leeway (503
// for signed answers, 401 for nbf).
func TestClockSkewReachesIntrospection(t *testing.T) {
	tests := []struct {
		name        string
		jwtResponse bool
	}{
		{name: "plain answer with nbf ahead", jwtResponse: false},
		{name: "signed answer with iat and nbf ahead", jwtResponse: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ahead := func() time.Time { return time.Now().Add(2 * time.Second) }
			is := authztest.New(t, authztest.WithNow(ahead))
			x := is.Introspection(t, authztest.WithClientSecret("tt", "pw"))
			t.Setenv("TT_SKEW_SECRET", "pw")
			x.Register("opaque-1", map[string]any{
				"sub": "alice", "aud": "api", "nbf": ahead().Unix(), "iat": ahead().Unix(), "exp": ahead().Add(time.Hour).Unix(),
			})
			cfg := strings.ReplaceAll(`
listen: {grpc: "127.0.0.1:0"}
issuers:
  - issuer: {{ISSUER}}
    jwks_url: {{ISSUER}}/jwks.json
    audiences: [api]
    introspection: {endpoint: {{ISSUER}}/introspect, jwt_response: `+map[bool]string{true: "true", false: "false"}[tt.jwtResponse]+`}
    client: {id: tt, secret: {env: TT_SKEW_SECRET}}
routes:
  - name: r
    require: {}
    upstream: {mode: forward}
`, "{{ISSUER}}", is.URL())
			p := buildFrom(t, cfg, "", Env{})
			cred := extauthz.Credential{Raw: "opaque-1", Kind: extauthz.KindOpaque, CachedTokenHash: extauthz.TokenHash("opaque-1")}
			if _, err := p.routes[p.Policy.Route("r")].opaque.Authenticate(context.Background(), cred); err != nil {
				t.Fatalf("Authenticate() = %v, want the token accepted within clock_skew", err)
			}
		})
	}
}

// syncBuffer is a log sink safe for the pipeline's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestMetadataWithoutEndpoint: endpoints come from a metadata document that
// names neither introspection_endpoint nor token_endpoint. Build does not
// fail on it (it makes no call to the issuer); each request that needs one
// is a 503 with a log line naming the endpoint, and CheckEndpoints (what
// check-config runs) names the config fields to set.
func TestMetadataWithoutEndpoint(t *testing.T) {
	is := authztest.New(t)
	is.Handle("GET /meta-without-endpoints", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		md := is.Metadata()
		delete(md, "introspection_endpoint")
		delete(md, "token_endpoint")
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(md)
	}))
	t.Setenv("TT_META_SECRET", "pw")
	logs := &syncBuffer{}
	cfg := strings.ReplaceAll(`
listen: {grpc: "127.0.0.1:0"}
issuers:
  - issuer: {{ISSUER}}
    discovery_url: {{ISSUER}}/meta-without-endpoints
    audiences: [api]
    introspection: {}
    client: {id: tt, secret: {env: TT_META_SECRET}}
routes:
  - name: ex
    require: {}
    match: {path_prefix: /}
    upstream: {mode: exchange, audience: api}
`, "{{ISSUER}}", is.URL())
	p := buildFrom(t, cfg, "", Env{Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	deadline := time.Now().Add(5 * time.Second)
	for p.Ready() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("never ready: %v", p.Ready())
		}
		time.Sleep(10 * time.Millisecond)
	}
	ctx := context.Background()
	rt := p.routes[p.Policy.Route("ex")]

	cred := extauthz.Credential{Raw: "opaque-1", Kind: extauthz.KindOpaque}
	_, err := rt.opaque.Authenticate(ctx, cred)
	if _, d := p.Response.Deny(err); !errors.Is(err, discovery.ErrNoEndpoint) || d.Status != http.StatusServiceUnavailable {
		t.Errorf("introspection: %v (status %d), want a 503 for the missing endpoint", err, d.Status)
	}
	if !strings.Contains(logs.String(), "introspection_endpoint") {
		t.Errorf("no log line names introspection_endpoint:\n%s", logs)
	}

	pr := &extauthz.Principal{Issuer: is.URL(), Subject: "alice", ExpiresAt: time.Now().Add(time.Hour), Credential: extauthz.Credential{Raw: "in", Kind: extauthz.KindOpaque}}
	_, err = rt.source.Token(ctx, pr, p.Policy.Route("ex").Grant())
	if _, d := p.Response.Deny(err); !errors.Is(err, discovery.ErrNoEndpoint) || d.Status != http.StatusServiceUnavailable {
		t.Errorf("exchange: %v (status %d), want a 503 for the missing endpoint", err, d.Status)
	}
	if !strings.Contains(logs.String(), "token_endpoint") {
		t.Errorf("no log line names token_endpoint:\n%s", logs)
	}

	err = p.CheckEndpoints(ctx)
	for _, field := range []string{"issuers[0].introspection.endpoint", "issuers[0].token_endpoint"} {
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("CheckEndpoints() = %v, want it to name %s", err, field)
		}
	}
}
