package config

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"

	"golang.org/x/net/http/httpguts"
)

// problems collects FieldErrors; each validation rule adds to it.
type problems []FieldError

func (p *problems) add(field, format string, args ...any) {
	*p = append(*p, FieldError{Field: field, Problem: fmt.Sprintf(format, args...)})
}

// Validate checks the whole config and returns every problem found, each
// naming its field. It does not touch the network; files it names are checked
// for existence only where a missing file is certainly a mistake.
func (c *Config) Validate() error {
	return joinFieldErrors(c.problems())
}

// problems runs the rules of every block in turn.
func (c *Config) problems() []FieldError {
	var p problems
	c.Listen.validate(&p)
	c.Log.validate(&p)
	c.validateMint(&p)
	c.Credential.validate(&p)
	c.validateCacheRuntime(&p)
	c.validateIssuers(&p)
	for i := range c.Issuers {
		c.validateRevocationPush(&p, i)
	}
	c.validateDPoP(&p)
	c.validateTxnToken(&p)
	c.validateTracing(&p)
	if c.SharedCache != nil {
		c.validateSharedCache(&p, "shared_cache", c.SharedCache)
	}
	c.validateRoutes(&p)
	return p
}

func (l *Listen) validate(p *problems) {
	if l.GRPC == "" && l.Socket == "" && l.HTTP == "" && l.HTTPSocket == "" {
		p.add("listen", "set grpc (a TCP address) or socket (a unix socket path) for Envoy's gRPC ext_authz, http or http_socket for the HTTP authorization listener")
	}
	checkHostPort(p, "listen.grpc", l.GRPC)
	checkHostPort(p, "listen.http", l.HTTP)
	if l.HTTPSocket != "" && !filepath.IsAbs(l.HTTPSocket) {
		p.add("listen.http_socket", "must be an absolute path")
	}
	for i, tp := range l.HTTPTrustedProxies {
		if _, err := ParseTrustedProxy(tp); err != nil {
			p.add(fmt.Sprintf("listen.http_trusted_proxies[%d]", i), "%q is not a CIDR (10.0.0.0/8) or an IP address", tp)
		}
	}
	checkHostPort(p, "listen.admin", l.Admin)
	if l.Socket != "" && !filepath.IsAbs(l.Socket) {
		p.add("listen.socket", "must be an absolute path")
	}
	if l.ShutdownGrace.Duration < 0 {
		p.add("listen.shutdown_grace", "must not be negative")
	}
	if l.Drain.Duration < 0 {
		p.add("listen.drain", "must not be negative")
	}
	if n := l.MaxRequestBytes; n < 4096 || n > MaxGRPCMessageBytes {
		p.add("listen.max_request_bytes", "%d is not between 4096 and %d", n, MaxGRPCMessageBytes)
	}
}

func checkHostPort(p *problems, field, addr string) {
	if addr == "" {
		return
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		p.add(field, "%q is not host:port (e.g. 127.0.0.1:9191)", addr)
	}
}

func (l *Log) validate(p *problems) {
	switch l.Level {
	case "debug", "info", "warn", "error":
	default:
		p.add("log.level", "%q is not debug, info, warn or error", l.Level)
	}
	switch l.Format {
	case "json", "text":
	default:
		p.add("log.format", "%q is not json or text", l.Format)
	}
}

// validateMint: keys are needed as soon as one route's mode signs with them
// (modeRules).
func (c *Config) validateMint(p *problems) {
	if c.needsMintKeys() || len(c.Mint.Keys) > 0 {
		if c.Mint.Issuer == "" {
			p.add("mint.issuer", "required: the iss of minted tokens")
		}
		if len(c.Mint.Keys) == 0 {
			p.add("mint.keys", "at least one signing key is required for routes in mode mint")
		}
	}
	kids := map[string]bool{}
	for i, k := range c.Mint.Keys {
		f := fmt.Sprintf("mint.keys[%d]", i)
		if k.File == "" {
			p.add(f+".file", "required")
		}
		if k.Kid != "" && kids[k.Kid] {
			p.add(f+".kid", "duplicate kid %q", k.Kid)
		}
		kids[k.Kid] = k.Kid != ""
	}
	if c.Mint.SigningKey != "" && !kids[c.Mint.SigningKey] {
		p.add("mint.signing_key", "%q is not the kid of a key in mint.keys", c.Mint.SigningKey)
	}
}

func (cr *Credential) validate(p *problems) {
	checkHeaderName(p, "credential.header", cr.Header)
	if cr.MaxBytes < 0 {
		p.add("credential.max_bytes", "must be positive")
	}
}

func (c *Config) validateCacheRuntime(p *problems) {
	if c.Cache.MaxEntries < 0 {
		p.add("cache.max_entries", "must be positive")
	}
	if c.Runtime.GCPercent < 0 {
		p.add("runtime.gc_percent", "must be positive (set GOGC=off in the environment to turn the collector off)")
	}
	if _, err := c.Runtime.Limit(c.Cache.MaxEntries); err != nil {
		p.add("runtime.memory_limit", "%v", err)
	}
}

// ParseTrustedProxy reads one entry of listen.http_trusted_proxies: a CIDR
// ("10.0.0.0/8") or a single address ("10.0.0.7", read as /32 or /128).
func ParseTrustedProxy(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// checkHeaderName refuses a non-empty name that is not an HTTP field name
// (RFC 9110 §5.1: a token): such a name goes into Envoy's answers, where
// it could never match a header, and it must be valid UTF-8 there.
func checkHeaderName(p *problems, field, name string) {
	if name != "" && !httpguts.ValidHeaderFieldName(name) {
		p.add(field, "%q is not a header name", name)
	}
}
