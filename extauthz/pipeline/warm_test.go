package pipeline

import (
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/authztest"
	"github.com/tokentailor/tokentailor/extauthz/cache"
	"github.com/tokentailor/tokentailor/extauthz/mtls"
)

// warmConfig has two minting routes (one with requirements and
// min_lifetime, each with its own internal header) and a forwarding one.
const warmConfig = `
listen: {grpc: 127.0.0.1:0}
mint:
  issuer: https://tokentailor.test
  keys: [{file: signing.pem}]
issuers:
  - issuer: {{ISSUER}}
    jwks_url: {{ISSUER}}/jwks.json
    audiences: [api.example.com]
    algorithms: [ES256]
routes:
  - name: a
    match: {path_prefix: /a}
    require: {scopes: [orders:read], claims: {tenant: [acme]}}
    min_lifetime: 10m
    upstream: {audience: a-api, scopes: [orders:read], ttl: 2m, header: x-a-token}
  - name: b
    match: {path_prefix: /b}
    require: {}
    upstream: {audience: b-api, ttl: 3m, header: x-b-token}
  - name: f
    match: {path_prefix: /f}
    require: {}
    upstream: {mode: forward}
`

// warmEnv is a pipeline on a settable clock with its issuer double.
type warmEnv struct {
	is    *authztest.Issuer
	clock *authztest.Clock
	dir   string // holds signing.pem
	p     *Pipeline
}

func newWarmEnv(t *testing.T) *warmEnv {
	t.Helper()
	e := &warmEnv{is: authztest.New(t), clock: authztest.NewClock(time.Now().Truncate(time.Second))}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	e.dir = t.TempDir()
	if err := os.WriteFile(filepath.Join(e.dir, "signing.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	e.p = e.build(t)
	return e
}

// build builds a pipeline of warmConfig on e's clock and key and waits for
// the issuer's keys.
func (e *warmEnv) build(t *testing.T) *Pipeline {
	t.Helper()
	p := buildFrom(t, strings.ReplaceAll(warmConfig, "{{ISSUER}}", e.is.URL()), e.dir, Env{Now: e.clock.Now})
	for deadline := time.Now().Add(10 * time.Second); p.Ready() != nil; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("never ready: %v", p.Ready())
		}
	}
	return p
}

// token signs an access token for sub that expires after life on e's
// clock, with extra claims added.
func (e *warmEnv) token(t *testing.T, sub string, life time.Duration, extra jwt.MapClaims) string {
	t.Helper()
	now := e.clock.Now()
	c := jwt.MapClaims{"sub": sub, "aud": "api.example.com", "scope": "orders:read", "tenant": "acme",
		"iat": now.Unix(), "exp": now.Add(life).Unix()}
	for k, v := range extra {
		c[k] = v
	}
	return e.is.Sign(t, c, authztest.WithAlg("ES256"))
}

// warmRequest is a request for path with token, the peer certificate cert
// (URL-encoded PEM, "" for none) and extra headers.
func warmRequest(path, token, cert string, extra ...string) *extauthz.Request {
	h := map[string]string{"authorization": "Bearer " + token, ":path": path}
	for i := 0; i+1 < len(extra); i += 2 {
		h[extra[i]] = extra[i+1]
	}
	return &extauthz.Request{Method: "GET", Scheme: "https", Host: "api.example.com", Path: path, RawPath: path,
		Headers: h, SourceCertificate: cert}
}

// selfSigned returns a certificate as Envoy sends it (URL-encoded PEM) and
// its x5t#S256.
func selfSigned(t *testing.T) (cert, thumbprint string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "client"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return url.PathEscape(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))), mtls.Thumbprint(c)
}

// keptAnswer returns the warm answer the pipeline keeps beside token, nil
// when none.
func (p *Pipeline) keptAnswer(t *testing.T, token string) *warmAnswer {
	t.Helper()
	cred, err := p.Credential.Extract(warmRequest("/", token, ""))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := cred.Memo.Load().(*warmAnswer)
	return a
}

// TestWarmAnswerIsKeptAndUsed: a JWT's third Check on a minting route keeps
// the route's answer beside the token (the first validates, the second
// comes from the validation cache and remembers the token); the fourth is
// answered from it, with the same token and answer, and counts the same
// cache hits as the stages would.
func TestWarmAnswerIsKeptAndUsed(t *testing.T) {
	e := newWarmEnv(t)
	tok := e.token(t, "alice", time.Hour, nil)
	var outs []Outcome
	var hits [][]cache.Lookup
	for range 4 {
		var l cache.Lookups
		out := e.p.Decide(cache.WithLookups(context.Background(), &l), warmRequest("/a/1", tok, ""))
		if out.Err != nil {
			t.Fatalf("Check %d denied: %v", len(outs)+1, out.Err)
		}
		outs, hits = append(outs, out), append(hits, l.All())
	}
	a := e.p.keptAnswer(t, tok)
	if a == nil {
		t.Fatal("no warm answer kept after four Checks")
	}
	if outs[3].Principal != a.principal {
		t.Error("the fourth Check did not come from the warm answer")
	}
	if a.principal.Credential.Raw != "" || a.principal.Credential.Memo != nil {
		t.Error("the kept principal holds the token or its memo")
	}
	if outs[2].Token.Value != outs[3].Token.Value || outs[2].Response != outs[3].Response {
		t.Error("the warm answer differs from the stages' answer")
	}
	if fmt.Sprint(hits[2]) != fmt.Sprint(hits[3]) {
		t.Errorf("cache lookups noted: stages %v, warm answer %v", hits[2], hits[3])
	}
	// Forwarding routes keep none: their answer is the client's token.
	f := e.token(t, "bob", time.Hour, nil)
	for range 4 {
		if out := e.p.Decide(context.Background(), warmRequest("/f", f, "")); out.Err != nil {
			t.Fatal(out.Err)
		}
	}
	if e.p.keptAnswer(t, f) != nil {
		t.Error("a forwarding route kept a warm answer")
	}
}

// TestWarmAnswerJudgesTheRequest: with a warm answer kept, what depends on
// the request or the time is judged on every Check.
func TestWarmAnswerJudgesTheRequest(t *testing.T) {
	cert, x5t := selfSigned(t)
	other, _ := selfSigned(t)
	tests := []struct {
		name   string
		life   time.Duration
		claims jwt.MapClaims
		cert   string
		// then: the clock advance and the request of the Check after the
		// answer was kept.
		advance time.Duration
		req     func(tok string) *extauthz.Request
		wantErr error
		check   func(t *testing.T, out Outcome)
		// keepOn is the path of the Checks that keep the answer ("/a" when empty).
		keepOn string
		// newToken: the Check gets another minted token than the kept one.
		newToken bool
	}{
		{name: "certificate-bound token, no certificate", life: time.Hour, claims: jwt.MapClaims{"cnf": map[string]any{"x5t#S256": x5t}}, cert: cert,
			req: func(tok string) *extauthz.Request { return warmRequest("/a", tok, "") }, wantErr: mtls.ErrNoCertificate},
		{name: "certificate-bound token, another certificate", life: time.Hour, claims: jwt.MapClaims{"cnf": map[string]any{"x5t#S256": x5t}}, cert: cert,
			req: func(tok string) *extauthz.Request { return warmRequest("/a", tok, other) }, wantErr: mtls.ErrCertificateMismatch},
		{name: "incoming token expired", life: 20 * time.Minute, advance: 21 * time.Minute, keepOn: "/b",
			req: func(tok string) *extauthz.Request { return warmRequest("/b", tok, "") }, wantErr: extauthz.ErrTokenExpired},
		// Kept with 11 minutes left, the minted token good for 1m48s more:
		// 90 s later, min_lifetime (10m) is what refuses.
		{name: "less than min_lifetime left", life: 11 * time.Minute, advance: 90 * time.Second,
			req: func(tok string) *extauthz.Request { return warmRequest("/a", tok, "") }, wantErr: extauthz.ErrExpiresTooSoon},
		{name: "another route's internal header is removed", life: time.Hour,
			req: func(tok string) *extauthz.Request { return warmRequest("/a", tok, "", "x-b-token", "forged") },
			check: func(t *testing.T, out Outcome) {
				if rm := out.Response.GetOkResponse().GetHeadersToRemove(); !slices.Contains(rm, "x-b-token") {
					t.Errorf("headers removed %v, want x-b-token among them", rm)
				}
			}},
		{name: "another route of the same token", life: time.Hour,
			req: func(tok string) *extauthz.Request { return warmRequest("/b/1", tok, "") },
			check: func(t *testing.T, out Outcome) {
				if out.Route != "b" || out.Grant.Audience != "b-api" || headerOf(out, "x-b-token") == "" {
					t.Errorf("route %q audience %q, want b's answer", out.Route, out.Grant.Audience)
				}
			},
			newToken: true},
		{name: "minted token renewed", life: time.Hour, advance: 2 * time.Minute,
			req:      func(tok string) *extauthz.Request { return warmRequest("/a", tok, "") },
			newToken: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newWarmEnv(t)
			tok := e.token(t, "alice", tt.life, tt.claims)
			keepOn := cmp.Or(tt.keepOn, "/a")
			var kept Outcome
			for i := range 3 {
				if kept = e.p.Decide(context.Background(), warmRequest(keepOn, tok, tt.cert)); kept.Err != nil {
					t.Fatalf("Check %d denied: %v", i+1, kept.Err)
				}
			}
			if e.p.keptAnswer(t, tok) == nil {
				t.Fatal("no warm answer kept")
			}
			e.clock.Advance(tt.advance)
			out := e.p.Decide(context.Background(), tt.req(tok))
			if tt.wantErr != nil {
				if !errors.Is(out.Err, tt.wantErr) {
					t.Fatalf("error %v, want %v", out.Err, tt.wantErr)
				}
				return
			}
			if out.Err != nil {
				t.Fatalf("denied: %v", out.Err)
			}
			if got := out.Token.Value != kept.Token.Value; got != tt.newToken {
				t.Errorf("another minted token: %v, want %v", got, tt.newToken)
			}
			if tt.check != nil {
				tt.check(t, out)
			}
		})
	}
}

// headerOf returns the value an allowed answer sets for name.
func headerOf(out Outcome, name string) string {
	for _, h := range out.Response.GetOkResponse().GetHeaders() {
		if strings.EqualFold(h.GetHeader().GetKey(), name) {
			return h.GetHeader().GetValue()
		}
	}
	return ""
}

// TestWarmAnswersDecideAsTheStages is a property test: two pipelines of one
// config on one clock, one with warm answers and one without, get the
// same random run of Checks (tokens of several lifetimes, bound to a
// certificate or not, three routes, a forged internal header or not, a
// certificate or not, time passing) and must decide every one alike: the
// same allow or denial, route, subject, grant, headers set and removed, and
// the minted token renewed at the same Checks.
func TestWarmAnswersDecideAsTheStages(t *testing.T) {
	e := newWarmEnv(t)
	// The second pipeline: the same key, config and clock.
	cold := withoutWarmAnswers(e.build(t))
	cert, x5t := selfSigned(t)
	var tokens []string
	for i, life := range []time.Duration{time.Hour, 25 * time.Minute, 12 * time.Minute, 4 * time.Minute} {
		tokens = append(tokens, e.token(t, fmt.Sprint("user-", i), life, nil))
	}
	tokens = append(tokens, e.token(t, "bound", time.Hour, jwt.MapClaims{"cnf": map[string]any{"x5t#S256": x5t}}))
	paths := []string{"/a/1", "/b/2", "/f/3"}
	rng := mrand.New(mrand.NewPCG(14, 12))
	type seen struct{ warm, cold string }
	last := map[string]seen{}
	warmUsed := 0
	for step := range 3000 {
		tok := tokens[rng.IntN(len(tokens))]
		path := paths[rng.IntN(len(paths))]
		c := ""
		if rng.IntN(4) > 0 {
			c = cert
		}
		var extra []string
		if rng.IntN(5) == 0 {
			extra = []string{"x-a-token", "forged"}
		}
		w := e.p.Decide(context.Background(), warmRequest(path, tok, c, extra...))
		o := cold.Decide(context.Background(), warmRequest(path, tok, c, extra...))
		if a := e.p.keptAnswer(t, tok); a != nil && w.Principal == a.principal {
			warmUsed++
		}
		if got, want := decision(w), decision(o); got != want {
			t.Fatalf("step %d (%s, token %d): with warm answers %s\nwithout %s", step, path, slices.Index(tokens, tok), got, want)
		}
		if w.Err == nil && w.Mode == extauthz.ModeMint {
			k := path[:2] + tok
			prev := last[k]
			if (prev.warm == w.Token.Value) != (prev.cold == o.Token.Value) {
				t.Fatalf("step %d: the minted token renewed with warm answers: %v, without: %v",
					step, prev.warm != w.Token.Value, prev.cold != o.Token.Value)
			}
			last[k] = seen{w.Token.Value, o.Token.Value}
		}
		e.clock.Advance(time.Duration(rng.IntN(1000)) * time.Millisecond)
	}
	if warmUsed < 500 {
		t.Errorf("warm answers answered %d of 3000 Checks: the run does not exercise them", warmUsed)
	}
}

// withoutWarmAnswers turns p's warm answers off, for a pipeline that
// decides every Check through the stages, and returns p.
func withoutWarmAnswers(p *Pipeline) *Pipeline {
	for _, rt := range p.routes {
		rt.warm = nil
	}
	return p
}

// decision renders what an outcome decided, minted token values aside.
func decision(o Outcome) string {
	var b strings.Builder
	fmt.Fprintf(&b, "route=%s mode=%s sub=%s status=%d reason=%s", o.Route, o.Mode, o.Subject, o.Denial.Status, o.Denial.Reason)
	if o.Err != nil {
		fmt.Fprintf(&b, " err=%v", o.Err)
	}
	if g := o.Grant; g != nil {
		fmt.Fprintf(&b, " aud=%s scopes=%v", g.Audience, g.Scopes)
	}
	if ok := o.Response.GetOkResponse(); ok != nil {
		var set []string
		for _, h := range ok.GetHeaders() {
			set = append(set, h.GetHeader().GetKey()+":"+h.GetAppendAction().String())
		}
		fmt.Fprintf(&b, " set=%v removed=%v", set, ok.GetHeadersToRemove())
	}
	return b.String()
}

// TestWarmAnswerDeniedNotesAsTheStages: a warm Check that the binding check
// denies notes the cache lookups the stages would have: the validation
// cache's hit, not the minted-token cache's, which a denied Check never
// reaches.
func TestWarmAnswerDeniedNotesAsTheStages(t *testing.T) {
	e := newWarmEnv(t)
	cold := withoutWarmAnswers(e.build(t))
	cert, x5t := selfSigned(t)
	tok := e.token(t, "alice", time.Hour, jwt.MapClaims{"cnf": map[string]any{"x5t#S256": x5t}})
	for _, p := range []*Pipeline{e.p, cold} {
		for i := range 3 {
			if out := p.Decide(context.Background(), warmRequest("/a", tok, cert)); out.Err != nil {
				t.Fatalf("Check %d denied: %v", i+1, out.Err)
			}
		}
	}
	if e.p.keptAnswer(t, tok) == nil {
		t.Fatal("no warm answer kept")
	}
	var warm, stages cache.Lookups
	w := e.p.Decide(cache.WithLookups(context.Background(), &warm), warmRequest("/a", tok, ""))
	o := cold.Decide(cache.WithLookups(context.Background(), &stages), warmRequest("/a", tok, ""))
	if !errors.Is(w.Err, mtls.ErrNoCertificate) || !errors.Is(o.Err, mtls.ErrNoCertificate) {
		t.Fatalf("errors %v and %v, want %v", w.Err, o.Err, mtls.ErrNoCertificate)
	}
	if fmt.Sprint(warm.All()) != fmt.Sprint(stages.All()) {
		t.Errorf("cache lookups noted: stages %v, warm answer %v", stages.All(), warm.All())
	}
}

// TestWarmAnswerGoesWithItsValidation: a warm answer is not used once its
// validation left the validation cache (a full shard is flushed), whose
// next Check verifies the token again: here its signing key has been
// withdrawn since, so the stages refuse it and so must the warm lane.
func TestWarmAnswerGoesWithItsValidation(t *testing.T) {
	e := newWarmEnv(t)
	small := strings.ReplaceAll(warmConfig, "{{ISSUER}}", e.is.URL()) + "cache: {max_entries: 1}\n"
	build := func() *Pipeline {
		p := buildFrom(t, small, e.dir, Env{Now: e.clock.Now})
		for deadline := time.Now().Add(10 * time.Second); p.Ready() != nil; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("never ready: %v", p.Ready())
			}
		}
		return p
	}
	warm, cold := build(), withoutWarmAnswers(build())
	tok := e.token(t, "alice", time.Hour, nil)
	for _, p := range []*Pipeline{warm, cold} {
		for i := range 3 {
			if out := p.Decide(context.Background(), warmRequest("/a", tok, "")); out.Err != nil {
				t.Fatalf("Check %d denied: %v", i+1, out.Err)
			}
		}
	}
	if warm.keptAnswer(t, tok) == nil {
		t.Fatal("no warm answer kept")
	}
	// The issuer withdraws the key; another token, of its new key, takes
	// the validation cache's one entry.
	e.is.Rotate(false)
	e.clock.Advance(time.Minute)
	other := e.token(t, "bob", time.Hour, nil)
	for _, p := range []*Pipeline{warm, cold} {
		if out := p.Decide(context.Background(), warmRequest("/b", other, "")); out.Err != nil {
			t.Fatalf("the new key's token denied: %v", out.Err)
		}
	}
	o := cold.Decide(context.Background(), warmRequest("/a", tok, ""))
	if o.Err == nil {
		t.Fatal("the stages allowed a token whose key was withdrawn once its validation was flushed")
	}
	if w := warm.Decide(context.Background(), warmRequest("/a", tok, "")); decision(w) != decision(o) {
		t.Errorf("with warm answers %s\nwithout %s", decision(w), decision(o))
	}
}
