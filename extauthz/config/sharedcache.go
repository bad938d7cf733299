package config

import (
	"fmt"
	"net"
	"strings"
	"time"
)

// SharedCache configures the cache that replicas share on Redis (≥ 7) or
// Valkey: introspection answers, exchanged tokens and revocations (see
// extauthz/sharedcache). Absent, each replica caches alone.
type SharedCache struct {
	// Addresses are host:port: the server (standalone), seed nodes
	// (cluster) or Sentinels (sentinel). Required.
	Addresses StringList `json:"addresses"`
	// Mode is standalone (default), cluster or sentinel.
	Mode string `json:"mode"`
	// SentinelMaster is the master set name; required in sentinel mode.
	SentinelMaster string `json:"sentinel_master"`
	// Username is the ACL user; empty with a password means "default".
	Username string `json:"username"`
	// Password is the ACL password, from a file or an environment variable.
	Password *Secret `json:"password"`
	// TLS, when present, makes every connection TLS.
	TLS *SharedCacheTLS `json:"tls"`
	// KeySecret keys the HMAC that turns token hashes into keys and seals
	// values and revocation notices; at least 32 bytes, the same on every
	// replica, from a file or an environment variable. Required.
	KeySecret *Secret `json:"key_secret"`
	// KeyPrefix starts every key and the notice channel (default "tokentailor:").
	KeyPrefix string `json:"key_prefix"`
	// Timeout bounds each call to Redis (default 50ms); a slower Redis is a miss.
	Timeout Duration `json:"timeout"`
	// LocalTTL bounds how long a client-side copy of an entry is kept
	// without Redis saying it changed (default 1m).
	LocalTTL Duration `json:"local_ttl"`
	// LocalCacheBytes bounds the client-side copies per Redis node (default 16 MiB).
	LocalCacheBytes int `json:"local_cache_bytes"`
	// MaxTTL caps every entry's life in Redis (default 1h); entries never
	// outlive their token or their component's cap either.
	MaxTTL Duration `json:"max_ttl"`
	// BreakerFailures consecutive failed calls open the circuit breaker
	// (default 5); in cluster and sentinel mode each master has its own.
	BreakerFailures int `json:"breaker_failures"`
	// BreakerCooldown is how long a breaker stays open before one probe (default 5s).
	BreakerCooldown Duration `json:"breaker_cooldown"`
}

// SharedCacheTLS configures TLS toward Redis.
type SharedCacheTLS struct {
	// CAFile is a PEM bundle of trusted CAs (default: the system's).
	CAFile string `json:"ca_file"`
	// ServerName overrides the name checked in the server's certificate.
	ServerName string `json:"server_name"`
	// CertFile and KeyFile are a client certificate, when Redis asks for one.
	CertFile string `json:"cert_file"`
	KeyFile  string `json:"key_file"`
}

// Defaults of the shared_cache block.
const (
	DefaultSharedCacheMode            = "standalone"
	DefaultSharedCacheKeyPrefix       = "tokentailor:"
	DefaultSharedCacheTimeout         = 50 * time.Millisecond
	DefaultSharedCacheLocalTTL        = time.Minute
	DefaultSharedCacheLocalCacheBytes = 16 << 20
	DefaultSharedCacheMaxTTL          = time.Hour
	DefaultSharedCacheBreakerFailures = 5
	DefaultSharedCacheBreakerCooldown = 5 * time.Second
	// MinSharedCacheKeySecret is the shortest accepted key_secret, in bytes.
	MinSharedCacheKeySecret = 32
)

// applyDefaults fills the block's unset fields.
func (s *SharedCache) applyDefaults() {
	if s.Mode == "" {
		s.Mode = DefaultSharedCacheMode
	}
	if s.KeyPrefix == "" {
		s.KeyPrefix = DefaultSharedCacheKeyPrefix
	}
	defaultDuration(&s.Timeout, DefaultSharedCacheTimeout)
	defaultDuration(&s.LocalTTL, DefaultSharedCacheLocalTTL)
	defaultDuration(&s.MaxTTL, DefaultSharedCacheMaxTTL)
	defaultDuration(&s.BreakerCooldown, DefaultSharedCacheBreakerCooldown)
	if s.LocalCacheBytes == 0 {
		s.LocalCacheBytes = DefaultSharedCacheLocalCacheBytes
	}
	if s.BreakerFailures == 0 {
		s.BreakerFailures = DefaultSharedCacheBreakerFailures
	}
}

func defaultDuration(d *Duration, v time.Duration) {
	if !d.IsSet() {
		d.Duration = v
	}
}

// validateSharedCache reports the block's problems under field f.
func (c *Config) validateSharedCache(p *problems, f string, s *SharedCache) {
	bad := p.add
	if len(s.Addresses) == 0 {
		bad(f+".addresses", "required: host:port of Redis, its cluster nodes or its Sentinels")
	}
	for i, a := range s.Addresses {
		if _, _, err := net.SplitHostPort(a); err != nil {
			bad(fmt.Sprintf("%s.addresses[%d]", f, i), "%q is not host:port", a)
		}
	}
	switch s.Mode {
	case "standalone":
		if len(s.Addresses) > 1 {
			bad(f+".addresses", "standalone mode takes one address; use mode cluster or sentinel for several")
		}
		if s.SentinelMaster != "" {
			bad(f+".sentinel_master", "only with mode sentinel")
		}
	case "cluster":
		if s.SentinelMaster != "" {
			bad(f+".sentinel_master", "only with mode sentinel")
		}
	case "sentinel":
		if s.SentinelMaster == "" {
			bad(f+".sentinel_master", "required with mode sentinel")
		}
	default:
		bad(f+".mode", "%q is not standalone, cluster or sentinel", s.Mode)
	}
	if s.Password != nil {
		s.Password.validate(p, f+".password")
	} else if s.Username != "" {
		bad(f+".password", "required with username")
	}
	if s.KeySecret == nil {
		bad(f+".key_secret", "required: a secret of at least %d bytes, the same on every replica", MinSharedCacheKeySecret)
	} else {
		s.KeySecret.validate(p, f+".key_secret")
	}
	if strings.ContainsAny(s.KeyPrefix, " {}\r\n") {
		bad(f+".key_prefix", "must not hold spaces, braces or line breaks")
	}
	if s.TLS != nil && (s.TLS.CertFile == "") != (s.TLS.KeyFile == "") {
		bad(f+".tls", "set both cert_file and key_file, or neither")
	}
	for _, d := range []struct {
		name string
		v    Duration
	}{{"timeout", s.Timeout}, {"local_ttl", s.LocalTTL}, {"max_ttl", s.MaxTTL}, {"breaker_cooldown", s.BreakerCooldown}} {
		if d.v.Duration <= 0 {
			bad(f+"."+d.name, "must be positive")
		}
	}
	if s.Timeout.Duration > time.Second {
		bad(f+".timeout", "%v would hold Checks behind a slow Redis; keep it well under Envoy's ext_authz timeout", s.Timeout.Duration)
	}
	if s.LocalCacheBytes <= 0 {
		bad(f+".local_cache_bytes", "must be positive")
	}
	if s.BreakerFailures <= 0 {
		bad(f+".breaker_failures", "must be positive")
	}
}

// files lists the files the block reads.
func (s *SharedCache) files() []string {
	var out []string
	if s.Password != nil {
		out = append(out, s.Password.File)
	}
	if s.KeySecret != nil {
		out = append(out, s.KeySecret.File)
	}
	if s.TLS != nil {
		out = append(out, s.TLS.CAFile, s.TLS.CertFile, s.TLS.KeyFile)
	}
	return out
}
