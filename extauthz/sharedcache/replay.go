package sharedcache

import (
	"context"
	"crypto/sha256"
	"time"

	"github.com/redis/rueidis"
)

// ReplayStore remembers one-time values (DPoP proofs' jti) until a time. It
// is the shape of dpop.ReplayCache, declared here so that this package does
// not import the DPoP verifier; Replay is one and takes one.
type ReplayStore interface {
	// Add records key until the given time and reports whether it was
	// already recorded and still live. An error means it could not be
	// recorded.
	Add(ctx context.Context, key [sha256.Size]byte, until time.Time) (seen bool, err error)
}

// replayIssuer stands in for the issuer in the HMAC of replay keys: DPoP
// proofs are keyed by the key, URI and jti, whoever issued the token.
const replayIssuer = "dpop"

// Replay is a replay cache shared by the replicas (RFC 9449 §11.1): a
// proof's key (dpop.ReplayKey: SHA-256 of the key thumbprint, htu and jti)
// is recorded first in this replica's Local store, which answers a replay to
// this replica without a round trip, then in Redis with SET NX and an
// expiry at the end of the proof's acceptance window, so a proof replayed to
// any other replica finds it there and is refused. The Redis key is the
// keyed HMAC of that hash, like every shared key: Redis sees neither the
// jti, nor the thumbprint, nor the URI, and cannot test a guess at them.
//
// When Redis cannot record a proof (down, slow, breaker open), FallBackLocal
// decides: false (the default) refuses it with an error wrapping
// ErrUnavailable, since another replica may have accepted it; true lets the
// local store alone decide, as without a shared cache. A proof refused that
// way stays recorded locally: a client retries with a new proof.
type Replay struct {
	// Cache is the shared cache; nil makes Replay the Local store alone.
	Cache *Cache
	// Local is this replica's store, asked first. Required.
	Local ReplayStore
	// FallBackLocal lets Local alone decide when Redis cannot answer.
	FallBackLocal bool
}

var _ ReplayStore = (*Replay)(nil)

// Add implements ReplayStore (and dpop.ReplayCache).
func (r *Replay) Add(ctx context.Context, key [sha256.Size]byte, until time.Time) (bool, error) {
	seen, err := r.Local.Add(ctx, key, until)
	if err != nil || seen || r.Cache == nil {
		return seen, err
	}
	first, err := r.Cache.addOnce(ctx, KindReplay, replayIssuer, string(key[:]), until)
	if err != nil {
		if r.FallBackLocal {
			return false, nil
		}
		return false, err
	}
	return !first, nil
}

// addOnce records kind for issuer's hash until until unless it is recorded
// already: SET NX. first is true when this call recorded it. An expiry less
// than a millisecond away records nothing and counts as first: the value is
// about to stop being accepted anyway.
//
// Unlike cached answers, a mark is not capped by MaxTTL: one that ended
// before the window it guards would let a replay through. Callers bound
// until themselves (dpop.max_age + leeway, a SET's max_age: each at most 1h
// by config validation).
func (c *Cache) addOnce(ctx context.Context, kind Kind, issuer, hash string, until time.Time) (first bool, err error) {
	ttl := until.Sub(c.now()).Truncate(time.Millisecond)
	if ttl < time.Millisecond {
		return true, nil
	}
	key := c.key(kind, issuer, hash)
	err = c.do(ctx, "add", kind, key, func(ctx context.Context, cl rueidis.Client) error {
		err := cl.Do(ctx, cl.B().Set().Key(key).Value("1").Nx().Px(ttl).Build()).Error()
		switch {
		case err == nil:
			first = true
			return nil
		case rueidis.IsRedisNil(err): // NX: the key exists
			return nil
		default:
			return err
		}
	})
	if err != nil {
		return false, err
	}
	result := "ok"
	if !first {
		result = "seen"
	}
	c.metrics.request("add", kind, result)
	return first, nil
}
