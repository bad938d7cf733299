package config

import (
	"slices"
	"strings"
	"testing"
)

// TestModeRules walks every upstream mode through the one table of what it
// needs (modeRules): a config that gives the mode what it needs loads, one
// that lacks it is refused at the named field, and a field of another mode
// is refused. The cases must cover exactly the table's modes.
func TestModeRules(t *testing.T) {
	upstream := func(u string) func(string) string {
		return func(s string) string { return strings.Replace(s, "{audience: api}", u, 1) }
	}
	then := func(fs ...func(string) string) func(string) string {
		return func(s string) string {
			for _, f := range fs {
				s = f(s)
			}
			return s
		}
	}
	noMintKeys := func(s string) string { return strings.Replace(s, "  keys: [{file: key.pem}]\n", "", 1) }
	exchanger := func(s string) string {
		return strings.Replace(s, "jwks_url: https://idp.test/jwks", "jwks_url: https://idp.test/jwks\n    token_endpoint: https://idp.test/token\n    client: {id: c, secret: {env: X}}", 1)
	}
	introspectOnly := func(s string) string {
		return strings.Replace(s, "jwks_url: https://idp.test/jwks", "introspection: {endpoint: https://idp.test/i}\n    client: {id: c, secret: {env: X}}", 1)
	}
	txnDomain := func(s string) string { return s + "txn_token: {trust_domain: tt.test, workload: gw}\n" }
	tests := []struct {
		mode string
		// ok gives the mode what it needs.
		ok func(string) string
		// lacking takes away what it needs; wantField is refused.
		lacking   func(string) string
		wantField string
		// foreign sets a field the mode does not allow.
		foreign     func(string) string
		wantForeign string
	}{
		{
			mode: "mint", ok: upstream("{audience: api}"),
			lacking: noMintKeys, wantField: "mint.keys",
			foreign: upstream("{audience: api, embedded_issuers: [https://idp.test]}"), wantForeign: "routes[0].upstream.embedded_issuers",
		},
		{
			mode: "forward", ok: then(noMintKeys, upstream("{mode: forward}")),
			foreign: upstream("{mode: forward, copy_claims: {tenant: tenant}}"), wantForeign: "routes[0].upstream",
		},
		{
			mode: "exchange", ok: then(exchanger, upstream("{mode: exchange, audience: api}")),
			lacking: upstream("{mode: exchange, audience: api}"), wantField: "routes[0].upstream.mode",
			foreign: then(exchanger, upstream("{mode: exchange, audience: api, embedded_issuers: [https://idp.test]}")), wantForeign: "routes[0].upstream.embedded_issuers",
		},
		{
			mode: "embedded", ok: upstream("{mode: embedded, audience: api}"),
			lacking: then(introspectOnly, upstream("{mode: embedded, audience: api}")), wantField: "routes[0].upstream.mode",
			foreign: upstream("{mode: embedded, audience: api, exchange: {resource: https://r}}"), wantForeign: "routes[0].upstream.exchange",
		},
		{
			mode: "txn_token", ok: then(txnDomain, upstream("{mode: txn_token, scopes: [a]}")),
			lacking: then(txnDomain, noMintKeys, upstream("{mode: txn_token, scopes: [a]}")), wantField: "routes[0].upstream.mode",
			foreign: then(txnDomain, upstream("{mode: txn_token, scopes: [a], claims: {x: y}}")), wantForeign: "routes[0].upstream",
		},
	}
	var modes []string
	for _, tt := range tests {
		modes = append(modes, tt.mode)
		t.Run(tt.mode, func(t *testing.T) {
			if _, err := Parse([]byte(tt.ok(minimal)), "/etc/tt"); err != nil {
				t.Fatalf("config giving %s what it needs refused: %v", tt.mode, err)
			}
			if tt.lacking != nil {
				assertRefused(t, tt.lacking(minimal), tt.wantField)
			}
			assertRefused(t, tt.foreign(minimal), tt.wantForeign)
		})
	}
	slices.Sort(modes)
	if !slices.Equal(modes, Modes()) {
		t.Errorf("cases cover modes %v, the table has %v", modes, Modes())
	}
}

// assertRefused fails t unless doc is refused with a problem at field.
func assertRefused(t *testing.T, doc, field string) {
	t.Helper()
	_, err := Parse([]byte(doc), "/etc/tt")
	if err == nil || !strings.Contains(err.Error(), field+": ") {
		t.Errorf("want a problem at %s, got %v", field, err)
	}
}
