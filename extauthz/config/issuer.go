package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Issuer is one trusted authorization server.
type Issuer struct {
	// Issuer is the exact iss value of its tokens.
	Issuer string `json:"issuer"`
	// JWKSURL is where its keys are published. Empty with Discovery set means
	// the jwks_uri of its metadata.
	JWKSURL string `json:"jwks_url"`
	// Discovery reads the issuer's OIDC / RFC 8414 metadata for endpoints.
	Discovery bool `json:"discovery"`
	// DiscoveryURL overrides the metadata URL
	// (default issuer + "/.well-known/openid-configuration").
	DiscoveryURL string `json:"discovery_url"`
	// Audiences are accepted aud values; a token must carry one of them.
	Audiences []string `json:"audiences"`
	// Algorithms is the signature algorithm allowlist (default: asymmetric only).
	Algorithms []string `json:"algorithms"`
	// HMACSecret enables HS256/384/512, from a file or environment variable.
	HMACSecret *Secret `json:"hmac_secret"`
	// ClockSkew is the leeway for exp, nbf and iat of JWTs, of introspection
	// answers and of RFC 9701 signed answers (default 30s).
	ClockSkew Duration `json:"clock_skew"`
	// RequiredType is the JWT typ header that must be present, e.g. "at+jwt".
	// Empty accepts no typ, "JWT" and "at+jwt" only: any other typ
	// (dpop+jwt, logout+jwt, token-introspection+jwt, secevent+jwt, …) is
	// refused, so set this when the issuer's access tokens carry another.
	RequiredType string `json:"required_typ"`
	// AllowMissingSub accepts JWT access tokens without sub (default false:
	// RFC 9068 §2.2 requires it). Set it only for an issuer known to omit
	// sub, e.g. in client-credentials tokens. Introspected tokens are not
	// affected.
	AllowMissingSub bool `json:"allow_missing_sub"`
	// ScopeClaims are the claims scopes are read from, in order (default scope, scp).
	ScopeClaims []string `json:"scope_claims"`
	// JWKSRefresh is how often keys are refetched (default 5m).
	JWKSRefresh Duration `json:"jwks_refresh"`
	// JWKSMinRefetch is the least time between a successful key fetch and the
	// next one an unknown kid may cause, and the cap of the retry backoff
	// after failed fetches (default 5s).
	JWKSMinRefetch Duration `json:"jwks_min_refetch"`
	// HTTPTimeout bounds each call to the issuer: discovery, JWKS,
	// introspection (the wait for a free slot included) and token exchange
	// (default 2s). Envoy's ext_authz timeout must exceed it (the shipped
	// configs use 3s): an answer that comes after Envoy gave up is wasted.
	HTTPTimeout Duration `json:"http_timeout"`
	// Introspection configures RFC 7662 introspection for opaque tokens. Several
	// issuers may introspect; routes[].issuers and introspection.token_shape.prefix
	// pick one per token.
	Introspection *Introspection `json:"introspection"`
	// TokenEndpoint is the RFC 8693 token endpoint (default: from discovery).
	TokenEndpoint string `json:"token_endpoint"`
	// Client is tokentailor's own client registration at this issuer, used for
	// introspection and token exchange.
	Client *Client `json:"client"`
	// RevocationPush, when set, accepts token revocations pushed by this
	// issuer as Security Event Tokens (RFC 8417, RFC 8935).
	RevocationPush *RevocationPush `json:"revocation_push"`
}

// Introspection configures RFC 7662 calls.
type Introspection struct {
	// Endpoint is the introspection endpoint (default: from discovery).
	Endpoint string `json:"endpoint"`
	// JWTResponse asks for signed answers (RFC 9701).
	JWTResponse bool `json:"jwt_response"`
	// MaxCacheTTL caps how long an active answer is cached. This is also how
	// long a revoked token can still pass (default 60s).
	MaxCacheTTL Duration `json:"max_cache_ttl"`
	// NegativeTTL is how long an inactive answer is cached (default 5s).
	NegativeTTL Duration `json:"negative_ttl"`
	// MaxInFlight bounds concurrent calls to the endpoint (default 32).
	MaxInFlight int `json:"max_in_flight"`
	// Audience says how an introspected token is known to be meant for us:
	// "claim" (default) requires the answer's aud to hold one of the issuer's
	// audiences; "server" trusts the authorization server to answer active
	// only to a caller the token is meant for (zitadel does; RFC 7662 §4
	// allows it), so an answer without aud is accepted, while an aud that is
	// present must still hold one of the audiences.
	Audience string `json:"audience"`
	// SubjectClaims are the members of the answer the subject is read from,
	// the first non-empty one wins (default [sub]). An answer with none of
	// them is refused (401), never turned into a principal without a subject.
	// e.g. [sub, username, client_id] for servers that omit sub.
	SubjectClaims []string `json:"subject_claims"`
	// RateLimit caps the calls to the endpoint per second. A check that
	// would exceed it is denied with 503 without a call (cached answers are
	// still served).
	RateLimit RateLimit `json:"rate_limit"`
	// TokenShape, when set, refuses tokens that cannot be this issuer's with
	// 401 invalid_token, without a call.
	TokenShape *TokenShape `json:"token_shape"`
}

// RateLimit is a token bucket: PerSecond calls a second on average, up to
// Burst at once.
type RateLimit struct {
	// PerSecond is the average rate; fractions are allowed (default 100).
	PerSecond float64 `json:"per_second"`
	// Burst is the bucket's size (default PerSecond, rounded up).
	Burst int `json:"burst"`
}

// TokenShape says what every opaque token of the issuer looks like:
// prefix, then Segments non-empty runs of Alphabet joined by ".", the whole
// MinLength to MaxLength bytes long. Ory Hydra (default entropy):
// {prefix: ory_at_, alphabet: base64url, segments: 2, min_length: 94, max_length: 94}.
type TokenShape struct {
	// Prefix starts every token, e.g. "ory_at_".
	Prefix string `json:"prefix"`
	// Alphabet is base64url (default), base64, hex or alnum.
	Alphabet string `json:"alphabet"`
	// Segments is the number of "."-separated parts after the prefix (default 1).
	Segments int `json:"segments"`
	// MinLength is the least length in bytes, prefix included (default: no bound).
	MinLength int `json:"min_length"`
	// MaxLength is the greatest length in bytes, prefix included (default: no bound).
	MaxLength int `json:"max_length"`
}

// Client is an OAuth client registration.
type Client struct {
	// ID is the client_id.
	ID string `json:"id"`
	// AuthMethod is client_secret_basic (default), client_secret_post or private_key_jwt.
	AuthMethod string `json:"auth_method"`
	// Secret is the client secret, for the client_secret_* methods.
	Secret *Secret `json:"secret"`
	// PrivateKeyFile is the PEM key for private_key_jwt.
	PrivateKeyFile string `json:"private_key_file"`
}

// Secret names where a secret is read from: a file or an environment variable.
type Secret struct {
	// File is a path whose content (trailing newline trimmed) is the secret.
	File string `json:"file"`
	// Env is an environment variable holding the secret.
	Env string `json:"env"`
}

var knownAlgorithms = map[string]bool{
	"RS256": true, "RS384": true, "RS512": true, "PS256": true, "PS384": true, "PS512": true,
	"ES256": true, "ES384": true, "ES512": true, "EdDSA": true, "HS256": true, "HS384": true, "HS512": true,
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
