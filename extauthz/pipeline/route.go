package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/credential"
	"github.com/tokentailor/tokentailor/extauthz/metrics"
	"github.com/tokentailor/tokentailor/extauthz/policy"
	"github.com/tokentailor/tokentailor/extauthz/upstream"
)

// route is one route compiled for Decide: which authenticator takes each kind
// of credential and where the upstream token comes from.
type route struct {
	// jwt and opaque authenticate the credential kinds; nil when no issuer
	// accepts that kind.
	jwt, opaque extauthz.Authenticator
	// source produces the upstream token; nil for a public route.
	source extauthz.TokenSource
	// decisions counts the route's allowed Checks, resolved at build.
	decisions *metrics.RouteDecisions
	// binding checks sender-constrained tokens (RFC 8705, RFC 9449).
	binding binding
	// withRequest is set when source reads the request (txn_token): Decide
	// then puts the request in source's context.
	withRequest bool
	// keepAnswer lets a cached principal keep the route's answer
	// (response.Builder.AllowFor) so that its next Check builds none.
	keepAnswer bool
	// warm keeps and finds the route's warm answers (warm.go); nil when
	// they are not kept.
	warm *warmLane
	// credential finds the route's token when it is not the pipeline's
	// (accept: txn_token reads the Txn-Token header); nil otherwise.
	credential *credential.Options
}

// authenticate validates cred with the authenticator for its kind.
func (r *route) authenticate(ctx context.Context, cred extauthz.Credential) (*extauthz.Principal, error) {
	var authn extauthz.Authenticator
	switch cred.Kind {
	case extauthz.KindNone:
		return nil, extauthz.ErrNoCredential
	case extauthz.KindOpaque:
		authn = r.opaque
	default:
		authn = r.jwt
	}
	if authn == nil {
		return nil, fmt.Errorf("%w: no issuer accepts %s tokens", extauthz.ErrInvalidToken, cred.Kind)
	}
	return authn.Authenticate(ctx, cred)
}

// stages are the authenticators and token sources an issuer set and a minter
// provide; a route takes what its mode needs and the issuers it accepts.
type stages struct {
	// jwt verifies the JWTs of every issuer in jwtIssuers.
	jwt        extauthz.Authenticator
	jwtIssuers []string
	// introspectors are the issuers that introspect opaque tokens, in
	// config order.
	introspectors []introspecting
	mint          extauthz.TokenSource
	embedded      extauthz.TokenSource
	exchange      upstream.Exchange
	txn           extauthz.TokenSource
	// txnIn verifies incoming Txn-Tokens (routes with accept: txn_token).
	txnIn txnStages
}

// source returns the token source of mode m, or ErrNotBuilt when these
// stages lack it. What each mode needs is config's rule (config.Validate
// refuses a route whose mode cannot be served), not restated here. Every
// source but exchange is held to the outlive check (invariant 2; an
// exchanged token's lifetime is the authorization server's decision).
func (s *stages) source(m extauthz.Mode) (extauthz.TokenSource, error) {
	var src extauthz.TokenSource
	switch m {
	case extauthz.ModeForward:
		src = upstream.Forward{}
	case extauthz.ModeMint:
		src = s.mint
	case extauthz.ModeEmbedded:
		src = s.embedded
	case extauthz.ModeTxnToken:
		src = s.txn
	case extauthz.ModeExchange:
		if len(s.exchange) > 0 {
			return s.exchange, nil
		}
	}
	if src == nil {
		return nil, fmt.Errorf("%w: mode %s", ErrNotBuilt, m)
	}
	return upstream.NotOutliving(src), nil
}

// ErrNotBuilt fails a build whose route names a mode its stages cannot
// serve: config validation should have refused the config.
var ErrNotBuilt = errors.New("not built: config validation should have refused this")

// Authenticate validates cred as route pr (one of p.Policy's routes) would
// in Decide: a stage on its own, for benchmarks and tools.
func (p *Pipeline) Authenticate(ctx context.Context, pr *policy.Route, cred extauthz.Credential) (*extauthz.Principal, error) {
	rt := p.routes[pr]
	if rt == nil {
		return nil, fmt.Errorf("%w: route not of this pipeline", extauthz.ErrInternal)
	}
	return rt.authenticate(ctx, cred)
}

// introspecting is one issuer's introspector and the token prefix that
// selects it among several.
type introspecting struct {
	issuer string
	// prefix is the issuer's introspection.token_shape.prefix, "" for none.
	prefix string
	authn  extauthz.Authenticator
}

// authenticators compiles the authenticators of a route that accepts the
// issuers named in accepts (all configured issuers when empty). JWTs of any
// other issuer are refused as ErrUnknownIssuer after verification. An
// opaque token goes to exactly one introspecting issuer: the only one the
// route accepts, or among several the one whose token_shape.prefix it
// starts with; a route that accepts several introspecting issuers without
// distinct prefixes is refused here, so no token is ever sent to more than
// one server to find out whose it is.
func (s *stages) authenticators(accepts []string) (jwt, opaque extauthz.Authenticator, err error) {
	accepted := func(iss string) bool { return len(accepts) == 0 || slices.Contains(accepts, iss) }
	if s.jwt != nil {
		switch {
		case len(accepts) == 0:
			jwt = s.jwt
		case slices.ContainsFunc(s.jwtIssuers, accepted):
			jwt = &issuerGate{next: s.jwt, accepts: accepts}
		}
	}
	var in []introspecting
	for _, x := range s.introspectors {
		if accepted(x.issuer) {
			in = append(in, x)
		}
	}
	switch len(in) {
	case 0:
		return jwt, nil, nil
	case 1:
		return jwt, in[0].authn, nil
	}
	for i, a := range in {
		if a.prefix == "" {
			return nil, nil, fmt.Errorf("%w: issuers %s: several introspect opaque tokens and %q has no introspection.token_shape.prefix to tell its tokens apart: give each one a prefix, or list one of them in the route's issuers",
				ErrAmbiguousIntrospection, issuerList(in), a.issuer)
		}
		for _, b := range in[i+1:] {
			if strings.HasPrefix(a.prefix, b.prefix) || strings.HasPrefix(b.prefix, a.prefix) {
				return nil, nil, fmt.Errorf("%w: issuers %q and %q: token prefixes %q and %q overlap: a token could be either's",
					ErrAmbiguousIntrospection, a.issuer, b.issuer, a.prefix, b.prefix)
			}
		}
	}
	return jwt, byPrefix(in), nil
}

// ErrAmbiguousIntrospection fails a build whose route accepts several
// introspecting issuers it cannot tell apart by token prefix.
var ErrAmbiguousIntrospection = errors.New("cannot tell which issuer introspects a token")

func issuerList(in []introspecting) string {
	names := make([]string, len(in))
	for i, x := range in {
		names[i] = strconv.Quote(x.issuer)
	}
	return strings.Join(names, ", ")
}

// byPrefix sends an opaque token to the introspector whose prefix it starts
// with (prefixes do not overlap: authenticators checked).
type byPrefix []introspecting

// Authenticate introspects cred at the one issuer its prefix names. A token
// with no known prefix is no accepted issuer's: 401 without any call.
func (b byPrefix) Authenticate(ctx context.Context, cred extauthz.Credential) (*extauthz.Principal, error) {
	for _, x := range b {
		if strings.HasPrefix(cred.Raw, x.prefix) {
			return x.authn.Authenticate(ctx, cred)
		}
	}
	return nil, fmt.Errorf("%w: the token's prefix names no introspecting issuer of this route", extauthz.ErrUnknownIssuer)
}

// issuerGate refuses principals of issuers a route does not accept.
type issuerGate struct {
	next    extauthz.Authenticator
	accepts []string
}

// Authenticate verifies cred, then refuses it unless its issuer is accepted.
func (g *issuerGate) Authenticate(ctx context.Context, cred extauthz.Credential) (*extauthz.Principal, error) {
	p, err := g.next.Authenticate(ctx, cred)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(g.accepts, p.Issuer) {
		return nil, fmt.Errorf("%w: the route does not accept this issuer", extauthz.ErrUnknownIssuer)
	}
	return p, nil
}

var (
	_ extauthz.Authenticator = byPrefix(nil)
	_ extauthz.Authenticator = (*issuerGate)(nil)
)
