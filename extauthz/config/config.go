// Package config turns tokentailor's YAML file into a typed, defaulted and
// validated Config. Nothing here runs per request: the policy engine compiles
// routes once from the Config, and every stage gets its settings from it.
//
// Loading is strict: an unknown field, a wrong type or an invalid value fails
// with an error that names the field and its line and suggests the fix, e.g.
//
//	line 7: issuers[0]: unknown field "audience" (did you mean "audiences"?)
//	line 31: routes[2].upstream.ttl: invalid duration "5 minutes" (e.g. 5m)
//	line 31: routes[2].upstream.ttl: must be positive
//
// Every default lives here (defaults.go); the components take the values
// config gives them and have none of their own.
//
// Secrets (HMAC secrets, client secrets, private keys) are never written in the
// YAML itself: the file names a file or an environment variable to read them
// from. Relative paths are resolved against the config file's directory.
package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Config is the whole of tokentailor's configuration.
type Config struct {
	// Listen says where tokentailor serves.
	Listen Listen `json:"listen"`
	// Log sets the log level and format.
	Log Log `json:"log"`
	// Mint configures tokentailor as an issuer of internal tokens.
	Mint Mint `json:"mint"`
	// Credential says where the client's token is found.
	Credential Credential `json:"credential"`
	// Issuers lists the trusted authorization servers; a JWT's iss picks one.
	Issuers []Issuer `json:"issuers"`
	// Cache bounds the caches.
	Cache Cache `json:"cache"`
	// Runtime tunes the Go garbage collector (read at start only).
	Runtime Runtime `json:"runtime"`
	// SharedCache, when set, shares caches and revocations between replicas
	// through Redis or Valkey; nil means each replica caches alone.
	SharedCache *SharedCache `json:"shared_cache"`
	// RouteKey is the context_extensions key that names a route (default "route").
	RouteKey string `json:"route_key"`
	// TxnToken configures the Transaction Tokens of routes with upstream
	// mode txn_token.
	TxnToken TxnToken `json:"txn_token"`
	// DPoP configures the checking of DPoP proofs (RFC 9449) for routes whose
	// sender_constraint is optional or required.
	DPoP DPoP `json:"dpop"`
	// Tracing exports OpenTelemetry spans of Checks (tracing.go); off by default.
	Tracing Tracing `json:"tracing"`
	// Routes are tried in order when the request names no route; first match wins.
	Routes []Route `json:"routes"`
	// DefaultRoute names the route used when none matches; empty means deny.
	DefaultRoute string `json:"default_route"`

	// dir is the directory of the file the config came from.
	dir string
	// warnings are found by Parse; see Warnings.
	warnings []string
}

// Listen holds the listener addresses.
type Listen struct {
	// GRPC is a TCP address for the ext_authz gRPC server, e.g. "127.0.0.1:9191".
	GRPC string `json:"grpc"`
	// Socket is a unix socket path for the ext_authz gRPC server.
	Socket string `json:"socket"`
	// Admin is the HTTP address for JWKS, health, readiness and metrics.
	Admin string `json:"admin"`
	// Drain is how long new checks are still served after SIGTERM while
	// /readyz and gRPC health already say not serving (default 5s), so that
	// Envoy and Kubernetes stop sending before the listener closes.
	Drain Duration `json:"drain"`
	// ShutdownGrace bounds how long in-flight checks may finish once the
	// drain is over and the listener closed (default 10s).
	ShutdownGrace Duration `json:"shutdown_grace"`
	// MaxRequestBytes bounds the size of a CheckRequest that is judged;
	// a larger one is denied with 431 (default 1048576). gRPC itself
	// accepts up to MaxGRPCMessageBytes so that the denial is an answer,
	// never a gRPC error.
	MaxRequestBytes int `json:"max_request_bytes"`
	// Pprof serves Go's profiler under /debug/pprof/ on the admin listener.
	// Off by default; keep the admin listener on loopback when it is on.
	Pprof bool `json:"pprof"`
	// HTTP is a TCP address for the HTTP authorization listener (Envoy's
	// http_service, nginx auth_request, Caddy/Traefik forward_auth), e.g.
	// "127.0.0.1:9192". Empty (the default) disables it.
	HTTP string `json:"http"`
	// HTTPSocket is a unix socket path for the HTTP authorization listener;
	// every peer on it is trusted (the file's permissions are the boundary).
	HTTPSocket string `json:"http_socket"`
	// HTTPTrustedProxies are the CIDRs (or single addresses) of the proxies
	// whose requests the HTTP listener on HTTP answers; any other peer gets
	// 403. Default: loopback only (127.0.0.0/8, ::1/128).
	HTTPTrustedProxies []string `json:"http_trusted_proxies"`
}

// Log holds logging settings.
type Log struct {
	// Level is debug, info, warn or error (default info).
	Level string `json:"level"`
	// Format is json or text (default json).
	Format string `json:"format"`
}

// Mint configures the internal tokens tokentailor signs.
type Mint struct {
	// Issuer is the iss of minted tokens, e.g. "https://tokentailor.internal".
	Issuer string `json:"issuer"`
	// Keys are the signing keys; all are published in the JWKS.
	Keys []SigningKey `json:"keys"`
	// SigningKey is the kid of the key that signs (default: the first key).
	SigningKey string `json:"signing_key"`
	// Realm is the realm of WWW-Authenticate challenges (default "tokentailor").
	Realm string `json:"realm"`
}

// SigningKey is one PEM private key file.
type SigningKey struct {
	// File is the PEM file: Ed25519 (EdDSA), P-256 (ES256) or RSA ≥ 2048 (RS256).
	File string `json:"file"`
	// Kid is the key ID; empty means the RFC 7638 thumbprint.
	Kid string `json:"kid"`
}

// Credential says where the client's token is found.
type Credential struct {
	// Header is the request header holding the token (default "authorization").
	Header string `json:"header"`
	// Scheme is the auth scheme before the token (default "Bearer" for the
	// authorization header, none for other headers).
	Scheme *string `json:"scheme"`
	// MaxBytes bounds the credential header, and so the token that JWT
	// verification and introspection see (default 8192).
	MaxBytes int `json:"max_bytes"`
}

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

// Cache bounds tokentailor's caches.
type Cache struct {
	// MaxEntries bounds each cache (validation, minted tokens, introspection,
	// exchange) in entries (default 10000). A cached token costs about 2.4 KiB
	// of heap across the validation and minted-token caches (more for larger
	// tokens), so the default holds ~23 MiB; raise it for a gateway that
	// sees more distinct tokens within their lifetime.
	MaxEntries int `json:"max_entries"`
}

// Runtime tunes Go's garbage collector for a sidecar that answers many small
// requests from a small heap. The GOGC and GOMEMLIMIT environment variables,
// when set, win over these settings (the Kubernetes injector sets GOMEMLIMIT
// from the container's memory limit). Read at start only.
type Runtime struct {
	// GCPercent is the GC target, as GOGC (default 400): the heap may grow by
	// this percentage of the live heap before the next collection. With the
	// few MiB of live heap a sidecar has once warm, Go's 100 collects every
	// few thousand requests; 400 collects a quarter as often, and MemoryLimit
	// keeps a heap full of cached tokens from growing as far.
	GCPercent int `json:"gc_percent"`
	// MemoryLimit is the soft limit of the memory the Go runtime manages, as
	// GOMEMLIMIT: a Kubernetes quantity ("96Mi", "128M", "134217728"), "off",
	// or "auto" (default): 32 MiB plus 2.5 KiB per cache.max_entries, which is
	// what full validation and minted-token caches of typical tokens hold
	// plus room to work. It is soft: near it the GC runs more often; nothing
	// fails. It does not count the binary's own pages (≈ 25 MiB resident).
	MemoryLimit string `json:"memory_limit"`
}

// Route is one policy.
type Route struct {
	// Name identifies the route in context_extensions, logs and metrics.
	Name string `json:"name"`
	// Match selects requests when Envoy names no route.
	Match *Match `json:"match"`
	// Public routes need no credential; the upstream gets no token.
	Public bool `json:"public"`
	// Require lists what the credential must carry.
	Require Require `json:"require"`
	// MinLifetime refuses tokens that expire sooner than this. Opaque tokens
	// whose introspection answer has no exp are not judged by it.
	MinLifetime Duration `json:"min_lifetime"`
	// Issuers lists the issuers (their issuer identifiers) whose tokens the
	// route accepts, JWTs and opaque ones; empty accepts every configured
	// issuer. An opaque token goes to the one introspecting issuer among
	// them whose introspection.token_shape.prefix it starts with (or the
	// only one): several without distinct prefixes are refused.
	Issuers []string `json:"issuers"`
	// SenderConstraint is how the route treats DPoP-bound tokens (RFC 9449):
	// off (default: tokens are bearer tokens whatever their cnf), optional
	// (DPoP-bound tokens need the DPoP scheme and a valid proof, others pass
	// as Bearer) or required (only DPoP-bound tokens with a valid proof).
	// Certificate-bound tokens (RFC 8705 cnf x5t#S256) are checked on every
	// route whatever this says.
	SenderConstraint string `json:"sender_constraint"`
	// DPoPOrigin is the scheme and authority clients address, e.g.
	// "https://api.example.com", when a proxy in front of Envoy changes them;
	// empty means Envoy's scheme and :authority. A proof's htu must equal
	// this origin plus the request path.
	DPoPOrigin string `json:"dpop_origin"`
	// Upstream says what the upstream gets.
	Upstream Upstream `json:"upstream"`
}

// TxnToken configures Transaction Tokens (draft-ietf-oauth-transaction-tokens).
type TxnToken struct {
	// TrustDomain is the aud of every Txn-Token (required with mode txn_token).
	TrustDomain string `json:"trust_domain"`
	// Workload is req_wl, the requesting workload, unless the caller's
	// certificate names a SPIFFE ID (required with mode txn_token).
	Workload string `json:"workload"`
	// TTL is a Txn-Token's lifetime, never beyond the incoming token (default 1m, at most 10m).
	TTL Duration `json:"ttl"`
	// Context is tctx: immutable context claims every Txn-Token carries.
	Context map[string]any `json:"context"`
	// RequestIDHeader names a request header whose value (1–128 visible
	// ASCII characters) becomes txn, e.g. x-request-id (Envoy sets it); ""
	// means a random UUID per token.
	RequestIDHeader string `json:"request_id_header"`
}

// DPoP configures DPoP proof checking (RFC 9449).
type DPoP struct {
	// Algorithms is the proof alg allowlist, asymmetric only (default: ES256,
	// ES384, ES512, EdDSA, RS256, RS384, RS512, PS256, PS384, PS512). It is
	// also the algs parameter of DPoP challenges.
	Algorithms []string `json:"algorithms"`
	// MaxAge bounds how old a proof's iat may be (default 60s).
	MaxAge Duration `json:"max_age"`
	// Leeway bounds how far in the future iat may be (default 5s).
	Leeway Duration `json:"leeway"`
	// ReplayEntries bounds the cache of seen proofs (default 100000); when it
	// is full of live proofs, new proofs are refused (503) rather than a
	// seen one forgotten.
	ReplayEntries int `json:"replay_entries"`
	// NonceSecret, when set, makes server nonces mandatory: proofs must carry
	// a nonce tokentailor issued (DPoP-Nonce header of a use_dpop_nonce
	// denial). At least 32 bytes; replicas sharing it accept each other's nonces.
	NonceSecret *Secret `json:"nonce_secret"`
	// NonceLifetime is how long an issued nonce is accepted (default 5m).
	NonceLifetime Duration `json:"nonce_lifetime"`
}

// Match selects requests by host, path and method; empty parts match anything.
type Match struct {
	// Hosts are exact hosts (port ignored), or "*.example.com" suffix patterns.
	Hosts []string `json:"hosts"`
	// Path matches the path exactly.
	Path string `json:"path"`
	// PathPrefix matches the path by prefix, on segment boundaries.
	PathPrefix string `json:"path_prefix"`
	// Methods are HTTP methods (upper case).
	Methods []string `json:"methods"`
}

// Require lists what a credential must carry. A route that is not public
// must state it, if only as "require: {}" (any valid token): a missing or
// null require is refused, so that a file cut after "require:" cannot mean
// "nothing required".
type Require struct {
	// Scopes must all be granted.
	Scopes []string `json:"scopes"`
	// Claims maps a claim name to accepted values: the claim (a string or an
	// array) must hold one of them.
	Claims map[string]StringList `json:"claims"`

	// stated is set when the file gave require a value other than null.
	stated bool
}

// UnmarshalJSON decodes require strictly and remembers that it was stated;
// null leaves it unstated.
func (r *Require) UnmarshalJSON(b []byte) error {
	if string(bytes.TrimSpace(b)) == "null" {
		return nil
	}
	type plain Require
	var p plain
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return err
	}
	*r = Require(p)
	r.stated = true
	return nil
}

// Stated reports whether the file gave require a value (not null, not missing).
func (r Require) Stated() bool { return r.stated }

// Upstream says what the upstream of a route receives.
type Upstream struct {
	// Mode is mint (default), forward, exchange or embedded.
	Mode string `json:"mode"`
	// Audience is the upstream's aud.
	Audience string `json:"audience"`
	// Scopes are passed on when the incoming token has them.
	Scopes []string `json:"scopes"`
	// CopyClaims copies claims of the incoming token: source name → name in the
	// minted token (empty keeps the name).
	CopyClaims map[string]string `json:"copy_claims"`
	// Claims are fixed extra claims.
	Claims map[string]any `json:"claims"`
	// TTL is the minted token's lifetime, never beyond the incoming exp (default 5m).
	TTL Duration `json:"ttl"`
	// Header carries the token upstream (default "authorization").
	Header string `json:"header"`
	// Prefix goes before the token (default "Bearer " for authorization, else none).
	Prefix *string `json:"prefix"`
	// StripCredential removes the client's credential header (default true).
	StripCredential *bool `json:"strip_credential"`
	// Exchange configures mode exchange.
	Exchange *Exchange `json:"exchange"`
	// EmbeddedClaim names the claim holding embedded tokens, a map from
	// audience to JWT (mode embedded; default "tokens").
	EmbeddedClaim string `json:"embedded_claim"`
	// EmbeddedIssuers lists issuers, other than the incoming token's, whose
	// embedded tokens are accepted (mode embedded; default none: the embedded
	// token's iss must equal the incoming token's). Its sub must always equal
	// the incoming token's.
	EmbeddedIssuers []string `json:"embedded_issuers"`
}

// Exchange configures RFC 8693 token exchange for a route.
type Exchange struct {
	// Issuer is the configured issuer whose token endpoint is asked (default:
	// the issuer of the incoming token).
	Issuer string `json:"issuer"`
	// Resource is the resource indicator (RFC 8707).
	Resource string `json:"resource"`
	// SubjectTokenType is the subject_token_type sent with the incoming token
	// (default urn:ietf:params:oauth:token-type:access_token, for JWT and
	// opaque tokens alike: both are access tokens).
	SubjectTokenType string `json:"subject_token_type"`
	// RequestedTokenType is the requested_token_type
	// (default urn:ietf:params:oauth:token-type:access_token).
	RequestedTokenType string `json:"requested_token_type"`
	// Actor sends tokentailor's own client credential as actor_token.
	Actor bool `json:"actor"`
}

// Duration is a time.Duration written as "30s" or "5m" in YAML. It remembers
// whether the file set it, so that an explicit "0s" is not replaced by a
// default.
type Duration struct {
	time.Duration
	set bool
}

// IsSet reports whether the file gave the duration.
func (d Duration) IsSet() bool { return d.set }

// UnmarshalJSON accepts a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"30s\" or \"5m\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q", s)
	}
	d.Duration, d.set = v, true
	return nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// StringList is a list of strings that may be written as one string.
type StringList []string

// UnmarshalJSON accepts a string or an array of strings.
func (l *StringList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*l = StringList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("must be a string or a list of strings")
	}
	*l = many
	return nil
}

// Dir is the directory of the loaded file; relative paths resolve against it.
func (c *Config) Dir() string { return c.dir }

// Route returns the route named name, or nil.
func (c *Config) Route(name string) *Route {
	for i := range c.Routes {
		if c.Routes[i].Name == name {
			return &c.Routes[i]
		}
	}
	return nil
}

// IsAuthorizationHeader reports whether h names the authorization header.
func IsAuthorizationHeader(h string) bool { return strings.EqualFold(h, "authorization") }
