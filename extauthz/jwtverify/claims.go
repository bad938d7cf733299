package jwtverify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/go-json-experiment/json"
	"github.com/golang-jwt/jwt/v5"

	"github.com/tokentailor/tokentailor/extauthz"
)

// clientIDClaims name the client a token was issued to, first present wins.
var clientIDClaims = []string{"client_id", "azp", "cid"}

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

// parse decodes each segment once, picks the issuer by the unverified iss,
// applies the header rules, verifies the signature (RS256/384/512 in rsa.go,
// the others with golang-jwt's signing method) and then the time claims with
// golang-jwt's validator.
//
// JSON is decoded by github.com/go-json-experiment/json (encoding/json/v2):
// it refuses duplicate member names, so {"iss":"a","iss":"b"} cannot read one
// way here and another way upstream (RFC 7519 §4, RFC 8725 §3.7), refuses
// invalid UTF-8, and decodes claims in about half the time and a third of the
// allocations of encoding/json. A flat claims object (strings without
// escapes, numbers, literals, arrays of those) is decoded by
// decodeFlatClaims first, exactly as json.Unmarshal would, in under half its
// time; anything else goes to json.Unmarshal.
//
// It also returns the decoded claims segment, which the cache keeps for a
// token seen once (see verify).
func (v *Verifier) parse(ctx context.Context, cred extauthz.Credential, audiences []string, forAudience bool) (*extauthz.Principal, []byte, error) {
	h64, c64, s64, err := segments(cred.Raw)
	if err != nil {
		return nil, nil, err
	}
	header, err := v.headers.decode(h64)
	if err != nil {
		return nil, nil, err
	}
	// One buffer for the claims and the signature.
	buf := make([]byte, b64.DecodedLen(len(c64))+b64.DecodedLen(len(s64)))
	cb, err := decodeSegment(buf, c64)
	if err != nil {
		return nil, nil, err
	}
	sig, err := decodeSegment(buf[len(cb):], s64)
	if err != nil {
		return nil, nil, err
	}
	claims, is, err := v.decodeClaims(cb)
	if err != nil {
		return nil, nil, err
	}
	key, err := is.key(ctx, header)
	if err != nil {
		return nil, nil, err
	}
	method := jwt.GetSigningMethod(header.Alg) // checked against the allowlist by key
	if method == nil {
		return nil, nil, invalid("unverifiable (unknown alg)")
	}
	if err := v.rsa.verifySignature(method, cred.Raw[:len(h64)+1+len(c64)], sig, key); err != nil {
		return nil, nil, invalid("signature invalid")
	}
	p, err := is.judge(claims, cred, audiences, forAudience)
	return p, cb, err
}

// decodeClaims decodes the claims segment as strict JSON and picks the
// issuer its iss names.
func (v *Verifier) decodeClaims(cb []byte) (jwt.MapClaims, *issuer, error) {
	// Sizing the map for the members it will hold spares it from growing
	// while it is filled; nested names only make the hint larger.
	hint := min(bytes.Count(cb, []byte(`":`)), maxClaimsHint)
	claims := make(jwt.MapClaims, hint)
	// The fast path only for segments of an ordinary token's size: a large
	// one it gives up on late would be decoded twice before its signature.
	if len(cb) > maxFlatClaims || !decodeFlatClaims(cb, claims) {
		claims = make(jwt.MapClaims, hint)
		if err := json.Unmarshal(cb, (*map[string]any)(&claims)); err != nil || claims == nil {
			return nil, nil, invalid("claims are not a JSON object without duplicate names")
		}
	}
	is, err := v.selectIssuer(claims)
	if err != nil {
		return nil, nil, err
	}
	return claims, is, nil
}

// judge runs every check after the signature's: the time claims, the token
// kind, the audience, sub; and builds the principal.
func (is *issuer) judge(claims jwt.MapClaims, cred extauthz.Credential, audiences []string, forAudience bool) (*extauthz.Principal, error) {
	// The time claims are judged at the request's time, as the cache entries
	// are: one clock reading per Check.
	if err := is.validate(claims, cred.PresentedAt); err != nil {
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

// rejudge builds the principal of a token whose signature was verified at
// its first sighting, from the claims segment the cache kept: everything
// but the header rules, the key and the signature runs again (the same
// bytes passed those).
func (v *Verifier) rejudge(cb []byte, cred extauthz.Credential, audiences []string, forAudience bool) (*extauthz.Principal, error) {
	claims, is, err := v.decodeClaims(cb)
	if err != nil {
		return nil, err
	}
	return is.judge(claims, cred, audiences, forAudience)
}

// maxFlatClaims bounds the claims segments decodeFlatClaims is tried on.
const maxFlatClaims = 8 << 10

// maxClaimsHint caps the size hint of a claims map.
const maxClaimsHint = 64

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
		Unbound:    extauthz.Unconfirmed(claims),
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
