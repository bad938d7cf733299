package txntoken

import (
	"context"
	"crypto"
	"errors"
	"fmt"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokentailor/tokentailor/extauthz"
)

// Authenticator is the extauthz.Authenticator of a route that accepts a
// Txn-Token (config accept: txn_token): the credential is the Txn-Token
// header's value, checked by Verifier (draft §Txn-Token Validation).
type Authenticator struct {
	// Verifier checks the token.
	Verifier *Verifier
}

var _ extauthz.Authenticator = (*Authenticator)(nil)

// Authenticate verifies cred as a Txn-Token and returns its principal: sub,
// scope, aud (the trust domain), iat, exp, iss when present, and every claim
// (txn, tctx, rctx, req_wl kept for a replacement, see FromPrincipal).
func (a *Authenticator) Authenticate(ctx context.Context, cred extauthz.Credential) (*extauthz.Principal, error) {
	t, err := a.Verifier.Verify(ctx, cred.Raw)
	if err != nil {
		return nil, err
	}
	// Fresh: no cache knows a Txn-Token (each is verified anew, and most
	// pass one hop once), so nothing downstream keeps what it derives from
	// it (the minted-token cache, the credential's memory of hashes).
	return &extauthz.Principal{
		Issuer: t.Issuer, Subject: t.Subject, Audience: []string{a.Verifier.opts.TrustDomain}, Scopes: t.Scopes,
		Claims: t.Claims, ExpiresAt: t.ExpiresAt, IssuedAt: t.IssuedAt, Credential: cred, Fresh: true,
	}, nil
}

// IsTxnToken reports whether p came from a verified Txn-Token (Authenticator):
// its claims carry txn and req_wl, which no access token path sets together
// with a Txn-Token credential.
func IsTxnToken(p *extauthz.Principal) bool {
	_, txn := p.Claims["txn"].(string)
	_, wl := p.Claims["req_wl"].(string)
	return txn && wl && p.Credential.Header == HeaderName
}

// FromPrincipal reads the Txn-Token back from a principal made by
// Authenticator, for a replacement.
func FromPrincipal(p *extauthz.Principal) (*Token, error) {
	if !IsTxnToken(p) {
		return nil, fmt.Errorf("%w: the principal is not a Txn-Token's", extauthz.ErrInternal)
	}
	return tokenOf(p.Credential.Raw, jwt.MapClaims(p.Claims))
}

// Keys tries each KeySource in turn (tokentailor's own keys first, then a
// TTS's JWKS): the first that has the key wins. When none has it, the last
// error is returned, so an unreachable JWKS still reads as 503, not 401.
type Keys []KeySource

var _ KeySource = Keys(nil)

// Key implements KeySource.
func (ks Keys) Key(ctx context.Context, kid, alg string) (crypto.PublicKey, error) {
	err := fmt.Errorf("%w: no key source", extauthz.ErrUnknownKey)
	unavailable := error(nil)
	for _, s := range ks {
		var k crypto.PublicKey
		if k, err = s.Key(ctx, kid, alg); err == nil {
			return k, nil
		}
		if errors.Is(err, extauthz.ErrKeysUnavailable) {
			unavailable = err
		}
	}
	if unavailable != nil {
		return nil, unavailable
	}
	return nil, err
}

// Options returns the options v was built with, defaults applied.
func (v *Verifier) Options() VerifierOptions { return v.opts }

// Options returns the options m was built with, defaults applied.
func (m *Minter) Options() MinterOptions { return m.opts }

// TrustDomain is the audience of s's requests.
func (s *Service) TrustDomain() string { return s.trustDomain }

// Poster is what s sends requests with.
func (s *Service) Poster() Poster { return s.poster }

// Verifier checks what s's TTS answers.
func (s *Service) Verifier() *Verifier { return s.verifier }
