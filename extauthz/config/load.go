package config

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"
)

// MaxFileBytes bounds the size of a config file.
const MaxFileBytes = 1 << 20

// FieldError is one problem in the configuration, named by its field path.
type FieldError struct {
	// Field is the path, e.g. "routes[2].upstream.ttl".
	Field string
	// Problem says what is wrong.
	Problem string
}

func (e FieldError) Error() string { return e.Field + ": " + e.Problem }

// Load reads, parses, defaults and validates the config file at path.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("config: reading %s: %w", path, err)
	}
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("config: %s is larger than %d bytes", path, MaxFileBytes)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(data, filepath.Dir(abs))
}

// Parse parses YAML config data strictly; dir resolves relative paths.
func Parse(data []byte, dir string) (*Config, error) {
	var c Config
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return nil, fmt.Errorf("config: %s", cleanYAMLError(err))
	}
	c.dir = dir
	c.applyDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// cleanYAMLError strips the wrapping that sigs.k8s.io/yaml adds so the field
// name stays readable.
func cleanYAMLError(err error) string {
	s := err.Error()
	for _, p := range []string{"error unmarshaling JSON: ", "while decoding JSON: ", "json: "} {
		s = strings.ReplaceAll(s, p, "")
	}
	return s
}

// Defaults used when the file leaves a field empty.
const (
	DefaultRouteKey       = "route"
	DefaultClockSkew      = 30 * time.Second
	DefaultJWKSRefresh    = 5 * time.Minute
	DefaultJWKSMinRefetch = 5 * time.Second
	DefaultHTTPTimeout    = 5 * time.Second
	DefaultTTL            = 5 * time.Minute
	DefaultMaxEntries     = 10000
	DefaultGCPercent      = 400
	DefaultMaxTokenBytes  = 8192
	DefaultShutdownGrace  = 10 * time.Second
	DefaultMaxCacheTTL    = 60 * time.Second
	DefaultNegativeTTL    = 5 * time.Second
	DefaultMaxInFlight    = 32
	DefaultEmbeddedClaim  = "tokens"
	DefaultRequestedType  = "urn:ietf:params:oauth:token-type:access_token"
	DefaultSubjectType    = "urn:ietf:params:oauth:token-type:access_token"
	// AudienceClaim and AudienceServer are the values of introspection.audience.
	AudienceClaim  = "claim"
	AudienceServer = "server"
	// DefaultIntrospectionRate is introspection.rate_limit.per_second: new
	// tokens (and answers past max_cache_ttl) a second one sidecar may ask
	// about; a gateway with more distinct tokens a minute raises it.
	DefaultIntrospectionRate = 100.0
	DefaultTokenAlphabet     = "base64url"
	// MaxTokenSegments bounds introspection.token_shape.segments.
	MaxTokenSegments = 16
)

// DefaultAlgorithms is the allowlist when an issuer names none: asymmetric only.
var DefaultAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// DefaultHTTPTrustedProxies are the peers the HTTP authorization listener
// answers when listen.http_trusted_proxies names none: loopback only.
var DefaultHTTPTrustedProxies = []string{"127.0.0.0/8", "::1/128"}

// DefaultScopeClaims are read in order when an issuer names none.
var DefaultScopeClaims = []string{"scope", "scp"}

func (c *Config) applyDefaults() {
	if c.SharedCache != nil {
		c.SharedCache.applyDefaults()
	}
	if !c.Listen.ShutdownGrace.IsSet() {
		c.Listen.ShutdownGrace.Duration = DefaultShutdownGrace
	}
	if c.Listen.HTTPTrustedProxies == nil {
		c.Listen.HTTPTrustedProxies = slices.Clone(DefaultHTTPTrustedProxies)
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "json"
	}
	if c.Mint.Realm == "" {
		c.Mint.Realm = "tokentailor"
	}
	if c.Credential.Header == "" {
		c.Credential.Header = "authorization"
	}
	c.Credential.Header = strings.ToLower(c.Credential.Header)
	if c.Credential.Scheme == nil {
		s := ""
		if IsAuthorizationHeader(c.Credential.Header) {
			s = "Bearer"
		}
		c.Credential.Scheme = &s
	}
	c.applyDPoPDefaults()
	if c.Credential.MaxBytes == 0 {
		c.Credential.MaxBytes = DefaultMaxTokenBytes
	}
	if c.Cache.MaxEntries == 0 {
		c.Cache.MaxEntries = DefaultMaxEntries
	}
	if c.Runtime.GCPercent == 0 {
		c.Runtime.GCPercent = DefaultGCPercent
	}
	if c.Runtime.MemoryLimit == "" {
		c.Runtime.MemoryLimit = "auto"
	}
	if c.RouteKey == "" {
		c.RouteKey = DefaultRouteKey
	}
	for i := range c.Issuers {
		is := &c.Issuers[i]
		if len(is.Algorithms) == 0 {
			is.Algorithms = slices.Clone(DefaultAlgorithms)
		}
		if len(is.ScopeClaims) == 0 {
			is.ScopeClaims = slices.Clone(DefaultScopeClaims)
		}
		if !is.ClockSkew.IsSet() {
			is.ClockSkew.Duration = DefaultClockSkew
		}
		if !is.JWKSRefresh.IsSet() {
			is.JWKSRefresh.Duration = DefaultJWKSRefresh
		}
		if !is.JWKSMinRefetch.IsSet() {
			is.JWKSMinRefetch.Duration = DefaultJWKSMinRefetch
		}
		if !is.HTTPTimeout.IsSet() {
			is.HTTPTimeout.Duration = DefaultHTTPTimeout
		}
		if is.Discovery && is.DiscoveryURL == "" {
			is.DiscoveryURL = strings.TrimSuffix(is.Issuer, "/") + "/.well-known/openid-configuration"
		}
		if is.DiscoveryURL != "" {
			is.Discovery = true
		}
		if in := is.Introspection; in != nil {
			if !in.MaxCacheTTL.IsSet() {
				in.MaxCacheTTL.Duration = DefaultMaxCacheTTL
			}
			if !in.NegativeTTL.IsSet() {
				in.NegativeTTL.Duration = DefaultNegativeTTL
			}
			if in.MaxInFlight == 0 {
				in.MaxInFlight = DefaultMaxInFlight
			}
			if in.Audience == "" {
				in.Audience = AudienceClaim
			}
			if len(in.SubjectClaims) == 0 {
				in.SubjectClaims = []string{"sub"}
			}
			if in.RateLimit.PerSecond == 0 {
				in.RateLimit.PerSecond = DefaultIntrospectionRate
			}
			if in.RateLimit.Burst == 0 && in.RateLimit.PerSecond > 0 && in.RateLimit.PerSecond <= math.MaxInt32 {
				in.RateLimit.Burst = int(math.Ceil(in.RateLimit.PerSecond))
			}
			if sh := in.TokenShape; sh != nil {
				if sh.Alphabet == "" {
					sh.Alphabet = DefaultTokenAlphabet
				}
				if sh.Segments == 0 {
					sh.Segments = 1
				}
			}
		}
		if is.Introspection != nil {
			is.Opaque = true
		}
		if cl := is.Client; cl != nil && cl.AuthMethod == "" {
			if cl.PrivateKeyFile != "" {
				cl.AuthMethod = "private_key_jwt"
			} else {
				cl.AuthMethod = "client_secret_basic"
			}
		}
	}
	for i := range c.Routes {
		r := &c.Routes[i]
		if r.Match != nil {
			for j, m := range r.Match.Methods {
				r.Match.Methods[j] = strings.ToUpper(m)
			}
			for j, h := range r.Match.Hosts {
				r.Match.Hosts[j] = strings.ToLower(h)
			}
		}
		u := &r.Upstream
		if u.Mode == "" {
			u.Mode = "mint"
		}
		if !u.TTL.IsSet() {
			u.TTL.Duration = DefaultTTL
		}
		if u.Header == "" && u.Mode == "txn_token" {
			u.Header = "txn-token" // draft §10.1; never Authorization
		}
		if u.Header == "" {
			u.Header = "authorization"
		}
		u.Header = strings.ToLower(u.Header)
		if u.Prefix == nil {
			p := ""
			if IsAuthorizationHeader(u.Header) {
				p = "Bearer "
			}
			u.Prefix = &p
		}
		if u.StripCredential == nil {
			t := true
			u.StripCredential = &t
		}
		if u.Mode == "embedded" && u.EmbeddedClaim == "" {
			u.EmbeddedClaim = DefaultEmbeddedClaim
		}
		if u.Mode == "exchange" {
			if u.Exchange == nil {
				u.Exchange = &Exchange{}
			}
			if u.Exchange.RequestedTokenType == "" {
				u.Exchange.RequestedTokenType = DefaultRequestedType
			}
			if u.Exchange.SubjectTokenType == "" {
				u.Exchange.SubjectTokenType = DefaultSubjectType
			}
		}
	}
}

var knownAlgorithms = map[string]bool{
	"RS256": true, "RS384": true, "RS512": true, "PS256": true, "PS384": true, "PS512": true,
	"ES256": true, "ES384": true, "ES512": true, "EdDSA": true, "HS256": true, "HS384": true, "HS512": true,
}

// registeredClaims may not be set by a route's fixed or copied claims.
var registeredClaims = map[string]bool{
	"iss": true, "sub": true, "aud": true, "exp": true, "nbf": true, "iat": true,
	"jti": true, "scope": true, "client_id": true, "act": true, "cnf": true,
}

// Validate checks the whole config and returns every problem found, each
// naming its field. It does not touch the network; files it names are checked
// for existence only where a missing file is certainly a mistake.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, FieldError{Field: field, Problem: fmt.Sprintf(format, args...)})
	}

	if c.Listen.GRPC == "" && c.Listen.Socket == "" && c.Listen.HTTP == "" && c.Listen.HTTPSocket == "" {
		bad("listen", "set grpc (a TCP address) or socket (a unix socket path) for Envoy's gRPC ext_authz, http or http_socket for the HTTP authorization listener")
	}
	if c.Listen.GRPC != "" {
		if _, _, err := net.SplitHostPort(c.Listen.GRPC); err != nil {
			bad("listen.grpc", "%q is not host:port", c.Listen.GRPC)
		}
	}
	if c.Listen.Admin != "" {
		if _, _, err := net.SplitHostPort(c.Listen.Admin); err != nil {
			bad("listen.admin", "%q is not host:port", c.Listen.Admin)
		}
	}
	if c.Listen.Socket != "" && !filepath.IsAbs(c.Listen.Socket) {
		bad("listen.socket", "must be an absolute path")
	}
	if c.Listen.HTTP != "" {
		if _, _, err := net.SplitHostPort(c.Listen.HTTP); err != nil {
			bad("listen.http", "%q is not host:port", c.Listen.HTTP)
		}
	}
	if c.Listen.HTTPSocket != "" && !filepath.IsAbs(c.Listen.HTTPSocket) {
		bad("listen.http_socket", "must be an absolute path")
	}
	for i, p := range c.Listen.HTTPTrustedProxies {
		if _, err := ParseTrustedProxy(p); err != nil {
			bad(fmt.Sprintf("listen.http_trusted_proxies[%d]", i), "%q is not a CIDR (10.0.0.0/8) or an IP address", p)
		}
	}
	if c.Listen.ShutdownGrace.Duration < 0 {
		bad("listen.shutdown_grace", "must not be negative")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q is not debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "text":
	default:
		bad("log.format", "%q is not json or text", c.Log.Format)
	}

	needsMint := false
	for _, r := range c.Routes {
		if !r.Public && r.Upstream.Mode == "mint" {
			needsMint = true
		}
	}
	if needsMint || len(c.Mint.Keys) > 0 {
		if c.Mint.Issuer == "" {
			bad("mint.issuer", "required: the iss of minted tokens")
		}
		if len(c.Mint.Keys) == 0 {
			bad("mint.keys", "at least one signing key is required for routes in mode mint")
		}
	}
	kids := map[string]bool{}
	for i, k := range c.Mint.Keys {
		f := fmt.Sprintf("mint.keys[%d]", i)
		if k.File == "" {
			bad(f+".file", "required")
		}
		if k.Kid != "" {
			if kids[k.Kid] {
				bad(f+".kid", "duplicate kid %q", k.Kid)
			}
			kids[k.Kid] = true
		}
	}
	if c.Mint.SigningKey != "" && !kids[c.Mint.SigningKey] {
		bad("mint.signing_key", "%q is not the kid of a key in mint.keys", c.Mint.SigningKey)
	}

	if strings.ContainsAny(c.Credential.Header, " :\t") {
		bad("credential.header", "%q is not a header name", c.Credential.Header)
	}
	if c.Credential.MaxBytes < 0 {
		bad("credential.max_bytes", "must be positive")
	}
	if c.SharedCache != nil {
		c.validateSharedCache("shared_cache", c.SharedCache, bad)
	}
	if c.Cache.MaxEntries < 0 {
		bad("cache.max_entries", "must be positive")
	}
	if c.Runtime.GCPercent < 0 {
		bad("runtime.gc_percent", "must be positive (set GOGC=off in the environment to turn the collector off)")
	}
	if _, err := c.Runtime.Limit(c.Cache.MaxEntries); err != nil {
		bad("runtime.memory_limit", "%v", err)
	}

	seenIss := map[string]bool{}
	opaque := 0
	for i := range c.Issuers {
		c.validateIssuer(fmt.Sprintf("issuers[%d]", i), &c.Issuers[i], seenIss, bad)
		if c.Issuers[i].Opaque {
			opaque++
		}
	}
	if opaque > 1 {
		bad("issuers", "at most one issuer may handle opaque tokens (opaque: true or introspection)")
	}

	c.validateDPoP(bad)
	names := map[string]bool{}
	for i := range c.Routes {
		c.validateRoute(fmt.Sprintf("routes[%d]", i), &c.Routes[i], names, opaque > 0, bad)
	}
	if c.DefaultRoute != "" && !names[c.DefaultRoute] {
		bad("default_route", "%q names no route", c.DefaultRoute)
	}
	return errors.Join(errs...)
}

func (c *Config) validateIssuer(f string, is *Issuer, seen map[string]bool, bad func(string, string, ...any)) {
	switch {
	case is.Issuer == "":
		bad(f+".issuer", "required")
	case seen[is.Issuer]:
		bad(f+".issuer", "duplicate issuer %q", is.Issuer)
	}
	seen[is.Issuer] = true
	checkURL := func(field, u string) {
		if u == "" {
			return
		}
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
			bad(field, "%q is not an http(s) URL", u)
			return
		}
		if p.User != nil {
			bad(field, "must not carry credentials in the URL")
		}
	}
	if len(is.Audiences) == 0 {
		// RFC 8725 §3.9: without an audience check, a token issued for any
		// other API (or an ID token) of the same issuer would pass.
		bad(f+".audiences", "required: list the aud values tokens for these APIs carry (RFC 8725 §3.9)")
	}
	for j, a := range is.Audiences {
		if a == "" {
			bad(fmt.Sprintf("%s.audiences[%d]", f, j), "must not be empty")
		}
	}
	checkURL(f+".jwks_url", is.JWKSURL)
	checkURL(f+".discovery_url", is.DiscoveryURL)
	checkURL(f+".token_endpoint", is.TokenEndpoint)
	if is.JWKSURL == "" && !is.Discovery && is.HMACSecret == nil && !is.Opaque {
		bad(f, "needs jwks_url, discovery or hmac_secret to verify tokens")
	}
	hs := false
	for j, a := range is.Algorithms {
		af := fmt.Sprintf("%s.algorithms[%d]", f, j)
		switch {
		case strings.EqualFold(a, "none"):
			bad(af, "\"none\" is never accepted (RFC 8725 §3.1)")
		case !knownAlgorithms[a]:
			bad(af, "unknown algorithm %q", a)
		case strings.HasPrefix(a, "HS"):
			hs = true
		}
	}
	if hs && is.HMACSecret == nil {
		bad(f+".algorithms", "HS* algorithms need hmac_secret")
	}
	if is.HMACSecret != nil {
		if !hs {
			bad(f+".hmac_secret", "set, but no HS* algorithm is listed in algorithms")
		}
		c.validateSecret(f+".hmac_secret", is.HMACSecret, bad)
	}
	if is.ClockSkew.Duration < 0 || is.ClockSkew.Duration > 5*time.Minute {
		bad(f+".clock_skew", "must be between 0 and 5m")
	}
	if is.JWKSRefresh.Duration < time.Second {
		bad(f+".jwks_refresh", "must be at least 1s")
	}
	if is.JWKSMinRefetch.Duration <= 0 {
		bad(f+".jwks_min_refetch", "must be positive: it is what keeps a flood of unknown kids from flooding the issuer")
	}
	if is.HTTPTimeout.Duration <= 0 {
		bad(f+".http_timeout", "must be positive")
	}
	if in := is.Introspection; in != nil {
		checkURL(f+".introspection.endpoint", in.Endpoint)
		if in.Endpoint == "" && !is.Discovery {
			bad(f+".introspection.endpoint", "required unless discovery is on")
		}
		if in.MaxCacheTTL.Duration <= 0 {
			bad(f+".introspection.max_cache_ttl", "must be positive (it bounds how long a revoked token still passes; 1s is the least)")
		}
		if in.NegativeTTL.Duration <= 0 {
			bad(f+".introspection.negative_ttl", "must be positive (1s is the least)")
		}
		if in.MaxInFlight < 0 {
			bad(f+".introspection.max_in_flight", "must be positive")
		}
		checkRateLimit(bad, f+".introspection.rate_limit", in.RateLimit)
		if in.TokenShape != nil {
			checkTokenShape(bad, f+".introspection.token_shape", in.TokenShape)
		}
		if in.Audience != AudienceClaim && in.Audience != AudienceServer {
			bad(f+".introspection.audience", "%q is not claim or server", in.Audience)
		}
		for j, name := range in.SubjectClaims {
			if name == "" {
				bad(fmt.Sprintf("%s.introspection.subject_claims[%d]", f, j), "must not be empty")
			}
		}
		if in.JWTResponse && is.JWKSURL == "" && !is.Discovery {
			bad(f+".introspection.jwt_response", "needs jwks_url or discovery to verify signed answers")
		}
		if is.Client == nil {
			bad(f+".client", "required for introspection")
		}
	} else if is.Opaque {
		bad(f+".introspection", "required for an issuer of opaque tokens")
	}
	if cl := is.Client; cl != nil {
		if cl.ID == "" {
			bad(f+".client.id", "required")
		}
		switch cl.AuthMethod {
		case "client_secret_basic", "client_secret_post":
			if cl.Secret == nil {
				bad(f+".client.secret", "required for %s", cl.AuthMethod)
			} else {
				c.validateSecret(f+".client.secret", cl.Secret, bad)
			}
		case "private_key_jwt":
			if cl.PrivateKeyFile == "" {
				bad(f+".client.private_key_file", "required for private_key_jwt")
			}
		default:
			bad(f+".client.auth_method", "%q is not client_secret_basic, client_secret_post or private_key_jwt", cl.AuthMethod)
		}
	}
}

// checkRateLimit checks an introspection rate limit (defaults applied).
func checkRateLimit(bad func(string, string, ...any), f string, rl RateLimit) {
	if rl.PerSecond <= 0 || rl.PerSecond > 1e6 {
		bad(f+".per_second", "must be above 0 and at most 1000000")
	}
	if rl.Burst < 1 || rl.Burst > 1e6 {
		bad(f+".burst", "must be 1 to 1000000")
	}
}

// checkTokenShape checks a token shape (defaults applied).
func checkTokenShape(bad func(string, string, ...any), f string, sh *TokenShape) {
	switch sh.Alphabet {
	case "base64url", "base64", "hex", "alnum":
	default:
		bad(f+".alphabet", "must be base64url, base64, hex or alnum")
	}
	if sh.Segments < 1 || sh.Segments > MaxTokenSegments {
		bad(f+".segments", "must be 1 to %d", MaxTokenSegments)
	}
	for i := range len(sh.Prefix) {
		if c := sh.Prefix[i]; c <= 0x20 || c >= 0x7f {
			bad(f+".prefix", "must be printable ASCII without spaces")
			break
		}
	}
	least := len(sh.Prefix) + 2*max(sh.Segments, 1) - 1
	switch {
	case sh.MinLength < 0:
		bad(f+".min_length", "must not be negative")
	case sh.MaxLength < 0:
		bad(f+".max_length", "must not be negative")
	case sh.MaxLength > 0 && sh.MaxLength < max(sh.MinLength, least):
		bad(f+".max_length", "must be at least min_length and the %d bytes the prefix and segments need", least)
	}
}

func (c *Config) validateSecret(f string, s *Secret, bad func(string, string, ...any)) {
	if (s.File == "") == (s.Env == "") {
		bad(f, "set exactly one of file or env")
	}
}

func (c *Config) validateRoute(f string, r *Route, names map[string]bool, haveOpaque bool, bad func(string, string, ...any)) {
	switch r.SenderConstraint {
	case "", "off", "optional", "required":
	default:
		hint := ""
		if r.SenderConstraint == "false" || r.SenderConstraint == "true" {
			hint = ` (YAML reads a bare off or on as a boolean: write "off")`
		}
		bad(f+".sender_constraint", "%q: want off, optional or required%s", r.SenderConstraint, hint)
	}
	if o := r.DPoPOrigin; o != "" {
		if u, err := url.Parse(o); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			bad(f+".dpop_origin", "%q: want scheme://host[:port] only", o)
		}
	}
	switch {
	case r.Name == "":
		bad(f+".name", "required")
	case names[r.Name]:
		bad(f+".name", "duplicate route name %q", r.Name)
	case strings.ContainsAny(r.Name, " \t\n\"'"):
		bad(f+".name", "%q must not contain spaces or quotes", r.Name)
	}
	names[r.Name] = true
	if m := r.Match; m != nil {
		if m.Path != "" && m.PathPrefix != "" {
			bad(f+".match", "set path or path_prefix, not both")
		}
		if m.Path != "" && !strings.HasPrefix(m.Path, "/") {
			bad(f+".match.path", "must start with /")
		}
		if m.PathPrefix != "" && !strings.HasPrefix(m.PathPrefix, "/") {
			bad(f+".match.path_prefix", "must start with /")
		}
		for j, h := range m.Hosts {
			if h == "" || strings.ContainsAny(h, "/ ") || strings.Count(h, "*") > 1 || (strings.Contains(h, "*") && !strings.HasPrefix(h, "*.")) {
				bad(fmt.Sprintf("%s.match.hosts[%d]", f, j), "%q is not a host or *.suffix pattern", h)
			}
		}
		for j, meth := range m.Methods {
			if meth == "" || strings.ContainsAny(meth, " /") {
				bad(fmt.Sprintf("%s.match.methods[%d]", f, j), "%q is not an HTTP method", meth)
			}
		}
	}
	if r.MinLifetime.Duration < 0 {
		bad(f+".min_lifetime", "must not be negative")
	}
	for name, vals := range r.Require.Claims {
		if len(vals) == 0 {
			bad(f+".require.claims."+name, "list at least one accepted value")
		}
	}
	if r.Public {
		if len(r.Require.Scopes) > 0 || len(r.Require.Claims) > 0 {
			bad(f+".require", "a public route cannot require scopes or claims")
		}
		return
	}
	u := &r.Upstream
	uf := f + ".upstream"
	switch u.Mode {
	case "mint":
		if u.Audience == "" {
			bad(uf+".audience", "required for mode mint: least privilege starts with a narrow audience")
		}
	case "forward":
	case "exchange":
		if u.Audience == "" && u.Exchange.Resource == "" {
			bad(uf+".audience", "required for mode exchange (or set exchange.resource)")
		}
		if u.Exchange.Issuer != "" && !c.hasIssuer(u.Exchange.Issuer) {
			bad(uf+".exchange.issuer", "%q names no configured issuer", u.Exchange.Issuer)
		}
		for _, t := range []struct{ name, v string }{
			{"subject_token_type", u.Exchange.SubjectTokenType}, {"requested_token_type", u.Exchange.RequestedTokenType},
		} {
			if !isTokenTypeURI(t.v) {
				bad(uf+".exchange."+t.name, "%q is not a token type URI (e.g. urn:ietf:params:oauth:token-type:access_token)", t.v)
			}
		}
	case "embedded":
		if u.Audience == "" {
			bad(uf+".audience", "required for mode embedded: it picks the embedded token")
		}
	case "txn_token":
		if c.TxnToken.TrustDomain == "" || c.TxnToken.Workload == "" {
			bad(uf+".mode", "txn_token needs txn_token.trust_domain and txn_token.workload")
		}
		if len(u.Scopes) == 0 {
			bad(uf+".scopes", "required for mode txn_token: a Txn-Token's scope is its purpose")
		}
	default:
		bad(uf+".mode", "%q is not mint, forward, exchange, embedded or txn_token", u.Mode)
	}
	if u.Exchange != nil && u.Mode != "exchange" {
		bad(uf+".exchange", "only for mode exchange")
	}
	if u.TTL.Duration <= 0 {
		bad(uf+".ttl", "must be positive")
	}
	if strings.ContainsAny(u.Header, " :\t") {
		bad(uf+".header", "%q is not a header name", u.Header)
	}
	if u.Header == "host" {
		bad(uf+".header", "cannot carry a token in host")
	}
	for from, to := range u.CopyClaims {
		if to == "" {
			to = from
		}
		if registeredClaims[to] {
			bad(uf+".copy_claims."+from, "cannot overwrite the registered claim %q", to)
		}
	}
	for name := range u.Claims {
		if registeredClaims[name] {
			bad(uf+".claims."+name, "cannot overwrite the registered claim %q", name)
		}
	}
	if u.Mode != "mint" && (len(u.CopyClaims) > 0 || len(u.Claims) > 0) {
		bad(uf, "copy_claims and claims only apply to mode mint")
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

// Path resolves p against the config file's directory.
func (c *Config) Path(p string) string {
	if p == "" || filepath.IsAbs(p) || c.dir == "" {
		return p
	}
	return filepath.Join(c.dir, p)
}

// ReadSecret returns the secret s names, trailing newlines trimmed.
func (c *Config) ReadSecret(s *Secret) ([]byte, error) {
	if s == nil {
		return nil, nil
	}
	if s.Env != "" {
		v, ok := os.LookupEnv(s.Env)
		if !ok || v == "" {
			return nil, fmt.Errorf("secret: environment variable %s is not set", s.Env)
		}
		return []byte(v), nil
	}
	b, err := os.ReadFile(c.Path(s.File))
	if err != nil {
		return nil, fmt.Errorf("secret: %w", err)
	}
	b = []byte(strings.TrimRight(string(b), "\r\n"))
	if len(b) == 0 {
		return nil, fmt.Errorf("secret: %s is empty", s.File)
	}
	return b, nil
}

// Files lists every file the config reads (keys, secrets), resolved, so a
// watcher can reload when one changes.
func (c *Config) Files() []string {
	var out []string
	add := func(p string) {
		if p != "" {
			out = append(out, c.Path(p))
		}
	}
	for _, k := range c.Mint.Keys {
		add(k.File)
	}
	if s := c.DPoP.NonceSecret; s != nil {
		add(s.File)
	}
	for _, is := range c.Issuers {
		if is.HMACSecret != nil {
			add(is.HMACSecret.File)
		}
		if is.Client != nil {
			if is.Client.Secret != nil {
				add(is.Client.Secret.File)
			}
			add(is.Client.PrivateKeyFile)
		}
	}
	if c.SharedCache != nil {
		for _, f := range c.SharedCache.files() {
			add(f)
		}
	}
	return out
}

// Auto memory limit: room to work plus what a full cache entry holds.
const (
	autoMemoryBase    = 32 << 20
	autoBytesPerEntry = 2560 // validation + minted-token cache, typical tokens
	noMemoryLimit     = math.MaxInt64
)

// Limit returns the soft memory limit in bytes that MemoryLimit asks for with
// caches of maxEntries entries: math.MaxInt64 for "off" (Go's own default).
func (r Runtime) Limit(maxEntries int) (int64, error) {
	switch strings.ToLower(strings.TrimSpace(r.MemoryLimit)) {
	case "", "auto":
		return autoMemoryBase + autoBytesPerEntry*int64(max(maxEntries, 0)), nil
	case "off":
		return noMemoryLimit, nil
	}
	q, err := resource.ParseQuantity(r.MemoryLimit)
	if err != nil {
		return 0, fmt.Errorf("%q is not auto, off or a size such as 96Mi", r.MemoryLimit)
	}
	n, ok := q.AsInt64()
	if !ok || n < 16<<20 {
		return 0, fmt.Errorf("%q: a limit under 16Mi would keep the collector running without pause", r.MemoryLimit)
	}
	return n, nil
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

// isTokenTypeURI reports whether v is an absolute URI, as RFC 8693 §3 token
// type identifiers are (urn:ietf:params:oauth:token-type:… or a URL).
func isTokenTypeURI(v string) bool {
	u, err := url.Parse(v)
	return err == nil && u.Scheme != "" && (u.Opaque != "" || u.Host != "") && !strings.ContainsAny(v, " \t\r\n")
}
