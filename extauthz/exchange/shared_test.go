package exchange_test

import (
	"context"
	"testing"
	"time"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/exchange"
	"github.com/tokentailor/tokentailor/extauthz/sharedcache/redistest"
	"github.com/tokentailor/tokentailor/extauthz/sharedcache/sharedtest"
)

// TestSharedExchange: a token replica A obtained is used by replica B
// without a call; with Redis killed both still exchange.
func TestSharedExchange(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	var opts exchange.Options
	f := setup(t, func(o *exchange.Options) {
		o.Shared = sharedtest.Connect(t, srv.Addr(), 200*time.Millisecond)
		opts = *o
	})
	opts.Shared = sharedtest.Connect(t, srv.Addr(), 200*time.Millisecond)
	b, err := exchange.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	g := grant("orders", nil)
	p := principal(f, extauthz.KindOpaque, "incoming", time.Hour)
	tokA, err := f.ex.Token(ctx, p, g)
	if err != nil {
		t.Fatal(err)
	}
	tokB, err := b.Token(ctx, p, g)
	if err != nil {
		t.Fatal(err)
	}
	if tokB.Value != tokA.Value {
		t.Errorf("replica B got another token than replica A's")
	}
	if got := f.x.Calls(); got != 1 {
		t.Errorf("token endpoint calls = %d, want 1", got)
	}

	srv.Stop()
	p2 := principal(f, extauthz.KindOpaque, "other", time.Hour)
	for name, ex := range map[string]*exchange.Exchanger{"A": f.ex, "B": b} {
		if _, err := ex.Token(ctx, p2, g); err != nil {
			t.Errorf("replica %s with Redis down: %v", name, err)
		}
	}
	if got := f.x.Calls(); got != 3 {
		t.Errorf("token endpoint calls = %d, want 3", got)
	}
}
