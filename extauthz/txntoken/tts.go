package txntoken

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/exchange"
)

// Request is a Txn-Token Request to an external Transaction Token Service
// (draft §9.1), an RFC 8693 token exchange.
type Request struct {
	// SubjectToken is the incoming access token (required).
	SubjectToken string
	// SubjectTokenType is its URN; "" means
	// urn:ietf:params:oauth:token-type:access_token.
	SubjectTokenType string
	// Scopes is the purpose of the transaction, space-joined into scope (required).
	Scopes []string
	// RequestContext becomes request_context (JSON), e.g. req_ip and authn.
	RequestContext map[string]any
	// RequestDetails becomes request_details (JSON), e.g. method and path.
	RequestDetails map[string]any
}

// Poster sends a token endpoint request; *exchange.Exchanger implements it
// (its client authentication, timeout, body bound and error mapping).
type Poster interface {
	Post(ctx context.Context, form url.Values, subject string) (*exchange.Response, error)
}

var _ Poster = (*exchange.Exchanger)(nil)

// Service asks an external TTS for Txn-Tokens and verifies what it answers.
type Service struct {
	trustDomain string
	poster      Poster
	verifier    *Verifier
}

// NewService returns a Service for trustDomain that posts with p and checks
// every issued Txn-Token with v (the TTS's JWKS): an answer is never passed
// on unverified.
func NewService(trustDomain string, p Poster, v *Verifier) (*Service, error) {
	if trustDomain == "" || p == nil || v == nil {
		return nil, errors.New("txntoken: service needs a trust domain, a poster and a verifier")
	}
	return &Service{trustDomain: trustDomain, poster: p, verifier: v}, nil
}

// Form builds the body of a Txn-Token Request (draft §9.1).
func Form(trustDomain string, r Request) (url.Values, error) {
	if r.SubjectToken == "" || len(r.Scopes) == 0 {
		return nil, fmt.Errorf("%w: a Txn-Token request needs a subject token and a scope", extauthz.ErrInternal)
	}
	stt := r.SubjectTokenType
	if stt == "" {
		stt = exchange.TokenTypeAccessToken
	}
	f := url.Values{
		"grant_type":           {exchange.GrantType},
		"requested_token_type": {TokenType},
		"audience":             {trustDomain},
		"scope":                {strings.Join(r.Scopes, " ")},
		"subject_token":        {r.SubjectToken},
		"subject_token_type":   {stt},
	}
	for name, v := range map[string]map[string]any{"request_context": r.RequestContext, "request_details": r.RequestDetails} {
		if len(v) == 0 {
			continue
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", extauthz.ErrInternal, name, err)
		}
		f.Set(name, string(b))
	}
	return f, nil
}

// Obtain sends r to the TTS and returns the verified Txn-Token. notAfter is
// the incoming token's exp: a Txn-Token that outlives it is refused
// (ErrServiceOutlives), as are a Txn-Token with a scope not requested (never
// wider than asked), answers whose issued_token_type is not a Txn-Token
// or whose token fails verification (extauthz.ErrExchangeRefused). Transport
// and server failures are extauthz.ErrIssuerUnavailable (503).
func (s *Service) Obtain(ctx context.Context, r Request, notAfter time.Time) (*Token, error) {
	form, err := Form(s.trustDomain, r)
	if err != nil {
		return nil, err
	}
	resp, err := s.poster.Post(ctx, form, r.SubjectToken)
	if err != nil {
		return nil, err
	}
	if resp.IssuedTokenType != TokenType {
		return nil, fmt.Errorf("%w: the TTS issued %q, not a Txn-Token", extauthz.ErrExchangeRefused, resp.IssuedTokenType)
	}
	tok, err := s.verifier.Verify(ctx, resp.AccessToken)
	switch {
	case errors.Is(err, extauthz.ErrKeysUnavailable):
		return nil, err // the TTS's JWKS cannot be had: 503, as for any issuer
	case err != nil:
		// The TTS's fault, not the client's: never a 401 that would tell
		// the client to get a new token.
		return nil, fmt.Errorf("%w: the TTS's Txn-Token does not verify (%v)", extauthz.ErrExchangeRefused, err)
	}
	if len(narrow(tok.Scopes, r.Scopes)) != len(tok.Scopes) {
		return nil, fmt.Errorf("%w: the TTS's Txn-Token has scopes that were not requested", extauthz.ErrExchangeRefused)
	}
	if !notAfter.IsZero() && tok.ExpiresAt.After(notAfter) {
		return nil, ErrServiceOutlives
	}
	return tok, nil
}
