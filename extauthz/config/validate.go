package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/tokentailor/tokentailor/extauthz"
)

var knownAlgorithms = map[string]bool{
	"RS256": true, "RS384": true, "RS512": true, "PS256": true, "PS384": true, "PS512": true,
	"ES256": true, "ES384": true, "ES512": true, "EdDSA": true, "HS256": true, "HS384": true, "HS512": true,
}

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
	c.validateDPoP(&p)
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

// validateMint: keys are needed as soon as one route mints.
func (c *Config) validateMint(p *problems) {
	needsMint := false
	for _, r := range c.Routes {
		needsMint = needsMint || (!r.Public && r.Upstream.Mode == "mint")
	}
	if needsMint || len(c.Mint.Keys) > 0 {
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
	if strings.ContainsAny(cr.Header, " :\t") {
		p.add("credential.header", "%q is not a header name", cr.Header)
	}
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

// validateIssuers checks each issuer; which one introspects a token is
// each route's (validateRouteIssuers).
func (c *Config) validateIssuers(p *problems) {
	seen := map[string]bool{}
	for i := range c.Issuers {
		is := &c.Issuers[i]
		f := fmt.Sprintf("issuers[%d]", i)
		switch {
		case is.Issuer == "":
			p.add(f+".issuer", "required")
		case seen[is.Issuer]:
			p.add(f+".issuer", "duplicate issuer %q", is.Issuer)
		}
		seen[is.Issuer] = true
		is.validate(p, f)
	}
}

func (is *Issuer) validate(p *problems, f string) {
	if len(is.Audiences) == 0 {
		// RFC 8725 §3.9: without an audience check, a token issued for any
		// other API (or an ID token) of the same issuer would pass.
		p.add(f+".audiences", "required: list the aud values tokens for these APIs carry (RFC 8725 §3.9)")
	}
	for j, a := range is.Audiences {
		if a == "" {
			p.add(fmt.Sprintf("%s.audiences[%d]", f, j), "must not be empty")
		}
	}
	checkURL(p, f+".jwks_url", is.JWKSURL)
	checkURL(p, f+".discovery_url", is.DiscoveryURL)
	checkURL(p, f+".token_endpoint", is.TokenEndpoint)
	if is.JWKSURL == "" && !is.Discovery && is.HMACSecret == nil && is.Introspection == nil {
		p.add(f, "needs jwks_url, discovery or hmac_secret to verify tokens, or introspection for opaque ones")
	}
	is.validateAlgorithms(p, f)
	is.validateTimings(p, f)
	is.validateIntrospection(p, f)
	is.validateClient(p, f)
}

func checkURL(p *problems, field, u string) {
	if u == "" {
		return
	}
	pu, err := url.Parse(u)
	if err != nil || (pu.Scheme != "https" && pu.Scheme != "http") || pu.Host == "" {
		p.add(field, "%q is not an http(s) URL", u)
		return
	}
	if pu.User != nil {
		p.add(field, "must not carry credentials in the URL")
	}
}

// validateAlgorithms: RFC 8725 §3.1 (never none) and §3.2 (HS* only with
// an explicit secret).
func (is *Issuer) validateAlgorithms(p *problems, f string) {
	hs := false
	for j, a := range is.Algorithms {
		af := fmt.Sprintf("%s.algorithms[%d]", f, j)
		switch {
		case strings.EqualFold(a, "none"):
			p.add(af, "\"none\" is never accepted (RFC 8725 §3.1)")
		case !knownAlgorithms[a]:
			p.add(af, "unknown algorithm %q", a)
		case strings.HasPrefix(a, "HS"):
			hs = true
		}
	}
	if hs && is.HMACSecret == nil {
		p.add(f+".algorithms", "HS* algorithms need hmac_secret")
	}
	if is.HMACSecret != nil {
		if !hs {
			p.add(f+".hmac_secret", "set, but no HS* algorithm is listed in algorithms")
		}
		is.HMACSecret.validate(p, f+".hmac_secret")
	}
}

func (is *Issuer) validateTimings(p *problems, f string) {
	if is.ClockSkew.Duration < 0 || is.ClockSkew.Duration > 5*time.Minute {
		p.add(f+".clock_skew", "must be between 0 and 5m")
	}
	if is.JWKSRefresh.Duration < time.Second {
		p.add(f+".jwks_refresh", "must be at least 1s")
	}
	if is.JWKSMinRefetch.Duration <= 0 {
		p.add(f+".jwks_min_refetch", "must be positive: it is what keeps a flood of unknown kids from flooding the issuer")
	}
	if is.HTTPTimeout.Duration <= 0 {
		p.add(f+".http_timeout", "must be positive")
	}
}

func (is *Issuer) validateIntrospection(p *problems, f string) {
	in := is.Introspection
	if in == nil {
		return
	}
	f += ".introspection"
	checkURL(p, f+".endpoint", in.Endpoint)
	if in.Endpoint == "" && !is.Discovery {
		p.add(f+".endpoint", "required unless discovery is on")
	}
	if in.MaxCacheTTL.Duration <= 0 {
		p.add(f+".max_cache_ttl", "must be positive (it bounds how long a revoked token still passes; 1s is the least)")
	}
	if in.NegativeTTL.Duration <= 0 {
		p.add(f+".negative_ttl", "must be positive (1s is the least)")
	}
	if in.MaxInFlight < 0 {
		p.add(f+".max_in_flight", "must be positive")
	}
	checkRateLimit(p, f+".rate_limit", in.RateLimit)
	if in.TokenShape != nil {
		checkTokenShape(p, f+".token_shape", in.TokenShape)
	}
	if in.Audience != AudienceClaim && in.Audience != AudienceServer {
		p.add(f+".audience", "%q is not claim or server", in.Audience)
	}
	for j, name := range in.SubjectClaims {
		if name == "" {
			p.add(fmt.Sprintf("%s.subject_claims[%d]", f, j), "must not be empty")
		}
	}
	if in.JWTResponse && is.JWKSURL == "" && !is.Discovery {
		p.add(f+".jwt_response", "needs jwks_url or discovery to verify signed answers")
	}
	if is.Client == nil {
		p.add(strings.TrimSuffix(f, ".introspection")+".client", "required for introspection")
	}
}

func (is *Issuer) validateClient(p *problems, f string) {
	cl := is.Client
	if cl == nil {
		return
	}
	f += ".client"
	if cl.ID == "" {
		p.add(f+".id", "required")
	}
	switch cl.AuthMethod {
	case "client_secret_basic", "client_secret_post":
		if cl.Secret == nil {
			p.add(f+".secret", "required for %s: {file: PATH} or {env: VARIABLE}", cl.AuthMethod)
		} else {
			cl.Secret.validate(p, f+".secret")
		}
	case "private_key_jwt":
		if cl.PrivateKeyFile == "" {
			p.add(f+".private_key_file", "required for private_key_jwt")
		}
	default:
		p.add(f+".auth_method", "%q is not client_secret_basic, client_secret_post or private_key_jwt", cl.AuthMethod)
	}
}

func (s *Secret) validate(p *problems, f string) {
	if (s.File == "") == (s.Env == "") {
		p.add(f, "set exactly one of file or env")
	}
}

func (c *Config) validateRoutes(p *problems) {
	names := map[string]bool{}
	for i := range c.Routes {
		f := fmt.Sprintf("routes[%d]", i)
		c.validateRoute(p, f, &c.Routes[i], names)
		c.validateRouteIssuers(f, &c.Routes[i], p.add)
	}
	if c.DefaultRoute != "" && !names[c.DefaultRoute] {
		p.add("default_route", "%q names no route", c.DefaultRoute)
	}
}

func (c *Config) validateRoute(p *problems, f string, r *Route, names map[string]bool) {
	switch {
	case r.Name == "":
		p.add(f+".name", "required")
	case names[r.Name]:
		p.add(f+".name", "duplicate route name %q", r.Name)
	case strings.ContainsAny(r.Name, " \t\n\"'"):
		p.add(f+".name", "%q must not contain spaces or quotes", r.Name)
	}
	switch r.SenderConstraint {
	case "", "off", "optional", "required":
	default:
		hint := ""
		if r.SenderConstraint == "false" || r.SenderConstraint == "true" {
			hint = ` (YAML reads a bare off or on as a boolean: write "off")`
		}
		p.add(f+".sender_constraint", "%q: want off, optional or required%s", r.SenderConstraint, hint)
	}
	if o := r.DPoPOrigin; o != "" {
		if u, err := url.Parse(o); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			p.add(f+".dpop_origin", "%q: want scheme://host[:port] only", o)
		}
	}
	names[r.Name] = true
	r.Match.validate(p, f+".match")
	if r.MinLifetime.Duration < 0 {
		p.add(f+".min_lifetime", "must not be negative")
	}
	for name, vals := range r.Require.Claims {
		if len(vals) == 0 {
			p.add(f+".require.claims."+name, "list at least one accepted value")
		}
	}
	if r.Public {
		if len(r.Require.Scopes) > 0 || len(r.Require.Claims) > 0 {
			p.add(f+".require", "a public route cannot require scopes or claims")
		}
		return
	}
	if !r.Require.Stated() {
		p.add(f+".require", `missing or null: a route that is not public states what the token must carry, e.g. "require: {scopes: [orders:read]}", or "require: {}" for any valid token, so that a file cut after "require:" cannot mean "nothing required" (a route open to all needs "public: true")`)
	}
	c.validateMode(p, f+".upstream", &r.Upstream)
	r.Upstream.validate(p, f+".upstream")
}

func (m *Match) validate(p *problems, f string) {
	if m == nil {
		return
	}
	if m.Path != "" && m.PathPrefix != "" {
		p.add(f, "set path or path_prefix, not both")
	}
	if m.Path != "" && !strings.HasPrefix(m.Path, "/") {
		p.add(f+".path", "must start with /")
	}
	if m.PathPrefix != "" && !strings.HasPrefix(m.PathPrefix, "/") {
		p.add(f+".path_prefix", "must start with /")
	}
	for j, h := range m.Hosts {
		if h == "" || strings.ContainsAny(h, "/ ") || strings.Count(h, "*") > 1 || (strings.Contains(h, "*") && !strings.HasPrefix(h, "*.")) {
			p.add(fmt.Sprintf("%s.hosts[%d]", f, j), "%q is not a host or *.suffix pattern", h)
		}
	}
	for j, meth := range m.Methods {
		if meth == "" || strings.ContainsAny(meth, " /") {
			p.add(fmt.Sprintf("%s.methods[%d]", f, j), "%q is not an HTTP method", meth)
		}
	}
}

// validateMode checks what each mode needs from the route.
func (c *Config) validateMode(p *problems, uf string, u *Upstream) {
	switch u.Mode {
	case "mint":
		if u.Audience == "" {
			p.add(uf+".audience", "required for mode mint: least privilege starts with a narrow audience")
		}
	case "forward":
	case "exchange":
		if u.Audience == "" && u.Exchange.Resource == "" {
			p.add(uf+".audience", "required for mode exchange (or set exchange.resource)")
		}
		if u.Exchange.Issuer != "" && !c.hasIssuer(u.Exchange.Issuer) {
			p.add(uf+".exchange.issuer", "%q names no configured issuer", u.Exchange.Issuer)
		}
		for _, t := range []struct{ name, v string }{
			{"subject_token_type", u.Exchange.SubjectTokenType}, {"requested_token_type", u.Exchange.RequestedTokenType},
		} {
			if !isTokenTypeURI(t.v) {
				p.add(uf+".exchange."+t.name, "%q is not a token type URI (e.g. urn:ietf:params:oauth:token-type:access_token)", t.v)
			}
		}
	case "embedded":
		if u.Audience == "" {
			p.add(uf+".audience", "required for mode embedded: it picks the embedded token")
		}
		for j, iss := range u.EmbeddedIssuers {
			if !c.hasIssuer(iss) {
				p.add(fmt.Sprintf("%s.embedded_issuers[%d]", uf, j), "%q names no configured issuer", iss)
			}
		}
	case "txn_token":
		if c.TxnToken.TrustDomain == "" || c.TxnToken.Workload == "" {
			p.add(uf+".mode", "txn_token needs txn_token.trust_domain and txn_token.workload")
		}
		if len(u.Scopes) == 0 {
			p.add(uf+".scopes", "required for mode txn_token: a Txn-Token's scope is its purpose")
		}
	default:
		p.add(uf+".mode", "%q is not mint, forward, exchange, embedded or txn_token", u.Mode)
	}
	if len(u.EmbeddedIssuers) > 0 && u.Mode != "embedded" {
		p.add(uf+".embedded_issuers", "only for mode embedded")
	}
	if u.Exchange != nil && u.Mode != "exchange" {
		p.add(uf+".exchange", "only for mode exchange")
	}
}

func (u *Upstream) validate(p *problems, uf string) {
	if u.TTL.Duration <= 0 {
		p.add(uf+".ttl", "must be positive")
	}
	if strings.ContainsAny(u.Header, " :\t") {
		p.add(uf+".header", "%q is not a header name", u.Header)
	}
	if u.Header == "host" {
		p.add(uf+".header", "cannot carry a token in host")
	}
	for from, to := range u.CopyClaims {
		if to == "" {
			to = from
		}
		if extauthz.IsReservedClaim(to) {
			p.add(uf+".copy_claims."+from, "cannot overwrite the claim %q that tokentailor sets itself", to)
		}
	}
	for name := range u.Claims {
		if extauthz.IsReservedClaim(name) {
			p.add(uf+".claims."+name, "cannot overwrite the claim %q that tokentailor sets itself", name)
		}
	}
	if u.Mode != "mint" && (len(u.CopyClaims) > 0 || len(u.Claims) > 0) {
		p.add(uf, "copy_claims and claims only apply to mode mint")
	}
}

func (c *Config) hasIssuer(iss string) bool {
	for _, is := range c.Issuers {
		if is.Issuer == iss {
			return true
		}
	}
	return false
}

// isTokenTypeURI reports whether v is an absolute URI, as RFC 8693 §3 token
// type identifiers are (urn:ietf:params:oauth:token-type:… or a URL).
func isTokenTypeURI(v string) bool {
	u, err := url.Parse(v)
	return err == nil && u.Scheme != "" && (u.Opaque != "" || u.Host != "") && !strings.ContainsAny(v, " \t\r\n")
}

// checkRateLimit checks an introspection rate limit (defaults applied).
func checkRateLimit(p *problems, f string, rl RateLimit) {
	if rl.PerSecond <= 0 || rl.PerSecond > 1e6 {
		p.add(f+".per_second", "must be above 0 and at most 1000000")
	}
	if rl.Burst < 1 || rl.Burst > 1e6 {
		p.add(f+".burst", "must be 1 to 1000000")
	}
}

// checkTokenShape checks a token shape (defaults applied).
func checkTokenShape(p *problems, f string, sh *TokenShape) {
	switch sh.Alphabet {
	case "base64url", "base64", "hex", "alnum":
	default:
		p.add(f+".alphabet", "must be base64url, base64, hex or alnum")
	}
	if sh.Segments < 1 || sh.Segments > MaxTokenSegments {
		p.add(f+".segments", "must be 1 to %d", MaxTokenSegments)
	}
	for i := range len(sh.Prefix) {
		if c := sh.Prefix[i]; c <= 0x20 || c >= 0x7f {
			p.add(f+".prefix", "must be printable ASCII without spaces")
			break
		}
	}
	least := len(sh.Prefix) + 2*max(sh.Segments, 1) - 1
	switch {
	case sh.MinLength < 0:
		p.add(f+".min_length", "must not be negative")
	case sh.MaxLength < 0:
		p.add(f+".max_length", "must not be negative")
	case sh.MaxLength > 0 && sh.MaxLength < max(sh.MinLength, least):
		p.add(f+".max_length", "must be at least min_length and the %d bytes the prefix and segments need", least)
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
