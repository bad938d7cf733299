// Package server runs tokentailor: the Envoy ext_authz gRPC service, the
// gRPC health service, the HTTP admin listener (JWKS, health, readiness,
// metrics), live reload and graceful shutdown.
//
// Check walks one request down the path of extauthz:
//
//	CheckRequest → Request → route → Credential → Principal → Grant → Token → CheckResponse
//
// Every stage reads one immutable Pipeline, built from one config and swapped
// atomically on reload, so a Check never sees half of a new config.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/logsample"
	"github.com/tokentailor/tokentailor/extauthz/metrics"
	"github.com/tokentailor/tokentailor/extauthz/request"
	"github.com/tokentailor/tokentailor/extauthz/response"
)

// Authz implements envoy.service.auth.v3.Authorization on the current Pipeline.
type Authz struct {
	authv3.UnimplementedAuthorizationServer

	pipe    atomic.Pointer[Pipeline]
	log     *slog.Logger
	metrics *metrics.Metrics
	denyLog *logsample.Sampler // thins deny lines per reason; metrics count them all
}

var _ authv3.AuthorizationServer = (*Authz)(nil)

// DenyLinesPerSecond is how many deny lines per reason are logged each
// second; the rest are summed up in one "denials suppressed" line.
const DenyLinesPerSecond = 10

// NewAuthz returns an Authz serving p. log and m may be nil.
func NewAuthz(p *Pipeline, log *slog.Logger, m *metrics.Metrics) *Authz {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Authz{log: log, metrics: m, denyLog: logsample.New(DenyLinesPerSecond, time.Second, time.Now)}
	a.pipe.Store(p)
	return a
}

// Pipeline returns the pipeline in use.
func (a *Authz) Pipeline() *Pipeline { return a.pipe.Load() }

// Swap makes p the pipeline for every later Check and returns the old one.
// Checks already running finish on the old one.
func (a *Authz) Swap(p *Pipeline) *Pipeline { return a.pipe.Swap(p) }

// Check answers one Envoy ext_authz request. Every outcome of a well-formed
// request is a CheckResponse; a gRPC error is returned only for a request
// that carries no HTTP attributes at all, because Envoy treats gRPC errors
// by failure_mode_allow.
func (a *Authz) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	start := time.Now()
	p := a.pipe.Load()
	r, err := request.FromCheck(req)
	if err != nil {
		a.metrics.Decision("error", "bad_request", "", time.Since(start))
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	out := p.Decide(ctx, &r)
	a.record(&out, time.Since(start))
	return out.Response, nil
}

func (a *Authz) record(out *Outcome, took time.Duration) {
	if out.Err == nil {
		a.metrics.Decision("allow", "ok", out.Route, took)
		if a.log.Enabled(context.Background(), slog.LevelDebug) {
			a.log.Debug("allow", "route", out.Route, "token", out.TokenHash, "sub", out.Subject, "mode", string(out.Mode), "took", took)
		}
		return
	}
	o := response.Classify(out.Err)
	a.metrics.Decision("deny", o.Reason, out.Route, took)
	level := slog.LevelInfo
	if o.Status >= 500 {
		level = slog.LevelWarn
	}
	ok, suppressed := a.denyLog.Admit(o.Reason)
	if suppressed > 0 {
		a.log.Log(context.Background(), level, "denials suppressed", "reason", o.Reason, "suppressed", suppressed)
	}
	if !ok {
		return
	}
	a.log.Log(context.Background(), level, "deny", "route", out.Route, "status", o.Status, "reason", o.Reason,
		"token", out.TokenHash, "error", out.Err.Error(), "took", took)
}

// Outcome is the result of Decide: the answer for Envoy plus what logs and
// metrics need (never the token itself).
type Outcome struct {
	// Response is the answer for Envoy.
	Response *authv3.CheckResponse
	// Err is the deny reason, nil when allowed.
	Err error
	// Route is the matched route's name, "" when none matched.
	Route string
	// TokenHash is the short hash of the client's token.
	TokenHash string
	// Subject is the principal's sub, when one was established.
	Subject string
	// Mode is how the upstream token was produced.
	Mode extauthz.Mode
	// Principal is the validated principal, for explain.
	Principal *extauthz.Principal
	// Grant is what the upstream gets, for explain.
	Grant *extauthz.Grant
	// Token is the upstream token, for explain.
	Token extauthz.Token
}

// Decide runs the policy path for one request. It never returns an allow
// without a validated credential unless the route is public.
func (p *Pipeline) Decide(ctx context.Context, r *extauthz.Request) Outcome {
	var out Outcome
	deny := func(err error) Outcome {
		out.Err = err
		out.Response = p.Response.Deny(err)
		return out
	}
	route, err := p.Policy.Select(r)
	if err != nil {
		return deny(err)
	}
	out.Route = route.Name
	if route.Public {
		// Public routes never look at the credential: a Basic header or a
		// stale token must not turn a public page into a 401.
		out.Mode = extauthz.ModeNone
		out.Response = p.Response.AllowPublic(p.publicStrip(route.Grant()))
		return out
	}
	cred, err := p.Credential.Extract(r)
	if err != nil {
		return deny(err)
	}
	out.TokenHash = cred.Short()
	if cred.Kind == extauthz.KindNone {
		return deny(extauthz.ErrNoCredential)
	}
	authn := p.JWT
	if cred.Kind == extauthz.KindOpaque {
		authn = p.Opaque
	}
	if authn == nil {
		return deny(fmt.Errorf("%w: no issuer accepts %s tokens", extauthz.ErrInvalidToken, cred.Kind))
	}
	principal, err := authn.Authenticate(ctx, cred)
	if err != nil {
		return deny(err)
	}
	out.Principal = principal
	out.Subject = principal.Subject
	grant, err := route.Authorize(principal, p.Now())
	if err != nil {
		return deny(err)
	}
	out.Grant = grant
	out.Mode = grant.Mode
	src := p.Sources[grant.Mode]
	if src == nil {
		return deny(fmt.Errorf("%w: mode %s is not available", extauthz.ErrInternal, grant.Mode))
	}
	tok, err := src.Token(ctx, principal, grant)
	if err != nil {
		return deny(err)
	}
	if !tok.ExpiresAt.IsZero() && !principal.ExpiresAt.IsZero() && tok.ExpiresAt.After(principal.ExpiresAt) && grant.Mode != extauthz.ModeExchange {
		// Invariant 2: never hand on a token that outlives the incoming one.
		return deny(fmt.Errorf("%w: upstream token would outlive the incoming one", extauthz.ErrInternal))
	}
	out.Token = tok
	out.Response = p.Response.Allow(grant, tok, cred)
	p.removeOtherInternalHeaders(out.Response, grant, r)
	return out
}

// removeOtherInternalHeaders removes client-sent headers named like the
// internal token header of another route (DESIGN invariant 3): a sidecar's
// app may trust that header whichever route the request took.
func (p *Pipeline) removeOtherInternalHeaders(resp *authv3.CheckResponse, g *extauthz.Grant, r *extauthz.Request) {
	ok := resp.GetOkResponse()
	if ok == nil || len(p.internalHeaders) < 2 {
		return
	}
	for _, h := range p.internalHeaders {
		if h == g.Header {
			continue
		}
		if _, sent := r.Headers[h]; sent {
			ok.HeadersToRemove = append(ok.HeadersToRemove, h)
		}
	}
}

// publicStrip lists the headers removed on a public route: every internal
// token header (a client must never forge one) and the credential header
// when the route strips it.
func (p *Pipeline) publicStrip(g *extauthz.Grant) []string {
	hs := p.internalHeaders
	if h := p.Credential.Header; g.StripCredential && h != "" && !slices.Contains(hs, h) {
		return append(hs[:len(hs):len(hs)], h)
	}
	return hs
}

// errNotReady is returned by readiness checks.
var errNotReady = errors.New("not ready")
