package introspect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"time"

	"golang.org/x/sync/semaphore"
	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/cache"
	"github.com/tokentailor/tokentailor/extauthz/sharedcache"
)

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
	p.Fresh = e.fresh
	return &p, nil
}
