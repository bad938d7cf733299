package config

import (
	"math"
	"slices"
	"strings"
	"time"
)

// Defaults used when the file leaves a field empty. They are the only
// defaults of tokentailor's settings: components take the values config
// gives them and have none of their own. The reference config
// (docs/examples/tokentailor-sidecar.yaml) shows each one, and a test keeps
// the two equal.
const (
	DefaultRouteKey       = "route"
	DefaultLogLevel       = "info"
	DefaultLogFormat      = "json"
	DefaultRealm          = "tokentailor"
	DefaultHeader         = "authorization"
	DefaultScheme         = "Bearer"
	DefaultClockSkew      = 30 * time.Second
	DefaultJWKSRefresh    = 5 * time.Minute
	DefaultJWKSMinRefetch = 5 * time.Second
	// DefaultHTTPTimeout bounds every call to an issuer: discovery, JWKS,
	// introspection and token exchange.
	DefaultHTTPTimeout = 2 * time.Second
	DefaultTTL         = 5 * time.Minute
	DefaultMaxEntries  = 10000
	// DefaultGCPercent is runtime.gc_percent. A sidecar's live heap is a few
	// MiB while gRPC and protobuf allocate ≈ 11 KiB per Check, so Go's
	// GOGC=100 collects every few hundred Checks; 800 collects an eighth as
	// often, and runtime.memory_limit still bounds the heap (issue 14:
	// 1.27–1.36 → 1.15–1.18 × the floor's CPU per warm Check against 400,
	// both with the same setting; see docs/performance.md).
	DefaultGCPercent   = 800
	DefaultMemoryLimit = "auto"
	// DefaultMaxTokenBytes bounds the credential header: a JWT with a few
	// dozen claims is 1–2 KiB; 8 KiB leaves room without inviting abuse.
	DefaultMaxTokenBytes = 8192
	DefaultShutdownGrace = 10 * time.Second
	// DefaultDrain is listen.drain: how long, after SIGTERM, tokentailor
	// reports not-ready yet keeps answering new Checks.
	DefaultDrain = 5 * time.Second
	// DefaultMaxRequestBytes is listen.max_request_bytes: larger
	// CheckRequests get a 431 CheckResponse.
	DefaultMaxRequestBytes = 1 << 20
	// MaxGRPCMessageBytes is what the gRPC server receives; listen.max_request_bytes
	// may not exceed it. Envoy's header limit (max_request_headers_kb) tops out
	// at 8 MiB, far below it.
	MaxGRPCMessageBytes = 64 << 20
	DefaultMaxCacheTTL  = 60 * time.Second
	// DefaultNegativeTTL: an inactive token rarely turns active; 5 s keeps
	// a client retrying a revoked token from costing a call per request
	// while a freshly issued token that raced its own replication is not
	// refused for long.
	DefaultNegativeTTL = 5 * time.Second
	// DefaultMaxInFlight bounds concurrent introspection calls per issuer.
	DefaultMaxInFlight   = 32
	DefaultEmbeddedClaim = "tokens"
	// DefaultRequestedType is the requested_token_type of an exchange: an
	// access token for the upstream's audience, whatever its format (RFC
	// 8693 §3; several servers refuse "...:jwt").
	DefaultRequestedType = "urn:ietf:params:oauth:token-type:access_token"
	// DefaultSubjectType is the subject_token_type of an exchange, for JWT
	// and opaque credentials alike: both are access tokens, and servers
	// check the subject token by its declared type (zitadel refuses a JWT
	// access token sent as "...:jwt").
	DefaultSubjectType = "urn:ietf:params:oauth:token-type:access_token"
	// DefaultAudience is introspection.audience: the answer's aud must hold
	// one of the issuer's audiences.
	DefaultAudience = AudienceClaim
	// DefaultIntrospectionRate is introspection.rate_limit.per_second: new
	// tokens (and answers past max_cache_ttl) a second one sidecar may ask
	// about; a gateway with more distinct tokens a minute raises it.
	DefaultIntrospectionRate = 100.0
	DefaultTokenAlphabet     = "base64url"
	// MaxTokenSegments bounds introspection.token_shape.segments.
	MaxTokenSegments  = 16
	DefaultAuthMethod = "client_secret_basic"
	DefaultMode       = "mint"
)

// AudienceClaim and AudienceServer are the values of introspection.audience.
const (
	AudienceClaim  = "claim"
	AudienceServer = "server"
)

// DefaultSubjectClaims are the members of an introspection answer the
// subject is read from when the issuer names none.
var DefaultSubjectClaims = []string{"sub"}

// DefaultAlgorithms is the allowlist when an issuer names none: asymmetric only.
var DefaultAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// DefaultHTTPTrustedProxies are the peers the HTTP authorization listener
// answers when listen.http_trusted_proxies names none: loopback only.
var DefaultHTTPTrustedProxies = []string{"127.0.0.0/8", "::1/128"}

// DefaultScopeClaims are read in order when an issuer names none: "scope"
// (RFC 9068, RFC 8693) then "scp" (Okta, Azure, Hydra). The same list serves
// JWTs and introspection answers.
var DefaultScopeClaims = []string{"scope", "scp"}

// applyDefaults fills every field the file left empty, block by block.
func (c *Config) applyDefaults() {
	if c.SharedCache != nil {
		c.SharedCache.applyDefaults()
	}
	c.Listen.defaults()
	c.Log.defaults()
	c.Mint.defaults()
	c.Credential.defaults()
	c.Cache.defaults()
	c.Runtime.defaults()
	c.applyDPoPDefaults()
	c.applyTxnTokenDefaults()
	c.Tracing.defaults()
	setDefault(&c.RouteKey, DefaultRouteKey)
	for i := range c.Issuers {
		c.Issuers[i].defaults()
	}
	for i := range c.Routes {
		c.Routes[i].defaults()
	}
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

func setDuration(d *Duration, def time.Duration) {
	if !d.IsSet() {
		d.Duration = def
	}
}

func (l *Listen) defaults() {
	setDuration(&l.ShutdownGrace, DefaultShutdownGrace)
	setDuration(&l.Drain, DefaultDrain)
	setDefault(&l.MaxRequestBytes, DefaultMaxRequestBytes)
	if l.HTTPTrustedProxies == nil {
		l.HTTPTrustedProxies = slices.Clone(DefaultHTTPTrustedProxies)
	}
}

func (l *Log) defaults() {
	setDefault(&l.Level, DefaultLogLevel)
	setDefault(&l.Format, DefaultLogFormat)
}

func (m *Mint) defaults() { setDefault(&m.Realm, DefaultRealm) }

// defaults: the Bearer scheme only for the authorization header; another
// header carries the bare token unless a scheme is named.
func (cr *Credential) defaults() {
	setDefault(&cr.Header, DefaultHeader)
	cr.Header = strings.ToLower(cr.Header)
	if cr.Scheme == nil {
		s := ""
		if IsAuthorizationHeader(cr.Header) {
			s = DefaultScheme
		}
		cr.Scheme = &s
	}
	setDefault(&cr.MaxBytes, DefaultMaxTokenBytes)
}

func (ca *Cache) defaults() { setDefault(&ca.MaxEntries, DefaultMaxEntries) }

func (r *Runtime) defaults() {
	setDefault(&r.GCPercent, DefaultGCPercent)
	setDefault(&r.MemoryLimit, DefaultMemoryLimit)
}

// emptySecret drops a secret block that names neither file nor env, as the
// reference config writes one: it means no secret.
func emptySecret(s **Secret) {
	if *s != nil && **s == (Secret{}) {
		*s = nil
	}
}

func (is *Issuer) defaults() {
	emptySecret(&is.HMACSecret)
	if is.RevocationPush != nil {
		is.RevocationPush.applyDefaults(is.Issuer)
	}
	if is.Client != nil {
		emptySecret(&is.Client.Secret)
	}
	if len(is.Algorithms) == 0 {
		is.Algorithms = slices.Clone(DefaultAlgorithms)
	}
	if len(is.ScopeClaims) == 0 {
		is.ScopeClaims = slices.Clone(DefaultScopeClaims)
	}
	setDuration(&is.ClockSkew, DefaultClockSkew)
	setDuration(&is.JWKSRefresh, DefaultJWKSRefresh)
	setDuration(&is.JWKSMinRefetch, DefaultJWKSMinRefetch)
	setDuration(&is.HTTPTimeout, DefaultHTTPTimeout)
	if is.DiscoveryURL != "" {
		is.Discovery = true
	}
	if in := is.Introspection; in != nil {
		setDuration(&in.MaxCacheTTL, DefaultMaxCacheTTL)
		setDuration(&in.NegativeTTL, DefaultNegativeTTL)
		setDefault(&in.MaxInFlight, DefaultMaxInFlight)
		setDefault(&in.Audience, DefaultAudience)
		if len(in.SubjectClaims) == 0 {
			in.SubjectClaims = slices.Clone(DefaultSubjectClaims)
		}
		setDefault(&in.RateLimit.PerSecond, DefaultIntrospectionRate)
		if in.RateLimit.Burst == 0 && in.RateLimit.PerSecond > 0 && in.RateLimit.PerSecond <= math.MaxInt32 {
			in.RateLimit.Burst = int(math.Ceil(in.RateLimit.PerSecond))
		}
		if in.TokenShape != nil && *in.TokenShape == (TokenShape{}) {
			in.TokenShape = nil // all empty, as the reference config shows it: no shape
		}
		if sh := in.TokenShape; sh != nil {
			setDefault(&sh.Alphabet, DefaultTokenAlphabet)
			setDefault(&sh.Segments, 1)
		}
	}
	if cl := is.Client; cl != nil && cl.AuthMethod == "" {
		cl.AuthMethod = DefaultAuthMethod
		if cl.PrivateKeyFile != "" {
			cl.AuthMethod = "private_key_jwt"
		}
	}
}

func (r *Route) defaults() {
	if m := r.Match; m != nil {
		for j, meth := range m.Methods {
			m.Methods[j] = strings.ToUpper(meth)
		}
		for j, h := range m.Hosts {
			m.Hosts[j] = strings.ToLower(h)
		}
	}
	r.acceptDefaults()
	r.Upstream.defaults()
}

func (u *Upstream) defaults() {
	setDefault(&u.Mode, DefaultMode)
	setDuration(&u.TTL, DefaultTTL)
	if u.Mode == "txn_token" {
		setDefault(&u.Header, "txn-token") // draft §10.1; never Authorization
	}
	setDefault(&u.Header, DefaultHeader)
	u.Header = strings.ToLower(u.Header)
	if u.Prefix == nil {
		p := ""
		if IsAuthorizationHeader(u.Header) {
			p = DefaultScheme + " "
		}
		u.Prefix = &p
	}
	if u.StripCredential == nil {
		t := true
		u.StripCredential = &t
	}
	if u.Mode == "embedded" {
		setDefault(&u.EmbeddedClaim, DefaultEmbeddedClaim)
	}
	if u.Mode == "exchange" {
		if u.Exchange == nil {
			u.Exchange = &Exchange{}
		}
		setDefault(&u.Exchange.SubjectTokenType, DefaultSubjectType)
		setDefault(&u.Exchange.RequestedTokenType, DefaultRequestedType)
	}
}
