// Package cache is tokentailor's bounded, sharded cache on top of
// github.com/patrickmn/go-cache.
//
// go-cache has expiry but no size bound, and one lock for the whole map. This
// package splits the key space over a fixed number of go-cache shards, each
// holding at most max/shards entries. When a shard is full, its expired entries
// are dropped; if it is still full, the whole shard is flushed. That costs one
// shard's worth of misses, never unbounded memory, and keeps every operation
// O(1) amortised. Keys must already be hashes (never raw tokens).
//
// Expired entries are swept every minute by one goroutine per Cache rather
// than by go-cache's janitor per shard: a process with six caches held 192
// parked janitors, each a stack the garbage collector scans on every cycle.
// The sweeper stops once the Cache is unreachable (runtime.AddCleanup).
package cache

import (
	"hash/maphash"
	"runtime"
	"sync/atomic"
	"time"

	gocache "github.com/patrickmn/go-cache"
)

// Observer is told about every lookup; *metrics.Metrics implements it, nil
// included (its methods are nil-safe), so components pass theirs as is.
type Observer interface {
	CacheLookup(cache string, hit bool)
}

// lookupCounter is an Observer that can resolve a cache's counters once
// (*metrics.Metrics does), so that a lookup does not name its labels again.
type lookupCounter interface {
	LookupCounter(cache string) func(hit bool)
}

// Cache is a bounded map from string keys to values of type V with a
// per-entry lifetime.
type Cache[V any] struct {
	name     string
	shards   []*gocache.Cache
	perShard int
	seed     maphash.Seed
	// drops counts, per shard, the times entries left it before their
	// expiry (a full shard flushed, Flush, Delete): see Mark.
	drops []atomic.Uint64
	// count counts one lookup; nil when nothing observes the cache.
	count func(hit bool)
}

const defaultShards = 32

// sweepEvery is how often expired entries are dropped.
const sweepEvery = time.Minute

// New returns a cache called name (used as metric label) holding at most
// maxEntries entries. obs may be nil.
func New[V any](name string, maxEntries int, obs Observer) *Cache[V] {
	return newSweeping[V](name, maxEntries, obs, sweepEvery)
}

// newSweeping is New with the sweep interval given.
func newSweeping[V any](name string, maxEntries int, obs Observer, every time.Duration) *Cache[V] {
	n := defaultShards
	if maxEntries < n {
		n = 1
	}
	if maxEntries < 1 {
		maxEntries = 1
	}
	c := &Cache[V]{
		name:     name,
		shards:   make([]*gocache.Cache, n),
		drops:    make([]atomic.Uint64, n),
		perShard: (maxEntries + n - 1) / n,
		seed:     maphash.MakeSeed(),
	}
	switch o := obs.(type) {
	case nil:
	case lookupCounter:
		c.count = o.LookupCounter(name)
	default:
		c.count = func(hit bool) { o.CacheLookup(name, hit) }
	}
	for i := range c.shards {
		// No default expiry (every Set names its own) and no janitor of
		// go-cache's own: sweep sweeps every shard.
		c.shards[i] = gocache.New(gocache.NoExpiration, 0)
	}
	stop := make(chan struct{})
	go sweep(c.shards, every, stop)
	runtime.AddCleanup(c, func(stop chan struct{}) { close(stop) }, stop)
	return c
}

// sweep drops the expired entries of shards every interval until stop is
// closed. It holds the shards, never the Cache, so that the Cache can become
// unreachable and its cleanup close stop.
func sweep(shards []*gocache.Cache, every time.Duration, stop chan struct{}) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			for _, s := range shards {
				s.DeleteExpired()
			}
		}
	}
}

func (c *Cache[V]) shard(key string) *gocache.Cache { return c.shards[c.shardOf(key)] }

// shardOf returns the index of key's shard.
func (c *Cache[V]) shardOf(key string) int {
	if len(c.shards) == 1 {
		return 0
	}
	return int(maphash.String(c.seed, key) % uint64(len(c.shards)))
}

// A Mark is taken on a key (Cache.Mark) to tell later, without a lookup,
// whether an entry stored under that key may have left the cache before
// its expiry. The zero Mark never holds.
type Mark struct {
	drops *atomic.Uint64
	at    uint64
}

// Mark returns a mark of key: it holds as long as no entry of key's shard
// has left the cache other than by expiring (a full shard flushed, Flush,
// Delete). An entry present when the mark was taken, or stored under key
// since, is still there while it holds (or another value under its key),
// until the entry's own expiry.
func (c *Cache[V]) Mark(key string) Mark {
	d := &c.drops[c.shardOf(key)]
	return Mark{drops: d, at: d.Load()}
}

// Holds reports whether no entry of the marked key's shard has left the
// cache before its expiry since m was taken.
func (m Mark) Holds() bool { return m.drops != nil && m.drops.Load() == m.at }

// Get returns the value stored under key, if present and not expired.
func (c *Cache[V]) Get(key string) (V, bool) {
	v, ok := c.Peek(key)
	if c.count != nil {
		c.count(ok)
	}
	return v, ok
}

// Peek is Get without counting a hit or a miss: a second look, in the same
// request, for a value that a Get just missed.
func (c *Cache[V]) Peek(key string) (V, bool) {
	v, ok := c.shard(key).Get(key)
	if !ok {
		var zero V
		return zero, false
	}
	return v.(V), true
}

// Set stores v under key for ttl. A ttl ≤ 0 stores nothing: entries never
// live forever.
func (c *Cache[V]) Set(key string, v V, ttl time.Duration) {
	if ttl <= 0 {
		return
	}
	i := c.shardOf(key)
	s := c.shards[i]
	if s.ItemCount() >= c.perShard {
		s.DeleteExpired()
		if s.ItemCount() >= c.perShard {
			s.Flush()
			c.drops[i].Add(1) // after: a mark taken since finds no entry
		}
	}
	s.Set(key, v, ttl)
}

// Delete removes key.
func (c *Cache[V]) Delete(key string) {
	i := c.shardOf(key)
	c.shards[i].Delete(key)
	c.drops[i].Add(1)
}

// Flush removes every entry.
func (c *Cache[V]) Flush() {
	for i, s := range c.shards {
		s.Flush()
		c.drops[i].Add(1)
	}
}

// Len returns the number of entries, expired ones not yet swept included.
func (c *Cache[V]) Len() int {
	n := 0
	for _, s := range c.shards {
		n += s.ItemCount()
	}
	return n
}

// Max returns the bound on entries.
func (c *Cache[V]) Max() int { return c.perShard * len(c.shards) }
