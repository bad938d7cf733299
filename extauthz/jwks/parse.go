package jwks

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
)

// Bounds on what a key set may hold; beyond them the document is refused or
// the key skipped.
const (
	// MaxKeys is the most keys one set may hold.
	MaxKeys = 100
	// MinRSABits is the smallest RSA modulus accepted (RFC 7518 §3.3).
	MinRSABits = 2048
	// MaxRSABits bounds RSA moduli, so a hostile set cannot make every
	// verification slow.
	MaxRSABits = 8192
)

// ErrInvalidSet: the JWKS document is unusable as a whole.
var ErrInvalidSet = errors.New("invalid JWKS")

// jwk is one verification key taken from a set.
type jwk struct {
	kid string
	alg string // the key's alg member, "" when absent
	key crypto.PublicKey
}

type rawKey struct {
	Kty    string   `json:"kty"`
	Kid    *string  `json:"kid"`
	Use    string   `json:"use"`
	KeyOps []string `json:"key_ops"`
	Alg    string   `json:"alg"`
	N      string   `json:"n"`
	E      string   `json:"e"`
	Crv    string   `json:"crv"`
	X      string   `json:"x"`
	Y      string   `json:"y"`
}

// skipped says why one key of a set was left out.
type skipped struct {
	index  int
	reason string
}

// parseSet decodes a JWKS (RFC 7517 §5). Keys that are not for signature
// verification (use "enc", key_ops without "verify"), of an unknown type, or
// malformed or weak are skipped, and reported so they can be logged; a key
// set the issuer extends with a key type we do not know stays usable. The
// document itself must be a JSON object with a "keys" array of objects.
func parseSet(data []byte) ([]jwk, []skipped, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, nil, fmt.Errorf("%w: not a JSON object with a keys array", ErrInvalidSet)
	}
	if doc.Keys == nil {
		return nil, nil, fmt.Errorf("%w: no keys member", ErrInvalidSet)
	}
	if len(doc.Keys) > MaxKeys {
		return nil, nil, fmt.Errorf("%w: %d keys, at most %d", ErrInvalidSet, len(doc.Keys), MaxKeys)
	}
	var keys []jwk
	var skips []skipped
	for i, raw := range doc.Keys {
		var rk rawKey
		if err := json.Unmarshal(raw, &rk); err != nil {
			skips = append(skips, skipped{i, "not a JSON object of the expected shape"})
			continue
		}
		k, err := parseKey(rk)
		if err != nil {
			skips = append(skips, skipped{i, err.Error()})
			continue
		}
		keys = append(keys, k)
	}
	return keys, skips, nil
}

func parseKey(rk rawKey) (jwk, error) {
	if rk.Use != "" && rk.Use != "sig" {
		return jwk{}, fmt.Errorf("use %q is not sig", rk.Use)
	}
	if rk.KeyOps != nil && !slices.Contains(rk.KeyOps, "verify") {
		return jwk{}, errors.New("key_ops does not allow verify")
	}
	k := jwk{alg: rk.Alg}
	if rk.Kid != nil {
		k.kid = *rk.Kid
	}
	var err error
	switch rk.Kty {
	case "RSA":
		k.key, err = parseRSA(rk)
	case "EC":
		k.key, err = parseEC(rk)
	case "OKP":
		k.key, err = parseOKP(rk)
	default:
		return jwk{}, fmt.Errorf("unsupported kty %q", rk.Kty)
	}
	if err != nil {
		return jwk{}, err
	}
	if k.alg != "" {
		if err := fits(k.key, k.alg); err != nil {
			return jwk{}, fmt.Errorf("alg %q does not fit the key: %w", k.alg, err)
		}
	}
	return k, nil
}

// b64 decodes base64url without padding (RFC 7515 §2); trailing padding,
// which some servers add, is tolerated.
func b64(s string) ([]byte, error) {
	return base64.RawURLEncoding.Strict().DecodeString(strings.TrimRight(s, "="))
}

func parseRSA(rk rawKey) (*rsa.PublicKey, error) {
	n, err := b64(rk.N)
	if err != nil || len(n) == 0 {
		return nil, errors.New("bad RSA modulus")
	}
	e, err := b64(rk.E)
	if err != nil || len(e) == 0 || len(e) > 4 {
		return nil, errors.New("bad RSA exponent")
	}
	N := new(big.Int).SetBytes(n)
	if bits := N.BitLen(); bits < MinRSABits || bits > MaxRSABits {
		return nil, fmt.Errorf("RSA key of %d bits outside [%d, %d]", bits, MinRSABits, MaxRSABits)
	}
	E := new(big.Int).SetBytes(e).Int64()
	if E < 3 || E%2 == 0 || E > 1<<31-1 {
		return nil, errors.New("bad RSA exponent")
	}
	return &rsa.PublicKey{N: N, E: int(E)}, nil
}

func curveOf(crv string) (elliptic.Curve, int, bool) {
	switch crv {
	case "P-256":
		return elliptic.P256(), 32, true
	case "P-384":
		return elliptic.P384(), 48, true
	case "P-521":
		return elliptic.P521(), 66, true
	}
	return nil, 0, false
}

func parseEC(rk rawKey) (*ecdsa.PublicKey, error) {
	curve, size, ok := curveOf(rk.Crv)
	if !ok {
		return nil, fmt.Errorf("unsupported EC curve %q", rk.Crv)
	}
	x, errX := b64(rk.X)
	y, errY := b64(rk.Y)
	// RFC 7518 §6.2.1.2: coordinates are full-length octet strings.
	if errX != nil || errY != nil || len(x) != size || len(y) != size {
		return nil, errors.New("bad EC coordinates")
	}
	point := make([]byte, 0, 1+2*size)
	point = append(append(append(point, 4), x...), y...)
	// Rejects points not on the curve (invalid-curve attacks).
	pub, err := ecdsa.ParseUncompressedPublicKey(curve, point)
	if err != nil {
		return nil, errors.New("EC point not on curve")
	}
	return pub, nil
}

func parseOKP(rk rawKey) (ed25519.PublicKey, error) {
	if rk.Crv != "Ed25519" {
		return nil, fmt.Errorf("unsupported OKP curve %q", rk.Crv)
	}
	x, err := b64(rk.X)
	if err != nil || len(x) != ed25519.PublicKeySize {
		return nil, errors.New("bad Ed25519 key")
	}
	return ed25519.PublicKey(x), nil
}

// errWrongKeyType: a key's type does not fit the algorithm.
var errWrongKeyType = errors.New("key type does not fit alg")

// fits reports whether key can verify signatures made with alg: RSA for
// RS*/PS*, the EC curve that alg names for ES*, Ed25519 for EdDSA. Symmetric
// algorithms never fit a published key.
func fits(key crypto.PublicKey, alg string) error {
	switch k := key.(type) {
	case *rsa.PublicKey:
		switch alg {
		case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
			return nil
		}
	case *ecdsa.PublicKey:
		want := map[string]string{"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}[alg]
		if want != "" && k.Curve.Params().Name == want {
			return nil
		}
	case ed25519.PublicKey:
		if alg == "EdDSA" || alg == "Ed25519" {
			return nil
		}
	}
	return errWrongKeyType
}

// KeyFits reports whether key can verify signatures made with alg; see
// Set.Key. It is exported for other KeySources that want the same rule.
func KeyFits(key crypto.PublicKey, alg string) bool { return fits(key, alg) == nil }
