// Package jwtverify validates JWT access tokens (RFC 9068 where issuers
// follow it) and turns them into extauthz.Principal values.
//
// One straight pipeline:
//
//	size limit → shape (3 segments; JWE refused) → decode header (cached by
//	its exact bytes) and claims once, as strict JSON → the unverified iss
//	picks the configured issuer → header rules (alg allowlist, typ, crit,
//	kid) → key from the issuer's own key source → signature → exp/nbf/iat
//	with clock skew → token kind → aud → sub → Principal
//
// Signatures are checked by github.com/golang-jwt/jwt/v5's signing methods,
// except RS256/384/512, checked in rsa.go with each key's modulus kept ready
// (crypto/rsa rebuilds it per call); time claims by golang-jwt's Validator.
// Segments are split and decoded here, once each, and JSON is read by
// github.com/go-json-experiment/json (encoding/json/v2), which refuses
// duplicate names, invalid UTF-8 and trailing data, and matches header names
// case-sensitively.
//
// It follows RFC 8725 (JWT Best Current Practices): algorithms are allowed
// per issuer and "none" never; HMAC only with an explicit secret, so a token
// "signed" with an RSA public key as HMAC secret fails; keys come only from
// the issuer's key source, never from jku, x5u, jwk or x5c headers (ignored);
// critical header extensions are refused as none is understood; explicit
// typing is enforced when RequiredType is set; the issuer must match exactly
// and the audience must when audiences are configured.
//
// # Token kinds
//
// An authorization server signs more than access tokens with its keys: ID
// tokens, logout tokens, security events, RFC 9701 introspection answers.
// None of them may pass as an access token (RFC 8725 §2.8, §3.11, §3.12), so
// even without RequiredType:
//
//   - the typ header must be absent, "JWT" or "at+jwt" (compared
//     case-insensitively, "application/" prefix optional, RFC 7515 §4.1.9);
//     every other value is refused: any other "+jwt" type (dpop+jwt,
//     token-introspection+jwt, secevent+jwt, logout+jwt, …) names another
//     kind, and an unknown one is not known to be an access token. An issuer
//     whose access tokens carry another typ sets RequiredType to it.
//   - claims that only another kind carries are refused: "events" (security
//     event and logout tokens, RFC 8417, OIDC Back-Channel Logout),
//     "token_introspection" (RFC 9701), "htm"/"htu" (DPoP proofs, RFC 9449),
//     "at_hash", "c_hash", "s_hash" (ID tokens, OIDC Core / FAPI), and a
//     payload "typ" of "ID", "Refresh", "Offline" or "Logout" (Keycloak's
//     ID, refresh and logout tokens). "nonce" is not refused: Keycloak before
//     25 copied it into access tokens. An ID token with none of these markers
//     cannot be told from an access token by its content; the audience check
//     (its aud is the client's id) and RequiredType "at+jwt" keep it out.
//   - sub is required (RFC 9068 §2.2) unless the issuer sets
//     AllowMissingSub.
//
// Results are cached by token hash until the token's exp, never longer. A
// token seen once leaves its decoded claims segment; its second Check judges
// those again (everything but the header rules and the signature, which the
// same bytes passed) and leaves the principal, so from then on a token costs
// a hash and a map lookup.
package jwtverify

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/cache"
	"github.com/tokentailor/tokentailor/extauthz/metrics"
)

// KeySource gives the public key that verifies a token signed with alg
// under kid (kid may be empty). jwks.Set implements it. Errors should wrap
// extauthz.ErrUnknownKey or extauthz.ErrKeysUnavailable.
type KeySource interface {
	Key(ctx context.Context, kid, alg string) (crypto.PublicKey, error)
}

// Issuer is one trusted token issuer.
type Issuer struct {
	// Issuer is the exact iss value of its tokens.
	Issuer string
	// Audiences lists the accepted aud values; when set, a token's aud must
	// hold at least one. Empty means aud is not checked.
	Audiences []string
	// Algorithms is the allowlist of alg values; at least one. "none" is
	// refused by New; HS256/384/512 need HMACSecret.
	Algorithms []string
	// HMACSecret is the shared secret for HS* algorithms, at least as long as
	// the hash output of each HS* algorithm listed (RFC 7518 §3.2).
	HMACSecret []byte
	// ClockSkew is the leeway for exp, nbf and iat.
	ClockSkew time.Duration
	// RequiredType, when set (e.g. "at+jwt"), must equal the typ header,
	// compared case-insensitively with an optional "application/" prefix.
	// Empty accepts no typ, "JWT" and "at+jwt" (see Token kinds). A type
	// that names another kind of JWT (dpop+jwt, logout+jwt, …) is refused by New.
	RequiredType string
	// AllowMissingSub accepts access tokens without a sub claim. RFC 9068
	// §2.2 requires sub, so tokens without it are refused unless this is set
	// for an issuer known to omit it (some client-credentials tokens).
	AllowMissingSub bool
	// ScopeClaims names the claims scopes are read from, first present wins;
	// at least one. A string claim is split on spaces, an array is taken as is.
	ScopeClaims []string
	// Keys gives the issuer's public keys; required unless only HS* is allowed.
	Keys KeySource
}

// Options configures a Verifier. Issuers, MaxTokenBytes and CacheEntries
// are required: the values come already defaulted from config, and New
// refuses zero values rather than invent its own.
type Options struct {
	// Issuers lists the trusted issuers; the token's iss picks one.
	Issuers []Issuer
	// MaxTokenBytes bounds the size of a token.
	MaxTokenBytes int
	// CacheEntries bounds the validation cache.
	CacheEntries int
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Metrics counts cache hits and misses (may be nil).
	Metrics *metrics.Metrics
}

// asymmetricAlgs are the public-key algorithms the verifier supports.
var asymmetricAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

var hmacMinBytes = map[string]int{"HS256": 32, "HS384": 48, "HS512": 64}

// otherKindTypes are typ values (normalised: lower case, no "application/")
// of JWTs that are never access tokens. New refuses them as RequiredType.
var otherKindTypes = []string{
	"dpop+jwt",                  // RFC 9449 DPoP proof
	"token-introspection+jwt",   // RFC 9701 introspection answer
	"secevent+jwt",              // RFC 8417 security event token
	"logout+jwt",                // OIDC Back-Channel Logout token
	"oauth-authz-req+jwt",       // RFC 9101 request object
	"client-authentication+jwt", // RFC 7523bis client assertion
}

type issuer struct {
	cfg         Issuer
	algs        map[string]bool
	validator   *jwt.Validator // judges at the Verifier's clock
	clocked     sync.Pool      // of *clockedValidator
	scopeClaims []string
	typ         string // normalised RequiredType
}

// clockedValidator is a validator that judges at a time set for each use,
// the Check's own reading of the clock; pooled so that a Check does not
// build one (three allocations).
type clockedValidator struct {
	at time.Time
	v  *jwt.Validator
}

// validate checks claims' exp, nbf and iat at at, or at the Verifier's clock
// when at is zero.
func (is *issuer) validate(claims jwt.MapClaims, at time.Time) error {
	if at.IsZero() {
		return is.validator.Validate(claims)
	}
	c, _ := is.clocked.Get().(*clockedValidator)
	if c == nil {
		c = &clockedValidator{}
		c.v = is.validatorAt(func() time.Time { return c.at })
	}
	c.at = at
	err := c.v.Validate(claims)
	is.clocked.Put(c)
	return err
}

// entry is a validation cache entry: for a token seen once, its decoded
// claims segment (claims; its signature was verified), for a token seen
// again, the principal (p). See verify.
type entry struct {
	p      *extauthz.Principal
	claims []byte
	exp    time.Time
}

// Verifier validates JWTs of the configured issuers. It is safe for
// concurrent use; build a new one to change the configuration.
type Verifier struct {
	opts     Options
	issuers  map[string]*issuer
	maxBytes int
	now      func() time.Time
	cache    *cache.Cache[entry]
	headers  headerCache
	rsa      rsaModuli
}

var _ extauthz.Authenticator = (*Verifier)(nil)

// New checks opts and returns a Verifier.
func New(opts Options) (*Verifier, error) {
	if len(opts.Issuers) == 0 {
		return nil, errors.New("jwtverify: no issuer configured")
	}
	if opts.MaxTokenBytes <= 0 {
		return nil, errors.New("jwtverify: MaxTokenBytes must be positive")
	}
	if opts.CacheEntries <= 0 {
		return nil, errors.New("jwtverify: CacheEntries must be positive")
	}
	v := &Verifier{
		issuers:  make(map[string]*issuer, len(opts.Issuers)),
		maxBytes: opts.MaxTokenBytes,
		now:      opts.Now,
		opts:     opts,
	}
	if v.now == nil {
		v.now = time.Now
	}
	entries := opts.CacheEntries
	v.cache = cache.New[entry]("jwt", entries, opts.Metrics)

	for i, c := range opts.Issuers {
		is, err := newIssuer(c, v.now)
		if err != nil {
			return nil, fmt.Errorf("jwtverify: issuer %d (%q): %w", i, c.Issuer, err)
		}
		if _, dup := v.issuers[c.Issuer]; dup {
			return nil, fmt.Errorf("jwtverify: issuer %q configured twice", c.Issuer)
		}
		v.issuers[c.Issuer] = is
	}
	return v, nil
}

func newIssuer(c Issuer, now func() time.Time) (*issuer, error) {
	if c.Issuer == "" {
		return nil, errors.New("empty issuer")
	}
	if c.ClockSkew < 0 {
		return nil, errors.New("negative clock skew")
	}
	if t := normType(c.RequiredType); slices.Contains(otherKindTypes, t) {
		return nil, fmt.Errorf("required type %q is not an access token type", c.RequiredType)
	}
	algs := c.Algorithms
	if len(algs) == 0 {
		return nil, errors.New("no algorithm allowed")
	}
	if len(c.ScopeClaims) == 0 {
		return nil, errors.New("no scope claim named")
	}
	is := &issuer{cfg: c, algs: map[string]bool{}, scopeClaims: c.ScopeClaims, typ: normType(c.RequiredType)}
	asymmetric := false
	for _, a := range algs {
		switch {
		case strings.EqualFold(a, "none"):
			return nil, errors.New(`alg "none" is never allowed`)
		case hmacMinBytes[a] > 0:
			if len(c.HMACSecret) < hmacMinBytes[a] {
				return nil, fmt.Errorf("%s needs an HMAC secret of at least %d bytes", a, hmacMinBytes[a])
			}
		case slices.Contains(asymmetricAlgs, a):
			asymmetric = true
		default:
			return nil, fmt.Errorf("unsupported alg %q", a)
		}
		is.algs[a] = true
	}
	if asymmetric && c.Keys == nil {
		return nil, errors.New("asymmetric algorithms need a key source")
	}
	is.validator = is.validatorAt(now)
	return is, nil
}

// validatorAt returns golang-jwt's validator of exp, nbf and iat, with the
// issuer's clock skew, judging at the clock now.
func (is *issuer) validatorAt(now func() time.Time) *jwt.Validator {
	return jwt.NewValidator(
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(is.cfg.ClockSkew),
		jwt.WithTimeFunc(now),
	)
}

// Options returns the options the Verifier was built with.
func (v *Verifier) Options() Options { return v.opts }

// normType lower-cases a typ value and drops an "application/" prefix
// (RFC 7515 §4.1.9).
func normType(t string) string {
	t = strings.ToLower(t)
	return strings.TrimPrefix(t, "application/")
}

// Authenticate validates cred.Raw as a JWT of a configured issuer, checking
// aud against that issuer's Audiences. Errors wrap one of extauthz's
// sentinels and never contain the token. The Principal is the caller's own,
// but its slices and Claims are shared through the cache: they are read-only.
func (v *Verifier) Authenticate(ctx context.Context, cred extauthz.Credential) (*extauthz.Principal, error) {
	return v.verify(ctx, cred, nil, false)
}

// VerifyForAudience validates raw like Authenticate, except that aud must
// hold one of audiences instead of the issuer's Audiences. It is used for
// tokens embedded in other tokens, each meant for one upstream.
func (v *Verifier) VerifyForAudience(ctx context.Context, raw string, audiences []string) (*extauthz.Principal, error) {
	if len(audiences) == 0 {
		return nil, fmt.Errorf("%w: no audience to verify against", extauthz.ErrWrongAudience)
	}
	return v.verify(ctx, extauthz.Credential{Raw: raw, Kind: extauthz.KindJWT}, audiences, true)
}

// NoteHit counts a hit of the validation cache and notes it in ctx's
// lookups (extauthz/cache.Lookup) for a Check that found the validation
// kept elsewhere, beside its remembered token (extauthz/pipeline's warm
// answers): the metrics read the same as when it looked here.
func (v *Verifier) NoteHit(ctx context.Context) { v.cache.NoteHit(ctx) }

// Mark returns a mark of cred's entry in the validation cache (see
// cache.Mark): taken before Authenticate, it holds as long as the
// validation Authenticate then found in the cache is still there, until
// the token's expiry. The validation cache drops entries early only when a
// full shard is flushed, and the token's next Check verifies it again.
func (v *Verifier) Mark(cred extauthz.Credential) cache.Mark { return v.cache.Mark(cred.TokenHash()) }

func (v *Verifier) verify(ctx context.Context, cred extauthz.Credential, audiences []string, forAudience bool) (*extauthz.Principal, error) {
	raw := cred.Raw
	if len(raw) > v.maxBytes {
		return nil, fmt.Errorf("%w: token larger than %d bytes", extauthz.ErrInvalidToken, v.maxBytes)
	}
	key := cred.TokenHash()
	if forAudience {
		key = extauthz.TokenHash(key + "\x00" + strings.Join(audiences, "\x00"))
	}
	now := cred.PresentedAt
	if now.IsZero() {
		now = v.now()
	}
	if e, ok := v.cache.Lookup(ctx, key); ok && now.Before(e.exp) {
		if e.p != nil {
			p := *e.p // share the claims and lists; the credential is this request's
			p.Credential = cred
			return &p, nil
		}
		// Seen once before: its signature was verified then; every other
		// check runs again and the principal is kept from now on.
		p, err := v.rejudge(e.claims, cred, audiences, forAudience)
		if err != nil {
			return nil, err
		}
		// The Memo is made here, where the principal is kept, for it and
		// every copy the cache hands out; a fresh principal needs none.
		p.Memo = new(extauthz.Memo)
		// The cached principal keeps the token's hash but not the token: the
		// request that hits the entry brings the same token again, and a
		// cache of 10 000 entries is 8 MiB lighter without a copy of each.
		cached := *p
		cached.Credential.Raw, cached.Credential.Memo = "", nil
		v.cache.Set(key, entry{p: &cached, exp: p.ExpiresAt}, p.ExpiresAt.Sub(now))
		return p, nil
	}
	p, cb, err := v.parse(ctx, cred, audiences, forAudience)
	if err != nil {
		return nil, err
	}
	p.Fresh = true
	// A token seen once keeps only its claims segment: a few hundred
	// pointer-free bytes, one object for the collector, instead of a
	// principal's map, strings and lists. Most tokens of a stream of new
	// ones never come back; one that does is judged again from it, without
	// its signature, and then keeps its principal.
	v.cache.Set(key, entry{claims: bytes.Clone(cb), exp: p.ExpiresAt}, p.ExpiresAt.Sub(now))
	return p, nil
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{extauthz.ErrInvalidToken}, args...)...)
}
