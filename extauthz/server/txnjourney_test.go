package server

import (
	"encoding/json"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokentailor/tokentailor/extauthz/authztest"
	"github.com/tokentailor/tokentailor/extauthz/txntoken"
)

// txnChainConfig has an edge route that mints a Txn-Token from an access
// token and three routes of a service inside the trust domain that take a
// Txn-Token: one narrows it, one passes it on, one needs a scope it lacks.
const txnChainConfig = baseConfig + `
  - name: edge
    match: {path_prefix: /edge}
    require: {scopes: [orders:read]}
    upstream: {mode: txn_token, scopes: [orders:read, orders:write]}
  - name: inner
    accept: txn_token
    match: {path_prefix: /inner}
    require: {scopes: [orders:read]}
    upstream: {mode: txn_token, scopes: [orders:read, orders:delete]}
  - name: pass
    accept: txn_token
    match: {path_prefix: /pass}
    require: {}
    upstream: {mode: forward}
  - name: admin
    accept: txn_token
    match: {path_prefix: /admin}
    require: {scopes: [orders:admin]}
    upstream: {mode: txn_token, scopes: [orders:admin]}
txn_token:
  trust_domain: shop.example
  workload: gateway.shop.example
  ttl: 60s
  context: {channel: web}
`

// claimsOf decodes a JWT's payload without verifying it (the verifying is
// the server's, and go-jose's in TestTxnTokenThroughTheServer).
func claimsOf(t *testing.T, tok string) map[string]any {
	t.Helper()
	c := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(tok, c); err != nil {
		t.Fatalf("not a JWT: %v", err)
	}
	return c
}

// forgeTxn signs claims as tokentailor would (its key, kid k1), with typ.
func (h *harness) forgeTxn(claims jwt.MapClaims, typ string) string {
	h.t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	tok.Header["typ"], tok.Header["kid"] = typ, "k1"
	s, err := tok.SignedString(h.mintPriv)
	if err != nil {
		h.t.Fatal(err)
	}
	return s
}

// TestTxnTokenChainThroughTheServer: the edge mints a Txn-Token; the next
// service's sidecar verifies it and narrows it (scope cut, never widened;
// txn, sub, tctx kept; the edge's req_wl kept in req_wl_chain; exp no
// later), passes it on unchanged, or refuses a route whose scope it lacks.
func TestTxnTokenChainThroughTheServer(t *testing.T) {
	h := newHarness(t, txnChainConfig)
	at := h.token(jwt.MapClaims{"scope": "orders:read orders:write"})
	edge := h.check("GET", "/edge/1", map[string]string{"authorization": "Bearer " + at})
	if httpStatus(edge) != 200 {
		t.Fatalf("edge: status %d", httpStatus(edge))
	}
	outer := header(edge, "txn-token")
	oc := claimsOf(t, outer)
	if oc["scope"] != "orders:read orders:write" {
		t.Fatalf("edge Txn-Token scope %v", oc["scope"])
	}

	inner := h.check("POST", "/inner/1", map[string]string{"txn-token": outer})
	if httpStatus(inner) != 200 {
		t.Fatalf("inner: status %d", httpStatus(inner))
	}
	narrowed := header(inner, "txn-token")
	nc := claimsOf(t, narrowed)
	if nc["scope"] != "orders:read" {
		t.Errorf("narrowed scope %v, want orders:read (orders:write not the route's, orders:delete never the token's)", nc["scope"])
	}
	for _, name := range []string{"txn", "sub", "aud", "tctx", "rctx"} {
		if a, b := mustJSON(t, oc[name]), mustJSON(t, nc[name]); a != b {
			t.Errorf("%s changed: %s → %s", name, a, b)
		}
	}
	if chain := mustJSON(t, nc[txntoken.ChainClaim]); chain != `["gateway.shop.example"]` {
		t.Errorf("req_wl_chain %s", chain)
	}
	if nc["exp"].(float64) > oc["exp"].(float64) {
		t.Errorf("the replacement outlives the Txn-Token it replaces: %v > %v", nc["exp"], oc["exp"])
	}

	pass := h.check("GET", "/pass/1", map[string]string{"txn-token": outer})
	if httpStatus(pass) != 200 || header(pass, "txn-token") != outer {
		t.Errorf("pass: status %d, the Txn-Token must go on as received", httpStatus(pass))
	}
	if st := httpStatus(h.check("GET", "/admin/1", map[string]string{"txn-token": outer})); st != 403 {
		t.Errorf("a route needing a scope the Txn-Token lacks: status %d, want 403", st)
	}
	if st := httpStatus(h.check("GET", "/inner/1", map[string]string{"txn-token": narrowed})); st != 200 {
		t.Errorf("a replacement is itself a valid Txn-Token for the next hop: status %d", st)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestTxnTokenRefusedThroughTheServer: one bad Txn-Token per rule of the
// draft's validation, each a 401, and a Txn-Token is never an access token.
func TestTxnTokenRefusedThroughTheServer(t *testing.T) {
	h := newHarness(t, txnChainConfig)
	now := time.Now()
	good := func() jwt.MapClaims {
		return jwt.MapClaims{"aud": "shop.example", "txn": "t-1", "sub": "alice", "scope": "orders:read", "req_wl": "gw",
			"iat": now.Add(-time.Second).Unix(), "exp": now.Add(time.Minute).Unix()}
	}
	with := func(k string, v any) jwt.MapClaims { c := good(); c[k] = v; return c }
	tests := []struct {
		name    string
		path    string
		headers map[string]string
		want    int
	}{
		{name: "a well-formed Txn-Token passes", path: "/inner/1", headers: map[string]string{"txn-token": h.forgeTxn(good(), "txntoken+jwt")}, want: 200},
		{name: "wrong aud (another trust domain)", path: "/inner/1", headers: map[string]string{"txn-token": h.forgeTxn(with("aud", "bank.example"), "txntoken+jwt")}, want: 401},
		{name: "expired", path: "/inner/1", headers: map[string]string{"txn-token": h.forgeTxn(with("exp", now.Add(-time.Minute).Unix()), "txntoken+jwt")}, want: 401},
		{name: "iat in the future", path: "/inner/1", headers: map[string]string{"txn-token": h.forgeTxn(with("iat", now.Add(time.Hour).Unix()), "txntoken+jwt")}, want: 401},
		{name: "lives longer than 10m", path: "/inner/1", headers: map[string]string{"txn-token": h.forgeTxn(with("exp", now.Add(time.Hour).Unix()), "txntoken+jwt")}, want: 401},
		{name: "typ JWT", path: "/inner/1", headers: map[string]string{"txn-token": h.forgeTxn(good(), "JWT")}, want: 401},
		{name: "no txn", path: "/inner/1", headers: map[string]string{"txn-token": h.forgeTxn(with("txn", nil), "txntoken+jwt")}, want: 401},
		{name: "signed by an access token issuer", path: "/inner/1", headers: map[string]string{"txn-token": h.is.Sign(t, good(), authztest.WithTyp("txntoken+jwt"))}, want: 401},
		{name: "two Txn-Token values", path: "/inner/1", headers: map[string]string{"txn-token": h.forgeTxn(good(), "txntoken+jwt") + "," + h.forgeTxn(good(), "txntoken+jwt")}, want: 401},
		{name: "none at all", path: "/inner/1", headers: map[string]string{}, want: 401},
		{name: "a Txn-Token as Authorization on a Txn-Token route", path: "/inner/1", headers: map[string]string{"authorization": "Bearer " + h.forgeTxn(good(), "txntoken+jwt")}, want: 401},
		{name: "a Txn-Token as an access token", path: "/orders/1", headers: map[string]string{"authorization": "Bearer " + h.forgeTxn(with("iss", "https://tokentailor.test"), "txntoken+jwt")}, want: 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := httpStatus(h.check("GET", tt.path, tt.headers)); got != tt.want {
				t.Errorf("status %d, want %d", got, tt.want)
			}
		})
	}
}

// txnServiceConfig mints nothing: Txn-Tokens come from an external TTS
// (a double: no real Txn-Token Service can run on this machine).
const txnServiceConfig = baseConfig + `
  - name: edge
    match: {path_prefix: /edge}
    require: {scopes: [orders:read]}
    upstream: {mode: txn_token, scopes: [orders:read]}
  - name: inner
    accept: txn_token
    match: {path_prefix: /inner}
    require: {scopes: [orders:read]}
    upstream: {mode: txn_token, scopes: [orders:read]}
txn_token:
  trust_domain: shop.example
  context: {channel: web}
  jwks_url: {{TTS}}/jwks.json
txn_token_service:
  token_endpoint: {{TTS}}/token
  client: {id: tt-sidecar, secret: {env: TT_TEST_TTS_SECRET}}
`

// ttsDouble is a Txn-Token Service that answers per the draft's profile,
// records each request, and can be told to misbehave.
type ttsDouble struct {
	is    *authztest.Issuer
	mu    sync.Mutex
	forms []url.Values
	tweak func(c jwt.MapClaims)
}

func newTTS(t *testing.T) *ttsDouble {
	d := &ttsDouble{is: authztest.New(t)}
	x := d.is.Exchange(t, authztest.WithClientSecret("tt-sidecar", "tts-secret"))
	x.SetIssue(func(form url.Values) map[string]any {
		d.mu.Lock()
		d.forms = append(d.forms, form)
		tweak := d.tweak
		d.mu.Unlock()
		c := jwt.MapClaims{"aud": form.Get("audience"), "txn": "tts-txn-1", "sub": "alice", "scope": form.Get("scope"), "req_wl": "tts.shop.example",
			"iat": time.Now().Unix(), "exp": time.Now().Add(30 * time.Second).Unix()}
		if form.Get("subject_token_type") == txntoken.TokenType {
			c["req_wl"] = "inner.shop.example"
		}
		var rctx map[string]any
		if json.Unmarshal([]byte(form.Get("request_context")), &rctx) == nil {
			c["rctx"] = rctx
		}
		if tweak != nil {
			tweak(c)
		}
		return map[string]any{"access_token": d.is.Sign(t, c, authztest.WithTyp(txntoken.Type)), "issued_token_type": txntoken.TokenType, "token_type": "N_A"}
	})
	return d
}

func (d *ttsDouble) last() url.Values {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.forms[len(d.forms)-1]
}

func (d *ttsDouble) set(f func(c jwt.MapClaims)) {
	d.mu.Lock()
	d.tweak = f
	d.mu.Unlock()
}

// TestTxnTokenServiceThroughTheServer: with txn_token_service, mode
// txn_token sends the draft's Txn-Token Request to the TTS and hands the
// upstream the verified answer; a replacement goes there too; an answer
// that widens the scope, names another trust domain, outlives the access
// token or changes txn is refused.
func TestTxnTokenServiceThroughTheServer(t *testing.T) {
	t.Setenv("TT_TEST_TTS_SECRET", "tts-secret")
	tts := newTTS(t)
	h := newHarness(t, strings.ReplaceAll(txnServiceConfig, "{{TTS}}", tts.is.URL()))
	at := h.token(jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix()})

	resp := h.check("GET", "/edge/1", map[string]string{"authorization": "Bearer " + at})
	if httpStatus(resp) != 200 {
		t.Fatalf("edge: status %d", httpStatus(resp))
	}
	tok := header(resp, "txn-token")
	if c := claimsOf(t, tok); c["txn"] != "tts-txn-1" || c["iss"] != tts.is.URL() {
		t.Errorf("the upstream did not get the TTS's Txn-Token: %v", c)
	}
	if !removed(resp, "authorization") {
		t.Error("Authorization is not removed")
	}
	f := tts.last()
	for name, want := range map[string]string{
		"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange", "requested_token_type": txntoken.TokenType,
		"audience": "shop.example", "scope": "orders:read", "subject_token": at,
		"subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
	} {
		if f.Get(name) != want {
			t.Errorf("request %s = %q, want %q", name, f.Get(name), want)
		}
	}
	var rc, rd map[string]any
	if err := json.Unmarshal([]byte(f.Get("request_context")), &rc); err != nil || rc["authn"] != "bearer" {
		t.Errorf("request_context %q", f.Get("request_context"))
	}
	if err := json.Unmarshal([]byte(f.Get("request_details")), &rd); err != nil || rd["method"] != "GET" || rd["path"] != "/edge/1" || mustJSON(t, rd["tctx"]) != `{"channel":"web"}` {
		t.Errorf("request_details %q", f.Get("request_details"))
	}

	inner := h.check("GET", "/inner/1", map[string]string{"txn-token": tok})
	if httpStatus(inner) != 200 {
		t.Fatalf("inner: status %d", httpStatus(inner))
	}
	if f := tts.last(); f.Get("subject_token") != tok || f.Get("subject_token_type") != txntoken.TokenType {
		t.Errorf("replacement request: subject_token_type %q", f.Get("subject_token_type"))
	}
	if c := claimsOf(t, header(inner, "txn-token")); c["req_wl"] != "inner.shop.example" || c["txn"] != "tts-txn-1" {
		t.Errorf("replacement %v", c)
	}

	shortAT := h.token(jwt.MapClaims{"exp": time.Now().Add(2 * time.Minute).Unix()})
	tests := []struct {
		name  string
		tweak func(c jwt.MapClaims)
		path  string
		want  int
	}{
		{name: "wider scope than asked", tweak: func(c jwt.MapClaims) { c["scope"] = "orders:read orders:admin" }, path: "/edge/1", want: 403},
		{name: "another trust domain", tweak: func(c jwt.MapClaims) { c["aud"] = "bank.example" }, path: "/edge/1", want: 403},
		{name: "outlives the access token", tweak: func(c jwt.MapClaims) { c["exp"] = time.Now().Add(5 * time.Minute).Unix() }, path: "/edge/short", want: 403},
		{name: "replacement with another txn", tweak: func(c jwt.MapClaims) { c["txn"] = "other" }, path: "/inner/1", want: 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tts.set(tt.tweak)
			defer tts.set(nil)
			hs := map[string]string{"authorization": "Bearer " + at}
			if tt.path == "/edge/short" {
				hs["authorization"] = "Bearer " + shortAT
			}
			if tt.path == "/inner/1" {
				hs = map[string]string{"txn-token": tok}
			}
			if got := httpStatus(h.check("GET", tt.path, hs)); got != tt.want {
				t.Errorf("status %d, want %d", got, tt.want)
			}
		})
	}
}

// Only tokentailor hands an upstream a Txn-Token: one the client sent is
// removed on every route that does not set it, whether or not any route of
// the config issues Txn-Tokens (review finding 3).
func TestClientTxnTokenNeverReachesUpstream(t *testing.T) {
	forged := "eyJhbGciOiJub25lIiwidHlwIjoidHhudG9rZW4rand0In0.eyJzY29wZSI6ImFkbWluIn0."
	for _, c := range []struct{ name, cfg string }{
		{"txn_token block, no txn routes", baseConfig + "txn_token: {trust_domain: shop.example, workload: gw}\n"},
		{"no txn_token block", baseConfig},
		{"txn chain", txnChainConfig},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, c.cfg)
			at := h.token(jwt.MapClaims{"scope": "orders:read orders:write"})
			resp := h.check("GET", "/orders/1", map[string]string{"authorization": "Bearer " + at, "txn-token": forged})
			if httpStatus(resp) != 200 || !removed(resp, "txn-token") {
				t.Errorf("status %d, headers_to_remove %v: the client's Txn-Token reaches the upstream", httpStatus(resp), resp.GetOkResponse().GetHeadersToRemove())
			}
		})
	}
}

// On a route that takes a Txn-Token, the client's Authorization was never
// verified: it does not travel on (review finding 4).
func TestAuthorizationRemovedOnTxnTokenRoutes(t *testing.T) {
	cfg := baseConfig[:strings.Index(baseConfig, "routes:")] + `routes:
  - name: pass
    accept: txn_token
    match: {path_prefix: /pass}
    require: {}
    upstream: {mode: forward}
txn_token:
  trust_domain: shop.example
  workload: gateway.shop.example
`
	h := newHarness(t, cfg)
	now := time.Now()
	txn := h.forgeTxn(jwt.MapClaims{"aud": "shop.example", "txn": "t-1", "sub": "alice", "scope": "orders:read", "req_wl": "gw",
		"iat": now.Add(-time.Second).Unix(), "exp": now.Add(time.Minute).Unix()}, "txntoken+jwt")
	resp := h.check("GET", "/pass/1", map[string]string{"txn-token": txn, "authorization": "Bearer attacker-chosen"})
	if httpStatus(resp) != 200 || !removed(resp, "authorization") {
		t.Errorf("status %d, headers_to_remove %v: the client's Authorization reaches the upstream", httpStatus(resp), resp.GetOkResponse().GetHeadersToRemove())
	}
}
