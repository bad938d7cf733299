// Package introspect turns opaque access tokens into principals by asking the
// issuer's RFC 7662 introspection endpoint, and caches the answers: the
// phantom token pattern.
//
// # Caching, and how long a revoked token still passes
//
// Answers are cached under the SHA-256 of the token (extauthz.TokenHash),
// never the token itself. An active answer is kept until the token's exp,
// but never longer than Options.MaxCacheTTL. That cap is the longest time a
// token revoked at the authorization server is still accepted here: keep it
// short (config's max_cache_ttl, 60s by default). Inactive, expired and otherwise refused
// answers are kept for Options.NegativeTTL, so a client repeating a bad token
// does not turn into repeated calls. Refusals live in a cache of their own
// (Options.NegativeCacheEntries), so a flood of bad tokens fills that one and
// never evicts an active answer. Route policy is evaluated by the caller
// on every request, cached answer or not; exp and nbf are checked against the
// clock on every request too.
//
// # Failing closed
//
// Concurrent checks of the same uncached token share one call
// (golang.org/x/sync/singleflight). At most Options.MaxInFlight calls are
// outstanding at a time (golang.org/x/sync/semaphore); a check that cannot get
// a slot before its context ends is denied with extauthz.ErrIssuerUnavailable,
// so a flood of random opaque strings cannot become an unbounded stream of
// calls to the issuer.
//
// # Floods
//
// Three things together keep a flood of made-up tokens from reaching the
// issuer or starving real ones:
//   - Options.TokenShape refuses a token that cannot be the issuer's (wrong
//     prefix, length, alphabet or segments) with extauthz.ErrInvalidToken,
//     before any cache or call: random strings cost nothing but the check;
//   - refusals are cached apart from active answers (see above);
//   - Options.RateLimit caps the calls per second with a token bucket
//     (golang.org/x/time/rate). A check that finds the bucket empty is
//     denied at once with extauthz.ErrIssuerUnavailable wrapping
//     ErrRateLimited (503), and counted in the metric
//     tokentailor_issuer_requests_limited_total. The limiter cannot tell a
//     real new token from a made-up one of the right shape: against such a
//     flood it protects the issuer, and new tokens share the bucket with it.
//
// An unreachable server, a timeout, a non-200 status, and an answer that is
// malformed, too large, of the wrong media type or (RFC 9701) not validly
// signed all deny with extauthz.ErrIssuerUnavailable (503) and are not cached;
// answers still valid in the cache keep being served. Such answers are not
// ErrInvalidToken (401) on purpose: a 401 tells the client to get a new token,
// which would not help, and would hide an authorization-server fault behind
// a client error in logs and metrics. An answer that is a JSON object whose
// "active" is anything but the JSON true ("true", 1, null, no member) is not
// malformed: RFC 7662 §2.2 makes it an inactive token, denied with
// extauthz.ErrTokenInactive (401) and cached as a refusal.
//
// # Signed answers (RFC 9701)
//
// With Options.JWTResponse, the request asks for
// application/token-introspection+jwt; the answer must be a JWS with typ
// token-introspection+jwt, signed by a key from Options.Keys, iss equal to
// Options.Issuer and aud holding our client id; the RFC 7662 members are read
// from its token_introspection claim. A plain JSON answer is then refused.
package introspect
