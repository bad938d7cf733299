package txntoken

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/jwks"
	"github.com/tokentailor/tokentailor/extauthz/mint"
)

// Defaults of VerifierOptions.
const (
	// DefaultMaxBytes bounds a Txn-Token before parsing.
	DefaultMaxBytes = 16 << 10
)

// DefaultAlgorithms are accepted when none are configured: asymmetric only.
var DefaultAlgorithms = []string{"EdDSA", "ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}

// KeySource gives the public key for kid and alg; jwks.Set (a TTS's JWKS)
// and StaticKeys (tokentailor's own minting keys) implement it. Errors
// should wrap extauthz.ErrUnknownKey or extauthz.ErrKeysUnavailable.
type KeySource interface {
	Key(ctx context.Context, kid, alg string) (crypto.PublicKey, error)
}

var _ KeySource = (*jwks.Set)(nil)

// StaticKeys is a KeySource of fixed public keys by kid.
type StaticKeys map[string]crypto.PublicKey

var _ KeySource = StaticKeys(nil)

// KeysOf returns the public halves of signing keys, e.g. mint's keys, so
// tokentailor verifies the Txn-Tokens it issued.
func KeysOf(keys ...*mint.Key) StaticKeys {
	s := StaticKeys{}
	for _, k := range keys {
		s[k.ID] = k.Public()
	}
	return s
}

// Key implements KeySource: the key must exist and fit alg.
func (s StaticKeys) Key(_ context.Context, kid, alg string) (crypto.PublicKey, error) {
	k, ok := s[kid]
	if !ok || !jwks.KeyFits(k, alg) {
		return nil, fmt.Errorf("%w: no key %q for %s", extauthz.ErrUnknownKey, kid, alg)
	}
	return k, nil
}

// VerifierOptions configures a Verifier.
type VerifierOptions struct {
	// TrustDomain is the aud a Txn-Token must name (required).
	TrustDomain string
	// Keys verifies signatures (required).
	Keys KeySource
	// Algorithms is the alg allowlist; nil means DefaultAlgorithms.
	Algorithms []string
	// Leeway is the clock skew on exp and iat (txn_token.leeway, defaulted
	// by config); 0 allows none.
	Leeway time.Duration
	// MaxBytes bounds a token; default DefaultMaxBytes.
	MaxBytes int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Verifier checks incoming Txn-Tokens (draft §10.2). Safe for concurrent use.
type Verifier struct {
	opts   VerifierOptions
	parser *jwt.Parser
}

// NewVerifier validates opts and returns a Verifier.
func NewVerifier(opts VerifierOptions) (*Verifier, error) {
	if opts.TrustDomain == "" || opts.Keys == nil {
		return nil, errors.New("txntoken: verifier needs a trust domain and keys")
	}
	if opts.Algorithms == nil {
		opts.Algorithms = DefaultAlgorithms
	}
	for _, a := range opts.Algorithms {
		if !slices.Contains(DefaultAlgorithms, a) {
			return nil, fmt.Errorf("txntoken: algorithm %q is not an asymmetric JWS algorithm", a)
		}
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	p := jwt.NewParser(
		jwt.WithValidMethods(opts.Algorithms),
		jwt.WithAudience(opts.TrustDomain),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(opts.Leeway),
		jwt.WithTimeFunc(opts.Now),
		jwt.WithJSONNumber(),
	)
	return &Verifier{opts: opts, parser: p}, nil
}

// Verify checks raw, the value of a Txn-Token header: size, typ, alg
// allowlist, signature with Keys, aud = the trust domain, exp, iat, and the
// required claims txn, sub, scope and req_wl (strings), tctx and rctx
// (objects when present), and a lifetime (exp − iat) of at most MaxTTL. Errors never contain the token.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Token, error) {
	if raw == "" || len(raw) > v.opts.MaxBytes {
		return nil, fmt.Errorf("%w: empty or too large", ErrInvalid)
	}
	var keyErr error
	claims := jwt.MapClaims{}
	_, err := v.parser.ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) {
		typ, _ := t.Header["typ"].(string)
		if !isType(typ) {
			return nil, ErrType
		}
		kid, _ := t.Header["kid"].(string)
		k, err := v.opts.Keys.Key(ctx, kid, t.Method.Alg())
		keyErr = err
		return k, err
	})
	switch {
	case err == nil:
	case errors.Is(err, ErrType):
		return nil, ErrType
	case keyErr != nil && errors.Is(keyErr, extauthz.ErrKeysUnavailable):
		return nil, keyErr
	case keyErr != nil:
		return nil, fmt.Errorf("%w: %w", ErrInvalid, extauthz.ErrUnknownKey)
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, ErrExpired
	case errors.Is(err, jwt.ErrTokenInvalidAudience), errors.Is(err, jwt.ErrTokenRequiredClaimMissing) && claims["aud"] == nil:
		return nil, ErrWrongTrustDomain
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return nil, fmt.Errorf("%w: exp", ErrMissingClaim)
	default:
		return nil, fmt.Errorf("%w: %w", ErrInvalid, errorKind(err))
	}
	t, err := tokenOf(raw, claims)
	if err != nil {
		return nil, err
	}
	// iat is in the past (WithIssuedAt, within Leeway); a Txn-Token that
	// claims to live longer than MaxTTL is not the short-lived token the
	// draft (§Txn-Token Lifetime, "minutes or less") describes.
	if t.ExpiresAt.Sub(t.IssuedAt) > MaxTTL {
		return nil, ErrLifetime
	}
	return t, nil
}

// errorKind keeps golang-jwt's sentinel (never its message, which may quote
// token parts).
func errorKind(err error) error {
	for _, e := range []error{jwt.ErrTokenMalformed, jwt.ErrTokenSignatureInvalid, jwt.ErrTokenUnverifiable, jwt.ErrTokenUsedBeforeIssued, jwt.ErrTokenNotValidYet, jwt.ErrTokenInvalidClaims} {
		if errors.Is(err, e) {
			return e
		}
	}
	return jwt.ErrTokenMalformed
}

// tokenOf reads the claims of a verified token.
func tokenOf(raw string, c jwt.MapClaims) (*Token, error) {
	t := &Token{Raw: raw, Claims: c}
	var scope string
	for _, f := range []struct {
		name string
		dst  *string
	}{{"txn", &t.Txn}, {"sub", &t.Subject}, {"scope", &scope}, {"req_wl", &t.Workload}} {
		s, ok := c[f.name].(string)
		if !ok || s == "" {
			return nil, fmt.Errorf("%w: %s", ErrMissingClaim, f.name)
		}
		*f.dst = s
	}
	t.Scopes = strings.Fields(scope)
	if len(t.Scopes) == 0 {
		return nil, fmt.Errorf("%w: scope", ErrMissingClaim)
	}
	iat, err := c.GetIssuedAt()
	if err != nil || iat == nil {
		return nil, fmt.Errorf("%w: iat", ErrMissingClaim)
	}
	exp, _ := c.GetExpirationTime()
	t.IssuedAt, t.ExpiresAt = iat.Time, exp.Time
	t.Issuer, _ = c["iss"].(string)
	for _, f := range []struct {
		name string
		dst  *map[string]any
	}{{"tctx", &t.TransactionContext}, {"rctx", &t.RequestContext}} {
		v, ok := c[f.name]
		if !ok {
			continue
		}
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%w: %s is not an object", ErrMissingClaim, f.name)
		}
		*f.dst = m
	}
	if v, ok := c[ChainClaim]; ok {
		list, ok := v.([]any)
		if !ok {
			return nil, fmt.Errorf("%w: %s is not an array", ErrMissingClaim, ChainClaim)
		}
		for _, e := range list {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("%w: %s holds a non-string", ErrMissingClaim, ChainClaim)
			}
			t.Chain = append(t.Chain, s)
		}
	}
	return t, nil
}
