// Package introspect turns opaque access tokens into principals by asking the
// issuer's RFC 7662 introspection endpoint, and caches the answers: the
// phantom token pattern.
//
// # Caching, and how long a revoked token still passes
//
// Answers are cached under the SHA-256 of the token (extauthz.TokenHash),
// never the token itself. An active answer is kept until the token's exp,
// but never longer than Options.MaxCacheTTL. That cap is the longest time a
// token revoked at the authorization server is still accepted here: keep it
// short (config's max_cache_ttl, 60s by default). Inactive, expired and otherwise refused
// answers are kept for Options.NegativeTTL, so a client repeating a bad token
// does not turn into repeated calls. Refusals live in a cache of their own
// (Options.NegativeCacheEntries), so a flood of bad tokens fills that one and
// never evicts an active answer. Route policy is evaluated by the caller
// on every request, cached answer or not; exp and nbf are checked against the
// clock on every request too.
//
// # Failing closed
//
// Concurrent checks of the same uncached token share one call
// (golang.org/x/sync/singleflight). At most Options.MaxInFlight calls are
// outstanding at a time (golang.org/x/sync/semaphore); a check that cannot get
// a slot before its context ends is denied with extauthz.ErrIssuerUnavailable,
// so a flood of random opaque strings cannot become an unbounded stream of
// calls to the issuer.
//
// # Floods
//
// Three things together keep a flood of made-up tokens from reaching the
// issuer or starving real ones:
//   - Options.TokenShape refuses a token that cannot be the issuer's (wrong
//     prefix, length, alphabet or segments) with extauthz.ErrInvalidToken,
//     before any cache or call: random strings cost nothing but the check;
//   - refusals are cached apart from active answers (see above);
//   - Options.RateLimit caps the calls per second with a token bucket
//     (golang.org/x/time/rate). A check that finds the bucket empty is
//     denied at once with extauthz.ErrIssuerUnavailable wrapping
//     ErrRateLimited (503), and counted in the metric
//     tokentailor_issuer_requests_limited_total. The limiter cannot tell a
//     real new token from a made-up one of the right shape: against such a
//     flood it protects the issuer, and new tokens share the bucket with it.
//
// An unreachable server, a timeout, a non-200 status, and an answer that is
// malformed, too large, of the wrong media type or (RFC 9701) not validly
// signed all deny with extauthz.ErrIssuerUnavailable (503) and are not cached;
// answers still valid in the cache keep being served. Such answers are not
// ErrInvalidToken (401) on purpose: a 401 tells the client to get a new token,
// which would not help, and would hide an authorization-server fault behind
// a client error in logs and metrics. An answer that is a JSON object whose
// "active" is anything but the JSON true ("true", 1, null, no member) is not
// malformed: RFC 7662 §2.2 makes it an inactive token, denied with
// extauthz.ErrTokenInactive (401) and cached as a refusal.
//
// # Signed answers (RFC 9701)
//
// With Options.JWTResponse, the request asks for
// application/token-introspection+jwt; the answer must be a JWS with typ
// token-introspection+jwt, signed by a key from Options.Keys, iss equal to
// Options.Issuer and aud holding our client id; the RFC 7662 members are read
// from its token_introspection claim. A plain JSON answer is then refused.
package introspect

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/semaphore"
	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/cache"
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

// ErrRateLimited is wrapped (with extauthz.ErrIssuerUnavailable) by the
// denial of a check that would exceed Options.RateLimit.
var ErrRateLimited = errors.New("introspection rate limit reached")

// Introspector is an extauthz.Authenticator for opaque tokens.
type Introspector struct {
	opts   Options
	cache  *cache.Cache[entry] // active answers
	neg    *cache.Cache[entry] // refusals
	limit  *rate.Limiter       // nil: no limit
	shape  *ShapeMatcher       // nil: any shape
	group  singleflight.Group
	sem    *semaphore.Weighted
	now    func() time.Time
	log    *slog.Logger
	accept string
	stop   func() // unregisters the revocation handler
}

var _ extauthz.Authenticator = (*Introspector)(nil)

// entry is one cached answer: a principal (without its credential) or a
// refusal, good until until by the injected clock.
type entry struct {
	p     *extauthz.Principal
	nbf   time.Time
	err   error
	until time.Time
}

// New validates opts and returns an Introspector.
func New(opts Options) (*Introspector, error) {
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("introspect: %w", err)
	}
	i := &Introspector{
		opts:   opts,
		sem:    semaphore.NewWeighted(int64(opts.MaxInFlight)),
		now:    opts.Now,
		log:    opts.Logger,
		accept: MediaTypeJSON,
	}
	i.cache = cache.New[entry]("introspection", opts.CacheEntries, opts.Metrics)
	negEntries := opts.NegativeCacheEntries
	if negEntries <= 0 {
		negEntries = opts.CacheEntries
	}
	i.neg = cache.New[entry]("introspection_negative", negEntries, opts.Metrics)
	if opts.RateLimit < 0 || opts.RateBurst < 0 {
		return nil, errors.New("introspect: RateLimit and RateBurst must not be negative")
	}
	if opts.RateLimit > 0 {
		burst := opts.RateBurst
		if burst == 0 {
			burst = int(math.Ceil(opts.RateLimit))
		}
		i.limit = rate.NewLimiter(rate.Limit(opts.RateLimit), burst)
	}
	if opts.TokenShape != nil {
		m, err := NewShapeMatcher(*opts.TokenShape)
		if err != nil {
			return nil, fmt.Errorf("introspect: TokenShape: %w", err)
		}
		i.shape = m
	}
	if i.now == nil {
		i.now = time.Now
	}
	if i.log == nil {
		i.log = slog.New(slog.DiscardHandler)
	}
	if opts.JWTResponse {
		i.accept = MediaTypeJWT
	}
	i.stop = opts.Shared.OnRevoke(i.revoked)
	return i, nil
}

// Close stops listening to the shared cache's revocations; the shared
// cache itself belongs to the caller.
func (i *Introspector) Close() { i.stop() }

// revoked drops the local copies a revocation concerns.
func (i *Introspector) revoked(r sharedcache.Revocation) {
	switch {
	case r.All:
		i.cache.Flush()
		i.neg.Flush()
	case r.Issuer == i.opts.Issuer:
		i.cache.Delete(r.TokenHash)
		i.neg.Delete(r.TokenHash)
	}
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

// Options returns the options the Introspector was built with.
func (i *Introspector) Options() Options { return i.opts }

// Authenticate introspects cred (or finds a cached answer) and returns the
// principal it speaks for. Errors wrap an extauthz sentinel: ErrTokenInactive,
// ErrTokenExpired, ErrTokenNotYetValid, ErrWrongAudience, ErrUnknownIssuer,
// ErrInvalidToken (not an access token) for refusals; ErrIssuerUnavailable
// when no trustworthy answer could be had.
func (i *Introspector) Authenticate(ctx context.Context, cred extauthz.Credential) (*extauthz.Principal, error) {
	if cred.Raw == "" {
		return nil, extauthz.ErrNoCredential
	}
	if len(cred.Raw) > i.opts.MaxTokenBytes {
		return nil, fmt.Errorf("%w: token longer than %d bytes", extauthz.ErrMalformedCredential, i.opts.MaxTokenBytes)
	}
	if i.shape != nil {
		if err := i.shape.Match(cred.Raw); err != nil {
			return nil, err
		}
	}
	key := cred.TokenHash()
	e, err := i.lookup(ctx, key, cred.Raw)
	if err != nil {
		return nil, err
	}
	if e.err != nil {
		return nil, e.err
	}
	now := i.now()
	if !now.Add(-i.opts.Leeway).Before(e.p.ExpiresAt) {
		return nil, fmt.Errorf("%w: introspected token expired", extauthz.ErrTokenExpired)
	}
	if !e.nbf.IsZero() && now.Add(i.opts.Leeway).Before(e.nbf) {
		return nil, fmt.Errorf("%w: introspected token not valid before nbf", extauthz.ErrTokenNotYetValid)
	}
	p := *e.p
	p.Audience = slices.Clone(p.Audience)
	p.Scopes = slices.Clone(p.Scopes)
	p.Claims = maps.Clone(p.Claims)
	p.Credential = cred
	return &p, nil
}

// lookup returns the cached entry for key or introspects raw, sharing the call
// with concurrent lookups of the same key.
func (i *Introspector) lookup(ctx context.Context, key, raw string) (entry, error) {
	e, ok := i.cached(key)
	cache.Note(ctx, "introspection", ok)
	if ok {
		return e, nil
	}
	ch := i.group.DoChan(key, func() (any, error) {
		if e, ok := i.cached(key); ok {
			return e, nil
		}
		if e, ok := i.fromShared(ctx, key); ok {
			return e, nil
		}
		return i.introspect(ctx, key, raw)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return entry{}, r.Err
		}
		return r.Val.(entry), nil
	case <-ctx.Done():
		return entry{}, fmt.Errorf("%w: waiting for introspection: %w", extauthz.ErrIssuerUnavailable, ctx.Err())
	}
}

// cached returns the answer held for key: an active one, else a refusal.
func (i *Introspector) cached(key string) (entry, bool) {
	for _, c := range [...]*cache.Cache[entry]{i.cache, i.neg} {
		e, ok := c.Get(key)
		if !ok {
			continue
		}
		if !i.now().Before(e.until) {
			c.Delete(key)
			continue
		}
		return e, true
	}
	return entry{}, false
}

// introspect makes one call and caches its outcome. Refusals come back as an
// entry with err set; only unavailability is returned as an error.
//
// ctx is the first caller's. Waiting for a slot ends with it (nobody is left
// to serve when it was the only caller); the call itself must not die with
// it, as other callers may share it, so it runs on a detached context
// bounded by Timeout while each caller waits on its own context.
func (i *Introspector) introspect(ctx context.Context, key, raw string) (entry, error) {
	short := key[:12] // extauthz.ShortTokenHash(raw), without hashing again
	callCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), i.opts.Timeout)
	defer cancel()
	waitCtx, stopWait := context.WithCancel(callCtx)
	defer stopWait()
	defer context.AfterFunc(ctx, stopWait)()
	if i.limit != nil && !i.limit.AllowN(i.now(), 1) {
		// No log line: under a flood it would be one per refused token; the
		// metric and the denial's own log line tell.
		i.opts.Metrics.IssuerCallLimited(i.opts.Issuer, "introspection")
		return entry{}, fmt.Errorf("%w: %w", extauthz.ErrIssuerUnavailable, ErrRateLimited)
	}
	if err := i.sem.Acquire(waitCtx, 1); err != nil {
		i.log.WarnContext(ctx, "introspection slots exhausted", "issuer", i.opts.Issuer, "token", short)
		i.opts.Metrics.IssuerCall(i.opts.Issuer, "introspection", err)
		return entry{}, fmt.Errorf("%w: too many introspection calls in flight: %w", extauthz.ErrIssuerUnavailable, err)
	}
	a, err := i.call(callCtx, raw)
	i.sem.Release(1)
	i.opts.Metrics.IssuerCall(i.opts.Issuer, "introspection", err)
	if err != nil {
		i.log.WarnContext(ctx, "introspection failed", "issuer", i.opts.Issuer, "token", short, "error", err)
		return entry{}, fmt.Errorf("%w: %w", extauthz.ErrIssuerUnavailable, err)
	}
	now := i.now()
	p, err := i.principal(a, now)
	if err != nil {
		i.log.DebugContext(ctx, "introspection refused token", "issuer", i.opts.Issuer, "token", short, "error", err)
		// Shared first: Revoke drops this replica's copies too.
		i.share(callCtx, key, entry{err: err}, now)
		return i.store(key, entry{err: err}, now), nil
	}
	e := entry{p: p, nbf: a.NotBefore}
	i.share(callCtx, key, e, now)
	return i.store(key, e, now), nil
}

// store caches e locally: an active answer until its exp, at most
// MaxCacheTTL; a refusal for NegativeTTL. It returns e with until set.
func (i *Introspector) store(key string, e entry, now time.Time) entry {
	if e.err != nil {
		e.until = now.Add(i.opts.NegativeTTL)
		i.neg.Set(key, e, i.opts.NegativeTTL)
		return e
	}
	ttl := min(e.p.ExpiresAt.Sub(now), i.opts.MaxCacheTTL)
	e.until = now.Add(ttl)
	i.cache.Set(key, e, ttl)
	return e
}

// fromShared looks key up in the shared cache and stores what it finds
// locally. Redis unavailable, a miss and an unreadable value are all a miss.
func (i *Introspector) fromShared(ctx context.Context, key string) (entry, bool) {
	if i.opts.Shared == nil {
		return entry{}, false
	}
	b, ok, err := i.opts.Shared.Get(ctx, sharedcache.KindIntrospection, i.opts.Issuer, key)
	if err != nil || !ok {
		return entry{}, false
	}
	se, err := sharedcache.DecodeIntrospection(b)
	if err != nil || (se.Refusal == nil && se.Principal == nil) {
		i.log.WarnContext(ctx, "shared cache: ignoring an unreadable introspection entry", "issuer", i.opts.Issuer, "token", key[:12])
		return entry{}, false
	}
	now := i.now()
	if se.Refusal == nil && (se.Principal.Issuer != i.opts.Issuer || !now.Before(se.Principal.ExpiresAt)) {
		return entry{}, false
	}
	return i.store(key, entry{p: se.Principal, nbf: se.NotBefore, err: se.Refusal}, now), true
}

// share tells the shared cache what the issuer answered. An inactive token
// is revoked first, so every replica drops its copy; then the refusal is
// shared for NegativeTTL, an active answer until its exp, at most
// MaxCacheTTL: the same lifetimes as the local cache's.
func (i *Introspector) share(ctx context.Context, key string, e entry, now time.Time) {
	sh := i.opts.Shared
	if sh == nil {
		return
	}
	until := now.Add(i.opts.NegativeTTL)
	if e.err == nil {
		until = now.Add(min(e.p.ExpiresAt.Sub(now), i.opts.MaxCacheTTL))
	}
	if errors.Is(e.err, extauthz.ErrTokenInactive) {
		if err := sh.Revoke(ctx, i.opts.Issuer, key, now.Add(i.opts.MaxCacheTTL)); err != nil {
			i.log.WarnContext(ctx, "shared cache: revocation not published", "issuer", i.opts.Issuer, "token", key[:12], "error", err)
		}
	}
	b, err := sharedcache.EncodeIntrospection(sharedcache.IntrospectionEntry{Principal: e.p, NotBefore: e.nbf, Refusal: e.err})
	if err != nil {
		return // a refusal without a wire code stays local
	}
	_ = sh.Set(ctx, sharedcache.KindIntrospection, i.opts.Issuer, key, b, until)
}

// call posts the token and parses the answer.
func (i *Introspector) call(ctx context.Context, raw string) (*Answer, error) {
	endpoint := i.opts.Endpoint
	if i.opts.EndpointFunc != nil {
		var err error
		if endpoint, err = i.opts.EndpointFunc(ctx); err != nil {
			return nil, fmt.Errorf("introspection endpoint unknown: %w", err)
		}
	}
	form := url.Values{"token": {raw}, "token_type_hint": {"access_token"}}
	ans, err := clientauth.Post(ctx, i.opts.Client, i.opts.Auth, endpoint, form, i.accept, MaxBodyBytes)
	if errors.Is(err, clientauth.ErrTooLarge) {
		return nil, fmt.Errorf("%w: %w", ErrMalformedAnswer, err)
	}
	if err != nil {
		return nil, fmt.Errorf("introspection endpoint: %w", err)
	}
	if ans.Status != http.StatusOK {
		return nil, fmt.Errorf("introspection endpoint answered HTTP %d", ans.Status)
	}
	body, mt := ans.Body, ans.MediaType
	if i.opts.JWTResponse {
		if mt != MediaTypeJWT {
			return nil, fmt.Errorf("%w: media type %q, want %s", ErrMalformedAnswer, mt, MediaTypeJWT)
		}
		return i.parseJWTAnswer(ctx, strings.TrimSpace(string(body)))
	}
	if mt != MediaTypeJSON && !strings.HasSuffix(mt, "+json") {
		return nil, fmt.Errorf("%w: media type %q, want %s", ErrMalformedAnswer, mt, MediaTypeJSON)
	}
	return ParseAnswer(body, i.opts.ScopeClaims)
}

// acceptedTokenTypes lists the token_type values of an access token usable
// as a bearer token; "" is an answer without token_type. DPoP- or otherwise
// bound tokens are refused: tokentailor cannot check their proof.
var acceptedTokenTypes = map[string]bool{
	"": true, "bearer": true, "access_token": true, "urn:ietf:params:oauth:token-type:access_token": true,
}

// principal checks an answer and builds the principal it describes.
func (i *Introspector) principal(a *Answer, now time.Time) (*extauthz.Principal, error) {
	if !a.Active {
		return nil, fmt.Errorf("%w: introspection says inactive", extauthz.ErrTokenInactive)
	}
	if !acceptedTokenTypes[strings.ToLower(a.TokenType)] || (a.TokenUse != "" && a.TokenUse != "access_token") {
		return nil, fmt.Errorf("%w: not a bearer access token", extauthz.ErrInvalidToken)
	}
	iss := a.Issuer
	if iss == "" {
		iss = i.opts.Issuer
	} else if iss != i.opts.Issuer {
		return nil, fmt.Errorf("%w: introspection answer names another issuer", extauthz.ErrUnknownIssuer)
	}
	if err := i.checkAudience(a); err != nil {
		return nil, err
	}
	exp, unknown := a.ExpiresAt, a.ExpiresAt.IsZero()
	if unknown {
		// No exp: vouch for the token only as long as the answer is cached,
		// so anything derived from it (minted tokens) lives no longer.
		exp = now.Add(i.opts.MaxCacheTTL)
	}
	if !now.Add(-i.opts.Leeway).Before(exp) {
		return nil, fmt.Errorf("%w: introspected token expired", extauthz.ErrTokenExpired)
	}
	sub, err := i.subject(a)
	if err != nil {
		return nil, err
	}
	return &extauthz.Principal{
		Issuer:        iss,
		Subject:       sub,
		ClientID:      a.ClientID,
		Audience:      a.Audience,
		Scopes:        a.Scopes,
		Claims:        a.Claims,
		ExpiresAt:     exp,
		ExpiryUnknown: unknown,
		IssuedAt:      a.IssuedAt,
	}, nil
}

// checkAudience applies Options.Audiences to the answer's aud: required by
// default; with AudienceByServer, checked only when the answer has one.
func (i *Introspector) checkAudience(a *Answer) error {
	if len(i.opts.Audiences) == 0 || (i.opts.AudienceByServer && len(a.Audience) == 0) {
		return nil
	}
	if !slices.ContainsFunc(a.Audience, func(s string) bool { return slices.Contains(i.opts.Audiences, s) }) {
		if len(a.Audience) == 0 {
			return fmt.Errorf("%w: introspection answer has no aud (set introspection.audience: server if the server checks it)", extauthz.ErrWrongAudience)
		}
		return fmt.Errorf("%w: introspected token is not for this audience", extauthz.ErrWrongAudience)
	}
	return nil
}

// subject reads the subject from the first of Options.SubjectClaims that
// holds a non-empty string.
func (i *Introspector) subject(a *Answer) (string, error) {
	for _, name := range i.opts.SubjectClaims {
		if v, ok := a.Claims[name].(string); ok && v != "" {
			return v, nil
		}
	}
	return "", fmt.Errorf("%w: introspection answer names no subject (looked at %s)", extauthz.ErrInvalidToken, strings.Join(i.opts.SubjectClaims, ", "))
}
