package credential

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/tokentailor/tokentailor/extauthz"
)

func mustNew(t testing.TB, o Options) Options {
	t.Helper()
	o, err := New(filled(o))
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// TestRemember: a remembered token's hash and kind come back for that very
// token only; everything else is hashed and judged as before.
func TestRemember(t *testing.T) {
	o := mustNew(t, Options{})
	r := req(map[string]string{"authorization": "Bearer " + jws}, nil)
	first, err := o.Extract(r)
	if err != nil || first.HashRemembered || first.CachedTokenHash != extauthz.TokenHash(jws) {
		t.Fatalf("first Extract = %+v, %v", first, err)
	}
	o.Remember(first)
	again, err := o.Extract(r)
	want := first
	want.HashRemembered = true
	if err != nil || again != want {
		t.Fatalf("after Remember: %+v, %v; want %+v", again, err, want)
	}
	// Tokens that differ by one byte, or only by their scheme's case, are
	// their own; a malformed one is refused as ever.
	for _, v := range []string{"Bearer " + jws[:len(jws)-1] + "x", "bearer " + jws, "Bearer " + jws + " x", "Bearer " + jwe} {
		got, err := o.Extract(req(map[string]string{"authorization": v}, nil))
		raw := v[len("Bearer "):]
		switch {
		case strings.Contains(raw, " "):
			if err == nil {
				t.Errorf("%q accepted", v)
			}
		case err != nil:
			t.Errorf("%q: %v", v, err)
		case got.CachedTokenHash != extauthz.TokenHash(raw) || got.Kind != Kind(raw):
			t.Errorf("%q: hash or kind of another token: %+v", v, got)
		case got.HashRemembered != (raw == jws):
			t.Errorf("%q: remembered = %v", v, got.HashRemembered)
		}
	}
}

// TestRememberBounded: the table holds at most hashSlots tokens of at most
// maxRememberedToken bytes, and Options not made by New remember nothing.
func TestRememberBounded(t *testing.T) {
	o := mustNew(t, Options{MaxBytes: 3 * maxRememberedToken})
	for i := range 4 * hashSlots {
		c, err := o.Extract(req(map[string]string{"authorization": fmt.Sprintf("Bearer tok-%d", i)}, nil))
		if err != nil {
			t.Fatal(err)
		}
		o.Remember(c)
	}
	held := 0
	for i := range o.hashes.slots {
		if o.hashes.slots[i].Load() != nil {
			held++
		}
	}
	if held > hashSlots || held < hashSlots/2 {
		t.Fatalf("%d tokens held, want at most %d (and most slots used)", held, hashSlots)
	}
	long := "Bearer " + strings.Repeat("a", maxRememberedToken+1)
	c, err := o.Extract(req(map[string]string{"authorization": long}, nil))
	if err != nil {
		t.Fatal(err)
	}
	o.Remember(c)
	if c, _ = o.Extract(req(map[string]string{"authorization": long}, nil)); c.HashRemembered {
		t.Fatal("a token over maxRememberedToken bytes was remembered")
	}

	plain := filled(Options{})
	c, _ = plain.Extract(req(map[string]string{"authorization": "Bearer " + jws}, nil))
	plain.Remember(c)
	if c, _ = plain.Extract(req(map[string]string{"authorization": "Bearer " + jws}, nil)); c.HashRemembered || c.CachedTokenHash != extauthz.TokenHash(jws) {
		t.Fatalf("Options without New: %+v", c)
	}
}

// TestRememberConcurrently runs Extract and Remember from many goroutines
// on tokens that share sets (run with -race).
func TestRememberConcurrently(t *testing.T) {
	o := mustNew(t, Options{})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				raw := fmt.Sprintf("tok-%d", (i*7+g)%3000)
				c, err := o.Extract(req(map[string]string{"authorization": "Bearer " + raw}, nil))
				if err != nil || c.CachedTokenHash != extauthz.TokenHash(raw) {
					t.Errorf("%s: %+v, %v", raw, c, err)
					return
				}
				o.Remember(c)
			}
		})
	}
	wg.Wait()
}

// BenchmarkExtract: a token hashed, and the same token remembered.
func BenchmarkExtract(b *testing.B) {
	token := "Bearer eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiYXQrand0In0." + strings.Repeat("eyJzdWIiOiJhbGljZSJ9", 16) + "." + strings.Repeat("c2ln", 21)
	r := req(map[string]string{"authorization": token}, nil)
	o := mustNew(b, Options{})
	b.Run("hashed", func(b *testing.B) {
		for b.Loop() {
			_, _ = o.Extract(r)
		}
	})
	c, _ := o.Extract(r)
	o.Remember(c)
	b.Run("remembered", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = o.Extract(r)
		}
	})
}
