package introspect_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/introspect"
	"github.com/tokentailor/tokentailor/extauthz/metrics"
)

// hydraShape is what Ory Hydra's access tokens look like with its default
// entropy: "ory_at_" + base64url(32 bytes) + "." + base64url(32-byte HMAC).
var hydraShape = introspect.Shape{Prefix: "ory_at_", Alphabet: introspect.AlphabetBase64URL, Segments: 2, MinLength: 94, MaxLength: 94}

// hydraToken is a token of hydraShape; key and sig fill its two segments.
func hydraToken(key, sig byte) string {
	return "ory_at_" + strings.Repeat(string(key), 43) + "." + strings.Repeat(string(sig), 43)
}

func TestNegativeAnswersCannotEvictActiveOnes(t *testing.T) {
	f := setup(t, func(o *introspect.Options) { o.CacheEntries = 4 })
	f.x.Register("good", map[string]any{"sub": "alice", "exp": f.clk.Now().Add(time.Hour).Unix()})
	if _, err := f.intro.Authenticate(context.Background(), cred("good")); err != nil {
		t.Fatal(err)
	}
	for n := range 100 {
		_, err := f.intro.Authenticate(context.Background(), cred(fmt.Sprintf("garbage-%d", n)))
		if !errors.Is(err, extauthz.ErrTokenInactive) {
			t.Fatalf("garbage token %d: error = %v, want ErrTokenInactive", n, err)
		}
	}
	calls := f.x.Calls()
	if _, err := f.intro.Authenticate(context.Background(), cred("good")); err != nil {
		t.Fatal(err)
	}
	if got := f.x.Calls(); got != calls {
		t.Fatalf("the active answer was evicted by 100 refusals: %d more calls", got-calls)
	}
	// The refusals are still cached too, within their own bound.
	if _, err := f.intro.Authenticate(context.Background(), cred("garbage-99")); !errors.Is(err, extauthz.ErrTokenInactive) {
		t.Fatalf("repeated garbage token: error = %v", err)
	}
	if got := f.x.Calls(); got != calls {
		t.Fatalf("a refusal just cached was asked again (%d calls)", got-calls)
	}
}

func TestRateLimitRefusesCallsBeyondTheBucket(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := setup(t, func(o *introspect.Options) {
		o.RateLimit, o.RateBurst = 2, 2
		o.Metrics = metrics.New(reg)
	})
	exp := f.clk.Now().Add(time.Hour).Unix()
	for _, tok := range []string{"a", "b", "c", "d"} {
		f.x.Register(tok, map[string]any{"sub": "alice", "exp": exp})
	}
	for _, tok := range []string{"a", "b"} {
		if _, err := f.intro.Authenticate(context.Background(), cred(tok)); err != nil {
			t.Fatalf("%s within the burst: %v", tok, err)
		}
	}
	_, err := f.intro.Authenticate(context.Background(), cred("c"))
	if !errors.Is(err, extauthz.ErrIssuerUnavailable) || !errors.Is(err, introspect.ErrRateLimited) {
		t.Fatalf("beyond the burst: error = %v, want ErrIssuerUnavailable and ErrRateLimited", err)
	}
	if got := f.x.Calls(); got != 2 {
		t.Fatalf("%d calls, want 2: the limiter let a call through", got)
	}
	if got := limited(t, reg); got != 1 {
		t.Fatalf("issuer_requests_limited_total = %v, want 1", got)
	}
	// Cached answers are served while the bucket is empty.
	if _, err := f.intro.Authenticate(context.Background(), cred("a")); err != nil {
		t.Fatalf("cached token while limited: %v", err)
	}
	// Half a second refills one call at 2/s.
	f.clk.Advance(500 * time.Millisecond)
	if _, err := f.intro.Authenticate(context.Background(), cred("c")); err != nil {
		t.Fatalf("after the refill: %v", err)
	}
	if _, err := f.intro.Authenticate(context.Background(), cred("d")); !errors.Is(err, introspect.ErrRateLimited) {
		t.Fatalf("second call after a one-call refill: error = %v, want ErrRateLimited", err)
	}
	if got, want := limited(t, reg), 2.0; got != want {
		t.Fatalf("issuer_requests_limited_total = %v, want %v", got, want)
	}
	if got := f.x.Calls(); got != 3 {
		t.Fatalf("%d calls, want 3", got)
	}
}

func TestRateLimitDefaultBurstIsTheRate(t *testing.T) {
	f := setup(t, func(o *introspect.Options) { o.RateLimit = 2.5 })
	for n := range 4 {
		_, err := f.intro.Authenticate(context.Background(), cred(fmt.Sprintf("t%d", n)))
		if wantLimited := n >= 3; errors.Is(err, introspect.ErrRateLimited) != wantLimited {
			t.Fatalf("token %d: error = %v, want limited %v (burst ⌈2.5⌉ = 3)", n, err, wantLimited)
		}
	}
}

func TestTokenShapeRefusesWithoutACall(t *testing.T) {
	good := hydraToken('A', 'b')
	tests := []struct {
		name    string
		token   string
		wantErr error
	}{
		{name: "the issuer's shape", token: good},
		{name: "another prefix", token: "ory_rt_" + good[7:], wantErr: extauthz.ErrInvalidToken},
		{name: "no prefix", token: strings.Repeat("A", 94), wantErr: extauthz.ErrInvalidToken},
		{name: "one byte short", token: good[:93], wantErr: extauthz.ErrInvalidToken},
		{name: "one byte long", token: good + "A", wantErr: extauthz.ErrInvalidToken},
		{name: "one segment", token: "ory_at_" + strings.Repeat("A", 87), wantErr: extauthz.ErrInvalidToken},
		{name: "three segments", token: "ory_at_" + strings.Repeat("A", 42) + "." + strings.Repeat("b", 42) + ".c", wantErr: extauthz.ErrInvalidToken},
		{name: "empty first segment", token: "ory_at_." + strings.Repeat("b", 86), wantErr: extauthz.ErrInvalidToken},
		{name: "empty last segment", token: "ory_at_" + strings.Repeat("b", 86) + ".", wantErr: extauthz.ErrInvalidToken},
		{name: "base64 not base64url", token: "ory_at_" + strings.Repeat("A", 42) + "+." + strings.Repeat("b", 43), wantErr: extauthz.ErrInvalidToken},
		{name: "a JWT", token: "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", wantErr: extauthz.ErrInvalidToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := setup(t, func(o *introspect.Options) { o.TokenShape = &hydraShape })
			f.x.Register(tt.token, map[string]any{"sub": "alice", "exp": f.clk.Now().Add(time.Hour).Unix()})
			_, err := f.intro.Authenticate(context.Background(), cred(tt.token))
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			wantCalls := 0
			if tt.wantErr == nil {
				wantCalls = 1
			}
			if got := f.x.Calls(); got != wantCalls {
				t.Fatalf("%d introspection calls, want %d", got, wantCalls)
			}
			if err != nil && strings.Contains(err.Error(), tt.token) {
				t.Fatal("the error holds the token")
			}
		})
	}
}

func TestNewRefusesBadFloodSettings(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*introspect.Options)
	}{
		{name: "negative rate", mod: func(o *introspect.Options) { o.RateLimit = -1 }},
		{name: "negative burst", mod: func(o *introspect.Options) { o.RateLimit, o.RateBurst = 1, -1 }},
		{name: "unknown alphabet", mod: func(o *introspect.Options) { o.TokenShape = &introspect.Shape{Alphabet: "base32"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := introspect.Options{Issuer: "https://as.example", Endpoint: "https://as.example/introspect", Auth: authOf(t, "")}
			tt.mod(&opts)
			if _, err := introspect.New(opts); err == nil {
				t.Fatal("New accepted it")
			}
		})
	}
}

func TestNewShapeMatcher(t *testing.T) {
	tests := []struct {
		name    string
		shape   introspect.Shape
		wantErr bool
	}{
		{name: "hydra", shape: hydraShape},
		{name: "hex without bounds", shape: introspect.Shape{Alphabet: introspect.AlphabetHex}},
		{name: "no alphabet", shape: introspect.Shape{Prefix: "x_"}, wantErr: true},
		{name: "space in prefix", shape: introspect.Shape{Prefix: "a b", Alphabet: introspect.AlphabetAlnum}, wantErr: true},
		{name: "too many segments", shape: introspect.Shape{Alphabet: introspect.AlphabetAlnum, Segments: introspect.MaxShapeSegments + 1}, wantErr: true},
		{name: "negative segments", shape: introspect.Shape{Alphabet: introspect.AlphabetAlnum, Segments: -1}, wantErr: true},
		{name: "max below min", shape: introspect.Shape{Alphabet: introspect.AlphabetAlnum, MinLength: 10, MaxLength: 9}, wantErr: true},
		{name: "max below what prefix and segments need", shape: introspect.Shape{Prefix: "abc", Alphabet: introspect.AlphabetAlnum, Segments: 2, MaxLength: 5}, wantErr: true},
		{name: "negative min", shape: introspect.Shape{Alphabet: introspect.AlphabetAlnum, MinLength: -1}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := introspect.NewShapeMatcher(tt.shape)
			if tt.wantErr != (err != nil) {
				t.Fatalf("error = %v, want error %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, introspect.ErrShape) {
				t.Fatalf("error %v does not wrap ErrShape", err)
			}
		})
	}
}

func TestShapeMatchAlphabets(t *testing.T) {
	tests := []struct {
		alphabet string
		ok, bad  string
	}{
		{alphabet: introspect.AlphabetBase64URL, ok: "Az09-_", bad: "Az09+/"},
		{alphabet: introspect.AlphabetBase64, ok: "Az09+/==", bad: "Az09-_"},
		{alphabet: introspect.AlphabetHex, ok: "09afAF", bad: "09ag"},
		{alphabet: introspect.AlphabetAlnum, ok: "Az09", bad: "Az09_"},
	}
	for _, tt := range tests {
		t.Run(tt.alphabet, func(t *testing.T) {
			m, err := introspect.NewShapeMatcher(introspect.Shape{Alphabet: tt.alphabet})
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Match(tt.ok); err != nil {
				t.Errorf("Match(%q) = %v, want nil", tt.ok, err)
			}
			if err := m.Match(tt.bad); !errors.Is(err, extauthz.ErrInvalidToken) {
				t.Errorf("Match(%q) = %v, want ErrInvalidToken", tt.bad, err)
			}
			if err := m.Match(""); !errors.Is(err, extauthz.ErrInvalidToken) {
				t.Errorf("Match(\"\") = %v, want ErrInvalidToken", err)
			}
		})
	}
}

// FuzzShapeMatch checks that Match never panics and that whatever it accepts
// really has the shape: prefix, length bounds, alphabet and segments.
func FuzzShapeMatch(f *testing.F) {
	for _, s := range []string{hydraToken('A', 'b'), "ory_at_.", "ory_at_a..b", "", ".", "ory_at_\x00.\xff", "opq-AAAA"} {
		f.Add(s)
	}
	shapes := []introspect.Shape{
		hydraShape,
		{Prefix: "opq-", Alphabet: introspect.AlphabetBase64URL, MinLength: 8, MaxLength: 64},
		{Alphabet: introspect.AlphabetHex, Segments: 3},
	}
	allowed := map[string]string{
		introspect.AlphabetBase64URL: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
		introspect.AlphabetHex:       "0123456789abcdefABCDEF",
	}
	matchers := make([]*introspect.ShapeMatcher, len(shapes))
	for i, s := range shapes {
		m, err := introspect.NewShapeMatcher(s)
		if err != nil {
			f.Fatal(err)
		}
		matchers[i] = m
	}
	f.Fuzz(func(t *testing.T, tok string) {
		for i, m := range matchers {
			s := shapes[i]
			err := m.Match(tok)
			if err != nil {
				if !errors.Is(err, extauthz.ErrInvalidToken) {
					t.Fatalf("shape %d: error %v does not wrap ErrInvalidToken", i, err)
				}
				continue
			}
			body, ok := strings.CutPrefix(tok, s.Prefix)
			switch {
			case !ok:
				t.Fatalf("shape %d accepted %q without its prefix", i, tok)
			case s.MinLength > 0 && len(tok) < s.MinLength, s.MaxLength > 0 && len(tok) > s.MaxLength:
				t.Fatalf("shape %d accepted %q of length %d", i, tok, len(tok))
			}
			segs := strings.Split(body, ".")
			if want := max(s.Segments, 1); len(segs) != want {
				t.Fatalf("shape %d accepted %q with %d segments, want %d", i, tok, len(segs), want)
			}
			for _, seg := range segs {
				if seg == "" || strings.Trim(seg, allowed[s.Alphabet]) != "" {
					t.Fatalf("shape %d accepted %q with segment %q", i, tok, seg)
				}
			}
		}
	})
}

// limited returns tokentailor_issuer_requests_limited_total for introspection.
func limited(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != "tokentailor_issuer_requests_limited_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "endpoint" && l.GetValue() == "introspection" {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}
