// Package jwtverify validates JWT access tokens (RFC 9068 where issuers
// follow it) and turns them into extauthz.Principal values.
//
// One straight pipeline, built on github.com/golang-jwt/jwt/v5:
//
//	size limit → shape (3 segments; JWE refused) → UTF-8 → decode header and
//	claims → the unverified iss picks the configured issuer → header rules
//	(alg allowlist, typ, crit, kid) → key from the issuer's own key source →
//	signature → exp/nbf/iat with clock skew → aud → Principal
//
// It follows RFC 8725 (JWT Best Current Practices): algorithms are allowed
// per issuer and "none" never; HMAC only with an explicit secret, so a token
// "signed" with an RSA public key as HMAC secret fails; keys come only from
// the issuer's key source, never from jku, x5u, jwk or x5c headers (ignored);
// critical header extensions are refused as none is understood; explicit
// typing is enforced when RequiredType is set; the issuer must match exactly
// and the audience must when audiences are configured.
//
// Results are cached by token hash until the token's exp, never longer, so a
// token seen before costs a hash and a map lookup.
package jwtverify

import (
	"context"
	"crypto"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

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
	// Algorithms is the allowlist of alg values; empty means DefaultAlgorithms.
	// "none" is refused by New; HS256/384/512 need HMACSecret.
	Algorithms []string
	// HMACSecret is the shared secret for HS* algorithms, at least as long as
	// the hash output of each HS* algorithm listed (RFC 7518 §3.2).
	HMACSecret []byte
	// ClockSkew is the leeway for exp, nbf and iat.
	ClockSkew time.Duration
	// RequiredType, when set (e.g. "at+jwt"), must equal the typ header,
	// compared case-insensitively with an optional "application/" prefix.
	RequiredType string
	// ScopeClaims names the claims scopes are read from, first present wins;
	// empty means DefaultScopeClaims. A string claim is split on spaces, an
	// array is taken as is.
	ScopeClaims []string
	// Keys gives the issuer's public keys; required unless only HS* is allowed.
	Keys KeySource
}

// Options configures a Verifier.
type Options struct {
	// Issuers lists the trusted issuers; the token's iss picks one.
	Issuers []Issuer
	// MaxTokenBytes bounds the size of a token (default DefaultMaxTokenBytes).
	MaxTokenBytes int
	// CacheEntries bounds the validation cache (default DefaultCacheEntries).
	CacheEntries int
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Metrics counts cache hits and misses (may be nil).
	Metrics *metrics.Metrics
}

// Defaults.
const (
	DefaultMaxTokenBytes = 16 << 10
	DefaultCacheEntries  = 10000
)

// DefaultAlgorithms are the asymmetric algorithms accepted when an issuer
// lists none.
var DefaultAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// DefaultScopeClaims are the claims scopes are read from when an issuer
// names none: "scope" (RFC 9068, RFC 8693) then "scp" (Okta, Azure, Hydra).
var DefaultScopeClaims = []string{"scope", "scp"}

// clientIDClaims name the client a token was issued to, first present wins.
var clientIDClaims = []string{"client_id", "azp", "cid"}

var hmacMinBytes = map[string]int{"HS256": 32, "HS384": 48, "HS512": 64}

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
	issuers  map[string]*issuer
	maxBytes int
	now      func() time.Time
	parser   *jwt.Parser
	cache    *cache.Cache[entry]
}

var _ extauthz.Authenticator = (*Verifier)(nil)

// New checks opts and returns a Verifier.
func New(opts Options) (*Verifier, error) {
	if len(opts.Issuers) == 0 {
		return nil, errors.New("jwtverify: no issuer configured")
	}
	v := &Verifier{
		issuers:  make(map[string]*issuer, len(opts.Issuers)),
		maxBytes: opts.MaxTokenBytes,
		now:      opts.Now,
		// Claims are validated per issuer after the signature; the shared
		// parser only decodes and verifies.
		parser: jwt.NewParser(jwt.WithoutClaimsValidation()),
	}
	if v.maxBytes <= 0 {
		v.maxBytes = DefaultMaxTokenBytes
	}
	if v.now == nil {
		v.now = time.Now
	}
	entries := opts.CacheEntries
	if entries <= 0 {
		entries = DefaultCacheEntries
	}
	var obs cache.Observer
	if opts.Metrics != nil {
		obs = opts.Metrics
	}
	v.cache = cache.New[entry]("jwt", entries, obs)

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
	algs := c.Algorithms
	if len(algs) == 0 {
		algs = DefaultAlgorithms
	}
	is := &issuer{cfg: c, algs: map[string]bool{}, scopeClaims: c.ScopeClaims, typ: normType(c.RequiredType)}
	if len(is.scopeClaims) == 0 {
		is.scopeClaims = DefaultScopeClaims
	}
	asymmetric := false
	for _, a := range algs {
		switch {
		case strings.EqualFold(a, "none"):
			return nil, errors.New(`alg "none" is never allowed`)
		case hmacMinBytes[a] > 0:
			if len(c.HMACSecret) < hmacMinBytes[a] {
				return nil, fmt.Errorf("%s needs an HMAC secret of at least %d bytes", a, hmacMinBytes[a])
			}
		case slices.Contains(DefaultAlgorithms, a):
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

// normType lower-cases a typ value and drops an "application/" prefix
// (RFC 7515 §4.1.9).
func normType(t string) string {
	t = strings.ToLower(t)
	return strings.TrimPrefix(t, "application/")
}

// Authenticate validates cred.Raw as a JWT of a configured issuer, checking
// aud against that issuer's Audiences. Errors wrap one of extauthz's
// sentinels and never contain the token. The Principal may be shared with
// other callers through the cache: it, its slices and Claims are read-only.
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
	key := cred.Hash()
	if forAudience {
		key = extauthz.TokenHash(key + "\x00" + strings.Join(audiences, "\x00"))
	}
	now := v.now()
	if e, ok := v.cache.Get(key); ok && now.Before(e.exp) {
		if e.p.Credential == cred {
			return e.p, nil
		}
		p := *e.p // same token from another header: share everything else
		p.Credential = cred
		return &p, nil
	}
	p, err := v.parse(ctx, cred, audiences, forAudience)
	if err != nil {
		return nil, err
	}
	v.cache.Set(key, entry{p: p, exp: p.ExpiresAt}, p.ExpiresAt.Sub(now))
	return p, nil
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{extauthz.ErrInvalidToken}, args...)...)
}

// precheck refuses what must not reach the parser: JWE and other shapes,
// and segments that are not UTF-8 JSON (RFC 8725 §3.7).
func precheck(raw string) error {
	switch strings.Count(raw, ".") {
	case 2:
	case 4:
		return invalid("JWE (encrypted) tokens are not accepted")
	default:
		return invalid("not a compact JWS")
	}
	h, rest, _ := strings.Cut(raw, ".")
	c, _, _ := strings.Cut(rest, ".")
	for _, seg := range []string{h, c} {
		b, err := base64.RawURLEncoding.Strict().DecodeString(seg)
		if err != nil {
			return invalid("segment is not base64url")
		}
		if !utf8.Valid(b) {
			return invalid("segment is not UTF-8")
		}
	}
	return nil
}

func (v *Verifier) parse(ctx context.Context, cred extauthz.Credential, audiences []string, forAudience bool) (*extauthz.Principal, error) {
	if err := precheck(cred.Raw); err != nil {
		return nil, err
	}
	var (
		is   *issuer
		kerr error // the keyfunc's own error, more precise than the parser's
	)
	claims := jwt.MapClaims{}
	_, err := v.parser.ParseWithClaims(cred.Raw, claims, func(t *jwt.Token) (any, error) {
		is, kerr = v.selectIssuer(claims)
		if kerr != nil {
			return nil, kerr
		}
		var key any
		key, kerr = is.key(ctx, t.Header)
		return key, kerr
	})
	if kerr != nil {
		return nil, kerr
	}
	if err != nil {
		return nil, invalid("%s", parseReason(err))
	}
	if err := is.validator.Validate(claims); err != nil {
		return nil, mapClaimsError(err)
	}
	if !forAudience {
		audiences = is.cfg.Audiences
	}
	return is.principal(claims, audiences, cred)
}

// parseReason describes a golang-jwt parse failure without its wrapped
// details (which can quote token content).
func parseReason(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "signature invalid"
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return "unverifiable (unknown alg)"
	}
	return "cannot be verified"
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
func (is *issuer) key(ctx context.Context, h map[string]any) (any, error) {
	alg, _ := h["alg"].(string)
	if !is.algs[alg] {
		return nil, invalid("alg not allowed for this issuer")
	}
	if _, ok := h["crit"]; ok {
		return nil, invalid("critical header extensions are not supported")
	}
	if _, ok := h["enc"]; ok {
		return nil, invalid("encrypted tokens are not accepted")
	}
	if _, ok := h["zip"]; ok {
		return nil, invalid("compressed tokens are not accepted")
	}
	if b, ok := h["b64"]; ok && b != true {
		return nil, invalid("unencoded payloads are not accepted")
	}
	if is.typ != "" {
		typ, _ := h["typ"].(string)
		if normType(typ) != is.typ {
			return nil, invalid("typ is not %s", is.cfg.RequiredType)
		}
	}
	kid := ""
	if k, ok := h["kid"]; ok {
		if kid, ok = k.(string); !ok {
			return nil, invalid("kid is not a string")
		}
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
