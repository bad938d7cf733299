package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestSharedCacheDefaults(t *testing.T) {
	c, err := Parse([]byte(minimal+`
shared_cache:
  addresses: 127.0.0.1:6379
  key_secret: {env: TT_KEY}
`), "/etc/tt")
	if err != nil {
		t.Fatal(err)
	}
	want := &SharedCache{
		Addresses:       StringList{"127.0.0.1:6379"},
		Mode:            "standalone",
		KeySecret:       &Secret{Env: "TT_KEY"},
		KeyPrefix:       "tokentailor:",
		Timeout:         Duration{Duration: 50 * time.Millisecond},
		LocalTTL:        Duration{Duration: time.Minute},
		LocalCacheBytes: 16 << 20,
		MaxTTL:          Duration{Duration: time.Hour},
		BreakerFailures: 5,
		BreakerCooldown: Duration{Duration: 5 * time.Second},
	}
	if diff := cmp.Diff(want, c.SharedCache, cmp.Comparer(func(a, b Duration) bool { return a.Duration == b.Duration })); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
	if c2, _ := Parse([]byte(minimal), "/etc/tt"); c2.SharedCache != nil {
		t.Error("shared_cache set without the block")
	}
}

// TestSharedCacheEveryFieldArrives feeds a non-default value for every
// field and checks that each arrived.
func TestSharedCacheEveryFieldArrives(t *testing.T) {
	c, err := Parse([]byte(minimal+`
shared_cache:
  addresses: [10.0.0.1:26379, 10.0.0.2:26379]
  mode: sentinel
  sentinel_master: tt-master
  username: tokentailor
  password: {file: redis-pw}
  tls: {ca_file: ca.pem, server_name: redis.internal, cert_file: c.pem, key_file: k.pem}
  key_secret: {file: key}
  key_prefix: "tt-prod:"
  timeout: 20ms
  local_ttl: 30s
  local_cache_bytes: 1048576
  max_ttl: 10m
  breaker_failures: 3
  breaker_cooldown: 2s
`), "/etc/tt")
	if err != nil {
		t.Fatal(err)
	}
	want := &SharedCache{
		Addresses: StringList{"10.0.0.1:26379", "10.0.0.2:26379"}, Mode: "sentinel", SentinelMaster: "tt-master",
		Username: "tokentailor", Password: &Secret{File: "redis-pw"},
		TLS:       &SharedCacheTLS{CAFile: "ca.pem", ServerName: "redis.internal", CertFile: "c.pem", KeyFile: "k.pem"},
		KeySecret: &Secret{File: "key"}, KeyPrefix: "tt-prod:",
		Timeout: Duration{Duration: 20 * time.Millisecond}, LocalTTL: Duration{Duration: 30 * time.Second},
		LocalCacheBytes: 1 << 20, MaxTTL: Duration{Duration: 10 * time.Minute},
		BreakerFailures: 3, BreakerCooldown: Duration{Duration: 2 * time.Second},
	}
	if diff := cmp.Diff(want, c.SharedCache, cmp.Comparer(func(a, b Duration) bool { return a.Duration == b.Duration })); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	files := strings.Join(c.Files(), " ")
	for _, f := range []string{"/etc/tt/redis-pw", "/etc/tt/key", "/etc/tt/ca.pem", "/etc/tt/c.pem", "/etc/tt/k.pem"} {
		if !strings.Contains(files, f) {
			t.Errorf("Files() lacks %s: %s", f, files)
		}
	}
}

func TestSharedCacheValidation(t *testing.T) {
	for _, tc := range []struct {
		name      string
		block     string
		wantField string
	}{
		{name: "no addresses", block: `{key_secret: {env: K}}`, wantField: "shared_cache.addresses"},
		{name: "address without port", block: `{addresses: redis, key_secret: {env: K}}`, wantField: "shared_cache.addresses[0]"},
		{name: "two addresses standalone", block: `{addresses: [a:1, b:1], key_secret: {env: K}}`, wantField: "shared_cache.addresses"},
		{name: "unknown mode", block: `{addresses: a:1, mode: ring, key_secret: {env: K}}`, wantField: "shared_cache.mode"},
		{name: "sentinel without master", block: `{addresses: a:1, mode: sentinel, key_secret: {env: K}}`, wantField: "shared_cache.sentinel_master"},
		{name: "master outside sentinel mode", block: `{addresses: a:1, sentinel_master: m, key_secret: {env: K}}`, wantField: "shared_cache.sentinel_master"},
		{name: "no key secret", block: `{addresses: a:1}`, wantField: "shared_cache.key_secret"},
		{name: "key secret with file and env", block: `{addresses: a:1, key_secret: {env: K, file: f}}`, wantField: "shared_cache.key_secret"},
		{name: "username without password", block: `{addresses: a:1, username: u, key_secret: {env: K}}`, wantField: "shared_cache.password"},
		{name: "prefix with a brace", block: `{addresses: a:1, key_prefix: "a{b", key_secret: {env: K}}`, wantField: "shared_cache.key_prefix"},
		{name: "client cert without key", block: `{addresses: a:1, tls: {cert_file: c.pem}, key_secret: {env: K}}`, wantField: "shared_cache.tls"},
		{name: "zero timeout", block: `{addresses: a:1, timeout: 0s, key_secret: {env: K}}`, wantField: "shared_cache.timeout"},
		{name: "timeout too long", block: `{addresses: a:1, timeout: 2s, key_secret: {env: K}}`, wantField: "shared_cache.timeout"},
		{name: "negative local cache", block: `{addresses: a:1, local_cache_bytes: -1, key_secret: {env: K}}`, wantField: "shared_cache.local_cache_bytes"},
		{name: "negative breaker failures", block: `{addresses: a:1, breaker_failures: -1, key_secret: {env: K}}`, wantField: "shared_cache.breaker_failures"},
		{name: "zero max ttl", block: `{addresses: a:1, max_ttl: 0s, key_secret: {env: K}}`, wantField: "shared_cache.max_ttl"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(minimal+"\nshared_cache: "+tc.block+"\n"), "/etc/tt")
			var fe FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("err = %v, want a FieldError", err)
			}
			if !strings.Contains(err.Error(), tc.wantField+":") {
				t.Errorf("err = %v, want one naming %s", err, tc.wantField)
			}
		})
	}
}
