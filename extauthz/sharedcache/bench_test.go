package sharedcache

import (
	"context"
	"testing"
	"time"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/sharedcache/redistest"
)

// BenchmarkGet compares a Get answered by the client-side (tracked) copy
// with one that makes the round trip to a real redis-server on loopback.
func BenchmarkGet(b *testing.B) {
	srv := redistest.Start(b)
	h := extauthz.TokenHash("bench-token")
	value, err := EncodeToken(extauthz.Token{Value: "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhIn0.c2ln", ExpiresAt: time.Now().Add(time.Hour)})
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name         string
		disableLocal bool
	}{
		{name: "local_hit", disableLocal: false},
		{name: "round_trip", disableLocal: true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := newTestCache(b, srv.Addr(), func(o *Options) { o.disableLocal = bc.disableLocal; o.Timeout = time.Second })
			ctx := context.Background()
			if err := c.Set(ctx, KindExchange, issuer, h, value, time.Now().Add(time.Hour)); err != nil {
				b.Fatal(err)
			}
			if _, ok, err := c.Get(ctx, KindExchange, issuer, h); !ok || err != nil {
				b.Fatalf("warm-up: %v %v", ok, err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, ok, err := c.Get(ctx, KindExchange, issuer, h); !ok || err != nil {
					b.Fatalf("%v %v", ok, err)
				}
			}
		})
	}
}
