// Package exchange gets upstream tokens from the authorization server's
// token endpoint by OAuth 2.0 Token Exchange (RFC 8693): the route mode
// "exchange". It implements extauthz.TokenSource, like extauthz/mint.
//
// # The request (RFC 8693 §2.1)
//
//	grant_type=urn:ietf:params:oauth:grant-type:token-exchange
//	subject_token=<the incoming token>
//	subject_token_type=<ExchangeSpec.SubjectTokenType>  (config's default: access_token)
//	audience=<Grant.Audience>            (when set)
//	resource=<ExchangeSpec.Resource>     (when set, RFC 8707)
//	scope=<Grant.Scopes, space-separated> (when any)
//	requested_token_type=<ExchangeSpec.RequestedTokenType>  (config's default: access_token)
//	actor_token, actor_token_type        (when ExchangeSpec.Actor)
//
// plus the client authentication of Options.Auth.
//
// Config's default subject_token_type is urn:ietf:params:oauth:token-type:access_token
// for every credential, JWT or opaque: what tokentailor holds is an access
// token whatever its format, and servers verify the subject token by its
// declared type (zitadel answers 400 invalid_request "subject_token is
// invalid" to a JWT access token sent as ...:jwt). A route sets
// ExchangeSpec.SubjectTokenType for a server that wants another type.
//
// Config's default requested_token_type is urn:ietf:params:oauth:token-type:access_token,
// not ...:jwt. RFC 8693 §3 uses "jwt" for a JWT of any purpose, while what
// the upstream needs is an access token for its audience; a JWT access token
// (RFC 9068) is such an access token, and servers that issue JWT access
// tokens issue them for this type (several servers do not support requesting
// "jwt" at all). A route that must receive a JWT asks for ...:jwt
// explicitly; the issued token must then have the JWT compact form.
//
// # Outcomes
//
// OAuth errors from the endpoint (invalid_target, invalid_scope,
// invalid_grant, unauthorized_client, invalid_request, …) and issued tokens
// that cannot be forwarded as bearer tokens deny with extauthz.ErrExchangeRefused
// (403); the server's error and error_description are logged, bounded,
// reduced to the characters RFC 6749 allows, and with any part of the
// subject token cut out. invalid_client means tokentailor's own credentials are wrong: that
// is extauthz.ErrIssuerUnavailable (503), like network errors, timeouts, 5xx
// and malformed answers. Nothing is returned that was not a 200 answer.
//
// # Lifetime and caching
//
// The issued token's lifetime is the authorization server's decision;
// Token.ExpiresAt reports min(now+expires_in, the issued JWT's exp, the
// incoming token's exp), so the token is never cached or reported as valid
// beyond the incoming one. Tokens are cached under a hash of (incoming token,
// route, audience, scopes, resource, requested type, actor), bounded in
// number, and renewed once 90% of their lifetime has passed. Concurrent
// requests for the same entry share one call.
package exchange

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/sync/singleflight"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/cache"
	"github.com/tokentailor/tokentailor/extauthz/clientauth"
	"github.com/tokentailor/tokentailor/extauthz/metrics"
	"github.com/tokentailor/tokentailor/extauthz/sharedcache"
)

// RFC 8693 identifiers.
const (
	GrantType            = "urn:ietf:params:oauth:grant-type:token-exchange"
	TokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token"
	TokenTypeJWT         = "urn:ietf:params:oauth:token-type:jwt"
)

const (
	// MaxBodyBytes bounds an answer; larger ones are refused. It is a limit
	// of the protocol's shape, not a setting.
	MaxBodyBytes = 64 << 10
	// renewFraction of a token's lifetime passes before it is renewed.
	renewFraction = 0.9
)

// Options configures an Exchanger. Issuer, Auth, one of TokenEndpoint and
// TokenEndpointFunc, Client, Timeout and CacheEntries are required: the
// values come already defaulted from config, and New refuses zero values
// rather than invent its own.
type Options struct {
	// Issuer names the issuer whose token endpoint this is; routes whose
	// ExchangeSpec.Issuer names another are refused. Also the metric label.
	Issuer string
	// TokenEndpoint is the token endpoint URL.
	TokenEndpoint string
	// TokenEndpointFunc, instead of TokenEndpoint, gives the endpoint at each
	// call, e.g. a discovery.Resolver's TokenEndpoint, so that an issuer whose
	// metadata cannot be fetched at start delays its own exchanges (503) and
	// nothing else. Its errors should wrap extauthz.ErrIssuerUnavailable.
	TokenEndpointFunc func(ctx context.Context) (string, error)
	// Auth authenticates tokentailor to the endpoint.
	Auth clientauth.Method
	// ActorToken returns tokentailor's own token, sent as actor_token for
	// routes with ExchangeSpec.Actor. Nil means an access token for
	// tokentailor's own client from the client credentials grant at
	// TokenEndpoint, cached until the last tenth of its life.
	ActorToken func(ctx context.Context) (string, error)
	// ActorTokenType is the actor_token_type; default TokenTypeAccessToken.
	ActorTokenType string
	// Client makes the calls.
	Client *http.Client
	// Timeout bounds one call.
	Timeout time.Duration
	// CacheEntries bounds the cache.
	CacheEntries int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Metrics counts calls and cache lookups; may be nil.
	Metrics *metrics.Metrics
	// Logger receives failures, never tokens; nil discards.
	Logger *slog.Logger
	// Shared, when set, is the cache shared by the replicas: looked up on a
	// local miss before the token endpoint is called, and told every token
	// obtained. nil: off.
	Shared *sharedcache.Cache
}

// Exchanger is an extauthz.TokenSource for ModeExchange.
type Exchanger struct {
	opts  Options
	cache *cache.Cache[entry]
	group singleflight.Group
	now   func() time.Time
	log   *slog.Logger
}

var _ extauthz.TokenSource = (*Exchanger)(nil)

type entry struct {
	tok     extauthz.Token
	renewAt time.Time
}

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

// validate refuses options a caller forgot to fill.
func (o *Options) validate() error {
	u, err := url.Parse(o.TokenEndpoint)
	switch {
	case o.Issuer == "":
		return errors.New("Issuer is required")
	case o.Auth == nil:
		return errors.New("Auth is required")
	case o.TokenEndpointFunc != nil && o.TokenEndpoint != "":
		return errors.New("TokenEndpoint and TokenEndpointFunc are exclusive")
	case o.TokenEndpointFunc == nil && (err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == ""):
		return fmt.Errorf("TokenEndpoint %q is not an http(s) URL", o.TokenEndpoint)
	case o.Client == nil:
		return errors.New("Client is required")
	case o.Timeout <= 0:
		return errors.New("Timeout must be positive")
	case o.CacheEntries <= 0:
		return errors.New("CacheEntries must be positive")
	}
	return nil
}

// Options returns the options the Exchanger was built with.
func (e *Exchanger) Options() Options { return e.opts }

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

// store caches tok locally until renewFraction of its remaining life has
// passed.
func (e *Exchanger) store(key string, tok extauthz.Token, now time.Time) {
	renew := time.Duration(float64(tok.ExpiresAt.Sub(now)) * renewFraction)
	e.cache.Set(key, entry{tok: tok, renewAt: now.Add(renew)}, renew)
}

// fromShared looks key up in the shared cache and stores a token it finds
// locally. Redis unavailable, a miss, an unreadable value and a token past
// its renewal point are all a miss.
func (e *Exchanger) fromShared(ctx context.Context, key string) (extauthz.Token, bool) {
	if e.opts.Shared == nil {
		return extauthz.Token{}, false
	}
	b, ok, err := e.opts.Shared.Get(ctx, sharedcache.KindExchange, e.opts.Issuer, key)
	if err != nil || !ok {
		return extauthz.Token{}, false
	}
	tok, err := sharedcache.DecodeToken(b)
	if err != nil {
		e.log.WarnContext(ctx, "shared cache: ignoring an unreadable exchanged token", "issuer", e.opts.Issuer)
		return extauthz.Token{}, false
	}
	now := e.now()
	if !now.Before(tok.ExpiresAt) {
		return extauthz.Token{}, false
	}
	e.store(key, tok, now)
	return tok, true
}

func unavailableOnly(err error) error {
	if errors.Is(err, extauthz.ErrIssuerUnavailable) {
		return err
	}
	return nil
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

// call posts form and parses the answer.
func (e *Exchanger) call(ctx context.Context, form url.Values, subject string) (*Response, error) {
	endpoint := e.opts.TokenEndpoint
	if e.opts.TokenEndpointFunc != nil {
		var err error
		if endpoint, err = e.opts.TokenEndpointFunc(ctx); err != nil {
			return nil, fmt.Errorf("%w: token endpoint unknown: %w", extauthz.ErrIssuerUnavailable, err)
		}
	}
	ans, err := clientauth.Post(ctx, e.opts.Client, e.opts.Auth, endpoint, form, "application/json", MaxBodyBytes)
	if err != nil {
		return nil, fmt.Errorf("%w: token endpoint: %w", extauthz.ErrIssuerUnavailable, err)
	}
	body, mt := ans.Body, ans.MediaType
	isJSON := mt == "application/json" || strings.HasSuffix(mt, "+json")
	if ans.Status != http.StatusOK {
		return nil, statusError(ans.Status, body, isJSON, subject)
	}
	if !isJSON {
		return nil, fmt.Errorf("%w: answer of media type %q", extauthz.ErrIssuerUnavailable, mt)
	}
	r, err := ParseResponse(body)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", extauthz.ErrIssuerUnavailable, err)
	}
	if !strings.EqualFold(r.TokenType, "bearer") && r.TokenType != "N_A" {
		return nil, fmt.Errorf("%w: issued token_type %q cannot be forwarded as a bearer token", extauthz.ErrExchangeRefused, r.TokenType)
	}
	return r, nil
}

// statusError maps a non-200 answer: an OAuth error (RFC 6749 §5.2) of a
// 4xx status is a refusal, except invalid_client (our own credentials);
// anything else is unavailability. The error names the server's error code
// and its error_description (see describe), so that the log says why.
func statusError(status int, body []byte, isJSON bool, subject string) error {
	var oe struct {
		Error       string `json:"error"`
		Description any    `json:"error_description"`
	}
	if status >= 400 && status < 500 && isJSON && json.Unmarshal(body, &oe) == nil && validErrorCode(oe.Error) {
		desc := describe(oe.Description, subject)
		if oe.Error == "invalid_client" {
			return fmt.Errorf("%w: token endpoint rejected tokentailor's client credentials (HTTP %d invalid_client%s)", extauthz.ErrIssuerUnavailable, status, desc)
		}
		return fmt.Errorf("%w: HTTP %d %s%s", extauthz.ErrExchangeRefused, status, oe.Error, desc)
	}
	return fmt.Errorf("%w: token endpoint answered HTTP %d", extauthz.ErrIssuerUnavailable, status)
}

// redactEcho replaces each run of token characters (RFC 6750 b64token) of
// at least minEchoRedact bytes that is part of subject by "[token]".
func redactEcho(d, subject string) string {
	if subject == "" {
		return d
	}
	var b strings.Builder
	for i := 0; i < len(d); {
		j := i
		for j < len(d) && isTokenChar(d[j]) {
			j++
		}
		if j == i {
			b.WriteByte(d[i])
			i++
			continue
		}
		if run := d[i:j]; len(run) >= minEchoRedact && strings.Contains(subject, run) {
			b.WriteString("[token]")
		} else {
			b.WriteString(run)
		}
		i = j
	}
	return b.String()
}

func isTokenChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~+/=", c) >= 0
}

// maxDescription bounds the error_description kept for the log.
const maxDescription = 200

// minEchoRedact is the length from which a word of the description that is
// part of the subject token is cut out.
const minEchoRedact = 8

// describe renders an error_description for the log as `: "text"`, or ""
// when there is none. Only RFC 6749's characters (%x20-21 / %x23-5B /
// %x5D-7E) are kept, others become '?'; it is cut at maxDescription bytes;
// and any word that is part of the subject token (a server echoing it) is
// replaced by "[token]", so the token never reaches the log.
func describe(v any, subject string) string {
	d, ok := v.(string)
	if !ok || d == "" {
		return ""
	}
	if len(d) > 4*maxDescription {
		d = d[:4*maxDescription]
	}
	clean := []byte(d)
	for i, c := range clean {
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			clean[i] = '?'
		}
	}
	d = redactEcho(string(clean), subject)
	if len(d) > maxDescription {
		d = d[:maxDescription] + "…"
	}
	return fmt.Sprintf(": %q", d)
}

// validErrorCode accepts RFC 6749 error codes (%x20-21 / %x23-5B / %x5D-7E),
// short enough to be logged.
func validErrorCode(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
