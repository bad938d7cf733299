package sharedcache

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
	"github.com/sony/gobreaker/v2"
)

// Kind names what an entry holds; each kind has its own key space.
type Kind byte

// The kinds of shared entries.
const (
	// KindIntrospection holds an introspection answer (EncodeIntrospection).
	KindIntrospection Kind = 'i'
	// KindExchange holds an exchanged token (EncodeToken).
	KindExchange Kind = 'x'
	// KindReplay marks a jti (or any one-time value) as seen.
	KindReplay Kind = 'j'
	// kindRevoked marks a token hash as revoked; written by Revoke only.
	kindRevoked Kind = 'r'
)

// String returns the kind's metric label.
func (k Kind) String() string {
	switch k {
	case KindIntrospection:
		return "introspection"
	case KindExchange:
		return "exchange"
	case KindReplay:
		return "replay"
	case kindRevoked:
		return "revocation"
	default:
		return "unknown"
	}
}

// Errors.
var (
	// ErrUnavailable wraps every failure to reach Redis: not connected yet,
	// timeout, connection error, breaker open. Callers treat it as a miss.
	ErrUnavailable = errors.New("shared cache unavailable")
	// ErrInvalidOptions wraps every problem New finds in Options.
	ErrInvalidOptions = errors.New("sharedcache: invalid options")
	// ErrMalformedValue is returned by the decoders for a value they cannot read.
	ErrMalformedValue = errors.New("shared cache: malformed value")
)

// Cache is a shared cache on Redis. Its methods are safe for concurrent use
// and on a nil *Cache (a disabled cache: lookups miss, writes do nothing).
type Cache struct {
	opts    Options
	now     func() time.Time
	log     *slog.Logger
	macs    sync.Pool // hash.Hash: HMAC-SHA-256 keyed with Secret
	sealer  *sealer
	channel string
	metrics *collectors
	// breaker guards every call in standalone mode; in cluster and
	// sentinel mode, those whose master is not known yet (see breakerFor).
	breaker *gobreaker.CircuitBreaker[struct{}]
	state   atomic.Int32 // breaker's gobreaker.State, for the gauge
	slots   atomic.Pointer[slotMap]
	slotsMu sync.Mutex // serializes setSlots; guards retired
	// retired keeps, for a while, the breakers of masters that left the
	// slot map (see setSlots), by masterBreaker.key.
	retired map[string]retiredBreaker
	gaugeMu sync.Mutex // serializes breakerChanged

	client    atomic.Pointer[rueidis.Client]
	connected chan struct{}
	stop      context.CancelFunc
	done      chan struct{}

	mu       sync.Mutex
	handlers map[int]func(Revocation)
	nextID   int
}

// New validates opts, applies defaults and starts connecting in the
// background; it never waits for Redis. Close releases the connections.
func New(opts Options) (*Cache, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	c := &Cache{
		opts:      opts,
		now:       opts.Now,
		log:       opts.Logger,
		channel:   opts.KeyPrefix + "revocations",
		connected: make(chan struct{}),
		done:      make(chan struct{}),
		handlers:  map[int]func(Revocation){},
	}
	var err error
	if c.sealer, err = newSealer(opts.Secret); err != nil {
		return nil, fmt.Errorf("sharedcache: %w", err)
	}
	if c.metrics, err = newCollectors(opts.Registerer); err != nil {
		return nil, fmt.Errorf("sharedcache: metrics: %w", err)
	}
	secret := append([]byte(nil), opts.Secret...)
	c.macs.New = func() any { return hmac.New(sha256.New, secret) }
	c.breaker = c.newBreaker("", time.Time{}, &c.state)
	c.metrics.breakerState(gobreaker.StateClosed)
	ctx, stop := context.WithCancel(context.Background())
	c.stop = stop
	go c.run(ctx)
	return c, nil
}

// run connects (retrying with backoff) and then keeps the revocation
// subscription alive until Close.
func (c *Cache) run(ctx context.Context) {
	defer close(c.done)
	backoff := newBackoff()
	var cl rueidis.Client
	for {
		var err error
		if cl, err = rueidis.NewClient(c.opts.clientOption()); err == nil {
			c.client.Store(&cl)
			c.log.Info("shared cache connected", "mode", string(c.opts.Mode))
			break
		}
		c.log.Warn("shared cache cannot connect", "error", err)
		if !backoff.wait(ctx) {
			return
		}
	}
	var wg sync.WaitGroup
	switch c.opts.Mode {
	case ModeCluster:
		wg.Go(func() { c.followSlots(ctx, cl) })
	case ModeSentinel:
		wg.Go(func() { c.followMaster(ctx, cl) })
	}
	defer wg.Wait()
	c.subscribe(ctx)
}

// Close stops the background work and closes the connections.
func (c *Cache) Close() {
	if c == nil {
		return
	}
	c.stop()
	<-c.done
	if cl := c.client.Load(); cl != nil {
		(*cl).Close()
	}
}

// Connected is closed once the client is connected and subscribed to
// revocation notices. Nothing needs to wait for it; tests do.
func (c *Cache) Connected() <-chan struct{} { return c.connected }

// key returns the Redis key of kind for issuer's token hash.
func (c *Cache) key(kind Kind, issuer, tokenHash string) string {
	m := c.macs.Get().(hash.Hash)
	m.Reset()
	m.Write([]byte("tokentailor/sharedcache/v1\x00"))
	m.Write([]byte(issuer))
	m.Write([]byte{0})
	m.Write([]byte(tokenHash))
	var sum [sha256.Size]byte
	m.Sum(sum[:0])
	c.macs.Put(m)
	p := c.opts.KeyPrefix
	b := make([]byte, 0, len(p)+4+base64.RawURLEncoding.EncodedLen(len(sum)))
	b = append(b, p...)
	b = append(b, byte(kind), ':', '{')
	b = base64.RawURLEncoding.AppendEncode(b, sum[:])
	b = append(b, '}')
	return string(b)
}

// errCallerGone marks a call whose caller gave up: not Redis's fault, so
// the breaker does not count it.
var errCallerGone = errors.New("caller gone")

// do runs f on the client with a bounded context, through the breaker of
// the node serving key (every key f names lies in key's slot).
func (c *Cache) do(ctx context.Context, op string, kind Kind, key string, f func(ctx context.Context, cl rueidis.Client) error) error {
	clp := c.client.Load()
	if clp == nil {
		c.metrics.request(op, kind, "error")
		return fmt.Errorf("%w: %s: not connected", ErrUnavailable, op)
	}
	_, err := c.breakerFor(key).Execute(func() (struct{}, error) {
		cctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
		defer cancel()
		err := f(cctx, *clp)
		if err != nil && ctx.Err() != nil {
			return struct{}{}, fmt.Errorf("%w: %w", errCallerGone, ctx.Err())
		}
		return struct{}{}, err
	})
	if err != nil {
		result := "error"
		if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
			result = "breaker_open"
		}
		c.metrics.request(op, kind, result)
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
	}
	return nil
}

// Get returns the value stored under kind for issuer's token hash. ok is
// false on a miss; err wraps ErrUnavailable when Redis could not answer, and
// the caller then decides as if it had missed. A value read once is served
// from the client-side copy until Redis says it changed, at most LocalTTL.
// A value that does not open with this deployment's secret under this key
// (written by someone else, or moved from another key) is a miss.
func (c *Cache) Get(ctx context.Context, kind Kind, issuer, tokenHash string) (value []byte, ok bool, err error) {
	if c == nil {
		return nil, false, nil
	}
	key := c.key(kind, issuer, tokenHash)
	sealed, ok, err := c.get(ctx, kind, key)
	if !ok || err != nil {
		return nil, false, err
	}
	if value, err = c.sealer.open(sealed, key); err != nil {
		c.metrics.request("get", kind, "malformed")
		c.log.Warn("shared cache: ignoring a value not sealed by this deployment for its key", "kind", kind.String())
		return nil, false, nil
	}
	return value, true, nil
}

// get reads key through the client-side cache and counts the outcome.
func (c *Cache) get(ctx context.Context, kind Kind, key string) (value []byte, ok bool, err error) {
	var local bool
	err = c.do(ctx, "get", kind, key, func(ctx context.Context, cl rueidis.Client) error {
		r := cl.DoCache(ctx, cl.B().Get().Key(key).Cache(), c.opts.LocalTTL)
		b, err := r.AsBytes()
		if rueidis.IsRedisNil(err) {
			return nil
		}
		if err != nil {
			return err
		}
		value, ok, local = b, true, r.IsCacheHit()
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	c.metrics.request("get", kind, lookupResult(ok, local))
	return value, ok, nil
}

func lookupResult(ok, local bool) string {
	switch {
	case !ok:
		return "miss"
	case local:
		return "local_hit"
	default:
		return "hit"
	}
}

// Set stores value under kind for issuer's token hash until expiresAt, but
// never beyond MaxTTL from now. An expiry less than a millisecond away
// stores nothing. The expiry is sent as a relative PX computed with the
// injected clock, so a Redis clock that differs from ours cannot lengthen it.
func (c *Cache) Set(ctx context.Context, kind Kind, issuer, tokenHash string, value []byte, expiresAt time.Time) error {
	if c == nil {
		return nil
	}
	if kind == kindRevoked {
		return fmt.Errorf("sharedcache: revocations are written by Revoke")
	}
	ttl, ok := c.ttl(expiresAt)
	if !ok {
		return nil
	}
	key := c.key(kind, issuer, tokenHash)
	sealed, err := c.sealer.seal(value, key)
	if err != nil {
		return fmt.Errorf("sharedcache: sealing a value: %w", err)
	}
	err = c.do(ctx, "set", kind, key, func(ctx context.Context, cl rueidis.Client) error {
		return cl.Do(ctx, cl.B().Set().Key(key).Value(rueidis.BinaryString(sealed)).Px(ttl).Build()).Error()
	})
	if err == nil {
		c.metrics.request("set", kind, "ok")
	}
	return err
}

// ttl is expiresAt - now capped by MaxTTL, truncated to milliseconds; ok is
// false when nothing is to be stored.
func (c *Cache) ttl(expiresAt time.Time) (time.Duration, bool) {
	ttl := min(expiresAt.Sub(c.now()), c.opts.MaxTTL).Truncate(time.Millisecond)
	return ttl, ttl >= time.Millisecond
}
