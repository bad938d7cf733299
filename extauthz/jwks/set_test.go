package jwks

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/authztest"
)

// clock is a settable test clock.
type clock = authztest.Clock

func newClock() *clock { return authztest.NewClock(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)) }

func newSet(t *testing.T, is *authztest.Issuer, clk *clock) *Set {
	t.Helper()
	return mustNew(t, Options{
		Issuer:             is.URL(),
		Client:             is.Client(),
		Now:                clk.Now,
		MinRefetchInterval: time.Minute,
	})
}

// configMinRefetch is config's default jwks_min_refetch.
const configMinRefetch = 5 * time.Second

// settled fills the settings config would give where o leaves them zero
// (New has no defaults of its own): a client with a 5s timeout.
func settled(o Options) Options {
	if o.RefreshInterval == 0 {
		o.RefreshInterval = 5 * time.Minute
	}
	if o.MinRefetchInterval == 0 {
		o.MinRefetchInterval = configMinRefetch
	}
	if o.Client == nil {
		o.Client = &http.Client{}
	}
	if o.Client.Timeout == 0 {
		c := *o.Client
		c.Timeout = 5 * time.Second
		o.Client = &c
	}
	return o
}

// mustNew builds a Set from settled options.
func mustNew(t *testing.T, o Options) *Set {
	t.Helper()
	s, err := New(settled(o))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNewRefusesMissingSettings(t *testing.T) {
	client := &http.Client{Timeout: time.Second}
	full := Options{Issuer: "https://as", RefreshInterval: time.Minute, MinRefetchInterval: time.Second, Client: client}
	tests := []struct {
		name  string
		spoil func(*Options)
	}{
		{name: "no refresh", spoil: func(o *Options) { o.RefreshInterval = 0 }},
		{name: "no min refetch", spoil: func(o *Options) { o.MinRefetchInterval = 0 }},
		{name: "client without timeout", spoil: func(o *Options) { o.Client = &http.Client{} }},
		{name: "no client", spoil: func(o *Options) { o.Client = nil }},
	}
	if _, err := New(full); err != nil {
		t.Fatalf("New(complete options) = %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := full
			tt.spoil(&o)
			if _, err := New(o); err == nil {
				t.Fatal("New accepted options without a required setting")
			}
		})
	}
}

func TestKeyForEveryAlgViaDiscovery(t *testing.T) {
	is := authztest.New(t)
	s := newSet(t, is, newClock())
	if s.Ready() {
		t.Fatal("ready before any fetch")
	}
	if err := s.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !s.Ready() {
		t.Fatal("not ready after fetch")
	}
	for _, alg := range authztest.Algorithms {
		k, _ := is.Key(alg)
		got, err := s.Key(context.Background(), k.Kid, alg)
		if err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		if !KeyFits(got, alg) {
			t.Fatalf("%s: key of type %T", alg, got)
		}
	}
	if is.Calls(authztest.PathOpenIDConfiguration) != 1 || is.Calls(authztest.PathJWKS) != 1 {
		t.Fatalf("calls: discovery %d jwks %d", is.Calls(authztest.PathOpenIDConfiguration), is.Calls(authztest.PathJWKS))
	}
}

func TestKeyRules(t *testing.T) {
	is := authztest.New(t)
	rsaKey, _ := is.Key("RS256")
	p256, _ := is.Key("ES256")
	p384, _ := is.Key("ES384")
	ed, _ := is.Key("EdDSA")
	tests := []struct {
		name    string
		kid     string
		alg     string
		wantErr error
	}{
		{name: "rsa for PS256", kid: rsaKey.Kid, alg: "PS256"},
		{name: "rsa asked as ES256", kid: rsaKey.Kid, alg: "ES256", wantErr: extauthz.ErrUnknownKey},
		{name: "rsa asked as HS256", kid: rsaKey.Kid, alg: "HS256", wantErr: extauthz.ErrUnknownKey},
		{name: "P-256 asked as ES384", kid: p256.Kid, alg: "ES384", wantErr: extauthz.ErrUnknownKey},
		{name: "P-384 asked as ES256", kid: p384.Kid, alg: "ES256", wantErr: extauthz.ErrUnknownKey},
		{name: "ed25519 asked as ES256", kid: ed.Kid, alg: "ES256", wantErr: extauthz.ErrUnknownKey},
		{name: "alg none", kid: rsaKey.Kid, alg: "none", wantErr: extauthz.ErrUnknownKey},
		{name: "unknown kid", kid: "nope", alg: "RS256", wantErr: extauthz.ErrUnknownKey},
		{name: "no kid, one EdDSA key", alg: "EdDSA"},
		{name: "no kid, one P-256 key", alg: "ES256"},
		{name: "no kid, HS256 fits nothing", alg: "HS256", wantErr: extauthz.ErrUnknownKey},
	}
	s := newSet(t, is, newClock())
	if err := s.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Key(context.Background(), tc.kid, tc.alg)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestNoKidAmbiguous(t *testing.T) {
	is := authztest.New(t)
	is.Rotate(true) // two RSA keys published
	s := newSet(t, is, newClock())
	if err := s.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Key(context.Background(), "", "RS256"); !errors.Is(err, extauthz.ErrUnknownKey) {
		t.Fatalf("err = %v, want ErrUnknownKey", err)
	}
	if _, err := s.Key(context.Background(), "", "EdDSA"); !errors.Is(err, extauthz.ErrUnknownKey) {
		t.Fatalf("two Ed25519 keys: err = %v", err)
	}
}

func TestUnknownKidRefetchIsRateLimited(t *testing.T) {
	is := authztest.New(t)
	clk := newClock()
	s := newSet(t, is, clk)
	if err := s.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// Right after a fetch, an unknown kid causes no call.
	if _, err := s.Key(ctx, "unknown-1", "RS256"); !errors.Is(err, extauthz.ErrUnknownKey) {
		t.Fatalf("err = %v", err)
	}
	if got := is.Calls(authztest.PathJWKS); got != 1 {
		t.Fatalf("jwks calls = %d, want 1", got)
	}
	// After the interval, a key rotated in is found by one refetch.
	is.Rotate(false)
	clk.Advance(time.Minute)
	newKey, _ := is.Key("ES256")
	if _, err := s.Key(ctx, newKey.Kid, "ES256"); err != nil {
		t.Fatalf("rotated key: %v", err)
	}
	if got := is.Calls(authztest.PathJWKS); got != 2 {
		t.Fatalf("jwks calls = %d, want 2", got)
	}
	// A second unknown kid in the same interval: no call.
	if _, err := s.Key(ctx, "unknown-2", "ES256"); !errors.Is(err, extauthz.ErrUnknownKey) {
		t.Fatalf("err = %v", err)
	}
	if got := is.Calls(authztest.PathJWKS); got != 2 {
		t.Fatalf("jwks calls = %d, want 2", got)
	}
}

func TestFloodOfUnknownKidsMakesOneCall(t *testing.T) {
	is := authztest.New(t)
	clk := newClock()
	s := newSet(t, is, clk)
	if err := s.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour) // a refetch is allowed again
	var wg sync.WaitGroup
	for i := range 500 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Key(context.Background(), fmt.Sprintf("random-%d", i), "RS256")
			if !errors.Is(err, extauthz.ErrUnknownKey) {
				t.Errorf("err = %v", err)
			}
		}()
	}
	wg.Wait()
	if got := is.Calls(authztest.PathJWKS); got != 2 {
		t.Fatalf("jwks calls = %d, want 2 (initial + one refetch)", got)
	}
}

func TestIssuerDown(t *testing.T) {
	t.Run("never fetched", func(t *testing.T) {
		is := authztest.New(t)
		is.SetDown(true)
		s := mustNew(t, Options{Issuer: is.URL(), URL: is.Endpoint(authztest.PathJWKS), Client: is.Client(), Now: newClock().Now})
		if err := s.Refresh(context.Background()); !errors.Is(err, extauthz.ErrKeysUnavailable) {
			t.Fatalf("Refresh err = %v", err)
		}
		for range 10 {
			if _, err := s.Key(context.Background(), "k", "RS256"); !errors.Is(err, extauthz.ErrKeysUnavailable) {
				t.Fatalf("Key err = %v", err)
			}
		}
		if s.Ready() {
			t.Fatal("ready without keys")
		}
		if got := is.Calls(authztest.PathJWKS); got != 1 {
			t.Fatalf("jwks calls = %d, want 1 (refetch rate limited)", got)
		}
	})
	t.Run("last good keys kept", func(t *testing.T) {
		is := authztest.New(t)
		clk := newClock()
		s := newSet(t, is, clk)
		if err := s.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
		is.SetDown(true)
		clk.Advance(time.Hour)
		if err := s.Refresh(context.Background()); !errors.Is(err, extauthz.ErrKeysUnavailable) {
			t.Fatalf("Refresh err = %v", err)
		}
		k, _ := is.Key("EdDSA")
		if _, err := s.Key(context.Background(), k.Kid, "EdDSA"); err != nil {
			t.Fatalf("kept key: %v", err)
		}
		if !s.Ready() {
			t.Fatal("lost readiness")
		}
	})
	t.Run("garbage set keeps last good keys", func(t *testing.T) {
		is := authztest.New(t)
		s := newSet(t, is, newClock())
		if err := s.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
		is.SetJWKS([]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`))
		if err := s.Refresh(context.Background()); !errors.Is(err, ErrInvalidSet) {
			t.Fatalf("Refresh err = %v, want ErrInvalidSet", err)
		}
		k, _ := is.Key("RS256")
		if _, err := s.Key(context.Background(), k.Kid, "RS256"); err != nil {
			t.Fatalf("kept key: %v", err)
		}
	})
}

func TestDiscoveryIssuerMismatchRefused(t *testing.T) {
	is := authztest.New(t, authztest.WithMetadataIssuer("https://attacker.example"))
	s := newSet(t, is, newClock())
	if err := s.Refresh(context.Background()); !errors.Is(err, extauthz.ErrKeysUnavailable) {
		t.Fatalf("err = %v", err)
	}
	if is.Calls(authztest.PathJWKS) != 0 {
		t.Fatal("fetched keys named by a mismatched document")
	}
}

func TestRunUntilCancelled(t *testing.T) {
	is := authztest.New(t)
	s := mustNew(t, Options{Issuer: is.URL(), URL: is.Endpoint(authztest.PathJWKS), Client: is.Client(), RefreshInterval: time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	deadline := time.After(10 * time.Second)
	for is.Calls(authztest.PathJWKS) < 3 {
		select {
		case <-deadline:
			t.Fatal("Run did not refresh")
		case <-time.After(time.Millisecond):
		}
	}
	cancel()
	<-done
	if !s.Ready() {
		t.Fatal("not ready after Run fetched")
	}
}

func TestParseSetFixture(t *testing.T) {
	data, err := os.ReadFile("testdata/mixed.json")
	if err != nil {
		t.Fatal(err)
	}
	keys, skips, err := parseSet(data)
	if err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, k := range keys {
		kids = append(kids, k.kid)
	}
	sort.Strings(kids)
	want := []string{"ec-good", "ed-good", "rsa-good"}
	if fmt.Sprint(kids) != fmt.Sprint(want) {
		t.Fatalf("kept %v, want %v", kids, want)
	}
	if len(skips) != 8 {
		t.Fatalf("skipped %d keys, want 8: %v", len(skips), skips)
	}
	for _, k := range keys {
		if k.kid == "ec-good" {
			if _, ok := k.key.(*ecdsa.PublicKey); !ok || k.alg != "ES256" {
				t.Fatalf("ec-good = %T %q", k.key, k.alg)
			}
		}
	}
}

func TestParseSetErrors(t *testing.T) {
	many := `{"keys":[`
	for i := range MaxKeys + 1 {
		if i > 0 {
			many += ","
		}
		many += `{}`
	}
	many += `]}`
	tests := []struct {
		name string
		data string
	}{
		{name: "not json", data: `<html>`},
		{name: "array", data: `[]`},
		{name: "no keys", data: `{}`},
		{name: "keys not array", data: `{"keys":{}}`},
		{name: "too many keys", data: many},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := parseSet([]byte(tc.data)); !errors.Is(err, ErrInvalidSet) {
				t.Fatalf("err = %v, want ErrInvalidSet", err)
			}
		})
	}
}

func FuzzParseSet(f *testing.F) {
	if data, err := os.ReadFile("testdata/mixed.json"); err == nil {
		f.Add(data)
	}
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-521","x":"AA","y":"AA"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, _, err := parseSet(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidSet) {
				t.Fatalf("error does not wrap ErrInvalidSet: %v", err)
			}
			return
		}
		for _, k := range keys {
			ok := false
			for _, alg := range authztest.Algorithms {
				if fits(k.key, alg) == nil {
					ok = true
				}
			}
			if !ok {
				t.Fatalf("kept key %T that fits no algorithm", k.key)
			}
			if k.alg != "" && fits(k.key, k.alg) != nil {
				t.Fatalf("kept key whose alg %q does not fit it", k.alg)
			}
		}
	})
}
