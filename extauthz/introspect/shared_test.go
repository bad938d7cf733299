package introspect_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/authztest"
	"github.com/tokentailor/tokentailor/extauthz/clientauth"
	"github.com/tokentailor/tokentailor/extauthz/introspect"
	"github.com/tokentailor/tokentailor/extauthz/sharedcache/redistest"
	"github.com/tokentailor/tokentailor/extauthz/sharedcache/sharedtest"
)

// replicas are introspectors of one issuer, each with its own client of one
// real Redis, as two tokentailor processes would be.
type replicas struct {
	redis *redistest.Server
	x     *authztest.Introspection
	a, b  *introspect.Introspector
	add   func() *introspect.Introspector // another replica
}

func newReplicas(t *testing.T) *replicas {
	t.Helper()
	srv := redistest.Start(t)
	is := authztest.New(t)
	x := is.Introspection(t)
	auth, err := clientauth.New(clientauth.Options{Method: clientauth.MethodNone, ClientID: clientID})
	if err != nil {
		t.Fatal(err)
	}
	replica := func() *introspect.Introspector {
		shared := sharedtest.Connect(t, srv.Addr(), 200*time.Millisecond)
		in, err := introspect.New(withSettings(introspect.Options{
			Issuer: is.URL(), Endpoint: is.Endpoint(authztest.PathIntrospect), Auth: auth, Client: is.Client(),
			MaxCacheTTL: time.Minute, NegativeTTL: 10 * time.Second, Shared: shared,
		}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(in.Close)
		return in
	}
	return &replicas{redis: srv, x: x, a: replica(), b: replica(), add: replica}
}

// TestSharedReplicaCostsNoCall: what replica A learnt from the issuer,
// replica B reads from Redis.
func TestSharedReplicaCostsNoCall(t *testing.T) {
	ctx := context.Background()
	r := newReplicas(t)
	r.x.Register("tok-shared", map[string]any{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()})
	r.x.Register("tok-refused", map[string]any{"sub": "bob", "exp": time.Now().Add(-time.Hour).Unix()})
	tests := []struct {
		name    string
		token   string
		wantErr error
	}{
		{name: "active", token: "tok-shared"},
		{name: "inactive", token: "tok-unknown", wantErr: extauthz.ErrTokenInactive},
		{name: "expired", token: "tok-refused", wantErr: extauthz.ErrTokenExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := r.x.Calls()
			for _, in := range []*introspect.Introspector{r.a, r.b, r.b} {
				_, err := in.Authenticate(ctx, cred(tt.token))
				if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
			}
			if got := r.x.Calls() - before; got != 1 {
				t.Errorf("issuer calls = %d, want 1 (replica A only)", got)
			}
		})
	}
}

// TestSharedRevocationReachesReplica: replica B holds an active answer; the
// token is revoked at the issuer and replica A learns it; B refuses within
// a second without asking the issuer.
func TestSharedRevocationReachesReplica(t *testing.T) {
	ctx := context.Background()
	r := newReplicas(t)
	r.x.Register("tok-revoked", map[string]any{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()})
	if _, err := r.b.Authenticate(ctx, cred("tok-revoked")); err != nil {
		t.Fatal(err)
	}
	if _, err := r.a.Authenticate(ctx, cred("tok-revoked")); err != nil {
		t.Fatal(err)
	}
	r.x.Revoke("tok-revoked")
	// A's answers have expired (in Redis and locally): simulate with a
	// fresh replica A' reading an emptied Redis.
	if got := r.redis.Command("FLUSHALL"); got != "+OK" {
		t.Fatalf("FLUSHALL: %s", got)
	}
	a2 := r.add()
	if _, err := a2.Authenticate(ctx, cred("tok-revoked")); !errors.Is(err, extauthz.ErrTokenInactive) {
		t.Fatalf("replica A': %v, want inactive", err)
	}
	calls := r.x.Calls()
	deadline := time.Now().Add(time.Second)
	for {
		_, err := r.b.Authenticate(ctx, cred("tok-revoked"))
		if errors.Is(err, extauthz.ErrTokenInactive) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica B still answers %v a second after the revocation", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := r.x.Calls() - calls; got != 0 {
		t.Errorf("replica B called the issuer %d times, want 0 (the refusal is shared)", got)
	}
}

// TestSharedRedisDown: with Redis killed, both replicas keep deciding from
// their local caches and the issuer; no check fails.
func TestSharedRedisDown(t *testing.T) {
	ctx := context.Background()
	r := newReplicas(t)
	exp := time.Now().Add(time.Hour).Unix()
	r.x.Register("tok-before", map[string]any{"sub": "alice", "exp": exp})
	r.x.Register("tok-after", map[string]any{"sub": "bob", "exp": exp})
	if _, err := r.a.Authenticate(ctx, cred("tok-before")); err != nil {
		t.Fatal(err)
	}
	r.redis.Stop()
	tests := []struct {
		name  string
		in    *introspect.Introspector
		token string
		want  string
	}{
		{name: "A cached", in: r.a, token: "tok-before", want: "alice"},
		{name: "B from the issuer", in: r.b, token: "tok-before", want: "alice"},
		{name: "A new token", in: r.a, token: "tok-after", want: "bob"},
		{name: "B new token", in: r.b, token: "tok-after", want: "bob"},
		{name: "B inactive", in: r.b, token: "tok-unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := tt.in.Authenticate(ctx, cred(tt.token))
			if tt.want == "" {
				if !errors.Is(err, extauthz.ErrTokenInactive) {
					t.Fatalf("err = %v, want inactive", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("check failed with Redis down: %v", err)
			}
			if p.Subject != tt.want {
				t.Errorf("subject = %q, want %q", p.Subject, tt.want)
			}
		})
	}
}
