package sharedcache

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/rueidis"
)

// Revocation is what OnRevoke functions are told.
type Revocation struct {
	// Issuer and TokenHash name the revoked token, as given to Revoke.
	Issuer, TokenHash string
	// All says notices may have been missed (the subscription was lost and
	// is back): drop every local entry a revocation could concern.
	All bool
}

// Revoke marks issuer's token hash inactive until until (the token's exp;
// capped by MaxTTL): it writes the revocation mark, deletes the shared
// introspection answer, tells this replica's OnRevoke functions at once and
// publishes a sealed notice so every other replica's are told too. Local
// functions are told even when Redis is unavailable; the error says the
// other replicas may not have been.
func (c *Cache) Revoke(ctx context.Context, issuer, tokenHash string, until time.Time) error {
	if c == nil {
		return nil
	}
	c.dispatch(Revocation{Issuer: issuer, TokenHash: tokenHash})
	ttl, ok := c.ttl(until)
	if !ok {
		return nil
	}
	mark, answer := c.key(kindRevoked, issuer, tokenHash), c.key(KindIntrospection, issuer, tokenHash)
	notice, err := c.sealNotice(issuer, tokenHash)
	if err != nil {
		return fmt.Errorf("sharedcache: sealing a notice: %w", err)
	}
	err = c.do(ctx, "revoke", kindRevoked, mark, func(ctx context.Context, cl rueidis.Client) error {
		for _, r := range cl.DoMulti(ctx,
			cl.B().Set().Key(mark).Value("1").Px(ttl).Build(),
			cl.B().Del().Key(answer).Build(),
			cl.B().Publish().Channel(c.channel).Message(notice).Build(),
		) {
			if err := r.Error(); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		c.metrics.request("revoke", kindRevoked, "ok")
	}
	return err
}

// Revoked reports whether issuer's token hash was revoked by any replica
// and the mark has not expired. Answers are kept client-side and dropped
// when the mark is written, so a warm check costs no round trip.
func (c *Cache) Revoked(ctx context.Context, issuer, tokenHash string) (bool, error) {
	if c == nil {
		return false, nil
	}
	_, ok, err := c.get(ctx, kindRevoked, c.key(kindRevoked, issuer, tokenHash))
	return ok, err
}

// OnRevoke registers f to be told of every revocation (this replica's and
// the others'); the returned function unregisters it. f runs on the
// notice-reading goroutine (or Revoke's caller) and must be quick: drop a
// local cache entry, nothing more.
func (c *Cache) OnRevoke(f func(Revocation)) (unregister func()) {
	if c == nil {
		return func() {}
	}
	c.mu.Lock()
	id := c.nextID
	c.nextID++
	c.handlers[id] = f
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		delete(c.handlers, id)
		c.mu.Unlock()
	}
}

func (c *Cache) dispatch(r Revocation) {
	c.mu.Lock()
	fs := make([]func(Revocation), 0, len(c.handlers))
	for _, f := range c.handlers {
		fs = append(fs, f)
	}
	c.mu.Unlock()
	for _, f := range fs {
		f(r)
	}
}
