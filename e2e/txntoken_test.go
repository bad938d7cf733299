package e2e

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
	"github.com/golang-jwt/jwt/v5"
	"sigs.k8s.io/yaml"
)

// The Txn-Token journey's trust domain and route (added to the shipped
// sidecar example by withTxnRoute; the example itself has no txn route).
const (
	txnTrustDomain = "shop.e2e.test"
	txnPath        = "/txn"
)

// withTxnRoute adds to cfg a route (first, so nothing else matches /txn)
// that hands the upstream a Txn-Token, and the txn_token block it needs.
func withTxnRoute(t *testing.T, cfg []byte) []byte {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal(cfg, &doc); err != nil {
		t.Fatal(err)
	}
	route := map[string]any{
		"name": "txn", "match": map[string]any{"path_prefix": txnPath},
		"require":  map[string]any{"scopes": []any{"orders:read"}},
		"upstream": map[string]any{"mode": "txn_token", "scopes": []any{"orders:read"}},
	}
	doc["routes"] = append([]any{route}, doc["routes"].([]any)...)
	doc["txn_token"] = map[string]any{"trust_domain": txnTrustDomain, "workload": "gateway.e2e.test", "ttl": "30s", "context": map[string]any{"channel": "e2e"}}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// verifyTxnToken is the independent verifier of a Txn-Token: go-jose (not
// the golang-jwt that tokentailor signs with), tokentailor's published JWKS
// and nothing else. It checks what draft-ietf-oauth-transaction-tokens-10
// §Txn-Token Validation asks of a receiving workload — signature, aud = the
// trust domain, not expired — and the header's typ txntoken+jwt (§JWT Header).
func verifyTxnToken(ctx context.Context, client *http.Client, jwksURL, token string) (map[string]any, error) {
	set, err := fetchJWKS(ctx, client, jwksURL)
	if err != nil {
		return nil, err
	}
	tok, err := josejwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.EdDSA, jose.ES256, jose.RS256})
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if len(tok.Headers) != 1 {
		return nil, errors.New("want exactly one signature")
	}
	h := tok.Headers[0]
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != "txntoken+jwt" {
		return nil, fmt.Errorf("typ %q, want txntoken+jwt", typ)
	}
	keys := set.Key(h.KeyID)
	if len(keys) == 0 {
		return nil, fmt.Errorf("kid %q not in tokentailor's JWKS", h.KeyID)
	}
	var std josejwt.Claims
	all := map[string]any{}
	if err := tok.Claims(keys[0].Key, &std, &all); err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	if std.Expiry == nil {
		return nil, errors.New("no exp")
	}
	if err := std.ValidateWithLeeway(josejwt.Expected{AnyAudience: josejwt.Audience{txnTrustDomain}, Time: time.Now()}, 0); err != nil {
		return nil, err
	}
	return all, nil
}

// nonEmpty counts the non-empty values: Caddy's copy_headers sends a
// header tokentailor did not set as an empty one, which the app treats as
// absent.
func nonEmpty(vs []string) int {
	n := 0
	for _, v := range vs {
		if v != "" {
			n++
		}
	}
	return n
}

// checkTxnToken checks what the app made of the Txn-Token it received.
func checkTxnToken(t *testing.T, s seen, sub string, incomingExp int64) {
	t.Helper()
	if s.TxnVerifyErr != "" {
		t.Fatalf("the app's independent verifier refused the Txn-Token: %s", s.TxnVerifyErr)
	}
	c := s.TxnClaims
	if c["sub"] != sub || c["scope"] != "orders:read" || c["req_wl"] != "gateway.e2e.test" || c["txn"] == "" {
		t.Errorf("Txn-Token claims %v", c)
	}
	if tctx, _ := c["tctx"].(map[string]any); tctx["channel"] != "e2e" {
		t.Errorf("tctx %v", c["tctx"])
	}
	if exp, _ := c["exp"].(float64); int64(exp) > incomingExp {
		t.Errorf("the Txn-Token outlives the incoming token: %v > %d", exp, incomingExp)
	}
	if nonEmpty(s.Header.Values("Authorization")) != 0 {
		t.Errorf("the app got Authorization beside the Txn-Token (the draft forbids it)")
	}
}

// TestIndependentTxnVerifierRefuses: the app's verifier is a real check —
// each rule it enforces refuses a token that breaks it.
func TestIndependentTxnVerifierRefuses(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: pub, KeyID: "k1", Algorithm: "EdDSA", Use: "sig"}}}
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _ = json.NewEncoder(w).Encode(set) }))
	defer jwks.Close()
	now := time.Now()
	sign := func(typ string, key ed25519.PrivateKey, mut func(jwt.MapClaims)) string {
		c := jwt.MapClaims{"aud": txnTrustDomain, "sub": "alice", "txn": "t", "scope": "s", "req_wl": "w", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}
		if mut != nil {
			mut(c)
		}
		tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
		tok.Header["typ"], tok.Header["kid"] = typ, "k1"
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	tests := []struct {
		name    string
		token   string
		wantErr bool
	}{
		{name: "good", token: sign("txntoken+jwt", priv, nil)},
		{name: "typ JWT", token: sign("JWT", priv, nil), wantErr: true},
		{name: "another key", token: sign("txntoken+jwt", otherPriv, nil), wantErr: true},
		{name: "another trust domain", token: sign("txntoken+jwt", priv, func(c jwt.MapClaims) { c["aud"] = "bank.example" }), wantErr: true},
		{name: "expired", token: sign("txntoken+jwt", priv, func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Minute).Unix() }), wantErr: true},
		{name: "no exp", token: sign("txntoken+jwt", priv, func(c jwt.MapClaims) { delete(c, "exp") }), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := verifyTxnToken(t.Context(), jwks.Client(), jwks.URL, tt.token)
			if (err != nil) != tt.wantErr {
				t.Fatalf("verifyTxnToken: %v, want error %v", err, tt.wantErr)
			}
		})
	}
}
