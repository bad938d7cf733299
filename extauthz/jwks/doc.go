// Package jwks keeps one issuer's JSON Web Key Set: fetched at start (from a
// configured URL or found through discovery), refreshed periodically, kept
// as it was when the issuer cannot be reached, and fetched again on demand
// when a token names a kid the set does not hold.
//
// When may a fetch start? One rule, decided under one lock, for the periodic
// refresh and for fetches asked for by tokens alike:
//
//   - after a successful fetch, the next on-demand fetch waits
//     MinRefetchInterval (a few seconds): a storm of tokens with unknown kids
//     costs the issuer at most one fetch per interval, and a key the issuer
//     has just published is fetched at the first token that names it unless
//     a fetch already happened within the interval;
//   - after a failed fetch, the next one waits a short backoff (from
//     MinRetryBackoff, doubling, capped at MinRefetchInterval): the periodic
//     loop retries on that schedule and a token may trigger the retry as
//     soon as the backoff allows, so recovery follows the issuer's return at
//     once;
//   - concurrent callers share the fetch in flight.
//
// What a token with a kid the set does not hold gets:
//
//   - the key, when a fetch (its own or one in flight) brings it;
//   - extauthz.ErrUnknownKey (401) only when a fresh set was obtained — a
//     fetch succeeded now or within MinRefetchInterval — and the kid is
//     really not in it;
//   - extauthz.ErrKeysUnavailable (503, not the token's fault) when the
//     issuer could not be asked: never fetched, the last fetch failed, or
//     the request's own deadline ended first.
//
// A Set's identity is its issuer and where its keys come from (Options.ID);
// its timing, client, logger and metrics are settings that Update changes
// on a running Set, so a reload that keeps the issuer keeps the keys.
//
// The set is parsed here with encoding/json and the crypto packages rather
// than with a JOSE library: the rules that matter (skip `use: enc` keys and
// unknown key types one by one instead of failing the whole set, refuse RSA
// keys under 2048 bits, check EC points are on their curve, match the key
// type to the token's alg) are each a few lines, and a general library would
// bring its own alg handling we would then have to keep from being used.
package jwks
