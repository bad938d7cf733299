package cache

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestLookupsRecordEachCachesLastAnswer: a request's Lookups hold one entry
// per cache asked, in first-asked order, with the last answer; a context
// without Lookups records nothing and Lookup still answers as Get does.
func TestLookupsRecordEachCachesLastAnswer(t *testing.T) {
	jwt, mint := New[int]("jwt", 10, nil), New[int]("mint", 10, nil)
	jwt.Set("a", 1, time.Minute)

	if v, ok := jwt.Lookup(context.Background(), "a"); !ok || v != 1 {
		t.Fatalf("Lookup without Lookups = %v, %v", v, ok)
	}
	var l Lookups
	ctx := WithLookups(context.Background(), &l)
	jwt.Lookup(ctx, "missing")
	mint.Lookup(ctx, "x")
	jwt.Lookup(ctx, "a")
	Note(ctx, "introspection", true)
	want := []Lookup{{Cache: "jwt", Hit: true}, {Cache: "mint", Hit: false}, {Cache: "introspection", Hit: true}}
	if d := cmp.Diff(want, l.All()); d != "" {
		t.Fatalf("lookups (-want +got):\n%s", d)
	}
}

// TestLookupsAreBoundedAndSafeConcurrently: a shared call may record from
// another goroutine; more caches than maxLookups are dropped, not grown.
func TestLookupsAreBoundedAndSafeConcurrently(t *testing.T) {
	var l Lookups
	ctx := WithLookups(context.Background(), &l)
	var wg sync.WaitGroup
	for i := range 4 * maxLookups {
		wg.Go(func() { Note(ctx, string(rune('a'+i)), i%2 == 0) })
	}
	wg.Wait()
	if n := len(l.All()); n != maxLookups {
		t.Fatalf("%d lookups recorded, want the bound %d", n, maxLookups)
	}
}
