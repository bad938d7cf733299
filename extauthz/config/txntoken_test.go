package config

import (
	"strings"
	"testing"
	"time"
)

// txnDomain is a txn_token block with a trust domain and a workload.
const txnDomain = "txn_token: {trust_domain: shop.example, workload: gw}\n"

func TestAcceptTxnTokenDefaultsAndValues(t *testing.T) {
	cfg := minimal + `  - name: in
    accept: txn_token
    require: {scopes: [a]}
    upstream: {mode: forward}
txn_token:
  trust_domain: shop.example
  jwks_url: https://tts.example/jwks
  leeway: 9s
txn_token_service:
  token_endpoint: https://tts.example/token
  client: {id: tt, secret: {env: TT_TTS}}
`
	c, err := Parse([]byte(cfg), "/etc/tt")
	if err != nil {
		t.Fatal(err)
	}
	r0, r1 := c.Routes[0], c.Routes[1]
	if r0.Accept != AcceptAccessToken || r1.Accept != AcceptTxnToken {
		t.Errorf("accept = %q, %q", r0.Accept, r1.Accept)
	}
	if r1.Upstream.Header != TxnTokenHeader || *r1.Upstream.Prefix != "" {
		t.Errorf("a Txn-Token route passes it on in %q with prefix %q, want txn-token and none", r1.Upstream.Header, *r1.Upstream.Prefix)
	}
	tt, s := c.TxnToken, c.TxnTokenService
	if tt.JWKSURL != "https://tts.example/jwks" || tt.Leeway.Duration != 9*time.Second {
		t.Errorf("txn_token = %+v", tt)
	}
	if s == nil || s.TokenEndpoint != "https://tts.example/token" || s.HTTPTimeout.Duration != DefaultHTTPTimeout ||
		s.Client.ID != "tt" || s.Client.AuthMethod != DefaultAuthMethod {
		t.Errorf("txn_token_service = %+v", s)
	}
	d, err := Parse([]byte(minimal), "/etc/tt")
	if err != nil {
		t.Fatal(err)
	}
	if d.TxnToken.Leeway.Duration != DefaultTxnTokenLeeway || d.TxnTokenService != nil {
		t.Errorf("defaults: leeway %v, service %+v", d.TxnToken.Leeway, d.TxnTokenService)
	}
}

func TestTxnTokenAcceptAndServiceRefuseBadValues(t *testing.T) {
	route := func(extra string) string {
		return "  - name: in\n    require: {}\n" + extra
	}
	tests := []struct {
		name      string
		add       string
		wantField string
	}{
		{name: "unknown accept", add: route("    accept: id_token\n    upstream: {mode: forward}\n") + txnDomain, wantField: "routes[1].accept"},
		{name: "accept txn_token without trust domain", add: route("    accept: txn_token\n    upstream: {mode: forward}\n"), wantField: "txn_token.trust_domain"},
		{name: "accept txn_token and mint", add: route("    accept: txn_token\n    upstream: {audience: x}\n") + txnDomain, wantField: "routes[1].upstream.mode"},
		{name: "accept txn_token and exchange", add: route("    accept: txn_token\n    upstream: {mode: exchange, audience: x}\n") + txnDomain, wantField: "routes[1].upstream.mode"},
		{name: "accept txn_token with DPoP", add: route("    accept: txn_token\n    sender_constraint: required\n    upstream: {mode: forward}\n") + txnDomain, wantField: "routes[1].sender_constraint"},
		{name: "accept txn_token with issuers", add: route("    accept: txn_token\n    issuers: [https://idp.test]\n    upstream: {mode: forward}\n") + txnDomain, wantField: "routes[1].issuers"},
		{name: "jwks_url not a URL", add: "txn_token: {trust_domain: d, jwks_url: tts/jwks}\n", wantField: "txn_token.jwks_url"},
		{name: "leeway too long", add: "txn_token: {trust_domain: d, leeway: 2m}\n", wantField: "txn_token.leeway"},
		{name: "service without endpoint", add: "txn_token: {trust_domain: d, jwks_url: https://t/j}\ntxn_token_service: {client: {id: a, secret: {env: X}}}\n", wantField: "txn_token_service.token_endpoint"},
		{name: "service without jwks", add: "txn_token: {trust_domain: d}\ntxn_token_service: {token_endpoint: https://t/t, client: {id: a, secret: {env: X}}}\n", wantField: "txn_token.jwks_url"},
		{name: "service without client id", add: "txn_token: {trust_domain: d, jwks_url: https://t/j}\ntxn_token_service: {token_endpoint: https://t/t, client: {secret: {env: X}}}\n", wantField: "txn_token_service.client.id"},
		{name: "service without trust domain", add: "txn_token: {jwks_url: https://t/j}\ntxn_token_service: {token_endpoint: https://t/t, client: {id: a, secret: {env: X}}}\n", wantField: "txn_token.trust_domain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(minimal+tt.add), "/etc/tt")
			if err == nil || !strings.Contains(err.Error(), tt.wantField) {
				t.Fatalf("Parse: %v, want an error naming %s", err, tt.wantField)
			}
		})
	}
}

// TestTxnTokenModeWithServiceNeedsNoWorkload: the TTS names req_wl.
func TestTxnTokenModeWithServiceNeedsNoWorkload(t *testing.T) {
	cfg := minimal + `  - name: t
    require: {}
    upstream: {mode: txn_token, scopes: [a]}
txn_token: {trust_domain: d, jwks_url: https://t/j}
txn_token_service: {token_endpoint: https://t/t, client: {id: a, secret: {env: X}}}
`
	if _, err := Parse([]byte(cfg), "/etc/tt"); err != nil {
		t.Fatal(err)
	}
}
