package introspect

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/cache"
	"github.com/tokentailor/tokentailor/extauthz/sharedcache"
)

// entry is one cached answer: a principal (without its credential) or a
// refusal, good until until by the injected clock.
type entry struct {
	p     *extauthz.Principal
	nbf   time.Time
	err   error
	until time.Time
	fresh bool // introspected for this lookup, not found in a cache
}

// lookup returns the cached entry for key or introspects raw, sharing the call
// with concurrent lookups of the same key.
func (i *Introspector) lookup(ctx context.Context, key, raw string) (entry, error) {
	e, ok := i.cached(key)
	cache.Note(ctx, "introspection", ok)
	if ok {
		return e, nil
	}
	ch := i.group.DoChan(key, func() (any, error) {
		if e, ok := i.cached(key); ok {
			return e, nil
		}
		if e, ok := i.fromShared(ctx, key); ok {
			return e, nil
		}
		return i.introspect(ctx, key, raw)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return entry{}, r.Err
		}
		return r.Val.(entry), nil
	case <-ctx.Done():
		return entry{}, fmt.Errorf("%w: waiting for introspection: %w", extauthz.ErrIssuerUnavailable, ctx.Err())
	}
}

// cached returns the answer held for key: an active one, else a refusal.
func (i *Introspector) cached(key string) (entry, bool) {
	for _, c := range [...]*cache.Cache[entry]{i.cache, i.neg} {
		e, ok := c.Get(key)
		if !ok {
			continue
		}
		if !i.now().Before(e.until) {
			c.Delete(key)
			continue
		}
		return e, true
	}
	return entry{}, false
}

// store caches e locally: an active answer until its exp, at most
// MaxCacheTTL; a refusal for NegativeTTL. It returns e with until set.
func (i *Introspector) store(key string, e entry, now time.Time) entry {
	if e.err != nil {
		e.until = now.Add(i.opts.NegativeTTL)
		i.neg.Set(key, e, i.opts.NegativeTTL)
		return e
	}
	ttl := min(e.p.ExpiresAt.Sub(now), i.opts.MaxCacheTTL)
	e.until = now.Add(ttl)
	i.cache.Set(key, e, ttl)
	return e
}

// fromShared looks key up in the shared cache and stores what it finds
// locally. Redis unavailable, a miss and an unreadable value are all a miss.
func (i *Introspector) fromShared(ctx context.Context, key string) (entry, bool) {
	if i.opts.Shared == nil {
		return entry{}, false
	}
	b, ok, err := i.opts.Shared.Get(ctx, sharedcache.KindIntrospection, i.opts.Issuer, key)
	if err != nil || !ok {
		return entry{}, false
	}
	se, err := sharedcache.DecodeIntrospection(b)
	if err != nil || (se.Refusal == nil && se.Principal == nil) {
		i.log.WarnContext(ctx, "shared cache: ignoring an unreadable introspection entry", "issuer", i.opts.Issuer, "token", key[:12])
		return entry{}, false
	}
	now := i.now()
	if se.Refusal == nil && (se.Principal.Issuer != i.opts.Issuer || !now.Before(se.Principal.ExpiresAt)) {
		return entry{}, false
	}
	return i.store(key, entry{p: se.Principal, nbf: se.NotBefore, err: se.Refusal}, now), true
}

// share tells the shared cache what the issuer answered. An inactive token
// is revoked first, so every replica drops its copy; then the refusal is
// shared for NegativeTTL, an active answer until its exp, at most
// MaxCacheTTL: the same lifetimes as the local cache's.
func (i *Introspector) share(ctx context.Context, key string, e entry, now time.Time) {
	sh := i.opts.Shared
	if sh == nil {
		return
	}
	until := now.Add(i.opts.NegativeTTL)
	if e.err == nil {
		until = now.Add(min(e.p.ExpiresAt.Sub(now), i.opts.MaxCacheTTL))
	}
	if errors.Is(e.err, extauthz.ErrTokenInactive) {
		if err := sh.Revoke(ctx, i.opts.Issuer, key, now.Add(i.opts.MaxCacheTTL)); err != nil {
			i.log.WarnContext(ctx, "shared cache: revocation not published", "issuer", i.opts.Issuer, "token", key[:12], "error", err)
		}
	}
	b, err := sharedcache.EncodeIntrospection(sharedcache.IntrospectionEntry{Principal: e.p, NotBefore: e.nbf, Refusal: e.err})
	if err != nil {
		return // a refusal without a wire code stays local
	}
	_ = sh.Set(ctx, sharedcache.KindIntrospection, i.opts.Issuer, key, b, until)
}
