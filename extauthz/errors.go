package extauthz

import (
	"errors"
	"strings"
)

// Deny reasons. Every stage wraps one of these with %w; extauthz/response maps
// each to an HTTP status, a WWW-Authenticate challenge, a log reason and a
// metric label. Match them with errors.Is, never on strings.
var (
	// ErrNoCredential: the request carries no token on a route that needs one (401).
	ErrNoCredential = errors.New("no credential")
	// ErrMalformedCredential: the credential header is unusable (two values, wrong scheme, too large) (401).
	ErrMalformedCredential = errors.New("malformed credential")
	// ErrInvalidToken: the token fails parsing or signature verification (401).
	ErrInvalidToken = errors.New("invalid token")
	// ErrTokenExpired: exp is in the past (401).
	ErrTokenExpired = errors.New("token expired")
	// ErrTokenNotYetValid: nbf or iat is in the future (401).
	ErrTokenNotYetValid = errors.New("token not yet valid")
	// ErrUnknownIssuer: iss names no configured issuer (401).
	ErrUnknownIssuer = errors.New("unknown issuer")
	// ErrWrongAudience: aud holds none of the issuer's accepted audiences (401).
	ErrWrongAudience = errors.New("wrong audience")
	// ErrUnknownKey: no key of the issuer matches the token's kid (401).
	ErrUnknownKey = errors.New("unknown signing key")
	// ErrTokenInactive: introspection says the token is not active (401).
	ErrTokenInactive = errors.New("token inactive")
	// ErrExpiresTooSoon: the token's remaining lifetime is below the route's minimum (401).
	ErrExpiresTooSoon = errors.New("token expires too soon")
	// ErrInsufficientScope: a required scope is missing (403).
	ErrInsufficientScope = errors.New("insufficient scope")
	// ErrClaimMismatch: a required claim value is missing (403).
	ErrClaimMismatch = errors.New("required claim missing")
	// ErrNoRoute: no route matches and there is no default route (403).
	ErrNoRoute = errors.New("no route")
	// ErrAmbiguousRequest: when tokentailor matches routes itself, the request's
	// method, host or path has a form that servers read in different ways
	// (dot segments, encoded separators, doubled slashes, ...), so no route can
	// be chosen safely (400).
	ErrAmbiguousRequest = errors.New("ambiguous request")
	// ErrRequestTooLarge: the CheckRequest is larger than
	// listen.max_request_bytes; its headers are too large to judge (431).
	ErrRequestTooLarge = errors.New("request too large")
	// ErrExchangeRefused: the token endpoint refused the exchange (403).
	ErrExchangeRefused = errors.New("token exchange refused")
	// ErrNoEmbeddedToken: the token holds no embedded token for the route (403).
	ErrNoEmbeddedToken = errors.New("no embedded token for audience")
	// ErrKeysUnavailable: an issuer's keys could not be had at all (503).
	ErrKeysUnavailable = errors.New("issuer keys unavailable")
	// ErrIssuerUnavailable: the authorization server failed or timed out (503).
	ErrIssuerUnavailable = errors.New("authorization server unavailable")
	// ErrInternal: tokentailor itself failed, e.g. no signing key (503).
	ErrInternal = errors.New("internal error")
)

// ScopeError is a 403 insufficient_scope denial naming the scopes needed.
type ScopeError struct {
	// Required lists the scopes the route needs.
	Required []string
}

// Error names the required scopes.
func (e *ScopeError) Error() string {
	return "insufficient scope: requires " + strings.Join(e.Required, " ")
}

// Unwrap lets errors.Is(err, ErrInsufficientScope) match.
func (e *ScopeError) Unwrap() error { return ErrInsufficientScope }
