package txntoken

import (
	"context"
	"fmt"
	"strings"
	"time"

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
// for the validated principal, the route's grant and the request
// (WithRequest), minted by Minter or, when Service is set, obtained from an
// external TTS. A principal that came from a Txn-Token (a route that
// accepts txn_token) gets a replacement narrowed to the grant instead.
type Source struct {
	// Minter signs the tokens; nil when Service is set.
	Minter *Minter
	// Service, when set, is the external TTS asked instead of minting.
	Service *Service
	// RequestIDHeader, lower case, names the header kept as txn; "" for none.
	RequestIDHeader string
	// Context is sent to the TTS as request_details.tctx (with Service;
	// Minter has its own copy).
	Context map[string]any
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
	var workload string
	if strings.HasPrefix(r.SourcePrincipal, "spiffe://") {
		workload = r.SourcePrincipal
	}
	if IsTxnToken(p) {
		return s.replace(ctx, p, g, workload)
	}
	if s.Service != nil {
		return s.obtain(ctx, p, g, r)
	}
	in := Input{Subject: p.Subject, Scopes: g.Scopes, ClientIP: r.SourceAddress, AuthMethod: authMethod(p), Workload: workload}
	if !p.ExpiryUnknown {
		in.NotAfter = p.ExpiresAt
	}
	if s.RequestIDHeader != "" && r.HeaderCount[s.RequestIDHeader] <= 1 {
		in.RequestID = r.Headers[s.RequestIDHeader]
	}
	return s.Minter.Mint(ctx, in)
}

// obtain asks the external TTS for a Txn-Token for the access token of p
// (draft §Txn-Token Request): request_context holds the client IP and how
// the token came, request_details the method, path and configured tctx.
func (s *Source) obtain(ctx context.Context, p *extauthz.Principal, g *extauthz.Grant, r *extauthz.Request) (extauthz.Token, error) {
	rc := map[string]any{"authn": authMethod(p)}
	if r.SourceAddress != "" {
		rc["req_ip"] = r.SourceAddress
	}
	rd := map[string]any{"method": r.Method, "path": r.Path}
	if len(s.Context) > 0 {
		rd["tctx"] = s.Context
	}
	var notAfter time.Time
	if !p.ExpiryUnknown {
		notAfter = p.ExpiresAt
	}
	tok, err := s.Service.Obtain(ctx, Request{SubjectToken: p.Credential.Raw, Scopes: g.Scopes, RequestContext: rc, RequestDetails: rd}, notAfter)
	if err != nil {
		return extauthz.Token{}, err
	}
	return extauthz.Token{Value: tok.Raw, ExpiresAt: tok.ExpiresAt}, nil
}

// replace narrows the verified incoming Txn-Token of p to g.Scopes (draft
// §"Txn-Token as a subject_token"): locally with Minter.Narrow, or at the
// TTS with the Txn-Token as subject_token, whose answer must keep txn and
// sub (the TTS "MUST NOT modify txn, sub, and aud"; aud is checked by the
// verifier) and stay within the scopes asked for and the old token's life.
func (s *Source) replace(ctx context.Context, p *extauthz.Principal, g *extauthz.Grant, workload string) (extauthz.Token, error) {
	t, err := FromPrincipal(p)
	if err != nil {
		return extauthz.Token{}, err
	}
	if s.Service == nil {
		return s.Minter.Narrow(ctx, t, g.Scopes, workload)
	}
	kept := narrow(t.Scopes, g.Scopes)
	if len(kept) == 0 {
		return extauthz.Token{}, fmt.Errorf("%w: %w", ErrNoScope, &extauthz.ScopeError{Required: g.Scopes})
	}
	if !s.Service.verifier.opts.Now().Before(t.ExpiresAt) {
		return extauthz.Token{}, ErrOutlives
	}
	nt, err := s.Service.Obtain(ctx, Request{SubjectToken: t.Raw, SubjectTokenType: TokenType, Scopes: kept}, t.ExpiresAt)
	if err != nil {
		return extauthz.Token{}, err
	}
	if nt.Txn != t.Txn || nt.Subject != t.Subject {
		return extauthz.Token{}, fmt.Errorf("%w: the TTS's replacement Txn-Token changed txn or sub", extauthz.ErrExchangeRefused)
	}
	return extauthz.Token{Value: nt.Raw, ExpiresAt: nt.ExpiresAt}, nil
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
