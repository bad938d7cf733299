// Package cache is tokentailor's bounded, sharded cache on top of
// github.com/patrickmn/go-cache.
//
// go-cache has expiry but no size bound, and one lock for the whole map. This
// package splits the key space over a fixed number of go-cache shards, each
// holding at most max/shards entries. When a shard is full, its expired entries
// are dropped; if it is still full, the whole shard is flushed. That costs one
// shard's worth of misses, never unbounded memory, and keeps every operation
// O(1) amortised. Keys must already be hashes (never raw tokens).
package cache

import (
	"hash/maphash"
	"time"

	gocache "github.com/patrickmn/go-cache"
)

// Observer is told about every lookup; *metrics.Metrics implements it, nil
// included (its methods are nil-safe), so components pass theirs as is.
type Observer interface {
	CacheLookup(cache string, hit bool)
}

// Cache is a bounded map from string keys to values of type V with a
// per-entry lifetime.
type Cache[V any] struct {
	name     string
	shards   []*gocache.Cache
	perShard int
	seed     maphash.Seed
	obs      Observer
}

const defaultShards = 32

// New returns a cache called name (used as metric label) holding at most
// maxEntries entries. obs may be nil.
func New[V any](name string, maxEntries int, obs Observer) *Cache[V] {
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
		perShard: (maxEntries + n - 1) / n,
		seed:     maphash.MakeSeed(),
		obs:      obs,
	}
	for i := range c.shards {
		// No default expiry (every Set names its own); janitor every minute.
		c.shards[i] = gocache.New(gocache.NoExpiration, time.Minute)
	}
	return c
}

func (c *Cache[V]) shard(key string) *gocache.Cache {
	if len(c.shards) == 1 {
		return c.shards[0]
	}
	return c.shards[maphash.String(c.seed, key)%uint64(len(c.shards))]
}

// Get returns the value stored under key, if present and not expired.
func (c *Cache[V]) Get(key string) (V, bool) {
	v, ok := c.shard(key).Get(key)
	if c.obs != nil {
		c.obs.CacheLookup(c.name, ok)
	}
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
	s := c.shard(key)
	if s.ItemCount() >= c.perShard {
		s.DeleteExpired()
		if s.ItemCount() >= c.perShard {
			s.Flush()
		}
	}
	s.Set(key, v, ttl)
}

// Delete removes key.
func (c *Cache[V]) Delete(key string) { c.shard(key).Delete(key) }

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
