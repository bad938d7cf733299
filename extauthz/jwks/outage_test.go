package jwks

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/authztest"
)

// These tests pin down what a token with a kid the set does not hold gets
// while the issuer rotates keys, goes down and comes back (issue 12 item 5):
// 401 only when a fresh set lacks the kid, 503 when the issuer could not be
// asked, a new key accepted at its first use, recovery as soon as the issuer
// answers, and no more fetches than the schedule allows however many
// unknown kids arrive.

// defaultSet is a Set with the default intervals on a test clock, fetched once.
func defaultSet(t *testing.T, is *authztest.Issuer, clk *clock) *Set {
	t.Helper()
	s := mustNew(t, Options{Issuer: is.URL(), URL: is.Endpoint(authztest.PathJWKS), Client: is.Client(), Now: clk.Now})
	if err := s.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestDefaultIntervalsAreSeconds(t *testing.T) {
	// "A newly published key is accepted within a few seconds of its first
	// use" holds only while the on-demand interval is a few seconds.
	// (config owns that default: its TestJWKSMinRefetchIsSeconds.)
	if DefaultMinRetryBackoff > time.Second {
		t.Fatalf("DefaultMinRetryBackoff = %v, want at most 1s", DefaultMinRetryBackoff)
	}
}

func TestNewKeyAcceptedAtFirstUse(t *testing.T) {
	tests := []struct {
		name      string
		since     time.Duration // time since the last fetch when the new kid arrives
		wantErr   error
		wantCalls int
	}{
		{name: "last fetch long ago: fetched at once", since: time.Hour, wantCalls: 2},
		{name: "last fetch one interval ago: fetched at once", since: configMinRefetch, wantCalls: 2},
		{name: "last fetch a moment ago: that fresh set lacks it", since: time.Second, wantErr: extauthz.ErrUnknownKey, wantCalls: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			is := authztest.New(t)
			s := defaultSet(t, is, clk)
			is.Rotate(true)
			clk.Advance(tc.since)
			k, _ := is.Key("ES256")
			_, err := s.Key(context.Background(), k.Kid, "ES256")
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if got := is.Calls(authztest.PathJWKS); got != tc.wantCalls {
				t.Fatalf("jwks calls = %d, want %d", got, tc.wantCalls)
			}
			// Whatever happened, the key is accepted once the interval passed.
			clk.Advance(configMinRefetch)
			if _, err := s.Key(context.Background(), k.Kid, "ES256"); err != nil {
				t.Fatalf("after the interval: %v", err)
			}
		})
	}
}

func TestKeyNotHeldWhileIssuerDownIs503(t *testing.T) {
	tests := []struct {
		name  string
		fetch bool          // keys fetched once before the outage
		after time.Duration // time since that fetch when the issuer is down
	}{
		{name: "never fetched", fetch: false},
		{name: "keys held, refetch allowed but fails", fetch: true, after: time.Hour},
		{name: "keys held, refetch allowed at exactly the interval", fetch: true, after: configMinRefetch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			is := authztest.New(t)
			s := mustNew(t, Options{Issuer: is.URL(), URL: is.Endpoint(authztest.PathJWKS), Client: is.Client(), Now: clk.Now})
			if tc.fetch {
				if err := s.Refresh(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			held, _ := is.Key("RS256")
			is.Rotate(true)
			is.SetDown(true)
			clk.Advance(tc.after)
			fresh, _ := is.Key("RS256")
			calls := is.Calls(authztest.PathJWKS)
			// First the fetch that fails, then the calls inside its backoff:
			// all 503, never 401, and no more calls.
			for i := range 3 {
				_, err := s.Key(context.Background(), fresh.Kid, "RS256")
				if !errors.Is(err, extauthz.ErrKeysUnavailable) || errors.Is(err, extauthz.ErrUnknownKey) {
					t.Fatalf("call %d: err = %v, want ErrKeysUnavailable only", i, err)
				}
			}
			if got := is.Calls(authztest.PathJWKS); got != calls+1 {
				t.Fatalf("jwks calls = %d, want %d (one fetch, then backoff)", got, calls+1)
			}
			if tc.fetch {
				if _, err := s.Key(context.Background(), held.Kid, "RS256"); err != nil {
					t.Fatalf("key held: %v", err)
				}
			}
		})
	}
}

func TestRecoveryAtOnceWhenTheIssuerAnswers(t *testing.T) {
	clk := newClock()
	is := authztest.New(t)
	is.SetDown(true)
	s := mustNew(t, Options{Issuer: is.URL(), URL: is.Endpoint(authztest.PathJWKS), Client: is.Client(), Now: clk.Now})
	k, _ := is.Key("EdDSA")
	// A long outage: the backoff grows, but never past MinRefetchInterval.
	for range 20 {
		if _, err := s.Key(context.Background(), k.Kid, "EdDSA"); !errors.Is(err, extauthz.ErrKeysUnavailable) {
			t.Fatalf("err = %v, want ErrKeysUnavailable", err)
		}
		clk.Advance(configMinRefetch)
	}
	is.SetDown(false)
	if _, err := s.Key(context.Background(), k.Kid, "EdDSA"); err != nil {
		t.Fatalf("issuer back, backoff passed: %v", err)
	}
	if !s.Ready() {
		t.Fatal("not ready after the issuer came back")
	}

	// A short outage: the first retry is allowed after MinRetryBackoff.
	is.Rotate(false)
	is.SetDown(true)
	clk.Advance(time.Hour)
	k, _ = is.Key("EdDSA")
	if _, err := s.Key(context.Background(), k.Kid, "EdDSA"); !errors.Is(err, extauthz.ErrKeysUnavailable) {
		t.Fatalf("err = %v, want ErrKeysUnavailable", err)
	}
	is.SetDown(false)
	clk.Advance(DefaultMinRetryBackoff)
	if _, err := s.Key(context.Background(), k.Kid, "EdDSA"); err != nil {
		t.Fatalf("issuer back after one failed fetch: %v", err)
	}
}

// TestStormCostsOneFetchPerInterval sends unknown kids every 50 ms for a
// minute of test time while the issuer is up, then down, then up, and
// checks the issuer saw exactly the fetches the schedule allows: one per
// MinRefetchInterval while it answers, the backoff steps while it does not.
func TestStormCostsOneFetchPerInterval(t *testing.T) {
	const step = 50 * time.Millisecond
	clk := newClock()
	is := authztest.New(t)
	s := mustNew(t, Options{
		Issuer: is.URL(), URL: is.Endpoint(authztest.PathJWKS), Client: is.Client(), Now: clk.Now,
		MinRefetchInterval: 5 * time.Second, MinRetryBackoff: 250 * time.Millisecond,
	})
	storm := func(from, to time.Duration) {
		for at := from; at < to; at += step {
			var wg sync.WaitGroup
			for i := range 20 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, _ = s.Key(context.Background(), fmt.Sprintf("random-%d-%d", at, i), "RS256")
				}()
			}
			wg.Wait()
			clk.Advance(step)
		}
	}
	storm(0, 20*time.Second) // up: fetches at 0, 5, 10, 15
	if got := is.Calls(authztest.PathJWKS); got != 4 {
		t.Fatalf("issuer up for 20s: %d fetches, want 4", got)
	}
	is.SetDown(true)
	// down from 20s: fetches at 20 (fail), 20.25, 20.75, 21.75, 23.75, 27.75, 32.75, 37.75
	storm(20*time.Second, 40*time.Second)
	if got := is.Calls(authztest.PathJWKS) - 4; got != 8 {
		t.Fatalf("issuer down for 20s: %d fetches, want 8", got)
	}
	is.SetDown(false)
	// up from 40s: 42.75 (succeeds), 47.75, 52.75, 57.75
	storm(40*time.Second, 60*time.Second)
	if got := is.Calls(authztest.PathJWKS) - 12; got != 4 {
		t.Fatalf("issuer back for 20s: %d fetches, want 4", got)
	}
}

func TestIDIsIssuerAndSource(t *testing.T) {
	base := Options{Issuer: "https://idp.test", URL: "https://idp.test/jwks", RefreshInterval: time.Minute, MinRefetchInterval: time.Second}
	tests := []struct {
		name string
		edit func(*Options)
		same bool
	}{
		{name: "refresh interval", edit: func(o *Options) { o.RefreshInterval = time.Hour }, same: true},
		{name: "min refetch interval", edit: func(o *Options) { o.MinRefetchInterval = time.Minute }, same: true},
		{name: "retry backoff", edit: func(o *Options) { o.MinRetryBackoff = time.Second }, same: true},
		{name: "client timeout", edit: func(o *Options) { o.Client = &http.Client{Timeout: time.Second} }, same: true},
		{name: "issuer", edit: func(o *Options) { o.Issuer = "https://other.test" }},
		{name: "jwks url", edit: func(o *Options) { o.URL = "https://idp.test/other" }},
		{name: "discovery url", edit: func(o *Options) { o.DiscoveryURL = "https://idp.test/meta" }},
		{name: "fields do not run together", edit: func(o *Options) { o.Issuer, o.URL = o.Issuer+`" "`+o.URL, "" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := base
			tc.edit(&o)
			if got := o.ID() == base.ID(); got != tc.same {
				t.Fatalf("same ID = %v, want %v", got, tc.same)
			}
		})
	}
}

func TestUpdateKeepsKeysAndAppliesSettings(t *testing.T) {
	clk := newClock()
	is := authztest.New(t)
	opts := Options{Issuer: is.URL(), URL: is.Endpoint(authztest.PathJWKS), Client: is.Client(), Now: clk.Now, MinRefetchInterval: time.Minute}
	s := mustNew(t, opts)
	if err := s.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	held, _ := is.Key("RS256")
	is.Rotate(true)
	is.SetDown(true)

	other := opts
	other.URL += "?other"
	if err := s.Update(settled(other)); !errors.Is(err, ErrOtherSet) {
		t.Fatalf("Update with another URL: err = %v, want ErrOtherSet", err)
	}
	opts.MinRefetchInterval = 2 * time.Second
	opts.Client = &http.Client{Transport: is.Client().Transport, Timeout: 3 * time.Second}
	if err := s.Update(settled(opts)); err != nil {
		t.Fatal(err)
	}
	if !s.Ready() {
		t.Fatal("Update dropped readiness")
	}
	if _, err := s.Key(context.Background(), held.Kid, "RS256"); err != nil {
		t.Fatalf("Update dropped the keys: %v", err)
	}
	// The new interval applies: 2s after the fetch, a new kid may refetch
	// (with the old 1m it could not).
	is.SetDown(false)
	clk.Advance(2 * time.Second)
	k, _ := is.Key("RS256")
	if _, err := s.Key(context.Background(), k.Kid, "RS256"); err != nil {
		t.Fatalf("new interval not applied: %v", err)
	}
}

func TestRunRetriesAfterAFailureWhileKeysAreHeld(t *testing.T) {
	is := authztest.New(t)
	s := mustNew(t, Options{
		Issuer: is.URL(), URL: is.Endpoint(authztest.PathJWKS), Client: is.Client(),
		RefreshInterval: time.Hour, MinRefetchInterval: 200 * time.Millisecond, MinRetryBackoff: 10 * time.Millisecond,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	defer func() { cancel(); <-done }()
	go func() { s.Run(ctx); close(done) }()
	waitFor(t, "first fetch", s.Ready)

	// The hourly refresh fails; Run retries on the backoff schedule, not an
	// hour later, so a key rotated in during the outage arrives on its own.
	is.SetDown(true)
	_ = s.Refresh(context.Background())
	is.Rotate(false)
	is.SetDown(false)
	k, _ := is.Key("ES256")
	waitFor(t, "retry after the failure", func() bool {
		_, _, err := s.lookup(k.Kid, "ES256")
		return err == nil
	})
}

func TestUpdateWakesRun(t *testing.T) {
	is := authztest.New(t)
	opts := Options{Issuer: is.URL(), URL: is.Endpoint(authztest.PathJWKS), Client: is.Client(), RefreshInterval: time.Hour}
	s := mustNew(t, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	defer func() { cancel(); <-done }()
	go func() { s.Run(ctx); close(done) }()
	waitFor(t, "first fetch", s.Ready)
	opts.RefreshInterval = 20 * time.Millisecond
	if err := s.Update(settled(opts)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "refresh at the new interval", func() bool { return is.Calls(authztest.PathJWKS) >= 3 })
}

func TestKeyWaitEndsWithTheRequest(t *testing.T) {
	release := make(chan struct{})
	is := authztest.New(t)
	is.Handle("GET /slow-jwks", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		http.Error(w, "late", http.StatusServiceUnavailable)
	}))
	defer close(release)
	s := mustNew(t, Options{Issuer: is.URL(), URL: is.URL() + "/slow-jwks", Client: is.Client()})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := s.Key(ctx, "k", "RS256")
	if !errors.Is(err, extauthz.ErrKeysUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want ErrKeysUnavailable wrapping the deadline", err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
