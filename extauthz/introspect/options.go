package introspect

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/tokentailor/tokentailor/extauthz/clientauth"
	"github.com/tokentailor/tokentailor/extauthz/metrics"
	"github.com/tokentailor/tokentailor/extauthz/sharedcache"
)

// Media types of introspection answers.
const (
	MediaTypeJSON = "application/json"
	// MediaTypeJWT is the RFC 9701 signed answer.
	MediaTypeJWT = "application/token-introspection+jwt"
	// TypJWT is the typ header of an RFC 9701 answer.
	TypJWT = "token-introspection+jwt"
)

// MaxBodyBytes bounds an answer; larger ones are refused. It is a limit of
// the protocol's shape, not a setting: answers are a few hundred bytes.
const MaxBodyBytes = 64 << 10

// KeySource gives the public key for a kid and alg of the issuer; *jwks.Set
// implements it.
type KeySource interface {
	Key(ctx context.Context, kid, alg string) (crypto.PublicKey, error)
}

// Options configures an Introspector. Issuer, Auth and one of Endpoint and
// EndpointFunc are required, and so is every setting (Client, Timeout, TTLs,
// bounds, ScopeClaims): the values come already defaulted from config, and
// New refuses zero values rather than invent defaults of its own.
type Options struct {
	// Issuer is the issuer identifier: the expected iss of answers (an answer
	// without iss is taken as this issuer's) and the metric label.
	Issuer string
	// Endpoint is the introspection endpoint URL.
	Endpoint string
	// EndpointFunc, instead of Endpoint, gives the endpoint at each call,
	// e.g. a discovery.Resolver's IntrospectionEndpoint, so that an issuer
	// whose metadata cannot be fetched at start delays its own tokens (503)
	// and nothing else. Its errors should wrap extauthz.ErrIssuerUnavailable.
	EndpointFunc func(ctx context.Context) (string, error)
	// Auth authenticates tokentailor to the endpoint.
	Auth clientauth.Method
	// Audiences, when not empty, must share a value with the answer's aud.
	Audiences []string
	// AudienceByServer says the authorization server answers active only
	// to a caller the token is meant for (RFC 7662 §4; zitadel does), so an
	// answer without aud passes; an aud that is present must still share a
	// value with Audiences. False requires the answer's aud.
	AudienceByServer bool
	// SubjectClaims are the members the subject is read from, the first
	// non-empty string wins. An active answer with none of them is refused
	// with extauthz.ErrInvalidToken.
	SubjectClaims []string
	// ScopeClaims name the members holding scopes, first present wins.
	ScopeClaims []string
	// JWTResponse asks for and requires RFC 9701 signed answers.
	JWTResponse bool
	// Keys verifies RFC 9701 answers; required with JWTResponse.
	Keys KeySource
	// Client makes the calls.
	Client *http.Client
	// Timeout bounds one introspection call, the wait for a slot included.
	Timeout time.Duration
	// MaxCacheTTL caps how long an active answer is cached: the longest time
	// a revoked token still passes.
	MaxCacheTTL time.Duration
	// NegativeTTL is how long a refusal (inactive, expired, wrong audience…)
	// is cached.
	NegativeTTL time.Duration
	// CacheEntries bounds the cache.
	CacheEntries int
	// MaxInFlight bounds concurrent calls to the endpoint.
	MaxInFlight int
	// MaxTokenBytes bounds the credential sent to the endpoint.
	MaxTokenBytes int
	// Leeway tolerates clock skew on the answer's exp and nbf and on the
	// iat/exp/nbf of RFC 9701 answers.
	Leeway time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives failures, never tokens; nil discards.
	Logger *slog.Logger
	// Metrics counts calls and cache lookups; may be nil.
	Metrics *metrics.Metrics
	// NegativeCacheEntries bounds the cache of refusals, which is kept apart
	// from the cache of active answers; 0 means CacheEntries.
	NegativeCacheEntries int
	// RateLimit is the most introspection calls per second, as a token
	// bucket of RateBurst calls; a check that finds the bucket empty is
	// denied without a call. 0 means no limit.
	RateLimit float64
	// RateBurst is the size of the bucket; 0 means RateLimit rounded up.
	RateBurst int
	// TokenShape, when set, refuses tokens that cannot be the issuer's
	// (extauthz.ErrInvalidToken) without a call.
	TokenShape *Shape
	// Shared, when set, is the cache shared by the replicas: looked up on a
	// local miss before the issuer is called, told every answer, and
	// listened to for revocations, which drop the local copies. nil: off.
	Shared *sharedcache.Cache
}

// validate refuses options a caller forgot to fill: none of them has a
// sensible zero value.
func (o *Options) validate() error {
	if o.Issuer == "" {
		return errors.New("Issuer is required")
	}
	if o.Auth == nil {
		return errors.New("Auth is required")
	}
	switch {
	case o.EndpointFunc != nil && o.Endpoint != "":
		return errors.New("Endpoint and EndpointFunc are exclusive")
	case o.EndpointFunc == nil:
		u, err := url.Parse(o.Endpoint)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("Endpoint %q is not an http(s) URL", o.Endpoint)
		}
	}
	if o.JWTResponse && o.Keys == nil {
		return errors.New("JWTResponse needs Keys")
	}
	if o.Client == nil {
		return errors.New("Client is required")
	}
	if len(o.ScopeClaims) == 0 {
		return errors.New("ScopeClaims must name at least one member")
	}
	if len(o.SubjectClaims) == 0 {
		return errors.New("SubjectClaims must name at least one member")
	}
	for _, c := range []struct {
		name string
		v    int64
	}{
		{"Timeout", int64(o.Timeout)}, {"MaxCacheTTL", int64(o.MaxCacheTTL)}, {"NegativeTTL", int64(o.NegativeTTL)},
		{"CacheEntries", int64(o.CacheEntries)}, {"MaxInFlight", int64(o.MaxInFlight)}, {"MaxTokenBytes", int64(o.MaxTokenBytes)},
	} {
		if c.v <= 0 {
			return fmt.Errorf("%s must be positive", c.name)
		}
	}
	if o.Leeway < 0 {
		return errors.New("Leeway must not be negative")
	}
	return nil
}
