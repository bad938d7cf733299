package sharedcache

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokentailor/tokentailor/extauthz/config"
)

// FromConfig builds the Cache that c's shared_cache block describes, reading
// its secrets and TLS files; it returns nil (a disabled cache) when the
// block is absent. The Cache is built once per process and kept across
// reloads: connections and client-side copies outlive a config.
func FromConfig(c *config.Config, log *slog.Logger, reg prometheus.Registerer) (*Cache, error) {
	s := c.SharedCache
	if s == nil {
		return nil, nil
	}
	o := Options{
		Addresses:       s.Addresses,
		Mode:            Mode(s.Mode),
		SentinelMaster:  s.SentinelMaster,
		Username:        s.Username,
		KeyPrefix:       s.KeyPrefix,
		Timeout:         s.Timeout.Duration,
		LocalTTL:        s.LocalTTL.Duration,
		LocalCacheBytes: s.LocalCacheBytes,
		MaxTTL:          s.MaxTTL.Duration,
		BreakerFailures: s.BreakerFailures,
		BreakerCooldown: s.BreakerCooldown.Duration,
		Logger:          log,
		Registerer:      reg,
	}
	var err error
	if o.Secret, err = c.ReadSecret(s.KeySecret); err != nil {
		return nil, fmt.Errorf("shared_cache.key_secret: %w", err)
	}
	if s.Password != nil {
		pw, err := c.ReadSecret(s.Password)
		if err != nil {
			return nil, fmt.Errorf("shared_cache.password: %w", err)
		}
		o.Password = string(pw)
	}
	if s.TLS != nil {
		if o.TLS, err = tlsConfig(c, s.TLS); err != nil {
			return nil, fmt.Errorf("shared_cache.tls: %w", err)
		}
	}
	return New(o)
}

func tlsConfig(c *config.Config, t *config.SharedCacheTLS) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pem, err := os.ReadFile(c.Path(t.CAFile))
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, errors.New("ca_file holds no PEM certificate")
		}
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.Path(t.CertFile), c.Path(t.KeyFile))
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
