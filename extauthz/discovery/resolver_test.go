package discovery

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/authztest"
)

// clock is a settable test clock.
type clock = authztest.Clock

func newClock() *clock { return authztest.NewClock(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)) }

func TestResolverWhileTheIssuerIsDown(t *testing.T) {
	clk := newClock()
	is := authztest.New(t)
	is.SetDown(true)
	r := NewResolver(ResolverOptions{Issuer: is.URL(), URL: is.Endpoint(authztest.PathOpenIDConfiguration), Client: is.Client(), Now: clk.Now})
	ctx := context.Background()
	// Down: 503 and not ready; within the backoff no further call.
	for i := range 5 {
		if _, err := r.TokenEndpoint(ctx); !errors.Is(err, extauthz.ErrIssuerUnavailable) {
			t.Fatalf("call %d: err = %v, want ErrIssuerUnavailable", i, err)
		}
	}
	if got := is.Calls(authztest.PathOpenIDConfiguration); got != 1 {
		t.Fatalf("discovery calls = %d, want 1 (then backoff)", got)
	}
	if r.Ready() {
		t.Fatal("ready without metadata")
	}
	// Back: the first request after the backoff finds the endpoints.
	is.SetDown(false)
	clk.Advance(DefaultMinRetryBackoff)
	got, err := r.TokenEndpoint(ctx)
	if err != nil || got != is.Endpoint(authztest.PathToken) {
		t.Fatalf("TokenEndpoint = %q, %v", got, err)
	}
	if got, err := r.IntrospectionEndpoint(ctx); err != nil || got != is.Endpoint(authztest.PathIntrospect) {
		t.Fatalf("IntrospectionEndpoint = %q, %v", got, err)
	}
	if !r.Ready() {
		t.Fatal("not ready after the metadata was found")
	}
	// Found once, kept: no more calls, even when the issuer goes down again.
	is.SetDown(true)
	clk.Advance(time.Hour)
	if _, err := r.TokenEndpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if got := is.Calls(authztest.PathOpenIDConfiguration); got != 2 {
		t.Fatalf("discovery calls = %d, want 2", got)
	}
}

func TestResolverBackoff(t *testing.T) {
	clk := newClock()
	is := authztest.New(t)
	is.SetDown(true)
	r := NewResolver(ResolverOptions{
		Issuer: is.URL(), URL: is.Endpoint(authztest.PathOpenIDConfiguration), Client: is.Client(), Now: clk.Now,
		MinRetryBackoff: 100 * time.Millisecond, MaxRetryBackoff: time.Second,
	})
	// Asked every 50ms for 5s: attempts at 0, .1, .3, .7, 1.5, 2.5, 3.5, 4.5.
	for range 100 {
		_, _ = r.Metadata(context.Background())
		clk.Advance(50 * time.Millisecond)
	}
	if got := is.Calls(authztest.PathOpenIDConfiguration); got != 8 {
		t.Fatalf("discovery calls = %d, want 8", got)
	}
}

func TestResolverErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"issuer":"http://` + r.Host + `","jwks_uri":"http://` + r.Host + `/jwks"}`))
	}))
	defer srv.Close()
	mismatch := authztest.New(t, authztest.WithMetadataIssuer("https://attacker.example"))
	tests := []struct {
		name    string
		opts    ResolverOptions
		wantErr error
		ready   bool
	}{
		{name: "document without the endpoint", opts: ResolverOptions{Issuer: srv.URL, URL: srv.URL, Client: srv.Client()},
			wantErr: ErrNoEndpoint, ready: true},
		{name: "document of another issuer", opts: ResolverOptions{Issuer: mismatch.URL(), Client: mismatch.Client()},
			wantErr: ErrIssuerMismatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewResolver(tc.opts)
			_, err := r.TokenEndpoint(context.Background())
			if !errors.Is(err, tc.wantErr) || !errors.Is(err, extauthz.ErrIssuerUnavailable) {
				t.Fatalf("err = %v, want %v and ErrIssuerUnavailable", err, tc.wantErr)
			}
			if r.Ready() != tc.ready {
				t.Fatalf("Ready = %v, want %v", r.Ready(), tc.ready)
			}
		})
	}
}

func TestResolverConcurrentCallersShareOneFetch(t *testing.T) {
	is := authztest.New(t)
	r := NewResolver(ResolverOptions{Issuer: is.URL(), Client: is.Client()})
	var wg sync.WaitGroup
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := r.Metadata(context.Background()); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if got := is.Calls(authztest.PathOpenIDConfiguration); got != 1 {
		t.Fatalf("discovery calls = %d, want 1", got)
	}
}

func TestResolverWaitEndsWithTheRequest(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		http.Error(w, "late", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	defer close(release)
	r := NewResolver(ResolverOptions{Issuer: srv.URL, URL: srv.URL, Client: srv.Client()})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := r.Metadata(ctx)
	if !errors.Is(err, extauthz.ErrIssuerUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want ErrIssuerUnavailable wrapping the deadline", err)
	}
}

func TestResolverRunFindsTheIssuerWhenItComesUp(t *testing.T) {
	is := authztest.New(t)
	is.SetDown(true)
	r := NewResolver(ResolverOptions{
		Issuer: is.URL(), Client: is.Client(), MinRetryBackoff: 5 * time.Millisecond, MaxRetryBackoff: 20 * time.Millisecond,
	})
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { r.Run(ctx); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for is.Calls(authztest.PathOpenIDConfiguration) < 3 {
		if time.Now().After(deadline) {
			t.Fatal("Run does not retry")
		}
		time.Sleep(5 * time.Millisecond)
	}
	is.SetDown(false)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return once the metadata was found")
	}
	if !r.Ready() {
		t.Fatal("not ready")
	}
}
