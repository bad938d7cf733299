package cache

import (
	"context"
	"sync"
)

// Lookups records whether each cache one request looked in held the entry,
// so that the request's trace span can say so (extauthz/server puts one in
// the context of a traced Check only). Safe for concurrent use: a shared
// call (singleflight) may look from another goroutine.
type Lookups struct {
	mu      sync.Mutex
	n       int
	entries [maxLookups]Lookup
}

// Lookup is one cache's answer to a request: the last one, when it asked
// the same cache twice.
type Lookup struct {
	// Cache is the cache's name, as in the cache_lookups_total metric.
	Cache string
	// Hit is whether the entry was there.
	Hit bool
}

// maxLookups bounds the caches one request is recorded for; a Check looks
// in at most three (credential, upstream token, shared).
const maxLookups = 8

type lookupsKey struct{}

// WithLookups returns ctx carrying l: lookups made with it are recorded there.
func WithLookups(ctx context.Context, l *Lookups) context.Context {
	return context.WithValue(ctx, lookupsKey{}, l)
}

// Note records that the cache called name answered hit to the request of
// ctx, if ctx carries Lookups; otherwise it costs one context lookup.
func Note(ctx context.Context, name string, hit bool) {
	l, _ := ctx.Value(lookupsKey{}).(*Lookups)
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range l.n {
		if l.entries[i].Cache == name {
			l.entries[i].Hit = hit
			return
		}
	}
	if l.n < maxLookups {
		l.entries[l.n] = Lookup{Cache: name, Hit: hit}
		l.n++
	}
}

// All returns the recorded lookups in the order the caches were first asked.
func (l *Lookups) All() []Lookup {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Lookup(nil), l.entries[:l.n]...)
}

// Lookup is Get, recorded in ctx's Lookups (see Note).
func (c *Cache[V]) Lookup(ctx context.Context, key string) (V, bool) {
	v, ok := c.Get(key)
	Note(ctx, c.name, ok)
	return v, ok
}

// NoteHit records a hit of this cache that was found without a lookup (a
// value kept beside another, such as a principal's Memo, that came from
// this cache): counted and noted as Lookup counts and notes a hit.
func (c *Cache[V]) NoteHit(ctx context.Context) {
	if c.count != nil {
		c.count(true)
	}
	Note(ctx, c.name, true)
}
