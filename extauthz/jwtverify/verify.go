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
// Signatures are checked by github.com/golang-jwt/jwt/v5's signing methods
// and time claims by its Validator; segments are split and decoded here, once
// each, and JSON is read by github.com/go-json-experiment/json
// (encoding/json/v2), which refuses duplicate names, invalid UTF-8 and
// trailing data, and matches header names case-sensitively.
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
// Results are cached by token hash until the token's exp, never longer, so a
// token seen before costs a hash and a map lookup.
package jwtverify

import (
	"bytes"
	"context"
	"crypto"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
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

// clientIDClaims name the client a token was issued to, first present wins.
var clientIDClaims = []string{"client_id", "azp", "cid"}

var hmacMinBytes = map[string]int{"HS256": 32, "HS384": 48, "HS512": 64}

// accessTypes are the typ values (normalised by normType) accepted when an
// issuer sets no RequiredType: none, the generic "JWT" (RFC 7519 §5.1) and
// RFC 9068's "at+jwt". Everything else is refused; see Token kinds.
var accessTypes = map[string]bool{"": true, "jwt": true, "at+jwt": true}

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

// otherKindClaims are claims that only JWTs of another kind carry: see
// Token kinds in the package doc.
var otherKindClaims = []string{
	"events",              // RFC 8417 SETs, OIDC logout tokens
	"token_introspection", // RFC 9701 introspection answers
	"htm", "htu",          // RFC 9449 DPoP proofs
	"at_hash", "c_hash", "s_hash", // OIDC Core / FAPI ID tokens
}

// otherKindPayloadTypes are values (lower-cased) of Keycloak's payload typ
// claim on tokens that are not access tokens; its access tokens say "Bearer".
var otherKindPayloadTypes = map[string]bool{"id": true, "refresh": true, "offline": true, "logout": true}

type issuer struct {
	cfg         Issuer
	algs        map[string]bool
	validator   *jwt.Validator
	scopeClaims []string
	typ         string // normalised RequiredType
}

type entry struct {
	p   *extauthz.Principal
	exp time.Time
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
	is.validator = jwt.NewValidator(
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(c.ClockSkew),
		jwt.WithTimeFunc(now),
	)
	return is, nil
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

func (v *Verifier) verify(ctx context.Context, cred extauthz.Credential, audiences []string, forAudience bool) (*extauthz.Principal, error) {
	raw := cred.Raw
	if len(raw) > v.maxBytes {
		return nil, fmt.Errorf("%w: token larger than %d bytes", extauthz.ErrInvalidToken, v.maxBytes)
	}
	key := cred.TokenHash()
	if forAudience {
		key = extauthz.TokenHash(key + "\x00" + strings.Join(audiences, "\x00"))
	}
	now := v.now()
	if e, ok := v.cache.Lookup(ctx, key); ok && now.Before(e.exp) {
		p := *e.p // share the claims and lists; the credential is this request's
		p.Credential = cred
		return &p, nil
	}
	p, err := v.parse(ctx, cred, audiences, forAudience)
	if err != nil {
		return nil, err
	}
	// The cached principal keeps the token's hash but not the token: the
	// request that hits the entry brings the same token again, and a cache of
	// 10 000 entries is 8 MiB lighter without a copy of each.
	cached := *p
	cached.Credential.Raw = ""
	v.cache.Set(key, entry{p: &cached, exp: p.ExpiresAt}, p.ExpiresAt.Sub(now))
	return p, nil
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{extauthz.ErrInvalidToken}, args...)...)
}

// segments splits a compact JWS into its three base64url segments and
// refuses JWE and other shapes.
func segments(raw string) (header, claims, sig string, err error) {
	header, rest, ok := strings.Cut(raw, ".")
	if ok {
		claims, sig, ok = strings.Cut(rest, ".")
	}
	if !ok || strings.IndexByte(sig, '.') >= 0 {
		if strings.Count(raw, ".") == 4 {
			return "", "", "", invalid("JWE (encrypted) tokens are not accepted")
		}
		return "", "", "", invalid("not a compact JWS")
	}
	return header, claims, sig, nil
}

// parse decodes each segment once, picks the issuer by the unverified iss,
// applies the header rules, verifies the signature with golang-jwt's signing
// method and then the time claims with its validator.
//
// JSON is decoded by github.com/go-json-experiment/json (encoding/json/v2):
// it refuses duplicate member names, so {"iss":"a","iss":"b"} cannot read one
// way here and another way upstream (RFC 7519 §4, RFC 8725 §3.7), refuses
// invalid UTF-8, and decodes claims in about half the time and a third of the
// allocations of encoding/json.
func (v *Verifier) parse(ctx context.Context, cred extauthz.Credential, audiences []string, forAudience bool) (*extauthz.Principal, error) {
	h64, c64, s64, err := segments(cred.Raw)
	if err != nil {
		return nil, err
	}
	header, err := v.headers.decode(h64)
	if err != nil {
		return nil, err
	}
	// One buffer for the claims and the signature.
	buf := make([]byte, b64.DecodedLen(len(c64))+b64.DecodedLen(len(s64)))
	cb, err := decodeSegment(buf, c64)
	if err != nil {
		return nil, err
	}
	sig, err := decodeSegment(buf[len(cb):], s64)
	if err != nil {
		return nil, err
	}
	// Sizing the map for the members it will hold spares it from growing
	// while it is filled; nested names only make the hint larger.
	claims := make(jwt.MapClaims, min(bytes.Count(cb, []byte(`":`)), maxClaimsHint))
	if err := json.Unmarshal(cb, (*map[string]any)(&claims)); err != nil {
		return nil, invalid("claims are not a JSON object without duplicate names")
	}
	is, err := v.selectIssuer(claims)
	if err != nil {
		return nil, err
	}
	key, err := is.key(ctx, header)
	if err != nil {
		return nil, err
	}
	method := jwt.GetSigningMethod(header.Alg) // checked against the allowlist by key
	if method == nil {
		return nil, invalid("unverifiable (unknown alg)")
	}
	if err := method.Verify(cred.Raw[:len(h64)+1+len(c64)], sig, key); err != nil {
		return nil, invalid("signature invalid")
	}
	if err := is.validator.Validate(claims); err != nil {
		return nil, mapClaimsError(err)
	}
	if err := checkKind(claims); err != nil {
		return nil, err
	}
	if !forAudience {
		audiences = is.cfg.Audiences
	}
	return is.principal(claims, audiences, cred)
}

// jwsHeader holds the JOSE header parameters that tokentailor reads (RFC 7515
// §4.1). Names match case-sensitively; alg, kid and typ must be strings. The
// others are kept raw: their presence alone is refused (or, for b64, any
// value but true).
type jwsHeader struct {
	Alg  string         `json:"alg"`
	Kid  *string        `json:"kid"`
	Typ  string         `json:"typ"`
	Crit jsontext.Value `json:"crit"`
	Enc  jsontext.Value `json:"enc"`
	Zip  jsontext.Value `json:"zip"`
	B64  jsontext.Value `json:"b64"`
}

var b64 = base64.RawURLEncoding.Strict()

// maxClaimsHint caps the size hint of a claims map.
const maxClaimsHint = 64

// maxCachedHeaders bounds headerCache; an issuer uses one header per key.
const maxCachedHeaders = 256

// headerCache remembers decoded JOSE headers by their exact base64url
// segment. An issuer signs every token of a key with the same header, so
// decoding it (a third of the non-cryptographic cost of a new token) is paid
// once per key instead of once per token. Entries are read-only and shared;
// when full the cache starts again, so junk headers can cost time but never
// memory beyond the bound, and they never change a result: a cached header is
// exactly what decoding the same bytes again would give.
type headerCache struct {
	m sync.Map // segment string → *jwsHeader
	n atomic.Int32
}

func (c *headerCache) decode(seg string) (*jwsHeader, error) {
	if h, ok := c.m.Load(seg); ok {
		return h.(*jwsHeader), nil
	}
	var arr [256]byte
	buf := arr[:]
	if n := b64.DecodedLen(len(seg)); n > len(buf) {
		buf = make([]byte, n)
	}
	hb, err := decodeSegment(buf, seg)
	if err != nil {
		return nil, err
	}
	h := new(jwsHeader)
	if err := json.Unmarshal(hb, h); err != nil {
		return nil, invalid("header is not a JSON object of the JWS header parameters without duplicate names")
	}
	if c.n.Add(1) > maxCachedHeaders {
		c.m.Clear()
		c.n.Store(1)
	}
	c.m.Store(strings.Clone(seg), h)
	return h, nil
}

// decodeSegment decodes one base64url segment (no padding, canonical) into
// dst, which must be large enough.
func decodeSegment(dst []byte, seg string) ([]byte, error) {
	// Decode only reads its source: view the string's bytes, do not copy them.
	n, err := b64.Decode(dst, unsafe.Slice(unsafe.StringData(seg), len(seg)))
	if err != nil {
		return nil, invalid("segment is not base64url")
	}
	return dst[:n:n], nil
}

func mapClaimsError(err error) error {
	switch {
	case errors.Is(err, jwt.ErrInvalidType):
		return invalid("a time claim has the wrong type")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return invalid("exp missing")
	case errors.Is(err, jwt.ErrTokenExpired):
		return fmt.Errorf("%w: exp passed", extauthz.ErrTokenExpired)
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return fmt.Errorf("%w: nbf in the future", extauthz.ErrTokenNotYetValid)
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return fmt.Errorf("%w: iat in the future", extauthz.ErrTokenNotYetValid)
	}
	return invalid("claims rejected")
}

func (v *Verifier) selectIssuer(claims jwt.MapClaims) (*issuer, error) {
	iss, ok := claims["iss"].(string)
	if !ok {
		return nil, invalid("iss missing or not a string")
	}
	is := v.issuers[iss]
	if is == nil {
		return nil, fmt.Errorf("%w: iss names no configured issuer", extauthz.ErrUnknownIssuer)
	}
	return is, nil
}

// key applies the header rules and returns the verification key. Any crit
// header is refused, as no extension is implemented (RFC 7515 §4.1.11).
func (is *issuer) key(ctx context.Context, h *jwsHeader) (any, error) {
	alg := h.Alg
	if !is.algs[alg] {
		return nil, invalid("alg not allowed for this issuer")
	}
	if h.Crit != nil {
		return nil, invalid("critical header extensions are not supported")
	}
	if h.Enc != nil {
		return nil, invalid("encrypted tokens are not accepted")
	}
	if h.Zip != nil {
		return nil, invalid("compressed tokens are not accepted")
	}
	if h.B64 != nil && string(h.B64) != "true" {
		return nil, invalid("unencoded payloads are not accepted")
	}
	if err := is.checkType(h.Typ); err != nil {
		return nil, err
	}
	kid := ""
	if h.Kid != nil {
		kid = *h.Kid
	}
	// jku, x5u, jwk and x5c are deliberately never read.
	if strings.HasPrefix(alg, "HS") {
		return is.cfg.HMACSecret, nil
	}
	key, err := is.cfg.Keys.Key(ctx, kid, alg)
	if err != nil {
		if !errors.Is(err, extauthz.ErrUnknownKey) && !errors.Is(err, extauthz.ErrKeysUnavailable) {
			err = fmt.Errorf("%w: %w", extauthz.ErrKeysUnavailable, err)
		}
		return nil, err
	}
	return key, nil
}

// checkType applies explicit typing (RFC 8725 §3.11): the typ header must
// be the issuer's RequiredType, or without one a type an access token may
// carry (accessTypes), so a DPoP proof, logout token, security event or
// introspection answer signed with the issuer's key is never taken for one.
func (is *issuer) checkType(typ string) error {
	t := normType(typ)
	if is.typ != "" {
		if t != is.typ {
			return invalid("typ is not %s", is.cfg.RequiredType)
		}
		return nil
	}
	if !accessTypes[t] {
		return invalid("typ names no access token")
	}
	return nil
}

// checkKind refuses claims that reveal another kind of JWT than an access
// token (otherKindClaims, Keycloak's payload typ), whatever the typ header
// says: issuers that do not type their tokens explicitly sign ID and logout
// tokens with the same key as access tokens.
func checkKind(claims jwt.MapClaims) error {
	for _, name := range otherKindClaims {
		if _, ok := claims[name]; ok {
			return invalid("a %s claim marks another kind of token", name)
		}
	}
	if t, ok := claims["typ"].(string); ok && otherKindPayloadTypes[strings.ToLower(t)] {
		return invalid("payload typ marks another kind of token")
	}
	return nil
}

func (is *issuer) principal(claims jwt.MapClaims, audiences []string, cred extauthz.Credential) (*extauthz.Principal, error) {
	aud, _, err := stringList(claims, "aud", false)
	if err != nil {
		return nil, err
	}
	if len(audiences) > 0 && !slices.ContainsFunc(aud, func(a string) bool { return slices.Contains(audiences, a) }) {
		return nil, fmt.Errorf("%w: aud holds none of the accepted audiences", extauthz.ErrWrongAudience)
	}
	sub, err := claims.GetSubject()
	if err != nil {
		return nil, invalid("sub is not a string")
	}
	// RFC 9068 §2.2: sub is required. An empty one names nobody either.
	if sub == "" && !is.cfg.AllowMissingSub {
		return nil, invalid("sub missing")
	}
	exp, _ := claims.GetExpirationTime() // checked present and well-typed by the validator
	iat, _ := claims.GetIssuedAt()
	p := &extauthz.Principal{
		Issuer:     is.cfg.Issuer,
		Subject:    sub,
		Audience:   aud,
		Claims:     map[string]any(claims),
		ExpiresAt:  exp.Time,
		Credential: cred,
	}
	if iat != nil {
		p.IssuedAt = iat.Time
	}
	if p.Scopes, err = scopes(claims, is.scopeClaims); err != nil {
		return nil, err
	}
	for _, name := range clientIDClaims {
		if c, ok := claims[name]; ok {
			s, ok := c.(string)
			if !ok {
				return nil, invalid("%s is not a string", name)
			}
			p.ClientID = s
			break
		}
	}
	return p, nil
}

// scopes reads the first present claim of names: a space-separated string
// or an array of strings.
func scopes(claims jwt.MapClaims, names []string) ([]string, error) {
	for _, name := range names {
		if out, ok, err := stringList(claims, name, true); ok || err != nil {
			return out, err
		}
	}
	return nil, nil
}

// stringList reads claim name as a string (split on white space when split,
// else taken whole) or an array of strings. ok is false when it is absent.
func stringList(claims jwt.MapClaims, name string, split bool) (out []string, ok bool, err error) {
	c, ok := claims[name]
	if !ok {
		return nil, false, nil
	}
	switch s := c.(type) {
	case string:
		if split {
			return strings.Fields(s), true, nil
		}
		return []string{s}, true, nil
	case []any:
		out = make([]string, 0, len(s))
		for _, e := range s {
			str, ok := e.(string)
			if !ok {
				return nil, true, invalid("%s holds a non-string", name)
			}
			out = append(out, str)
		}
		return out, true, nil
	}
	return nil, true, invalid("%s is neither a string nor an array of strings", name)
}
