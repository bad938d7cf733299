package pipeline

import (
	"context"
	"fmt"

	"github.com/tokentailor/tokentailor/extauthz"
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
	// binding checks sender-constrained tokens (RFC 8705, RFC 9449).
	binding binding
	// withRequest is set when source reads the request (txn_token): Decide
	// then puts the request in source's context.
	withRequest bool
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
// provide; a route takes what its mode needs.
type stages struct {
	jwt, opaque extauthz.Authenticator
	mint        extauthz.TokenSource
	embedded    extauthz.TokenSource
	exchange    upstream.Exchange
	txn         extauthz.TokenSource
}

// source returns the token source of mode m, or why these stages cannot
// serve it. This is the one place that knows what each mode needs. Every
// source but exchange is held to the outlive check (invariant 2; an
// exchanged token's lifetime is the authorization server's decision).
func (s *stages) source(m extauthz.Mode) (extauthz.TokenSource, string) {
	switch m {
	case extauthz.ModeForward:
		return upstream.NotOutliving(upstream.Forward{}), ""
	case extauthz.ModeMint:
		if s.mint == nil {
			return nil, "needs mint.keys"
		}
		return upstream.NotOutliving(s.mint), ""
	case extauthz.ModeEmbedded:
		if s.embedded == nil {
			return nil, "needs an issuer that verifies JWTs"
		}
		return upstream.NotOutliving(s.embedded), ""
	case extauthz.ModeTxnToken:
		if s.txn == nil {
			return nil, "needs mint.keys and txn_token"
		}
		return upstream.NotOutliving(s.txn), ""
	case extauthz.ModeExchange:
		if len(s.exchange) == 0 {
			return nil, "needs an issuer with a client and a token endpoint"
		}
		return s.exchange, ""
	}
	return nil, "is not a mode"
}

// Authenticate validates cred as route pr (one of p.Policy's routes) would
// in Decide: a stage on its own, for benchmarks and tools.
func (p *Pipeline) Authenticate(ctx context.Context, pr *policy.Route, cred extauthz.Credential) (*extauthz.Principal, error) {
	rt := p.routes[pr]
	if rt == nil {
		return nil, fmt.Errorf("%w: route not of this pipeline", extauthz.ErrInternal)
	}
	return rt.authenticate(ctx, cred)
}
