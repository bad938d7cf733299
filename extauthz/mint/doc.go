// Package mint signs tokentailor's internal access tokens: narrowed JWTs
// (RFC 9068 shape, header typ "at+jwt") that an upstream receives instead of
// the client's token, verifiable with nothing but the published JWKS.
//
// # Keys
//
// Signing keys are PEM files (PKCS#8, PKCS#1 for RSA, SEC1 for EC; one key per
// file, optionally preceded by the "EC PARAMETERS" block that
// `openssl ecparam -genkey` writes). Three kinds are accepted, each with one
// algorithm:
//
//	Ed25519   → EdDSA  (RFC 8037)
//	P-256     → ES256
//	RSA ≥2048 → RS256
//
// Prefer Ed25519 or P-256. RSA signing is about 25× slower than EdDSA or ES256
// on the machines we measured (a 2048-bit RS256 signature costs about a
// millisecond of CPU, an EdDSA or ES256 one some tens of microseconds), and
// minting sits on the path of every request whose token is not cached yet.
// RSA is there for upstreams whose JWT libraries know nothing else.
//
// A key's kid is given in configuration or, when empty, is its RFC 7638 JWK
// thumbprint (SHA-256), so the same key always gets the same kid.
//
// # Rotation
//
// A Minter holds several keys: one signs, all are published by JWKS. Rotate by
// publishing first and signing later: add the new key (still signing with the
// old one), wait until every upstream has refetched the JWKS, switch
// SigningKeyID to the new key, and drop the old key once the last token it
// signed has expired.
//
// # Minted claims
//
// iss is Options.Issuer; sub is the principal's subject (the client id when
// the token has no subject, as RFC 9068 §2.2 asks for client-credentials
// tokens); aud is the grant's audience; scope is the grant's scopes joined by
// spaces (omitted when none); client_id the principal's client; iat and nbf
// the minting time; exp = min(now + grant TTL, the incoming token's exp), so
// the minted token never outlives the one the client presented; jti 128 random
// bits.
//
// act records who called, as RFC 8693 §4.1 describes for delegation: the
// incoming token's subject stays sub, and the OAuth client that presented it
// is the actor, {"sub": client_id, "iss": incoming issuer}. When the incoming
// token already carried an act claim (it was itself delegated), that chain is
// kept nested inside ours, as §4.1 prescribes for prior actors. With no client
// id the incoming act (if any) is passed on unchanged, otherwise act is
// omitted.
//
// Grant claims are added after these and can never replace them: a grant
// claim named iss, sub, aud, exp, nbf, iat, jti, scope, scp, client_id, act or cnf (extauthz.IsReservedClaim)
// is dropped. scp is reserved too because many consumers read scopes from it,
// and the scopes an upstream sees must stay within the grant's.
//
// # Cache
//
// Minted tokens are cached (extauthz/cache, bounded) under a key holding the
// incoming token's SHA-256 and everything that shapes the output (route,
// audience, scopes, TTL, claims, principal). A cached token is reused until
// 90% of its lifetime has passed, then a new one is minted, so an upstream
// never gets a token in the last tenth of its life, and never one past its
// exp. Only a token seen before is admitted: the token minted for a fresh
// principal (extauthz.Principal.Fresh, the incoming token's first Check) is
// not kept, since most such tokens never come back in a stream of new ones;
// the second Check mints again and keeps what it minted (one signature more
// per incoming token, and a cache that holds only tokens in use).
package mint
