// Package txntoken makes and checks Transaction Tokens
// (draft-ietf-oauth-transaction-tokens-10): short-lived JWTs, typed
// txntoken+jwt, that carry a call chain's subject and immutable context
// between workloads of one trust domain in the Txn-Token header.
//
//   - Minter.Mint turns a validated access token into a Txn-Token (tokentailor
//     as the trust domain's local Txn-Token Service, draft §5: "obtained
//     through a local interface");
//   - Verifier.Verify checks an incoming Txn-Token (draft §10.2: signature,
//     aud = the trust domain, not expired) with tokentailor's own keys or a
//     configured TTS's JWKS;
//   - Minter.Narrow replaces a verified Txn-Token with one of narrower scope
//     (draft §11.10, "Txn-Token as a subject_token": txn, sub, aud kept, never
//     widened, never after it expired);
//   - Service asks an external TTS (draft §9) with an RFC 8693 request
//     through extauthz/exchange's client.
//
// Choices where the draft leaves room (each is named in the README):
//   - exp is min(now + TTL, the incoming token's exp): the draft (§6) lets a
//     TTS outlive the presented token; tokentailor keeps its invariant that
//     no upstream token outlives the client's, and a narrowed Txn-Token never
//     outlives the one it replaces. A Txn-Token from an external TTS that
//     outlives the incoming token is refused for the same reason (403:
//     the TTS's doing, not the client's).
//   - txn is a random UUID, or the incoming request id (e.g. Envoy's
//     x-request-id) when configured and well-formed, so logs of the whole
//     chain share one id.
//   - scope is a space-separated string (RFC 8693 §4.2); a Txn-Token whose
//     narrowed scope would be empty is not issued (scope is REQUIRED): 403.
//   - req_wl is the workload that asked: tokentailor's configured name or
//     the caller's SPIFFE ID. A replacement keeps the chain of earlier
//     requesters, oldest first, in the extension claim req_wl_chain (the
//     draft requires the chain kept, the mechanism is out of its scope).
//   - iss is set when configured (OPTIONAL in the draft).
//   - rctx holds req_ip and authn (the authentication method: "bearer",
//     "dpop", "mtls"); tctx is the configured immutable context.
package txntoken

import (
	"fmt"
	"strings"
	"time"

	"github.com/tokentailor/tokentailor/extauthz"
)

// Identifiers of the draft.
const (
	// Type is the typ header of a Txn-Token (draft §8.1).
	Type = "txntoken+jwt"
	// TokenType is the RFC 8693 token type URN of a Txn-Token (draft §9.1).
	TokenType = "urn:ietf:params:oauth:token-type:txn_token"
	// HeaderName is the HTTP header that carries a Txn-Token (draft §10.1), lower case.
	HeaderName = "txn-token"
	// ChainClaim is tokentailor's extension claim listing earlier requesting
	// workloads of a replaced Txn-Token.
	ChainClaim = "req_wl_chain"
)

// Deny reasons. Each wraps an extauthz reason so the response table needs no
// new row: a bad Txn-Token is 401 invalid_token, an empty narrowed scope 403.
var (
	// ErrInvalid: not a well-formed, correctly signed Txn-Token with every
	// required claim (txn, sub, scope, req_wl, iat, exp, aud).
	ErrInvalid = fmt.Errorf("%w: invalid Txn-Token", extauthz.ErrInvalidToken)
	// ErrType: the typ header is not txntoken+jwt.
	ErrType = fmt.Errorf("%w: typ is not txntoken+jwt", ErrInvalid)
	// ErrLifetime: exp − iat is longer than MaxTTL.
	ErrLifetime = fmt.Errorf("%w: lifetime longer than 10m", ErrInvalid)
	// ErrMissingClaim: a required claim is absent or of the wrong type.
	ErrMissingClaim = fmt.Errorf("%w: required claim missing", ErrInvalid)
	// ErrExpired: the Txn-Token's exp has passed.
	ErrExpired = fmt.Errorf("%w: Txn-Token expired", extauthz.ErrTokenExpired)
	// ErrWrongTrustDomain: aud does not name the configured trust domain.
	ErrWrongTrustDomain = fmt.Errorf("%w: Txn-Token for another trust domain", extauthz.ErrWrongAudience)
	// ErrNoScope: narrowing leaves no scope, and a Txn-Token must have one.
	ErrNoScope = fmt.Errorf("%w: no scope left for a Txn-Token", extauthz.ErrInsufficientScope)
	// ErrOutlives: the incoming token has expired.
	ErrOutlives = fmt.Errorf("%w: Txn-Token would outlive the incoming token", extauthz.ErrTokenExpired)
	// ErrServiceOutlives: an external TTS issued a Txn-Token that outlives
	// the incoming token (the TTS's doing: 403, not 401).
	ErrServiceOutlives = fmt.Errorf("%w: the TTS's Txn-Token would outlive the incoming token", extauthz.ErrExchangeRefused)
)

// Token is a verified Txn-Token.
type Token struct {
	// Raw is the token itself; never logged.
	Raw string
	// Txn is the transaction id.
	Txn string
	// Subject is sub.
	Subject string
	// Scopes are the scope claim's values, in order.
	Scopes []string
	// Workload is req_wl.
	Workload string
	// Chain lists earlier requesting workloads (req_wl_chain), oldest first.
	Chain []string
	// Issuer is iss, when present.
	Issuer string
	// IssuedAt and ExpiresAt are iat and exp.
	IssuedAt, ExpiresAt time.Time
	// TransactionContext is tctx, RequestContext rctx; nil when absent.
	TransactionContext, RequestContext map[string]any
	// Claims holds every claim.
	Claims map[string]any
}

// isType reports typ = txntoken+jwt, case-insensitively, "application/"
// optional (RFC 7515 §4.1.9).
func isType(typ string) bool {
	typ = strings.ToLower(typ)
	return typ == Type || typ == "application/"+Type
}

// narrow returns have ∩ want in have's order.
func narrow(have, want []string) []string {
	out := make([]string, 0, len(have))
	for _, s := range have {
		for _, w := range want {
			if s == w {
				out = append(out, s)
				break
			}
		}
	}
	return out
}
