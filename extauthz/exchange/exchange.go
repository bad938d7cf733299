package exchange

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/sync/singleflight"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/cache"
	"github.com/tokentailor/tokentailor/extauthz/sharedcache"
)

const (
	// MaxBodyBytes bounds an answer; larger ones are refused. It is a limit
	// of the protocol's shape, not a setting.
	MaxBodyBytes = 64 << 10
	// renewFraction of a token's lifetime passes before it is renewed.
	renewFraction = 0.9
)

// Exchanger is an extauthz.TokenSource for ModeExchange.
type Exchanger struct {
	opts  Options
	cache *cache.Cache[entry]
	group singleflight.Group
	now   func() time.Time
	log   *slog.Logger
}

var _ extauthz.TokenSource = (*Exchanger)(nil)

// New validates opts and returns an Exchanger.
func New(opts Options) (*Exchanger, error) {
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("exchange: %w", err)
	}
	if opts.ActorTokenType == "" {
		opts.ActorTokenType = TokenTypeAccessToken
	}
	e := &Exchanger{opts: opts, now: opts.Now, log: opts.Logger}
	e.cache = cache.New[entry]("exchange", opts.CacheEntries, opts.Metrics)
	if e.now == nil {
		e.now = time.Now
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.opts.ActorToken == nil {
		a := &actorSource{e: e}
		e.opts.ActorToken = a.token
	}
	return e, nil
}

// request is one exchange, resolved from a principal and a grant.
type request struct {
	form url.Values
	key  string
	jwt  bool // the route requires a JWT
}

// Token exchanges p's credential for a token for g's audience and scopes.
// Errors wrap extauthz.ErrExchangeRefused (403), ErrIssuerUnavailable (503),
// ErrTokenExpired or ErrInternal (misconfigured route).
func (e *Exchanger) Token(ctx context.Context, p *extauthz.Principal, g *extauthz.Grant) (extauthz.Token, error) {
	if p == nil || g == nil {
		return extauthz.Token{}, fmt.Errorf("%w: exchange without principal or grant", extauthz.ErrInternal)
	}
	now := e.now()
	if !p.ExpiresAt.IsZero() && !now.Before(p.ExpiresAt) {
		return extauthz.Token{}, fmt.Errorf("%w: incoming token expired before exchange", extauthz.ErrTokenExpired)
	}
	req, err := e.resolve(p, g)
	if err != nil {
		return extauthz.Token{}, err
	}
	if c, ok := e.cache.Lookup(ctx, req.key); ok && now.Before(c.renewAt) {
		return c.tok, nil
	}
	actor := g.Exchange != nil && g.Exchange.Actor
	ch := e.group.DoChan(req.key, func() (any, error) {
		if c, ok := e.cache.Get(req.key); ok && e.now().Before(c.renewAt) {
			return c.tok, nil
		}
		if tok, ok := e.fromShared(ctx, req.key); ok {
			return tok, nil
		}
		// Shared by concurrent callers: detached from the first one's
		// cancellation, bounded by Timeout.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.opts.Timeout)
		defer cancel()
		return e.exchange(cctx, req, p, actor, p.Credential.ShortTokenHash(), g.Route)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return extauthz.Token{}, r.Err
		}
		return r.Val.(extauthz.Token), nil
	case <-ctx.Done():
		return extauthz.Token{}, fmt.Errorf("%w: waiting for token exchange: %w", extauthz.ErrIssuerUnavailable, ctx.Err())
	}
}

// resolve builds the RFC 8693 form (without actor token and client
// authentication) and the cache key.
func (e *Exchanger) resolve(p *extauthz.Principal, g *extauthz.Grant) (request, error) {
	spec := extauthz.ExchangeSpec{}
	if g.Exchange != nil {
		spec = *g.Exchange
	}
	if spec.Issuer != "" && spec.Issuer != e.opts.Issuer {
		return request{}, fmt.Errorf("%w: route %q exchanges at issuer %q, not %q", extauthz.ErrInternal, g.Route, spec.Issuer, e.opts.Issuer)
	}
	if spec.Actor && e.opts.ActorToken == nil {
		return request{}, fmt.Errorf("%w: route %q wants an actor token but none is configured", extauthz.ErrInternal, g.Route)
	}
	if (p.Credential.Kind != extauthz.KindJWT && p.Credential.Kind != extauthz.KindOpaque) || p.Credential.Raw == "" {
		return request{}, fmt.Errorf("%w: nothing to exchange", extauthz.ErrNoCredential)
	}
	subjectType := spec.SubjectTokenType
	if subjectType == "" {
		return request{}, fmt.Errorf("%w: route %q names no subject_token_type", extauthz.ErrInternal, g.Route)
	}
	requested := spec.RequestedTokenType
	if requested == "" {
		return request{}, fmt.Errorf("%w: route %q names no requested_token_type", extauthz.ErrInternal, g.Route)
	}
	form := url.Values{
		"grant_type":           {GrantType},
		"subject_token":        {p.Credential.Raw},
		"subject_token_type":   {subjectType},
		"requested_token_type": {requested},
	}
	if g.Audience != "" {
		form.Set("audience", g.Audience)
	}
	if spec.Resource != "" {
		form.Set("resource", spec.Resource)
	}
	scope := strings.Join(g.Scopes, " ")
	if scope != "" {
		form.Set("scope", scope)
	}
	key := extauthz.TokenHash(strings.Join([]string{
		p.Credential.TokenHash(), g.Route, g.Audience, spec.Resource, scope, subjectType, requested, fmt.Sprint(spec.Actor),
	}, "\x00"))
	return request{form: form, key: key, jwt: requested == TokenTypeJWT}, nil
}

// exchange makes one call and caches the token it yields.
func (e *Exchanger) exchange(ctx context.Context, req request, p *extauthz.Principal, actor bool, short, route string) (extauthz.Token, error) {
	form := url.Values{}
	for k, v := range req.form {
		form[k] = v
	}
	if actor {
		at, err := e.opts.ActorToken(ctx)
		if err != nil || at == "" {
			e.log.WarnContext(ctx, "no actor token for exchange", "issuer", e.opts.Issuer, "route", route, "error", err)
			return extauthz.Token{}, fmt.Errorf("%w: actor token unavailable: %v", extauthz.ErrIssuerUnavailable, err)
		}
		form.Set("actor_token", at)
		form.Set("actor_token_type", e.opts.ActorTokenType)
	}
	resp, err := e.call(ctx, form, p.Credential.Raw)
	e.opts.Metrics.IssuerCall(e.opts.Issuer, "token", unavailableOnly(err))
	if err != nil {
		level := slog.LevelWarn
		if errors.Is(err, extauthz.ErrExchangeRefused) {
			level = slog.LevelInfo
		}
		e.log.Log(ctx, level, "token exchange failed", "issuer", e.opts.Issuer, "route", route, "token", short, "error", err)
		return extauthz.Token{}, err
	}
	if req.jwt && (resp.IssuedTokenType != "" && resp.IssuedTokenType != TokenTypeJWT || !looksLikeJWT(resp.AccessToken)) {
		e.log.InfoContext(ctx, "token exchange issued no JWT", "issuer", e.opts.Issuer, "route", route, "token", short)
		return extauthz.Token{}, fmt.Errorf("%w: a JWT was requested, %q was issued", extauthz.ErrExchangeRefused, resp.IssuedTokenType)
	}
	now := e.now()
	exp := p.ExpiresAt
	if resp.ExpiresIn > 0 {
		exp = earliest(exp, now.Add(time.Duration(resp.ExpiresIn)*time.Second))
	}
	if jwtExp, ok := unverifiedExp(resp.AccessToken); ok {
		exp = earliest(exp, jwtExp)
	}
	tok := extauthz.Token{Value: resp.AccessToken, ExpiresAt: exp}
	if !exp.IsZero() {
		if !now.Before(exp) {
			return extauthz.Token{}, fmt.Errorf("%w: issued token already expired", extauthz.ErrExchangeRefused)
		}
		e.store(req.key, tok, now)
		if b, err := sharedcache.EncodeToken(tok); err == nil {
			_ = e.opts.Shared.Set(ctx, sharedcache.KindExchange, e.opts.Issuer, req.key, b, tok.ExpiresAt)
		}
	}
	return tok, nil
}

// earliest returns the earlier of two times, a zero time meaning "unknown".
func earliest(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero() || a.Before(b):
		return a
	default:
		return b
	}
}

func looksLikeJWT(s string) bool { return strings.Count(s, ".") == 2 }

// unverifiedExp reads the exp of an issued JWT, to shorten its cache life.
// The token came from the authorization server over an authenticated
// channel and is only ever made to live shorter by this, so no signature
// check is needed here; the upstream verifies it.
func unverifiedExp(tok string) (time.Time, bool) {
	if !looksLikeJWT(tok) {
		return time.Time{}, false
	}
	var c jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(tok, &c); err != nil || c.ExpiresAt == nil {
		return time.Time{}, false
	}
	return c.ExpiresAt.Time, true
}
