package secevent

import (
	"errors"
	"net/http"
)

// Why a SET is refused. Each maps to one RFC 8935 §2.4 error code (Code).
var (
	// ErrMalformed: not a compact JWS with SET claims, a claim missing or
	// of the wrong type (invalid_request).
	ErrMalformed = errors.New("secevent: malformed SET")
	// ErrType: the typ header is not secevent+jwt (invalid_request).
	ErrType = errors.New("secevent: typ is not secevent+jwt")
	// ErrStale: iat older than the transmitter's MaxAge or in the future,
	// or exp passed (invalid_request).
	ErrStale = errors.New("secevent: SET too old or not yet valid")
	// ErrEvent: a token-revoked event this receiver cannot read (invalid_request).
	ErrEvent = errors.New("secevent: unreadable token-revoked event")
	// ErrIssuer: iss is no configured transmitter (invalid_issuer).
	ErrIssuer = errors.New("secevent: unknown SET issuer")
	// ErrAudience: aud holds none of the configured audiences (invalid_audience).
	ErrAudience = errors.New("secevent: SET not for this receiver")
	// ErrKey: the alg is not accepted, or the issuer publishes no key for
	// the kid (invalid_key).
	ErrKey = errors.New("secevent: signing key not accepted")
	// ErrSignature: the signature does not verify (authentication_failed).
	ErrSignature = errors.New("secevent: signature does not verify")
	// ErrRevocation: the SET is valid but its revocation could not be
	// spread (Redis down); answered 503 so the transmitter retries.
	ErrRevocation = errors.New("secevent: revocation not spread")
)

// codes maps each sentinel to its RFC 8935 error code.
var codes = []struct {
	err  error
	code string
}{
	{ErrMalformed, "invalid_request"},
	{ErrType, "invalid_request"},
	{ErrStale, "invalid_request"},
	{ErrEvent, "invalid_request"},
	{ErrIssuer, "invalid_issuer"},
	{ErrAudience, "invalid_audience"},
	{ErrKey, "invalid_key"},
	{ErrSignature, "authentication_failed"},
}

// Code returns the RFC 8935 error code and HTTP status for err: 400 with a
// code for a refused SET, 503 without one for ErrRevocation, 400
// invalid_request for anything else.
func Code(err error) (code string, status int) {
	if errors.Is(err, ErrRevocation) {
		return "", http.StatusServiceUnavailable
	}
	for _, c := range codes {
		if errors.Is(err, c.err) {
			return c.code, http.StatusBadRequest
		}
	}
	return "invalid_request", http.StatusBadRequest
}
