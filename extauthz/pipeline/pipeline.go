// Package pipeline is the request path of tokentailor, compiled from one
// config: Build turns the config into a Pipeline (issuers' authenticators,
// the minter, and each route's own authenticators and token source), and
// Decide walks one request down it:
//
//	Request → route → Credential → Principal → Grant → Token → CheckResponse
//
// A Pipeline is immutable once built, so a reload builds a new one and swaps
// it in whole (extauthz/server); a request never sees half of a new config.
// Nothing per request dispatches on a mode or re-reads config: every route
// knows its own stages from Build on.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/config"
	"github.com/tokentailor/tokentailor/extauthz/credential"
	"github.com/tokentailor/tokentailor/extauthz/discovery"
	"github.com/tokentailor/tokentailor/extauthz/dpop"
	"github.com/tokentailor/tokentailor/extauthz/jwks"
	"github.com/tokentailor/tokentailor/extauthz/metrics"
	"github.com/tokentailor/tokentailor/extauthz/mint"
	"github.com/tokentailor/tokentailor/extauthz/policy"
	"github.com/tokentailor/tokentailor/extauthz/response"
	"github.com/tokentailor/tokentailor/extauthz/secevent"
	"github.com/tokentailor/tokentailor/extauthz/sharedcache"
	"github.com/tokentailor/tokentailor/extauthz/txntoken"
)

// Pipeline is one immutable generation of the request path, built from one
// config by Build.
type Pipeline struct {
	// Config is the config the pipeline was built from.
	Config *config.Config
	// Credential finds the client's token.
	Credential credential.Options
	// Policy selects and authorizes routes.
	Policy *policy.Engine
	// Minter signs internal tokens and publishes their JWKS; nil when no key is configured.
	Minter *mint.Minter
	// Response builds CheckResponses, header hygiene included.
	Response *response.Builder
	// Now is the clock.
	Now func() time.Time
	// RevocationPush receives revocations pushed as SETs (RFC 8417/8935) by
	// issuers with revocation_push; nil when none is configured.
	RevocationPush *secevent.Receiver

	// wallClock is set when Now is time.Now (Env.Now was nil).
	wallClock bool
	routes    map[*policy.Route]*route
	keySets   []usedKeySet
	resolvers []usedResolver
	// endpoints are the endpoints that come from issuers' metadata, for
	// CheckEndpoints.
	endpoints []metadataEndpoint
	closers   []func()
}

// Close stops what the pipeline registered with process-wide services (its
// introspector's revocation handler on Env.Shared). Checks still running on
// it finish normally; call it once the pipeline is replaced.
func (p *Pipeline) Close() {
	for _, c := range p.closers {
		c()
	}
}

// usedKeySet is a key set a pipeline uses, with the options it was built
// with (KeySets.Keep puts them back after a refused reload).
type usedKeySet struct {
	set  *jwks.Set
	opts jwks.Options
}

// usedResolver is a metadata resolver a pipeline uses, with its client.
type usedResolver struct {
	r      *discovery.Resolver
	client *http.Client
}

// metadataEndpoint is an endpoint a pipeline takes from an issuer's metadata.
type metadataEndpoint struct {
	field string // the config field left empty, e.g. issuers[0].token_endpoint
	get   func(ctx context.Context) (string, error)
}

// ErrNotReady is returned by Ready while an issuer's keys or metadata were
// never fetched.
var ErrNotReady = errors.New("not ready")

// Ready reports whether the pipeline can serve: every issuer's keys were
// fetched at least once, and so was every metadata document endpoints come
// from.
func (p *Pipeline) Ready() error {
	for _, u := range p.keySets {
		if !u.set.Ready() {
			return fmt.Errorf("%w: keys of issuer %s not fetched yet", ErrNotReady, u.opts.Issuer)
		}
	}
	for _, u := range p.resolvers {
		if !u.r.Ready() {
			return fmt.Errorf("%w: metadata of an issuer not fetched yet", ErrNotReady)
		}
	}
	return nil
}

// CheckEndpoints fetches the metadata that endpoints come from and reports,
// each naming its config field, the endpoints it cannot give: the document
// is unreachable or does not name the endpoint (then every request that
// needs it is a 503). Serving does not need it (requests find the endpoints
// themselves); check-config does.
func (p *Pipeline) CheckEndpoints(ctx context.Context) error {
	var errs []error
	for _, e := range p.endpoints {
		if _, err := e.get(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", e.field, err))
		}
	}
	return errors.Join(errs...)
}

// JWKS returns the published keys of minted tokens.
func (p *Pipeline) JWKS() []byte {
	if p.Minter == nil {
		return []byte(`{"keys":[]}`)
	}
	return p.Minter.JWKS()
}

// Env is what a Pipeline is built with besides its config.
type Env struct {
	// Logger receives logs; nil discards them.
	Logger *slog.Logger
	// Metrics receives metrics; may be nil.
	Metrics *metrics.Metrics
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// KeySets shares issuer key sets and metadata across pipelines so a
	// reload neither refetches nor loses them; nil makes a private one.
	KeySets *KeySets
	// Transport is the HTTP transport toward issuers; nil means a default one.
	Transport http.RoundTripper
	// ClientCredentialsMissing, when set, lets the build go on when an
	// issuer client's secret or private key cannot be loaded: it is told
	// which (field, e.g. "issuers[0].client", and why; never the secret) and
	// calls that need the client (introspection, exchange) fail with 503.
	// For explain, which decides JWT routes without them; serve leaves it
	// nil and refuses such a config.
	ClientCredentialsMissing func(field string, err error)
	// Minter, when set, is used instead of keys from the config (dev mode).
	Minter *mint.Minter
	// DPoPReplay remembers accepted DPoP proofs across pipelines, so a reload
	// does not reopen their replay window; nil makes a private one per
	// pipeline (sized by dpop.replay_entries). A Redis-backed one shares it
	// between replicas.
	DPoPReplay dpop.ReplayCache
	// Shared is the cache shared by the replicas (shared_cache), built once
	// per process and kept across reloads; nil when not configured.
	Shared *sharedcache.Cache
	// EncodeAnswer, when set, encodes an answer kept for a cached principal
	// once, as the gRPC server would (Outcome.Wire); nil encodes none.
	EncodeAnswer func(*authv3.CheckResponse) ([]byte, error)
}

// Outcome is the result of Decide: the complete answer for Envoy plus what
// logs, metrics and explain need (never the token itself).
type Outcome struct {
	// Response is the answer for Envoy, complete: nothing is added later.
	Response *authv3.CheckResponse
	// Wire is Response as encoded once by Env.EncodeAnswer when the answer
	// was kept for a cached principal (response.Builder.AllowFor), for the
	// gRPC server to send as it is; nil otherwise. Never modified.
	Wire []byte
	// Err is the deny reason, nil when allowed.
	Err error
	// Denial is Err as classified by the response table (status, reason
	// label); the zero value when allowed.
	Denial response.Denial
	// Route is the matched route's name, "" when none matched.
	Route string
	// TokenHash is the short hash of the client's token
	// (extauthz.ShortTokenHash), the only form of it logs may show.
	TokenHash string
	// Subject is the principal's sub, when one was established.
	Subject string
	// Mode is how the upstream token was produced.
	Mode extauthz.Mode
	// Principal is the validated principal, for explain and tracing. It
	// may be shared with other Checks (a warm answer's, whose Credential is
	// without the token and from the Check that kept it): it must not be
	// modified.
	Principal *extauthz.Principal
	// Grant is what the upstream gets, for explain. It may be shared with
	// other Checks of the same token and route: it must not be modified.
	Grant *extauthz.Grant
	// Token is the upstream token, for explain.
	Token extauthz.Token
	// Decisions are the matched route's decision counters, resolved when
	// the pipeline was built; nil when no route matched or without metrics.
	Decisions *metrics.RouteDecisions
}

// RequestTime returns the instant a request that arrived at start is judged
// at (extauthz.Request.Time): start itself when the pipeline's clock is the
// wall clock, so that a Check reads the clock once for its decisions and
// the start of its duration metric alike; otherwise the injected clock.
func (p *Pipeline) RequestTime(start time.Time) time.Time {
	if p.wallClock {
		return start
	}
	return p.Now()
}

// Decide runs the request path for one request. It never returns an allow
// without a validated credential unless the route is public (invariant 1).
func (p *Pipeline) Decide(ctx context.Context, r *extauthz.Request) Outcome {
	var out Outcome
	now := r.Time
	if now.IsZero() {
		now = p.Now()
	}
	deny := func(err error) Outcome {
		out.Err = err
		out.Response, out.Denial = p.Response.Deny(err)
		return out
	}
	pr, err := p.Policy.Select(r)
	if err != nil {
		return deny(err)
	}
	rt := p.routes[pr]
	out.Route, out.Decisions = pr.Name, rt.decisions
	if pr.Public {
		// Public routes never look at the credential: a Basic header or a
		// stale token must not turn a public page into a 401.
		out.Mode = extauthz.ModeNone
		out.Response = p.Response.AllowPublic(pr.Grant())
		return out
	}
	creds := &p.Credential
	if rt.credential != nil {
		creds = rt.credential
	}
	cred, err := creds.Extract(r)
	if err != nil {
		return deny(err)
	}
	cred.PresentedAt = now
	out.TokenHash = cred.ShortTokenHash()
	a, validated := rt.warm.find(ctx, rt, cred, now)
	if a != nil {
		// The token's warm answer (warm.go): what depends on the request
		// runs again, the rest was judged when it was kept.
		out.Principal, out.Subject = a.principal, a.principal.Subject
		if err := rt.binding.check(ctx, r, cred, a.principal); err != nil {
			return deny(err)
		}
		rt.warm.minted(ctx)
		out.Grant, out.Mode, out.Token = a.grant, a.grant.Mode, a.tok
		out.Response, out.Wire = p.Response.AllowKept(a.answer, a.principal, a.grant, a.tok, cred, r.Headers)
		return out
	}
	principal, err := rt.authenticate(ctx, cred)
	if err != nil {
		return deny(err)
	}
	if !principal.Fresh {
		creds.Remember(cred) // it came back: its next Check need not hash it
	}
	out.Principal = principal
	out.Subject = principal.Subject
	if err := rt.binding.check(ctx, r, cred, principal); err != nil {
		return deny(err)
	}
	grant, err := pr.Authorize(principal, now)
	if err != nil {
		return deny(err)
	}
	out.Grant = grant
	out.Mode = grant.Mode
	if rt.withRequest {
		// A copy goes into the context, so that r itself stays where the
		// caller put it (on its stack: one allocation fewer per Check).
		rc := *r
		ctx = txntoken.WithRequest(ctx, &rc)
	}
	tok, err := rt.source.Token(ctx, principal, grant)
	if err != nil {
		return deny(err)
	}
	out.Token = tok
	if rt.keepAnswer {
		out.Response, out.Wire = p.Response.AllowFor(principal, grant, tok, cred, r.Headers)
		rt.warm.keep(rt, p.Response, cred, principal, grant, tok, now, validated)
	} else {
		out.Response = p.Response.Allow(grant, tok, cred, r.Headers)
	}
	return out
}
