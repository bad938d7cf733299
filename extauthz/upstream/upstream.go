// Package upstream produces the token an upstream receives for an allowed
// request: the token sources of the modes forward, exchange and embedded
// (mint is extauthz/mint's Minter itself), and the one rule every source but
// exchange is held to: the upstream token never outlives the incoming one
// (README "Security model", invariant 2).
//
// A pipeline picks one source per route when it is built (see
// extauthz/pipeline), so nothing here dispatches on a mode per request.
package upstream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tokentailor/tokentailor/extauthz"
)

// Forward hands the validated incoming token on unchanged.
type Forward struct{}

var _ extauthz.TokenSource = Forward{}

// Token returns the incoming token and its expiry.
func (Forward) Token(_ context.Context, p *extauthz.Principal, _ *extauthz.Grant) (extauthz.Token, error) {
	return extauthz.Token{Value: p.Credential.Raw, ExpiresAt: p.ExpiresAt}, nil
}

// Exchange sends each exchange to the token endpoint of the issuer the route
// names (exchange.issuer), else to that of the incoming token's issuer.
type Exchange map[string]extauthz.TokenSource

var _ extauthz.TokenSource = Exchange(nil)

// Token exchanges the incoming token at the chosen issuer. An issuer without
// a token endpoint refuses the exchange (403).
func (r Exchange) Token(ctx context.Context, p *extauthz.Principal, g *extauthz.Grant) (extauthz.Token, error) {
	iss := p.Issuer
	if g.Exchange != nil && g.Exchange.Issuer != "" {
		iss = g.Exchange.Issuer
	}
	ex := r[iss]
	if ex == nil {
		return extauthz.Token{}, fmt.Errorf("%w: issuer %q has no token endpoint for exchange", extauthz.ErrExchangeRefused, iss)
	}
	return ex.Token(ctx, p, g)
}

// AudienceVerifier verifies a JWT as a token in its own right, for the given
// audiences; jwtverify.Verifier implements it.
type AudienceVerifier interface {
	VerifyForAudience(ctx context.Context, raw string, audiences []string) (*extauthz.Principal, error)
}

// Embedded picks the JWT for the route's audience out of a claim of the
// incoming token and verifies it as a token in its own right.
type Embedded struct {
	// Verifier verifies the embedded token.
	Verifier AudienceVerifier
}

var _ extauthz.TokenSource = (*Embedded)(nil)

// Token returns the embedded token for g.Audience. A missing, invalid,
// wider-scoped or longer-lived embedded token is refused (403), and so is one
// issued to another subject, or by another issuer than the carrier's unless
// the route lists it in g.EmbeddedIssuers: the client's token is valid, what
// it carries for this route is not. Without the subject tie, a token for
// mallory could carry one for victim and hand the upstream victim's rights.
func (s *Embedded) Token(ctx context.Context, p *extauthz.Principal, g *extauthz.Grant) (extauthz.Token, error) {
	raw, ok := embeddedFor(p.Claims[g.EmbeddedClaim], g.Audience)
	if !ok {
		return extauthz.Token{}, fmt.Errorf("%w %q", extauthz.ErrNoEmbeddedToken, g.Audience)
	}
	inner, err := s.Verifier.VerifyForAudience(ctx, raw, []string{g.Audience})
	if err != nil {
		if errors.Is(err, extauthz.ErrKeysUnavailable) || errors.Is(err, extauthz.ErrIssuerUnavailable) {
			return extauthz.Token{}, err // not the token's fault: 503
		}
		// The client's token is valid; what it carries for this route is not: 403.
		return extauthz.Token{}, fmt.Errorf("%w: embedded token for %q: %v", extauthz.ErrNoEmbeddedToken, g.Audience, err)
	}
	if inner.Subject != p.Subject {
		return extauthz.Token{}, fmt.Errorf("%w: embedded token for %q is for another subject than the incoming token", extauthz.ErrNoEmbeddedToken, g.Audience)
	}
	if inner.Issuer != p.Issuer && !slices.Contains(g.EmbeddedIssuers, inner.Issuer) {
		return extauthz.Token{}, fmt.Errorf("%w: embedded token for %q is from another issuer than the incoming token", extauthz.ErrNoEmbeddedToken, g.Audience)
	}
	for _, sc := range inner.Scopes {
		// Invariant 2: the upstream's scopes are within incoming ∩ route.
		if !slices.Contains(g.Scopes, sc) {
			return extauthz.Token{}, fmt.Errorf("%w: embedded token for %q carries scope %q beyond the route's scopes the client holds", extauthz.ErrNoEmbeddedToken, g.Audience, sc)
		}
	}
	if outlives(inner.ExpiresAt, p) {
		// The embedded token outlives its carrier: refuse it (403) rather
		// than hand the upstream a longer-lived token than the client had.
		return extauthz.Token{}, fmt.Errorf("%w: embedded token outlives the incoming token", extauthz.ErrNoEmbeddedToken)
	}
	return extauthz.Token{Value: raw, ExpiresAt: inner.ExpiresAt}, nil
}

// embeddedFor finds the token for aud in v: a map from audience to JWT, or a
// list of objects {"aud": …, "token": …}.
func embeddedFor(v any, aud string) (string, bool) {
	switch x := v.(type) {
	case map[string]any:
		s, ok := x[aud].(string)
		return s, ok && s != ""
	case []any:
		for _, e := range x {
			m, ok := e.(map[string]any)
			if !ok {
				continue
			}
			if a, _ := m["aud"].(string); a == aud {
				s, ok := m["token"].(string)
				return s, ok && s != ""
			}
		}
	}
	return "", false
}

// NotOutliving wraps src so that a token expiring after the incoming one is
// refused with extauthz.ErrInternal (503): a source that produced one is
// broken, and the client is not to blame (invariant 2). Every mode but
// exchange is wrapped: an exchanged token's lifetime is the authorization
// server's decision, and tokentailor cannot shorten a token it did not sign;
// the exchanger caches and reports it no longer than the incoming token. The
// README's invariant 2 states this exception and why.
func NotOutliving(src extauthz.TokenSource) extauthz.TokenSource {
	return notOutliving{src}
}

type notOutliving struct{ src extauthz.TokenSource }

// Unwrap returns the source held to the rule, for tests and tools.
func (n notOutliving) Unwrap() extauthz.TokenSource { return n.src }

func (n notOutliving) Token(ctx context.Context, p *extauthz.Principal, g *extauthz.Grant) (extauthz.Token, error) {
	tok, err := n.src.Token(ctx, p, g)
	if err != nil {
		return tok, err
	}
	if outlives(tok.ExpiresAt, p) {
		return extauthz.Token{}, fmt.Errorf("%w: upstream token would outlive the incoming one", extauthz.ErrInternal)
	}
	return tok, nil
}

// outlives reports whether a token expiring at exp outlives the incoming
// token of p. A zero time on either side means "no expiry known" and never
// outlives.
func outlives(exp time.Time, p *extauthz.Principal) bool {
	return !exp.IsZero() && !p.ExpiresAt.IsZero() && exp.After(p.ExpiresAt)
}
