package sharedcache_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/sharedcache"
)

// introspector sketches how extauthz/introspect uses the shared cache: its
// own local cache first, the shared one on a local miss, the issuer last;
// what it learns goes to both; revocations drop local entries.
type introspector struct {
	issuer      string
	maxCacheTTL time.Duration
	negativeTTL time.Duration
	shared      *sharedcache.Cache // nil: not configured
	mu          sync.Mutex
	local       map[string]sharedcache.IntrospectionEntry // keyed by Credential.TokenHash()
	introspect  func(ctx context.Context, raw string) (sharedcache.IntrospectionEntry, error)
}

func (i *introspector) start() (stop func()) {
	return i.shared.OnRevoke(func(r sharedcache.Revocation) {
		i.mu.Lock()
		defer i.mu.Unlock()
		switch {
		case r.All:
			clear(i.local)
		case r.Issuer == i.issuer:
			delete(i.local, r.TokenHash)
		}
	})
}

func (i *introspector) authenticate(ctx context.Context, cred extauthz.Credential) (*extauthz.Principal, error) {
	key := cred.TokenHash()
	i.mu.Lock()
	e, ok := i.local[key]
	i.mu.Unlock()
	if !ok {
		// Shared: an error or an unreadable value is a miss.
		if b, found, err := i.shared.Get(ctx, sharedcache.KindIntrospection, i.issuer, key); err == nil && found {
			e, err = sharedcache.DecodeIntrospection(b)
			ok = err == nil
		}
	}
	if !ok {
		var err error
		if e, err = i.introspect(ctx, cred.Raw); err != nil {
			return nil, err // unavailable: nothing is cached
		}
		now := time.Now()
		switch {
		case errors.Is(e.Refusal, extauthz.ErrTokenInactive):
			// Every replica drops its copy; then share the refusal.
			_ = i.shared.Revoke(ctx, i.issuer, key, now.Add(i.maxCacheTTL))
			fallthrough
		case e.Refusal != nil:
			if b, err := sharedcache.EncodeIntrospection(e); err == nil {
				_ = i.shared.Set(ctx, sharedcache.KindIntrospection, i.issuer, key, b, now.Add(i.negativeTTL))
			}
		default:
			if b, err := sharedcache.EncodeIntrospection(e); err == nil {
				until := now.Add(i.maxCacheTTL) // never beyond exp or the cap
				if e.Principal.ExpiresAt.Before(until) {
					until = e.Principal.ExpiresAt
				}
				_ = i.shared.Set(ctx, sharedcache.KindIntrospection, i.issuer, key, b, until)
			}
		}
	}
	i.mu.Lock()
	i.local[key] = e
	i.mu.Unlock()
	if e.Refusal != nil {
		return nil, e.Refusal
	}
	p := *e.Principal
	p.Credential = cred
	return &p, nil
}

// Example_introspector wires a shared cache into an introspector. Redis is
// not needed for the example to run: New never waits for it, and every
// call then misses, so the introspector decides alone.
func Example_introspector() {
	shared, err := sharedcache.New(sharedcache.Options{
		Addresses: []string{"127.0.0.1:1"}, // nothing listens: Redis is "down"
		Secret:    []byte("a deployment secret of at least 32 bytes"),
		Logger:    slog.New(slog.DiscardHandler),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer shared.Close()
	calls := 0
	in := &introspector{
		issuer: "https://issuer.example", maxCacheTTL: time.Minute, negativeTTL: 10 * time.Second,
		shared: shared, local: map[string]sharedcache.IntrospectionEntry{},
		introspect: func(context.Context, string) (sharedcache.IntrospectionEntry, error) {
			calls++
			return sharedcache.IntrospectionEntry{Principal: &extauthz.Principal{
				Issuer: "https://issuer.example", Subject: "alice", ExpiresAt: time.Now().Add(time.Hour)}}, nil
		},
	}
	defer in.start()()
	cred := extauthz.Credential{Raw: "opaque-token", Kind: extauthz.KindOpaque}
	for range 3 {
		p, err := in.authenticate(context.Background(), cred)
		fmt.Println(p.Subject, err)
	}
	fmt.Println("issuer calls:", calls)
	// Output:
	// alice <nil>
	// alice <nil>
	// alice <nil>
	// issuer calls: 1
}
