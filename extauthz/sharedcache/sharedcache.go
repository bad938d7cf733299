package sharedcache

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"
	"github.com/sony/gobreaker/v2"

	"github.com/tokentailor/tokentailor/extauthz/config"
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

// Mode says how Options.Addresses are read.
type Mode string

// The deployment modes.
const (
	// ModeStandalone: one Redis or Valkey server at Addresses[0].
	ModeStandalone Mode = "standalone"
	// ModeCluster: Addresses are seed nodes of a Redis Cluster.
	ModeCluster Mode = "cluster"
	// ModeSentinel: Addresses are Sentinels watching SentinelMaster.
	ModeSentinel Mode = "sentinel"
)

// Defaults applied by New to zero Options fields: the config package's,
// which owns them.
const (
	DefaultKeyPrefix       = config.DefaultSharedCacheKeyPrefix
	DefaultTimeout         = config.DefaultSharedCacheTimeout
	DefaultLocalTTL        = config.DefaultSharedCacheLocalTTL
	DefaultLocalCacheBytes = config.DefaultSharedCacheLocalCacheBytes
	DefaultMaxTTL          = config.DefaultSharedCacheMaxTTL
	DefaultBreakerFailures = config.DefaultSharedCacheBreakerFailures
	DefaultBreakerCooldown = config.DefaultSharedCacheBreakerCooldown
	// MinSecretBytes is the shortest accepted key secret.
	MinSecretBytes = config.MinSharedCacheKeySecret
)

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

// Options configures a Cache. Addresses and Secret are required.
type Options struct {
	// Addresses are host:port of the server (standalone), the seed nodes
	// (cluster) or the Sentinels (sentinel).
	Addresses []string
	// Mode is standalone (default), cluster or sentinel.
	Mode Mode
	// SentinelMaster is the master set name; required in sentinel mode.
	SentinelMaster string
	// Username and Password are the ACL credentials (AUTH); Username empty
	// with a Password means the "default" user.
	Username, Password string
	// TLS, when not nil, is used for every connection (Sentinels included).
	TLS *tls.Config
	// Secret keys the HMAC of every key and the seal of revocation notices;
	// at least MinSecretBytes. Every replica must hold the same secret.
	Secret []byte
	// KeyPrefix starts every key and the notice channel; default DefaultKeyPrefix.
	KeyPrefix string
	// Timeout bounds each call to Redis; default DefaultTimeout.
	Timeout time.Duration
	// LocalTTL bounds how long a client-side copy is kept without Redis
	// saying it changed; default DefaultLocalTTL.
	LocalTTL time.Duration
	// LocalCacheBytes bounds the client-side copies per Redis node; default
	// DefaultLocalCacheBytes.
	LocalCacheBytes int
	// MaxTTL caps every entry's life in Redis; default DefaultMaxTTL.
	MaxTTL time.Duration
	// BreakerFailures consecutive failures open the breaker; default DefaultBreakerFailures.
	BreakerFailures int
	// BreakerCooldown is how long the breaker stays open before one probe;
	// default DefaultBreakerCooldown.
	BreakerCooldown time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives state changes and failures, never tokens; nil discards.
	Logger *slog.Logger
	// Registerer receives the metrics; nil means none. Registering twice on
	// one registry (a reload) reuses the collectors already there.
	Registerer prometheus.Registerer

	// disableLocal turns client-side caching off (benchmarks compare).
	disableLocal bool
}

// Revocation is what OnRevoke functions are told.
type Revocation struct {
	// Issuer and TokenHash name the revoked token, as given to Revoke.
	Issuer, TokenHash string
	// All says notices may have been missed (the subscription was lost and
	// is back): drop every local entry a revocation could concern.
	All bool
}

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
	breaker *gobreaker.CircuitBreaker[struct{}]

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
	c.breaker = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        "shared_cache",
		MaxRequests: 1,
		Timeout:     opts.BreakerCooldown,
		ReadyToTrip: func(n gobreaker.Counts) bool {
			return n.ConsecutiveFailures >= uint32(opts.BreakerFailures)
		},
		IsExcluded: func(err error) bool { return errors.Is(err, errCallerGone) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			c.metrics.breakerState(to)
			level := slog.LevelWarn
			if to == gobreaker.StateClosed {
				level = slog.LevelInfo
			}
			c.log.Log(context.Background(), level, "shared cache circuit breaker", "from", from.String(), "to", to.String())
		},
	})
	c.metrics.breakerState(gobreaker.StateClosed)
	ctx, stop := context.WithCancel(context.Background())
	c.stop = stop
	go c.run(ctx)
	return c, nil
}

func (o *Options) defaults() error {
	if len(o.Addresses) == 0 {
		return fmt.Errorf("%w: Addresses is required", ErrInvalidOptions)
	}
	for _, a := range o.Addresses {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("%w: address %q is not host:port", ErrInvalidOptions, a)
		}
	}
	if o.Mode == "" {
		o.Mode = ModeStandalone
	}
	switch o.Mode {
	case ModeStandalone:
		if len(o.Addresses) != 1 {
			return fmt.Errorf("%w: standalone mode takes one address", ErrInvalidOptions)
		}
	case ModeCluster:
	case ModeSentinel:
		if o.SentinelMaster == "" {
			return fmt.Errorf("%w: sentinel mode needs SentinelMaster", ErrInvalidOptions)
		}
	default:
		return fmt.Errorf("%w: mode %q is not standalone, cluster or sentinel", ErrInvalidOptions, o.Mode)
	}
	if len(o.Secret) < MinSecretBytes {
		return fmt.Errorf("%w: Secret must hold at least %d bytes", ErrInvalidOptions, MinSecretBytes)
	}
	if o.KeyPrefix == "" {
		o.KeyPrefix = DefaultKeyPrefix
	}
	setDefault(&o.Timeout, DefaultTimeout)
	setDefault(&o.LocalTTL, DefaultLocalTTL)
	setDefault(&o.MaxTTL, DefaultMaxTTL)
	setDefault(&o.BreakerCooldown, DefaultBreakerCooldown)
	setDefault(&o.LocalCacheBytes, DefaultLocalCacheBytes)
	setDefault(&o.BreakerFailures, DefaultBreakerFailures)
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

func setDefault[T int | time.Duration](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}

// clientOption maps Options to rueidis.
func (o *Options) clientOption() rueidis.ClientOption {
	dialer := net.Dialer{Timeout: time.Second, KeepAlive: time.Second}
	ro := rueidis.ClientOption{
		InitAddress: o.Addresses,
		Username:    o.Username,
		Password:    o.Password,
		TLSConfig:   o.TLS,
		ClientName:  "tokentailor",
		// No CLIENT SETINFO: one command fewer for the ACL to allow.
		ClientSetInfo:     rueidis.DisableClientSetInfo,
		Dialer:            dialer,
		CacheSizeEachConn: o.LocalCacheBytes,
		// One connection per node: every key has one client-side copy,
		// and auto-pipelining keeps one connection busy enough.
		PipelineMultiplex: -1,
		// A server that stops answering is found within this, not after
		// the kernel's keepalive probes.
		ConnWriteTimeout: 2 * time.Second,
		// Failures fall back to the local path; retries would only hold a
		// Check longer.
		DisableRetry:      true,
		ForceSingleClient: o.Mode == ModeStandalone,
		DisableCache:      o.disableLocal,
	}
	if o.Mode == ModeSentinel {
		ro.Sentinel = rueidis.SentinelOption{
			MasterSet: o.SentinelMaster,
			Username:  o.Username,
			Password:  o.Password,
			TLSConfig: o.TLS,
			Dialer:    dialer,
		}
	}
	return ro
}

// run connects (retrying with backoff) and then keeps the revocation
// subscription alive until Close.
func (c *Cache) run(ctx context.Context) {
	defer close(c.done)
	backoff := newBackoff()
	for {
		cl, err := rueidis.NewClient(c.opts.clientOption())
		if err == nil {
			c.client.Store(&cl)
			c.log.Info("shared cache connected", "mode", string(c.opts.Mode))
			break
		}
		c.log.Warn("shared cache cannot connect", "error", err)
		if !backoff.wait(ctx) {
			return
		}
	}
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

// do runs f on the client through the breaker with a bounded context.
func (c *Cache) do(ctx context.Context, op string, kind Kind, f func(ctx context.Context, cl rueidis.Client) error) error {
	clp := c.client.Load()
	if clp == nil {
		c.metrics.request(op, kind, "error")
		return fmt.Errorf("%w: %s: not connected", ErrUnavailable, op)
	}
	_, err := c.breaker.Execute(func() (struct{}, error) {
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
	err = c.do(ctx, "get", kind, func(ctx context.Context, cl rueidis.Client) error {
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
	err = c.do(ctx, "set", kind, func(ctx context.Context, cl rueidis.Client) error {
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
	err = c.do(ctx, "revoke", kindRevoked, func(ctx context.Context, cl rueidis.Client) error {
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
