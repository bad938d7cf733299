package server

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
)

const txnConfig = baseConfig + `
  - name: txn
    match: {path_prefix: /txn}
    require: {scopes: [orders:read]}
    upstream:
      mode: txn_token
      scopes: [orders:read, orders:write]
txn_token:
  trust_domain: shop.example
  workload: gateway.shop.example
  ttl: 30s
  context: {channel: web}
  request_id_header: x-request-id
`

// TestTxnTokenThroughTheServer: upstream mode txn_token hands the upstream
// a Txn-Token in the Txn-Token header, removes Authorization, and the token
// verifies with go-jose (independent of the golang-jwt that signed it)
// against tokentailor's published key.
func TestTxnTokenThroughTheServer(t *testing.T) {
	h := newHarness(t, txnConfig)
	incomingExp := time.Now().Add(time.Hour).Unix()
	req := checkRequest("GET", "/txn/1", map[string]string{"authorization": "Bearer " + h.token(jwt.MapClaims{"exp": incomingExp}), "x-request-id": "req-7f3a", "txn-token": "client-forged"})
	req.Attributes.Source.Address = &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "203.0.113.7"}}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := h.client.Check(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if httpStatus(resp) != 200 {
		t.Fatalf("status %d", httpStatus(resp))
	}
	if !removed(resp, "authorization") {
		t.Error("Authorization is not removed (the draft forbids it for Txn-Tokens)")
	}
	tok := header(resp, "txn-token")
	if tok == "" || tok == "client-forged" {
		t.Fatalf("txn-token header %q", tok)
	}
	jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		t.Fatal(err)
	}
	payload, err := jws.Verify(h.mintPub)
	if err != nil {
		t.Fatalf("the Txn-Token does not verify with tokentailor's key: %v", err)
	}
	if hd := jws.Signatures[0].Protected; hd.ExtraHeaders["typ"] != "txntoken+jwt" || hd.KeyID != "k1" {
		t.Errorf("header typ %v kid %q", hd.ExtraHeaders["typ"], hd.KeyID)
	}
	var c map[string]any
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]any{"aud": "shop.example", "txn": "req-7f3a", "sub": "alice", "scope": "orders:read",
		"req_wl": "gateway.shop.example", "iss": "https://tokentailor.test"} {
		if c[name] != want {
			t.Errorf("%s = %v, want %v", name, c[name], want)
		}
	}
	if tctx, _ := c["tctx"].(map[string]any); tctx["channel"] != "web" {
		t.Errorf("tctx %v", c["tctx"])
	}
	if rctx, _ := c["rctx"].(map[string]any); rctx["req_ip"] != "203.0.113.7" || rctx["authn"] != "bearer" {
		t.Errorf("rctx %v", c["rctx"])
	}
	iat, exp := c["iat"].(float64), c["exp"].(float64)
	if exp-iat != 30 || int64(exp) > incomingExp {
		t.Errorf("iat %v exp %v: want 30s, never beyond %d", iat, exp, incomingExp)
	}
	if strings.Contains(string(payload), "Bearer") {
		t.Error("the Txn-Token carries the access token")
	}
}
