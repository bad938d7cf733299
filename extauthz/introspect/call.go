package introspect

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/clientauth"
)

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
	e = i.store(key, e, now) // the caches hold it as not fresh
	e.fresh = true
	return e, nil
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
