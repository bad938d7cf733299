package config

import (
	"strings"
	"testing"
)

// withIntrospection adds an introspection block (its inner fields given) to
// the minimal config.
func withIntrospection(inner string) string {
	return strings.Replace(minimal, "jwks_url: https://idp.test/jwks",
		"jwks_url: https://idp.test/jwks\n    introspection: {endpoint: https://idp.test/i"+inner+"}\n    client: {id: c, secret: {env: X}}", 1)
}

func TestIntrospectionFloodDefaults(t *testing.T) {
	tests := []struct {
		name      string
		inner     string
		wantRate  float64
		wantBurst int
		wantShape *TokenShape
	}{
		{name: "nothing set", wantRate: DefaultIntrospectionRate, wantBurst: 100},
		{name: "rate only: burst is the rate rounded up", inner: ", rate_limit: {per_second: 2.5}", wantRate: 2.5, wantBurst: 3},
		{name: "both set", inner: ", rate_limit: {per_second: 50, burst: 7}", wantRate: 50, wantBurst: 7},
		{name: "shape with prefix only", inner: ", token_shape: {prefix: ory_at_}", wantRate: DefaultIntrospectionRate, wantBurst: 100,
			wantShape: &TokenShape{Prefix: "ory_at_", Alphabet: "base64url", Segments: 1}},
		{name: "hydra shape", inner: ", token_shape: {prefix: ory_at_, alphabet: base64url, segments: 2, min_length: 94, max_length: 94}",
			wantRate: DefaultIntrospectionRate, wantBurst: 100,
			wantShape: &TokenShape{Prefix: "ory_at_", Alphabet: "base64url", Segments: 2, MinLength: 94, MaxLength: 94}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(withIntrospection(tt.inner)), "/etc/tt")
			if err != nil {
				t.Fatal(err)
			}
			in := c.Issuers[0].Introspection
			if in.RateLimit.PerSecond != tt.wantRate || in.RateLimit.Burst != tt.wantBurst {
				t.Errorf("rate_limit = %+v, want per_second %v burst %d", in.RateLimit, tt.wantRate, tt.wantBurst)
			}
			switch {
			case (in.TokenShape == nil) != (tt.wantShape == nil):
				t.Errorf("token_shape = %+v, want %+v", in.TokenShape, tt.wantShape)
			case in.TokenShape != nil && *in.TokenShape != *tt.wantShape:
				t.Errorf("token_shape = %+v, want %+v", *in.TokenShape, *tt.wantShape)
			}
		})
	}
}

func TestIntrospectionFloodValidation(t *testing.T) {
	tests := []struct {
		name  string
		inner string
		want  string
	}{
		{name: "negative rate", inner: ", rate_limit: {per_second: -1}", want: "issuers[0].introspection.rate_limit.per_second: must be above 0"},
		{name: "absurd rate", inner: ", rate_limit: {per_second: 1e9}", want: "issuers[0].introspection.rate_limit.per_second"},
		{name: "negative burst", inner: ", rate_limit: {burst: -2}", want: "issuers[0].introspection.rate_limit.burst: must be 1 to"},
		{name: "rate not a number", inner: ", rate_limit: {per_second: 100/s}", want: "per_second"},
		{name: "unknown alphabet", inner: ", token_shape: {alphabet: base32}", want: "issuers[0].introspection.token_shape.alphabet: must be"},
		{name: "too many segments", inner: ", token_shape: {segments: 17}", want: "issuers[0].introspection.token_shape.segments: must be 1 to 16"},
		{name: "negative segments", inner: ", token_shape: {segments: -1}", want: "token_shape.segments"},
		{name: "space in prefix", inner: ", token_shape: {prefix: \"a b\"}", want: "issuers[0].introspection.token_shape.prefix: must be printable"},
		{name: "max below min", inner: ", token_shape: {min_length: 10, max_length: 9}", want: "issuers[0].introspection.token_shape.max_length: must be at least"},
		{name: "max below prefix", inner: ", token_shape: {prefix: ory_at_, max_length: 7}", want: "token_shape.max_length"},
		{name: "negative min", inner: ", token_shape: {min_length: -1}", want: "issuers[0].introspection.token_shape.min_length: must not be negative"},
		{name: "unknown shape field", inner: ", token_shape: {length: 9}", want: `unknown field "length"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(withIntrospection(tt.inner)), "/etc/tt")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one naming %q", err, tt.want)
			}
		})
	}
}
