package cache

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

type countObs struct{ hits, misses int }

func (o *countObs) CacheLookup(_ string, hit bool) {
	if hit {
		o.hits++
	} else {
		o.misses++
	}
}

func TestCacheGetSet(t *testing.T) {
	obs := &countObs{}
	c := New[int]("t", 100, obs)
	if _, ok := c.Get("a"); ok {
		t.Fatal("empty cache hit")
	}
	c.Set("a", 1, time.Minute)
	if v, ok := c.Get("a"); !ok || v != 1 {
		t.Fatalf("Get = %v, %v; want 1, true", v, ok)
	}
	c.Set("b", 2, 0)
	if _, ok := c.Get("b"); ok {
		t.Fatal("ttl 0 must not be stored")
	}
	c.Set("c", 3, time.Millisecond)
	time.Sleep(5 * time.Millisecond)
	if _, ok := c.Get("c"); ok {
		t.Fatal("expired entry returned")
	}
	// Peek finds what Get finds, and counts nothing.
	if v, ok := c.Peek("a"); !ok || v != 1 {
		t.Fatalf("Peek = %v, %v; want 1, true", v, ok)
	}
	if _, ok := c.Peek("c"); ok {
		t.Fatal("Peek returned an expired entry")
	}
	c.Delete("a")
	if _, ok := c.Get("a"); ok {
		t.Fatal("deleted entry returned")
	}
	if obs.hits != 1 || obs.misses != 4 {
		t.Fatalf("observer saw %d hits, %d misses; want 1, 4", obs.hits, obs.misses)
	}
}

// TestOneSweeperPerCache: a cache of many shards adds one goroutine, not
// one per shard; it drops expired entries without being asked, and its
// goroutine ends once the cache is unreachable.
func TestOneSweeperPerCache(t *testing.T) {
	before := runtime.NumGoroutine()
	c := newSweeping[int]("t", 10*defaultShards, nil, 10*time.Millisecond)
	if len(c.shards) != defaultShards {
		t.Fatalf("%d shards, want %d", len(c.shards), defaultShards)
	}
	if n := runtime.NumGoroutine() - before; n != 1 {
		t.Fatalf("%d goroutines added for %d shards, want 1", n, len(c.shards))
	}
	for i := range 100 {
		c.Set(fmt.Sprint(i), i, time.Millisecond)
	}
	c.Set("kept", 1, time.Hour)
	waitFor(t, "the sweeper to drop expired entries", func() bool { return c.Len() == 1 })
	c = nil
	waitFor(t, "the sweeper to end with its cache", func() bool {
		runtime.GC()
		return runtime.NumGoroutine() <= before
	})
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestCacheIsBounded(t *testing.T) {
	for _, max := range []int{1, 10, 1000} {
		c := New[int]("t", max, nil)
		for i := range 20 * max {
			c.Set(fmt.Sprint(i), i, time.Hour)
			if c.Len() > c.Max() {
				t.Fatalf("max %d: Len %d > Max %d", max, c.Len(), c.Max())
			}
		}
		if c.Max() < max || c.Max() > max+defaultShards {
			t.Fatalf("Max() = %d for bound %d", c.Max(), max)
		}
		// The newest entry always survives its own insertion.
		last := fmt.Sprint(20*max - 1)
		if _, ok := c.Get(last); !ok {
			t.Fatalf("max %d: newest entry missing", max)
		}
	}
}

// resolvingObs resolves a cache's counter once, as *metrics.Metrics does.
type resolvingObs struct {
	countObs
	resolved []string
}

func (o *resolvingObs) LookupCounter(name string) func(bool) {
	o.resolved = append(o.resolved, name)
	return func(hit bool) { o.countObs.CacheLookup(name, hit) }
}

// An observer that resolves counters is asked once, when the cache is made,
// and counts every lookup through what it returned.
func TestCacheResolvesCountersOnce(t *testing.T) {
	obs := &resolvingObs{}
	c := New[int]("mint", 10, obs)
	c.Set("a", 1, time.Minute)
	for _, k := range []string{"a", "b", "a"} {
		c.Get(k)
	}
	if len(obs.resolved) != 1 || obs.resolved[0] != "mint" {
		t.Errorf("resolved %q, want [mint] once", obs.resolved)
	}
	if obs.hits != 2 || obs.misses != 1 {
		t.Errorf("hits %d misses %d, want 2 and 1", obs.hits, obs.misses)
	}
}

// BenchmarkSetShedding is a cold path's insert into a full cache: every key
// is new, so shards keep filling and shedding (issue 14).
func BenchmarkSetShedding(b *testing.B) {
	c := New[int]("bench", 10000, nil)
	keys := make([]string, 1<<16)
	for i := range keys {
		keys[i] = fmt.Sprintf("%064x", i*7919)
	}
	for i := range 2 * 10000 { // full, as in a server that has run a while
		c.Set(keys[i%len(keys)], i, time.Hour)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		c.Set(keys[i%len(keys)], i, time.Hour)
	}
}

// TestMark: a mark holds until an entry of its shard leaves the cache
// before its expiry (a full shard flushed, Delete, Flush); the zero Mark
// never holds.
func TestMark(t *testing.T) {
	if (Mark{}).Holds() {
		t.Error("the zero Mark holds")
	}
	c := New[int]("t", 3, nil) // one shard of three entries
	c.Set("a", 1, time.Hour)
	m := c.Mark("a")
	c.Set("b", 2, time.Hour)
	c.Set("a", 3, time.Hour) // replaced, not dropped
	if !m.Holds() {
		t.Fatal("the mark does not hold with nothing dropped")
	}
	c.Set("c", 4, time.Hour)
	c.Set("d", 5, time.Hour) // full: the shard is flushed
	if _, ok := c.Peek("a"); ok || m.Holds() {
		t.Fatalf("a kept %v, mark holds %v after the shard was flushed", ok, m.Holds())
	}
	for _, drop := range []func(){func() { c.Delete("c") }, c.Flush} {
		m := c.Mark("a")
		drop()
		if m.Holds() {
			t.Error("the mark holds after an entry was dropped")
		}
	}
}
