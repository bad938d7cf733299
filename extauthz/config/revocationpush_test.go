package config

import (
	"strings"
	"testing"
)

const pushShared = "shared_cache: {addresses: [127.0.0.1:6379], key_secret: {env: K}}\n"

// withPush returns minimal with the issuer's extra lines and top-level blocks.
func withPush(issuerLines, top string) string {
	return strings.Replace(minimal, "    audiences: [api]\n", "    audiences: [api]\n"+issuerLines, 1) + top
}

func TestRevocationPushDefaults(t *testing.T) {
	c, err := Parse([]byte(withPush("    introspection: {endpoint: https://idp.test/introspect}\n    client: {id: c, secret: {env: S}}\n    revocation_push: {audience: [https://tt/push]}\n", pushShared)), "/etc/tt")
	if err != nil {
		t.Fatal(err)
	}
	r := c.Issuers[0].RevocationPush
	if r.SETIssuer != "https://idp.test" || r.MaxAge.Duration != DefaultRevocationPushMaxAge || !c.UsesRevocationPush() {
		t.Errorf("revocation_push = %+v", r)
	}
	if m, _ := Parse([]byte(minimal), "/etc/tt"); m.UsesRevocationPush() {
		t.Error("UsesRevocationPush without the block")
	}
}

func TestRevocationPushRefusesBadValues(t *testing.T) {
	const intro = "    introspection: {endpoint: https://idp.test/introspect}\n    client: {id: c, secret: {env: S}}\n"
	tests := []struct {
		name      string
		issuer    string
		top       string
		wantField string
	}{
		{name: "no audience", issuer: intro + "    revocation_push: {}\n", top: pushShared, wantField: "issuers[0].revocation_push.audience"},
		{name: "no shared cache", issuer: intro + "    revocation_push: {audience: [a]}\n", wantField: "needs shared_cache"},
		{name: "no introspection", issuer: "    revocation_push: {audience: [a]}\n", top: pushShared, wantField: "needs introspection"},
		{name: "max_age above an hour", issuer: intro + "    revocation_push: {audience: [a], max_age: 2h}\n", top: pushShared, wantField: "issuers[0].revocation_push.max_age"},
		{name: "negative max_age", issuer: intro + "    revocation_push: {audience: [a], max_age: -1s}\n", top: pushShared, wantField: "issuers[0].revocation_push.max_age"},
		{name: "unknown field", issuer: intro + "    revocation_push: {audience: [a], aud: [b]}\n", top: pushShared, wantField: "aud"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(withPush(tt.issuer, tt.top)), "/etc/tt")
			if err == nil || !strings.Contains(err.Error(), tt.wantField) {
				t.Fatalf("Parse: %v, want an error naming %s", err, tt.wantField)
			}
		})
	}
}
