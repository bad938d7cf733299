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
	if err != nil || again.Memo == nil {
		t.Fatalf("after Remember: %+v, %v; want the remembered token's memo", again, err)
	}
	// The memo is the token's: the same for every Extract of it.
	if next, _ := o.Extract(r); next.Memo != again.Memo {
		t.Error("two Extracts of a remembered token gave two memos")
	}
	want.Memo = again.Memo
	if again != want {
		t.Fatalf("after Remember: %+v; want %+v", again, want)
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

// TestRememberBounded: the table holds tokens of at most
// maxRememberedToken bytes; more tokens coming back than it holds replace
// its entries only now and then, so that most of what it holds stays and is
// found; a sum that is not the token's is never kept; Options not made by
// New remember nothing.
func TestRememberBounded(t *testing.T) {
	o := mustNew(t, Options{MaxBytes: 3 * maxRememberedToken})
	extract := func(raw string) extauthz.Credential {
		t.Helper()
		c, err := o.Extract(req(map[string]string{"authorization": "Bearer " + raw}, nil))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	const rotation = 4 * hashSlots
	for i := range rotation {
		o.Remember(extract(fmt.Sprintf("tok-%d", i)))
	}
	held := map[*hashedToken]bool{}
	for i := range o.hashes.slots {
		if e := o.hashes.slots[i].Load(); e != nil {
			held[e] = true
		}
	}
	if len(held) < hashSlots*3/4 {
		t.Fatalf("%d of %d slots used after %d tokens", len(held), hashSlots, rotation)
	}
	// Round and round the rotation: each miss may replace an entry one
	// time in admitOneIn, so most entries stay and keep being found.
	found, replaced := 0, 0
	for range 3 {
		for i := range rotation {
			c := extract(fmt.Sprintf("tok-%d", i))
			if c.HashRemembered {
				found++
			}
			o.Remember(c)
		}
	}
	for i := range o.hashes.slots {
		if !held[o.hashes.slots[i].Load()] {
			replaced++
		}
	}
	if misses := 3*rotation - found; found < 3*hashSlots/2 || replaced > 2*misses/admitOneIn+hashSlots/8 {
		t.Fatalf("3 rounds of %d tokens: %d found, %d of %d entries replaced after %d misses",
			rotation, found, replaced, hashSlots, misses)
	}

	long := strings.Repeat("a", maxRememberedToken+1)
	o.Remember(extract(long))
	if extract(long).HashRemembered {
		t.Fatal("a token over maxRememberedToken bytes was remembered")
	}
	forged := extract("fresh-token")
	forged.CachedTokenHash = extauthz.TokenHash("another token")
	o.Remember(forged)
	if c := extract("fresh-token"); c.HashRemembered || c.CachedTokenHash != extauthz.TokenHash("fresh-token") {
		t.Fatalf("a credential with another token's hash was remembered: %+v", c)
	}

	plain := filled(Options{})
	c, _ := plain.Extract(req(map[string]string{"authorization": "Bearer " + jws}, nil))
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

// BenchmarkExtract: a token hashed; the same token remembered; and
// Extract then Remember, as Decide calls them, over rotations of 512 and
// 4,096 tokens of the same size (the table holds 1,024).
func BenchmarkExtract(b *testing.B) {
	token := func(i int) string {
		return fmt.Sprintf("Bearer eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiYXQrand0In0.%s.%s%06d",
			strings.Repeat("eyJzdWIiOiJhbGljZSJ9", 16), strings.Repeat("c2ln", 20), i)
	}
	r := req(map[string]string{"authorization": token(0)}, nil)
	o := mustNew(b, Options{})
	b.Run("hashed", func(b *testing.B) {
		b.ReportAllocs()
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
	for _, n := range []int{512, 4096} {
		b.Run(fmt.Sprintf("rotation-%d", n), func(b *testing.B) {
			o := mustNew(b, Options{})
			reqs := make([]*extauthz.Request, n)
			for i := range reqs {
				reqs[i] = req(map[string]string{"authorization": token(i)}, nil)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				c, _ := o.Extract(reqs[i%n])
				o.Remember(c)
				i++
			}
		})
	}
}
