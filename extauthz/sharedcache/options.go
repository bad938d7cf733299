package sharedcache

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"

	"github.com/tokentailor/tokentailor/extauthz/config"
)

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

// topologyRefresh is how often a cluster-mode client re-reads the slot map
// whatever its traffic, so that after a failover it routes to the new
// master within about two of these (rueidis adds up to a second of jitter).
const topologyRefresh = time.Second

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
	// BreakerFailures consecutive failures open the breaker; default
	// DefaultBreakerFailures. In cluster and sentinel mode each master has
	// its own.
	BreakerFailures int
	// BreakerCooldown is how long a breaker stays open before one probe;
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
	// A brace would make the prefix a Cluster hash tag: the entries of one
	// token would then lie in different slots (the config refuses it too).
	if strings.ContainsAny(o.KeyPrefix, "{}") {
		return fmt.Errorf("%w: KeyPrefix must not hold braces", ErrInvalidOptions)
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
	if o.Mode == ModeCluster {
		// rueidis otherwise re-reads the slot map only when a call fails
		// on a node; a replica whose breaker is open makes no such call.
		ro.ClusterOption.ShardsRefreshInterval = topologyRefresh
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
