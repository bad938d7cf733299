package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDPoPDefaults(t *testing.T) {
	c, err := Parse([]byte(minimal), "/etc/tt")
	if err != nil {
		t.Fatal(err)
	}
	d := c.DPoP
	if !slices.Equal(d.Algorithms, DefaultDPoPAlgorithms) || d.MaxAge.Duration != DefaultDPoPMaxAge || d.Leeway.Duration != DefaultDPoPLeeway ||
		d.ReplayEntries != DefaultDPoPReplayEntries || d.NonceLifetime.Duration != DefaultDPoPNonceLifetime || d.NonceSecret != nil ||
		d.SharedReplayDown != DPoPSharedReplayRefuse {
		t.Errorf("dpop defaults = %+v", d)
	}
	if c.Routes[0].SenderConstraint != "off" || c.Routes[0].DPoPOrigin != "" || c.UsesDPoP() {
		t.Errorf("route defaults: %q %q, uses DPoP %v", c.Routes[0].SenderConstraint, c.Routes[0].DPoPOrigin, c.UsesDPoP())
	}
}

// TestDPoPValuesArrive feeds a non-default value for every DPoP field.
func TestDPoPValuesArrive(t *testing.T) {
	cfg := minimal + `    sender_constraint: required
    dpop_origin: https://api.example.com
dpop:
  algorithms: [EdDSA]
  max_age: 30s
  leeway: 2s
  replay_entries: 500
  nonce_secret: {env: TT_NONCE}
  nonce_lifetime: 90s
  shared_replay_down: local
`
	c, err := Parse([]byte(cfg), "/etc/tt")
	if err != nil {
		t.Fatal(err)
	}
	d, r := c.DPoP, c.Routes[0]
	if !slices.Equal(d.Algorithms, []string{"EdDSA"}) || d.MaxAge.Duration != 30*time.Second || d.Leeway.Duration != 2*time.Second ||
		d.ReplayEntries != 500 || d.NonceSecret == nil || d.NonceSecret.Env != "TT_NONCE" || d.NonceLifetime.Duration != 90*time.Second ||
		d.SharedReplayDown != DPoPSharedReplayLocal {
		t.Errorf("dpop = %+v", d)
	}
	if r.SenderConstraint != "required" || r.DPoPOrigin != "https://api.example.com" || !c.UsesDPoP() {
		t.Errorf("route = %q %q", r.SenderConstraint, r.DPoPOrigin)
	}
}

func TestDPoPRefusesBadValues(t *testing.T) {
	tests := []struct {
		name      string
		route     string
		dpop      string
		wantField string
	}{
		{name: "unknown sender_constraint", route: "    sender_constraint: on\n", wantField: "routes[0].sender_constraint"},
		{name: "bare off, a YAML boolean, gets a hint", route: "    sender_constraint: off\n", wantField: `write "off"`},
		{name: "origin with a path", route: "    dpop_origin: https://api.example.com/x\n", wantField: "routes[0].dpop_origin"},
		{name: "origin without scheme", route: "    dpop_origin: api.example.com\n", wantField: "routes[0].dpop_origin"},
		{name: "HS256", dpop: "dpop: {algorithms: [HS256]}\n", wantField: "dpop.algorithms[0]"},
		{name: "no algorithm", dpop: "dpop: {algorithms: []}\n", wantField: "dpop.algorithms"},
		{name: "zero max_age", dpop: "dpop: {max_age: 0s}\n", wantField: "dpop.max_age"},
		{name: "negative leeway", dpop: "dpop: {leeway: -1s}\n", wantField: "dpop.leeway"},
		{name: "negative replay_entries", dpop: "dpop: {replay_entries: -1}\n", wantField: "dpop.replay_entries"},
		{name: "unknown shared_replay_down", dpop: "dpop: {shared_replay_down: allow}\n", wantField: "dpop.shared_replay_down"},
		{name: "nonce secret with both sources", dpop: "dpop: {nonce_secret: {file: a, env: B}}\n", wantField: "dpop.nonce_secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(minimal+tt.route+tt.dpop), "/etc/tt")
			if err == nil || !strings.Contains(err.Error(), tt.wantField) {
				t.Fatalf("Parse: %v, want an error naming %s", err, tt.wantField)
			}
		})
	}
}

// TestTxnTokenValuesArrive feeds a non-default value for every txn_token
// field and a txn_token route.
func TestTxnTokenValuesArrive(t *testing.T) {
	cfg := minimal + `  - name: t
    require: {}
    upstream: {mode: txn_token, scopes: [a]}
txn_token:
  trust_domain: shop.example
  workload: gw
  ttl: 2m
  context: {channel: web}
  request_id_header: X-Request-Id
`
	c, err := Parse([]byte(cfg), "/etc/tt")
	if err != nil {
		t.Fatal(err)
	}
	tt, u := c.TxnToken, c.Routes[1].Upstream
	if tt.TrustDomain != "shop.example" || tt.Workload != "gw" || tt.TTL.Duration != 2*time.Minute || tt.Context["channel"] != "web" || tt.RequestIDHeader != "x-request-id" {
		t.Errorf("txn_token = %+v", tt)
	}
	if u.Header != "txn-token" || *u.Prefix != "" || !*u.StripCredential {
		t.Errorf("upstream header %q prefix %q strip %v", u.Header, *u.Prefix, *u.StripCredential)
	}
}

func TestTxnTokenRefusesBadValues(t *testing.T) {
	tests := []struct {
		name      string
		extra     string
		wantField string
	}{
		{name: "no trust domain", extra: "  - name: t\n    upstream: {mode: txn_token, scopes: [a]}\ntxn_token: {workload: gw}\n", wantField: "routes[1].upstream.mode"},
		{name: "no scopes", extra: "  - name: t\n    upstream: {mode: txn_token}\ntxn_token: {workload: gw, trust_domain: d}\n", wantField: "routes[1].upstream.scopes"},
		{name: "ttl too long", extra: "txn_token: {ttl: 1h}\n", wantField: "txn_token.ttl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(minimal+tt.extra), "/etc/tt")
			if err == nil || !strings.Contains(err.Error(), tt.wantField) {
				t.Fatalf("Parse: %v, want an error naming %s", err, tt.wantField)
			}
		})
	}
}
