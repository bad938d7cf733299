package txntoken

import (
	"context"
	"fmt"
	"strings"

	"github.com/tokentailor/tokentailor/extauthz"
)

// requestKey carries the request a Txn-Token is made for through
// extauthz.TokenSource's context.
type requestKey struct{}

// WithRequest returns ctx carrying r, for Source: a Txn-Token holds request
// context (client IP, request id, calling workload) that a Principal and a
// Grant do not.
func WithRequest(ctx context.Context, r *extauthz.Request) context.Context {
	return context.WithValue(ctx, requestKey{}, r)
}

// Source is the extauthz.TokenSource of upstream mode txn_token: a Txn-Token
// minted from the validated principal, the route's grant and the request
// (WithRequest).
type Source struct {
	// Minter signs the tokens.
	Minter *Minter
	// RequestIDHeader, lower case, names the header kept as txn; "" for none.
	RequestIDHeader string
}

var _ extauthz.TokenSource = (*Source)(nil)

// Token implements extauthz.TokenSource: sub from p, scope = g.Scopes
// (route ∩ incoming), exp ≤ p.ExpiresAt, req_wl the caller's SPIFFE ID when
// its certificate names one, rctx the client IP and how the token came.
func (s *Source) Token(ctx context.Context, p *extauthz.Principal, g *extauthz.Grant) (extauthz.Token, error) {
	r, _ := ctx.Value(requestKey{}).(*extauthz.Request)
	if p == nil || g == nil || r == nil {
		return extauthz.Token{}, fmt.Errorf("%w: Txn-Token without principal, grant or request", extauthz.ErrInternal)
	}
	in := Input{Subject: p.Subject, Scopes: g.Scopes, ClientIP: r.SourceAddress, AuthMethod: authMethod(p)}
	if !p.ExpiryUnknown {
		in.NotAfter = p.ExpiresAt
	}
	if s.RequestIDHeader != "" && r.HeaderCount[s.RequestIDHeader] <= 1 {
		in.RequestID = r.Headers[s.RequestIDHeader]
	}
	if strings.HasPrefix(r.SourcePrincipal, "spiffe://") {
		in.Workload = r.SourcePrincipal
	}
	return s.Minter.Mint(ctx, in)
}

// authMethod names how the access token was presented: "dpop", "mtls" (a
// certificate-bound token, checked before), or "bearer".
func authMethod(p *extauthz.Principal) string {
	if strings.EqualFold(p.Credential.Scheme, "DPoP") {
		return "dpop"
	}
	if cnf, ok := p.Claims["cnf"].(map[string]any); ok && cnf["x5t#S256"] != nil {
		return "mtls"
	}
	return "bearer"
}
