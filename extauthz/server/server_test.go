package server

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/tokentailor/tokentailor/extauthz/authztest"
	"github.com/tokentailor/tokentailor/extauthz/config"
	"github.com/tokentailor/tokentailor/extauthz/pipeline"
)

// harness runs a real Server on loopback with an authorization-server double.
type harness struct {
	t       *testing.T
	is      *authztest.Issuer
	dir     string
	srv     *Server
	client  authv3.AuthorizationClient
	conn    *grpc.ClientConn
	logs    *syncBuffer
	cancel  context.CancelFunc
	done    chan struct{}
	mintPub ed25519.PublicKey
	// mintPriv is tokentailor's signing key, for tests that forge what only
	// tokentailor should sign (Txn-Tokens).
	mintPriv ed25519.PrivateKey
	now      func() time.Time // nil: time.Now
}

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

const baseConfig = `
listen:
  grpc: 127.0.0.1:0
  admin: 127.0.0.1:0
  shutdown_grace: 5s
log: {level: debug, format: json}
mint:
  issuer: https://tokentailor.test
  keys: [{file: signing.pem, kid: k1}]
issuers:
  - issuer: {{ISSUER}}
    jwks_url: {{ISSUER}}/jwks.json
    audiences: [api.example.com]
    jwks_min_refetch: 1h
routes:
  - name: orders
    match: {path_prefix: /orders}
    require: {scopes: [orders:read]}
    upstream:
      audience: orders-api
      scopes: [orders:read, orders:write]
      copy_claims: {tenant: ""}
      ttl: 2m
  - name: internal-header
    require: {}
    match: {path_prefix: /internal}
    upstream:
      audience: internal-api
      header: x-internal-token
  - name: docs
    public: true
    match: {path_prefix: /docs}
`

func newHarness(t *testing.T, cfg string) *harness {
	t.Helper()
	return newHarnessWith(t, cfg, nil)
}

// newHarnessWith lets setup add endpoints to the issuer before the server starts.
func newHarnessWith(t *testing.T, cfg string, setup func(*authztest.Issuer)) *harness {
	t.Helper()
	return newHarnessClock(t, cfg, setup, nil)
}

// newHarnessClock runs the server on the clock now (nil: time.Now).
func newHarnessClock(t *testing.T, cfg string, setup func(*authztest.Issuer), now func() time.Time) *harness {
	t.Helper()
	h := startHarness(t, cfg, setup, now)
	h.waitReady()
	return h
}

// startHarness starts the server without waiting for it to be ready.
func startHarness(t *testing.T, cfg string, setup func(*authztest.Issuer), now func() time.Time) *harness {
	t.Helper()
	return startHarnessWith(t, cfg, setup, now, nil)
}

// startHarnessWith is startHarness with opts applied to the server's Options.
func startHarnessWith(t *testing.T, cfg string, setup func(*authztest.Issuer), now func() time.Time, opts func(*Options)) *harness {
	t.Helper()
	h := &harness{t: t, is: authztest.New(t), dir: t.TempDir(), logs: &syncBuffer{}, now: now}
	if setup != nil {
		setup(h.is)
	}
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	h.mintPub, h.mintPriv = pub, priv
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	h.write("signing.pem", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
	h.write("config.yaml", strings.ReplaceAll(cfg, "{{ISSUER}}", h.is.URL()))
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	o := Options{ConfigPath: filepath.Join(h.dir, "config.yaml"), LogOutput: h.logs, ReadyTimeout: 2 * time.Second, Env: pipeline.Env{Now: h.now}}
	if opts != nil {
		opts(&o)
	}
	srv, err := New(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	h.srv = srv
	h.done = make(chan struct{})
	go func() { _ = srv.Serve(ctx, nil); close(h.done) }()
	h.conn, err = grpc.NewClient(srv.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	h.client = authv3.NewAuthorizationClient(h.conn)
	t.Cleanup(h.stop)
	return h
}

func (h *harness) stop() {
	h.cancel()
	<-h.done
	h.conn.Close()
}

// write writes a file into the server's directory. A config.yaml gets
// listen.drain 0s unless it says otherwise: tests stop many servers, and only
// the drain test wants to wait.
func (h *harness) write(name, content string) {
	h.t.Helper()
	if name == "config.yaml" && !strings.Contains(content, "  drain:") {
		content = strings.Replace("\n"+content, "\nlisten:\n", "\nlisten:\n  drain: 0s\n", 1)
	}
	if err := os.WriteFile(filepath.Join(h.dir, name), []byte(content), 0o600); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) waitReady() {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for h.srv.Authz().Pipeline().Ready() != nil {
		if time.Now().After(deadline) {
			h.t.Fatal("server never became ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (h *harness) token(claims jwt.MapClaims, opts ...authztest.SignOption) string {
	base := jwt.MapClaims{
		"iss": h.is.URL(), "sub": "alice", "aud": "api.example.com", "scope": "orders:read profile",
		"client_id": "web", "tenant": "acme", "email": "alice@example.com",
		"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(),
	}
	for k, v := range claims {
		if v == nil {
			delete(base, k)
		} else {
			base[k] = v
		}
	}
	return h.is.Sign(h.t, base, opts...)
}

func checkRequest(method, path string, headers map[string]string) *authv3.CheckRequest {
	hm := map[string]string{":method": method, ":path": path, ":authority": "app.test", ":scheme": "http"}
	for k, v := range headers {
		hm[k] = v
	}
	p, _, _ := strings.Cut(path, "?")
	_ = p
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: method, Path: path, Host: "app.test", Scheme: "http", Headers: hm,
		}},
	}}
}

func (h *harness) check(method, path string, headers map[string]string) *authv3.CheckResponse {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := h.client.Check(ctx, checkRequest(method, path, headers))
	if err != nil {
		h.t.Fatalf("Check: %v", err)
	}
	return resp
}

func httpStatus(resp *authv3.CheckResponse) int {
	if resp.GetStatus().GetCode() == int32(codes.OK) {
		return 200
	}
	return int(resp.GetDeniedResponse().GetStatus().GetCode())
}

func header(resp *authv3.CheckResponse, name string) string {
	for _, hv := range resp.GetOkResponse().GetHeaders() {
		if hv.GetHeader().GetKey() == name {
			return hv.GetHeader().GetValue()
		}
	}
	for _, hv := range resp.GetDeniedResponse().GetHeaders() {
		if strings.EqualFold(hv.GetHeader().GetKey(), name) {
			return hv.GetHeader().GetValue()
		}
	}
	return ""
}

// minted parses and verifies the minted token in resp with the keys from
// the admin JWKS endpoint alone.
func (h *harness) minted(resp *authv3.CheckResponse, name string) jwt.MapClaims {
	h.t.Helper()
	v := strings.TrimPrefix(header(resp, name), "Bearer ")
	if v == "" {
		h.t.Fatalf("no %s header in %v", name, resp)
	}
	res, err := http.Get("http://" + h.srv.AdminAddr().String() + "/.well-known/jwks.json")
	if err != nil {
		h.t.Fatal(err)
	}
	defer res.Body.Close()
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.NewDecoder(res.Body).Decode(&set); err != nil {
		h.t.Fatal(err)
	}
	claims := jwt.MapClaims{}
	_, err = jwt.ParseWithClaims(v, claims, func(tok *jwt.Token) (any, error) {
		for _, k := range set.Keys {
			if k["kid"] == tok.Header["kid"] && k["kty"] == "OKP" {
				x, err := base64.RawURLEncoding.DecodeString(k["x"])
				return ed25519.PublicKey(x), err
			}
		}
		return nil, fmt.Errorf("kid %v not in JWKS", tok.Header["kid"])
	}, jwt.WithValidMethods([]string{"EdDSA"}), jwt.WithAudience("orders-api", "internal-api"), jwt.WithIssuer("https://tokentailor.test"))
	if err != nil {
		h.t.Fatalf("minted token does not verify with the published JWKS: %v", err)
	}
	return claims
}

func TestCheckAllowsAndMintsNarrowedToken(t *testing.T) {
	h := newHarness(t, baseConfig)
	in := h.token(jwt.MapClaims{"scope": "orders:read profile admin"})
	resp := h.check("GET", "/orders/1?x=y", map[string]string{"authorization": "Bearer " + in})
	if httpStatus(resp) != 200 {
		t.Fatalf("want allow, got %v", resp)
	}
	c := h.minted(resp, "authorization")
	if c["sub"] != "alice" || c["aud"] != "orders-api" || c["scope"] != "orders:read" || c["tenant"] != "acme" {
		t.Fatalf("minted claims = %v", c)
	}
	if _, ok := c["email"]; ok {
		t.Fatal("claim outside the allowlist was copied")
	}
	// The token's first Check kept no minted token (it might never come
	// back); its second, whose principal comes from the validation cache,
	// mints one that is kept, and the third gets that one.
	second := h.check("GET", "/orders/2", map[string]string{"authorization": "Bearer " + in})
	if header(second, "authorization") == header(resp, "authorization") {
		t.Fatal("the first Check's minted token was kept")
	}
	third := h.check("GET", "/orders/3", map[string]string{"authorization": "Bearer " + in})
	if header(third, "authorization") != header(second, "authorization") {
		t.Fatal("minted token not reused from cache")
	}
}

// README invariant 1.
func TestInvariantNoAllowWithoutValidatedCredential(t *testing.T) {
	h := newHarness(t, baseConfig)
	good := h.token(nil)
	parts := strings.Split(good, ".")
	cases := map[string]map[string]string{
		"none":              {},
		"empty bearer":      {"authorization": "Bearer "},
		"garbage":           {"authorization": "Bearer garbage"},
		"tampered payload":  {"authorization": "Bearer " + parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"`+h.is.URL()+`","sub":"mallory","aud":"api.example.com","scope":"orders:read","exp":9999999999}`)) + "." + parts[2]},
		"stripped sig":      {"authorization": "Bearer " + parts[0] + "." + parts[1] + "."},
		"basic scheme":      {"authorization": "Basic " + good},
		"internal header":   {"x-internal-token": good},
		"two authorization": {"authorization": "Bearer " + good + ",Bearer " + good},
	}
	for name, hdrs := range cases {
		for _, path := range []string{"/orders", "/internal/x"} {
			if st := httpStatus(h.check("GET", path, hdrs)); st == 200 {
				t.Errorf("%s on %s: allowed", name, path)
			}
		}
	}
	if st := httpStatus(h.check("GET", "/docs/x", nil)); st != 200 {
		t.Errorf("public route without credential: %d", st)
	}
}

// README invariant 2.
func TestInvariantInternalTokenNeverOutlivesIncoming(t *testing.T) {
	h := newHarness(t, baseConfig)
	for _, left := range []time.Duration{30 * time.Second, 90 * time.Second, time.Hour} {
		exp := time.Now().Add(left).Unix()
		resp := h.check("GET", "/orders", map[string]string{"authorization": "Bearer " + h.token(jwt.MapClaims{"exp": exp, "scope": "orders:read orders:write"})})
		c := h.minted(resp, "authorization")
		mexp, _ := c.GetExpirationTime()
		if mexp.Unix() > exp {
			t.Errorf("incoming exp %d, minted exp %d", exp, mexp.Unix())
		}
		if mexp.Unix() > time.Now().Add(2*time.Minute+time.Second).Unix() {
			t.Errorf("minted exp beyond route ttl")
		}
		if c["aud"] != "orders-api" {
			t.Errorf("aud = %v", c["aud"])
		}
		if c["scope"] != "orders:read orders:write" {
			t.Errorf("scope = %v", c["scope"])
		}
	}
}

// README invariant 3.
func TestInvariantClientInternalHeaderNeverReachesUpstream(t *testing.T) {
	h := newHarness(t, baseConfig)
	forged := "forged"
	tok := h.token(nil)
	// Allowed with a header route: the forged value is overwritten.
	resp := h.check("GET", "/internal/a", map[string]string{"authorization": "Bearer " + tok, "x-internal-token": forged})
	if httpStatus(resp) != 200 {
		t.Fatalf("want allow: %v", resp)
	}
	var set bool
	for _, hv := range resp.GetOkResponse().GetHeaders() {
		if hv.GetHeader().GetKey() == "x-internal-token" {
			set = true
			if hv.GetHeader().GetValue() == forged || hv.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
				t.Fatalf("internal header not overwritten: %v", hv)
			}
		}
	}
	if !set {
		t.Fatal("internal header not set")
	}
	if !contains(resp.GetOkResponse().GetHeadersToRemove(), "authorization") {
		t.Error("client credential not stripped")
	}
	// Public route: both internal header names are removed.
	resp = h.check("GET", "/docs/a", map[string]string{"x-internal-token": forged, "authorization": "Bearer " + forged})
	rm := resp.GetOkResponse().GetHeadersToRemove()
	if !contains(rm, "x-internal-token") || !contains(rm, "authorization") {
		t.Fatalf("public route keeps client-sent internal headers: %v", rm)
	}
}

// README invariant 3 on the warm path: a cached token's answer is kept
// (response.Builder.AllowFor), and still every request that sends another
// route's internal header gets it removed, and no other request does.
func TestInvariantInternalHeaderRemovedOnWarmChecks(t *testing.T) {
	h := newHarness(t, baseConfig)
	tok := h.token(jwt.MapClaims{"scope": "orders:read orders:write"})
	var kept *authv3.CheckResponse
	for i, forge := range []bool{false, false, false, true, false, true, true, false} {
		hdr := map[string]string{"authorization": "Bearer " + tok}
		if forge {
			hdr["x-internal-token"] = "forged"
		}
		resp, err := h.srv.Authz().Check(context.Background(), checkRequest("GET", "/orders", hdr))
		if err != nil || httpStatus(resp) != 200 {
			t.Fatalf("Check %d: want allow: %v, %v", i, resp, err)
		}
		if removed := contains(resp.GetOkResponse().GetHeadersToRemove(), "x-internal-token"); removed != forge {
			t.Fatalf("Check %d: x-internal-token sent %v, removed %v", i, forge, removed)
		}
		if i == 1 {
			kept = resp // the second Check keeps the principal and its answer
		}
		if i == 2 && resp != kept {
			t.Error("the warm answer was not kept (response.Builder.AllowFor)")
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// README invariant 4.
func TestInvariantTokensNeverLogged(t *testing.T) {
	h := newHarness(t, baseConfig)
	var tokens []string
	for _, c := range []jwt.MapClaims{nil, {"exp": time.Now().Add(-time.Hour).Unix()}, {"aud": "other"}, {"scope": "none"}} {
		tok := h.token(c)
		tokens = append(tokens, tok)
		h.check("GET", "/orders", map[string]string{"authorization": "Bearer " + tok})
	}
	for _, tok := range []string{"opaque-secret-value-123", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."} {
		tokens = append(tokens, tok)
		h.check("GET", "/orders", map[string]string{"authorization": "Bearer " + tok})
	}
	logs := h.logs.String()
	if !strings.Contains(logs, `"msg":"deny"`) || !strings.Contains(logs, `"msg":"allow"`) {
		t.Fatalf("decisions not logged:\n%s", logs)
	}
	for _, tok := range tokens {
		for _, part := range strings.Split(tok, ".") {
			if len(part) > 16 && strings.Contains(logs, part) {
				t.Fatalf("token material in logs: %q", part)
			}
		}
	}
	res, err := http.Get("http://" + h.srv.AdminAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(body), `tokentailor_decisions_total{reason="token_expired"`) &&
		!strings.Contains(string(body), `reason="token_expired"`) {
		t.Errorf("metrics lack the expired decision:\n%s", body)
	}
	for _, tok := range tokens {
		if strings.Contains(string(body), tok[:16]) {
			t.Fatal("token material in metrics")
		}
	}
}

// README invariant 5 (JWT side): keys never fetched ⇒ 503, not allow.
func TestInvariantUnreachableIssuerFailsClosed(t *testing.T) {
	is := authztest.New(t)
	is.SetDown(true)
	dir := t.TempDir()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	os.WriteFile(filepath.Join(dir, "signing.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(strings.ReplaceAll(baseConfig, "{{ISSUER}}", is.URL())), 0o600)
	cfgPath := filepath.Join(dir, "config.yaml")
	srv, err := New(context.Background(), Options{ConfigPath: cfgPath, LogOutput: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.closeListeners()
	tok := is.Sign(t, jwt.MapClaims{"iss": is.URL(), "sub": "a", "aud": "api.example.com", "scope": "orders:read", "exp": time.Now().Add(time.Hour).Unix()})
	resp, err := srv.Authz().Check(context.Background(), checkRequest("GET", "/orders", map[string]string{"authorization": "Bearer " + tok}))
	if err != nil {
		t.Fatal(err)
	}
	if httpStatus(resp) != 503 {
		t.Fatalf("want 503 with the issuer down, got %d", httpStatus(resp))
	}
	if srv.Authz().Pipeline().Ready() == nil {
		t.Fatal("ready without keys")
	}
}

// README invariant 7, and the bad-input list of the core issue.
func TestInvariantDenialsFollowRFC6750(t *testing.T) {
	h := newHarness(t, baseConfig)
	now := time.Now()
	rsaPEM := h.is.PublicKeyPEM("RS256")
	huge := "Bearer " + strings.Repeat("a", 9000)
	tests := []struct {
		name      string
		headers   map[string]string
		path      string
		want      int
		challenge string
	}{
		{name: "valid", headers: map[string]string{"authorization": "Bearer " + h.token(nil)}, want: 200},
		{name: "lowercase bearer", headers: map[string]string{"authorization": "bearer " + h.token(nil)}, want: 200},
		{name: "missing", want: 401, challenge: `Bearer realm="tokentailor"`},
		{name: "alg none", headers: map[string]string{"authorization": "Bearer " + h.token(nil, authztest.WithAlg("none"))}, want: 401, challenge: `error="invalid_token"`},
		{name: "HS256 with RSA public key", headers: map[string]string{"authorization": "Bearer " + h.token(nil, authztest.WithAlg("HS256"), authztest.WithHMACKey(rsaPEM))}, want: 401, challenge: `error="invalid_token"`},
		{name: "unknown kid", headers: map[string]string{"authorization": "Bearer " + h.token(nil, authztest.WithKid("nope"))}, want: 401, challenge: `error="invalid_token"`},
		{name: "expired", headers: map[string]string{"authorization": "Bearer " + h.token(jwt.MapClaims{"exp": now.Add(-time.Hour).Unix()})}, want: 401, challenge: `error="invalid_token"`},
		{name: "nbf in future", headers: map[string]string{"authorization": "Bearer " + h.token(jwt.MapClaims{"nbf": now.Add(time.Hour).Unix()})}, want: 401, challenge: `error="invalid_token"`},
		{name: "wrong iss", headers: map[string]string{"authorization": "Bearer " + h.token(jwt.MapClaims{"iss": "https://evil.test"})}, want: 401, challenge: `error="invalid_token"`},
		{name: "wrong aud", headers: map[string]string{"authorization": "Bearer " + h.token(jwt.MapClaims{"aud": "other"})}, want: 401, challenge: `error="invalid_token"`},
		{name: "missing scope", headers: map[string]string{"authorization": "Bearer " + h.token(jwt.MapClaims{"scope": "profile"})}, want: 403, challenge: `error="insufficient_scope"`},
		{name: "garbage base64", headers: map[string]string{"authorization": "Bearer eyJ%%%.@@@.###"}, want: 401},
		{name: "huge token", headers: map[string]string{"authorization": huge}, want: 401, challenge: `error="invalid_token"`},
		{name: "two authorization headers", headers: map[string]string{"authorization": "Bearer a,Bearer b"}, want: 401},
		{name: "no route", path: "/nowhere", headers: map[string]string{"authorization": "Bearer " + h.token(nil)}, want: 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.path
			if path == "" {
				path = "/orders"
			}
			resp := h.check("GET", path, tt.headers)
			if got := httpStatus(resp); got != tt.want {
				t.Fatalf("status = %d, want %d (%v)", got, tt.want, resp)
			}
			if tt.want == 401 && !strings.HasPrefix(header(resp, "www-authenticate"), "Bearer ") {
				t.Fatalf("401 without a Bearer challenge: %v", resp)
			}
			if ch := header(resp, "www-authenticate"); !strings.Contains(ch, tt.challenge) {
				t.Fatalf("challenge %q lacks %q", ch, tt.challenge)
			}
		})
	}
	// The insufficient_scope challenge names the scope.
	resp := h.check("GET", "/orders", map[string]string{"authorization": "Bearer " + h.token(jwt.MapClaims{"scope": "profile"})})
	if ch := header(resp, "www-authenticate"); !strings.Contains(ch, `scope="orders:read"`) {
		t.Fatalf("challenge %q does not name the scope", ch)
	}
}

func TestNonHTTPCheckIsAGRPCError(t *testing.T) {
	h := newHarness(t, baseConfig)
	_, err := h.client.Check(context.Background(), &authv3.CheckRequest{})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("err = %v, want InvalidArgument", err)
	}
}

// TestUpperCaseHeaderNamesOverGRPC: a request whose headers map has names
// that are not lower case (Envoy never sends one; a hand-built client may)
// is decoded without the lower-case promise, so the request view still
// lower-cases the names: the credential is found, and a second value under
// another spelling is refused, as with Envoy's merged header.
func TestUpperCaseHeaderNamesOverGRPC(t *testing.T) {
	h := newHarness(t, baseConfig)
	tok := h.token(nil)
	if resp := h.check("GET", "/orders/1", map[string]string{"Authorization": "Bearer " + tok}); httpStatus(resp) != 200 {
		t.Errorf("Authorization spelled with a capital: %v, want allow", resp.GetDeniedResponse())
	}
	resp := h.check("GET", "/orders/1", map[string]string{"authorization": "Bearer " + tok, "AUTHORIZATION": "Bearer other"})
	if httpStatus(resp) != 401 || !strings.Contains(header(resp, "www-authenticate"), "malformed") {
		t.Errorf("two authorization headers under two spellings: %d %q, want 401, malformed", httpStatus(resp), header(resp, "www-authenticate"))
	}
}

func TestAdminEndpointsAndHealth(t *testing.T) {
	h := newHarness(t, baseConfig)
	base := "http://" + h.srv.AdminAddr().String()
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/metrics": 200, "/.well-known/jwks.json": 200, "/nope": 404, "/debug/pprof/": 404} {
		res, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Errorf("%s: %d, want %d", path, res.StatusCode, want)
		}
	}
	// The health status follows readiness within a tick.
	deadline := time.Now().Add(3 * time.Second)
	for {
		hc, err := healthpb.NewHealthClient(h.conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: authv3.Authorization_ServiceDesc.ServiceName})
		if err == nil && hc.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gRPC health = %v, %v", hc, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestReloadSwapsAtomicallyAndRefusesBadConfig(t *testing.T) {
	h := newHarness(t, baseConfig)
	tok := h.token(nil)
	hdr := map[string]string{"authorization": "Bearer " + tok}

	// Checks run all along; none may fail or error during the swaps.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var failures sync.Map
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := h.client.Check(context.Background(), checkRequest("GET", "/orders", hdr))
				if err != nil || httpStatus(resp) != 200 {
					failures.Store(fmt.Sprint(err, resp.GetDeniedResponse().GetBody()), true)
				}
			}
		}()
	}
	ctx := context.Background()
	// A bad config is refused; the old one keeps serving.
	h.write("config.yaml", strings.ReplaceAll(baseConfig, "ttl: 2m", "ttl: -5m"))
	if err := h.srv.Reload(ctx, false); err == nil {
		t.Fatal("bad config accepted")
	}
	// A good change (a second key, then signing with it) is swapped in.
	_, priv2, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(priv2)
	h.write("signing2.pem", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
	two := strings.Replace(strings.ReplaceAll(baseConfig, "{{ISSUER}}", h.is.URL()), "keys: [{file: signing.pem, kid: k1}]", "keys: [{file: signing.pem, kid: k1}, {file: signing2.pem, kid: k2}]", 1)
	h.write("config.yaml", two)
	if err := h.srv.Reload(ctx, false); err != nil {
		t.Fatal(err)
	}
	jwks := h.srv.Authz().Pipeline().JWKS()
	if !bytes.Contains(jwks, []byte(`"k2"`)) || !bytes.Contains(jwks, []byte(`"k1"`)) {
		t.Fatalf("both keys must be published: %s", jwks)
	}
	h.write("config.yaml", strings.Replace(two, "keys: [", "signing_key: k2\n  keys: [", 1))
	if err := h.srv.Reload(ctx, false); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	failures.Range(func(k, _ any) bool { t.Errorf("check failed during reload: %v", k); return true })
	if got := h.srv.Authz().Pipeline().Minter.SigningKeyID(); got != "k2" {
		t.Fatalf("signing key = %q after rotation", got)
	}
}

func TestReloadOnFileChange(t *testing.T) {
	h := newHarness(t, baseConfig)
	h.write("config.yaml", strings.ReplaceAll(strings.ReplaceAll(baseConfig, "{{ISSUER}}", h.is.URL()), "ttl: 2m", "ttl: 1m"))
	deadline := time.Now().Add(10 * time.Second)
	for h.srv.Authz().Pipeline().Config.Routes[0].Upstream.TTL.Duration != time.Minute {
		if time.Now().After(deadline) {
			t.Fatal("config file change not picked up")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestPprofOnlyWhenConfigured(t *testing.T) {
	h := newHarness(t, strings.Replace(baseConfig, "  shutdown_grace: 5s", "  shutdown_grace: 5s\n  pprof: true", 1))
	res, err := http.Get("http://" + h.srv.AdminAddr().String() + "/debug/pprof/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("/debug/pprof/ with pprof on: %d", res.StatusCode)
	}
}

func TestPublicRouteIgnoresTheCredential(t *testing.T) {
	h := newHarness(t, baseConfig)
	for name, hdr := range map[string]map[string]string{
		"basic":            {"authorization": "Basic dXNlcjpwYXNz"},
		"two values":       {"authorization": "Bearer a,Bearer b"},
		"expired jwt":      {"authorization": "Bearer " + h.token(jwt.MapClaims{"exp": time.Now().Add(-time.Hour).Unix()})},
		"forged internal":  {"x-internal-token": "forged"},
		"no header at all": {},
	} {
		resp := h.check("GET", "/docs/page", hdr)
		if httpStatus(resp) != 200 {
			t.Errorf("%s: public route answered %d", name, httpStatus(resp))
		}
		rm := resp.GetOkResponse().GetHeadersToRemove()
		if !contains(rm, "x-internal-token") || !contains(rm, "authorization") {
			t.Errorf("%s: internal headers not removed: %v", name, rm)
		}
	}
}

// A refused config is not rebuilt on every poll, only when its files change
// (or on SIGHUP); after Serve returns, Reload does nothing.
func TestRefusedConfigIsNotRetriedUntilChanged(t *testing.T) {
	h := newHarness(t, baseConfig)
	ctx := context.Background()
	bad := strings.ReplaceAll(strings.ReplaceAll(baseConfig, "{{ISSUER}}", h.is.URL()), "ttl: 2m", "ttl: 2m\n      mode: exchange")
	h.write("config.yaml", bad)
	if err := h.srv.Reload(ctx, false); err == nil {
		t.Fatal("a route in mode exchange without a token endpoint was accepted")
	}
	if err := h.srv.Reload(ctx, false); err != nil {
		t.Fatalf("the same refused files were rebuilt: %v", err)
	}
	if err := h.srv.Reload(ctx, true); err == nil {
		t.Fatal("a forced reload (SIGHUP) must try again and fail again")
	}
	h.stop()
	h.write("config.yaml", strings.ReplaceAll(strings.ReplaceAll(baseConfig, "{{ISSUER}}", h.is.URL()), "ttl: 2m", "ttl: 1m"))
	if err := h.srv.Reload(ctx, true); err != nil {
		t.Fatalf("reload after stop: %v", err)
	}
	if got := h.srv.Authz().Pipeline().Config.Routes[0].Upstream.TTL.Duration; got != 2*time.Minute {
		t.Fatalf("a reload happened after the server stopped: ttl %v", got)
	}
}

// TestTuneRuntime: the config's runtime section sets the GC target and the
// soft memory limit, unless GOGC or GOMEMLIMIT is set in the environment.
func TestTuneRuntime(t *testing.T) {
	gc0 := debug.SetGCPercent(-1)
	debug.SetGCPercent(gc0)
	limit0 := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetGCPercent(gc0); debug.SetMemoryLimit(limit0) })
	cfg := &config.Config{Runtime: config.Runtime{GCPercent: 300, MemoryLimit: "200Mi"}, Cache: config.Cache{MaxEntries: 10}}
	log := slog.New(slog.DiscardHandler)

	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	tuneRuntime(cfg, log)
	if gc := debug.SetGCPercent(gc0); gc != 300 {
		t.Errorf("gc percent %d, want 300", gc)
	}
	if l := debug.SetMemoryLimit(limit0); l != 200<<20 {
		t.Errorf("memory limit %d, want 200Mi", l)
	}

	t.Setenv("GOGC", "150")
	t.Setenv("GOMEMLIMIT", "1GiB")
	tuneRuntime(cfg, log)
	if gc := debug.SetGCPercent(gc0); gc != gc0 {
		t.Errorf("GOGC set: gc percent changed to %d", gc)
	}
	if l := debug.SetMemoryLimit(limit0); l != limit0 {
		t.Errorf("GOMEMLIMIT set: memory limit changed to %d", l)
	}
}

// TestRestartSettings: what a reload cannot apply is told apart from what it
// can. cache.max_entries applies on reload, but an "auto" memory limit
// derived from it does not.
func TestRestartSettings(t *testing.T) {
	tests := []struct {
		name        string
		limit       string // memory_limit of both configs
		edit        func(*config.Config)
		needRestart bool
	}{
		{"max_entries with a fixed limit", "96Mi", func(c *config.Config) { c.Cache.MaxEntries = 20000 }, false},
		{"max_entries with the auto limit", "auto", func(c *config.Config) { c.Cache.MaxEntries = 20000 }, true},
		{"gc_percent", "96Mi", func(c *config.Config) { c.Runtime.GCPercent = 200 }, true},
		{"memory_limit", "96Mi", func(c *config.Config) { c.Runtime.MemoryLimit = "128Mi" }, true},
		{"log format", "96Mi", func(c *config.Config) { c.Log.Format = "text" }, true},
		{"tracing", "96Mi", func(c *config.Config) { c.Tracing.Enabled = true }, true},
	}
	for _, tc := range tests {
		cfg := func() *config.Config {
			return &config.Config{Runtime: config.Runtime{GCPercent: 400, MemoryLimit: tc.limit}, Cache: config.Cache{MaxEntries: 10000}}
		}
		before, after := cfg(), cfg()
		tc.edit(after)
		if got := restartSettings(before) != restartSettings(after); got != tc.needRestart {
			t.Errorf("%s: needs restart = %v, want %v", tc.name, got, tc.needRestart)
		}
	}
}
