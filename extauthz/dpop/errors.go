package dpop

import (
	"errors"
	"fmt"

	"github.com/tokentailor/tokentailor/extauthz"
)

// Deny reasons. Every one wraps extauthz.ErrInvalidToken, so a renderer that
// does not know them yet still answers 401 invalid_token (a safe denial);
// Challenge renders the DPoP-specific WWW-Authenticate for each.
var (
	// ErrInvalidProof: the DPoP proof fails one of the checks of RFC 9449
	// §4.3; answered with error="invalid_dpop_proof" and the algs parameter.
	// Every ErrProof… below wraps it.
	ErrInvalidProof = fmt.Errorf("%w: invalid DPoP proof", extauthz.ErrInvalidToken)
	// ErrUseNonce: nonces are required and the proof carries none, or one
	// that is not a current nonce of this server; answered with
	// error="use_dpop_nonce" and a fresh DPoP-Nonce header (RFC 9449 §9).
	ErrUseNonce = fmt.Errorf("%w: DPoP nonce required", extauthz.ErrInvalidToken)
	// ErrKeyBinding: the proof is valid but its key is not the one the
	// access token is bound to (cnf.jkt), or the token is not bound at all
	// (RFC 9449 §7.1: error="invalid_token").
	ErrKeyBinding = fmt.Errorf("%w: invalid DPoP key binding", extauthz.ErrInvalidToken)
	// ErrBearerDowngrade: a DPoP-bound access token was presented with the
	// Bearer scheme (RFC 9449 §7.2: MUST be rejected).
	ErrBearerDowngrade = fmt.Errorf("%w: DPoP-bound token presented as Bearer", extauthz.ErrInvalidToken)
	// ErrDPoPRequired: the route or issuer requires DPoP and the token came
	// with the Bearer scheme.
	ErrDPoPRequired = fmt.Errorf("%w: DPoP required", extauthz.ErrInvalidToken)
	// ErrReplayStore: the replay cache could not record the proof (full of
	// live entries, or a shared store that failed). Not the client's fault,
	// but the proof cannot be accepted without it: extauthz.ErrInternal (503).
	ErrReplayStore = fmt.Errorf("%w: DPoP replay cache unavailable", extauthz.ErrInternal)
)

// One sentinel per check of RFC 9449 §4.3, each wrapping ErrInvalidProof, so
// tests and logs can tell which rule failed; clients only learn
// invalid_dpop_proof.
var (
	// ErrProofMissing: the DPoP scheme was used without a DPoP header (§7.1).
	ErrProofMissing = fmt.Errorf("%w: no DPoP header", ErrInvalidProof)
	// ErrProofMultiple: more than one DPoP header (§4.3 check 1).
	ErrProofMultiple = fmt.Errorf("%w: more than one DPoP header", ErrInvalidProof)
	// ErrProofMalformed: not a single well-formed compact JWS, or a claim of
	// the wrong JSON type (check 2), or larger than the size bound.
	ErrProofMalformed = fmt.Errorf("%w: malformed", ErrInvalidProof)
	// ErrProofMissingClaim: jti, htm, htu or iat absent, or ath absent when
	// presented with an access token (check 3).
	ErrProofMissingClaim = fmt.Errorf("%w: required claim missing", ErrInvalidProof)
	// ErrProofType: typ is not dpop+jwt (check 4).
	ErrProofType = fmt.Errorf("%w: typ is not dpop+jwt", ErrInvalidProof)
	// ErrProofAlgorithm: alg is none, symmetric or not in the allowlist (check 5).
	ErrProofAlgorithm = fmt.Errorf("%w: algorithm not accepted", ErrInvalidProof)
	// ErrProofSignature: the signature does not verify with the jwk (check 6).
	ErrProofSignature = fmt.Errorf("%w: signature", ErrInvalidProof)
	// ErrProofKey: jwk absent, not a usable public key of the alg's type, a
	// private key (check 7), or an RSA key under 2048 bits.
	ErrProofKey = fmt.Errorf("%w: jwk not an acceptable public key", ErrInvalidProof)
	// ErrProofMethod: htm differs from the request method (check 8).
	ErrProofMethod = fmt.Errorf("%w: htm does not match", ErrInvalidProof)
	// ErrProofURI: htu differs from the request URI once both are normalised (check 9).
	ErrProofURI = fmt.Errorf("%w: htu does not match", ErrInvalidProof)
	// ErrProofTime: iat outside the accepted window (check 11).
	ErrProofTime = fmt.Errorf("%w: iat outside the accepted window", ErrInvalidProof)
	// ErrProofReplay: the proof's jti was seen before for this key and URI (§11.1).
	ErrProofReplay = fmt.Errorf("%w: jti replayed", ErrInvalidProof)
	// ErrProofTokenHash: ath is not the hash of the presented access token (check 12).
	ErrProofTokenHash = fmt.Errorf("%w: ath does not match the access token", ErrInvalidProof)
)

// isProofError reports whether err is a proof problem (invalid_dpop_proof).
func isProofError(err error) bool { return errors.Is(err, ErrInvalidProof) }
