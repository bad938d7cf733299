package mint

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"math/big"
	"strings"
	"unicode/utf8"

	"github.com/tokentailor/tokentailor/extauthz/keyfile"
)

// Signing algorithms, as JWS alg header values.
const (
	// AlgEdDSA signs with Ed25519 (RFC 8037).
	AlgEdDSA = "EdDSA"
	// AlgES256 signs with ECDSA on P-256 and SHA-256.
	AlgES256 = "ES256"
	// AlgRS256 signs with RSASSA-PKCS1-v1_5 and SHA-256.
	AlgRS256 = "RS256"
)

// ErrBadKey is wrapped by every error about an unusable signing key. It is
// keyfile.ErrBadKey, so PEM errors and key-kind errors match alike.
var ErrBadKey = keyfile.ErrBadKey

const (
	minRSABits = 2048
	maxKIDLen  = 256
)

// Key is one signing key loaded from PEM.
type Key struct {
	// ID is the key's kid: as configured, or its RFC 7638 thumbprint.
	ID string
	// Alg is the JWS algorithm the key signs with: EdDSA, ES256 or RS256.
	Alg string

	signer crypto.Signer
	hash   crypto.Hash // digest to sign; 0 for Ed25519, which signs the message
	jwk    []byte      // public JWK with kid, alg and use, as JSON
	header []byte      // base64url of the JWS header {"alg","kid","typ"} followed by '.'
	sigLen int         // bytes of a JWS signature: 64 for EdDSA and ES256, the modulus size for RS256
}

// Public returns the key's public half.
func (k *Key) Public() crypto.PublicKey { return k.signer.Public() }

// Signer returns the private key: an ed25519.PrivateKey, *ecdsa.PrivateKey or
// *rsa.PrivateKey, usable as is with golang-jwt's SignedString (the dev
// issuer signs its sample tokens this way). It must never be logged.
func (k *Key) Signer() crypto.Signer { return k.signer }

// JWK returns the key's public JWK (kty, crv/x/y or n/e, kid, alg, use "sig").
func (k *Key) JWK() []byte { return bytes.Clone(k.jwk) }

// LoadKey reads a PEM private key from path with extauthz/keyfile; see
// ParseKey. Errors name the file but never show its content.
func LoadKey(path, kid string) (*Key, error) {
	if err := checkKID(kid); err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	priv, err := keyfile.Load(path)
	if err != nil {
		return nil, fmt.Errorf("signing %w", err) // keyfile names the file
	}
	k, err := newKey(priv, kid)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	return k, nil
}

// ParseKey parses one PEM private key: PKCS#8 ("PRIVATE KEY"), PKCS#1
// ("RSA PRIVATE KEY") or SEC1 ("EC PRIVATE KEY", optionally preceded by an
// "EC PARAMETERS" block). Ed25519 signs EdDSA, P-256 ES256, RSA of at least
// 2048 bits RS256; any other key, a public key or certificate, an encrypted
// key, several keys, trailing data or more than keyfile.MaxBytes is refused
// with an error wrapping ErrBadKey. kid "" means the RFC 7638 thumbprint.
func ParseKey(pemBytes []byte, kid string) (*Key, error) {
	if err := checkKID(kid); err != nil {
		return nil, err
	}
	priv, err := keyfile.Parse(pemBytes)
	if err != nil {
		return nil, err
	}
	return newKey(priv, kid)
}

// checkKID refuses a configured kid that cannot travel in a JWS header.
func checkKID(kid string) error {
	if len(kid) > maxKIDLen || !utf8.ValidString(kid) || strings.ContainsFunc(kid, isControl) {
		return fmt.Errorf("%w: kid must be printable UTF-8 of at most %d bytes", ErrBadKey, maxKIDLen)
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// newKey checks the key's kind, picks its algorithm and precomputes its JWK
// and JWS header.
func newKey(s crypto.Signer, kid string) (*Key, error) {
	k := &Key{signer: s}
	switch priv := s.(type) {
	case ed25519.PrivateKey:
		if len(priv) != ed25519.PrivateKeySize {
			return nil, fmt.Errorf("%w: Ed25519 key of %d bytes", ErrBadKey, len(priv))
		}
		k.Alg, k.sigLen = AlgEdDSA, ed25519.SignatureSize
	case *ecdsa.PrivateKey:
		if priv.Curve != elliptic.P256() {
			return nil, fmt.Errorf("%w: EC curve %s not supported (use P-256 or Ed25519)", ErrBadKey, priv.Curve.Params().Name)
		}
		k.Alg, k.hash, k.sigLen = AlgES256, crypto.SHA256, 64
	case *rsa.PrivateKey:
		if bits := priv.N.BitLen(); bits < minRSABits {
			return nil, fmt.Errorf("%w: RSA key of %d bits (at least %d needed)", ErrBadKey, bits, minRSABits)
		}
		k.Alg, k.hash, k.sigLen = AlgRS256, crypto.SHA256, priv.Size()
	default:
		return nil, fmt.Errorf("%w: %T keys not supported (use Ed25519, P-256 or RSA)", ErrBadKey, s)
	}
	members, err := jwkMembers(s.Public())
	if err != nil {
		return nil, err
	}
	if kid == "" {
		kid = thumbprintOf(members)
	}
	k.ID = kid

	jwk := []byte{'{'}
	for _, m := range members {
		jwk = appendJSONString(jwk, m[0])
		jwk = append(jwk, ':')
		jwk = appendJSONString(jwk, m[1])
		jwk = append(jwk, ',')
	}
	jwk = append(jwk, `"kid":`...)
	jwk = appendJSONString(jwk, kid)
	jwk = append(jwk, `,"alg":`...)
	jwk = appendJSONString(jwk, k.Alg)
	jwk = append(jwk, `,"use":"sig"}`...)
	k.jwk = jwk

	hdr := []byte(`{"alg":`)
	hdr = appendJSONString(hdr, k.Alg)
	hdr = append(hdr, `,"kid":`...)
	hdr = appendJSONString(hdr, kid)
	hdr = append(hdr, `,"typ":"at+jwt"}`...)
	k.header = append(b64.AppendEncode(nil, hdr), '.')
	return k, nil
}

var b64 = base64.RawURLEncoding

// jwkMembers returns the RFC 7638 required members of a public key's JWK, in
// lexicographic order of their names.
func jwkMembers(pub crypto.PublicKey) ([][2]string, error) {
	switch pub := pub.(type) {
	case ed25519.PublicKey:
		if len(pub) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: Ed25519 public key of %d bytes", ErrBadKey, len(pub))
		}
		return [][2]string{{"crv", "Ed25519"}, {"kty", "OKP"}, {"x", b64.EncodeToString(pub)}}, nil
	case *ecdsa.PublicKey:
		if pub.Curve != elliptic.P256() {
			return nil, fmt.Errorf("%w: EC curve %s not supported", ErrBadKey, pub.Curve.Params().Name)
		}
		// RFC 7518 §6.2.1.2: coordinates are full width (32 bytes for
		// P-256), leading zeros kept. Bytes gives 0x04 || X || Y.
		raw, err := pub.Bytes()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
		}
		return [][2]string{
			{"crv", "P-256"}, {"kty", "EC"},
			{"x", b64.EncodeToString(raw[1:33])}, {"y", b64.EncodeToString(raw[33:65])},
		}, nil
	case *rsa.PublicKey:
		if pub.N == nil || pub.E <= 0 {
			return nil, fmt.Errorf("%w: incomplete RSA public key", ErrBadKey)
		}
		return [][2]string{
			{"e", b64.EncodeToString(big.NewInt(int64(pub.E)).Bytes())},
			{"kty", "RSA"}, {"n", b64.EncodeToString(pub.N.Bytes())},
		}, nil
	default:
		return nil, fmt.Errorf("%w: %T public keys not supported", ErrBadKey, pub)
	}
}

func thumbprintOf(members [][2]string) string {
	j := []byte{'{'}
	for i, m := range members {
		if i > 0 {
			j = append(j, ',')
		}
		j = appendJSONString(j, m[0])
		j = append(j, ':')
		j = appendJSONString(j, m[1])
	}
	j = append(j, '}')
	sum := sha256.Sum256(j)
	return b64.EncodeToString(sum[:])
}

// Thumbprint returns the RFC 7638 JWK thumbprint (SHA-256, base64url) of an
// Ed25519, P-256 or RSA public key.
func Thumbprint(pub crypto.PublicKey) (string, error) {
	members, err := jwkMembers(pub)
	if err != nil {
		return "", err
	}
	return thumbprintOf(members), nil
}

// GenerateKey makes a fresh key for alg (EdDSA, ES256 or RS256 with 2048
// bits), its kid the thumbprint. For `tokentailor dev` and tests; production
// keys come from files so that every replica signs with the same key.
func GenerateKey(alg string) (*Key, error) {
	var (
		s   crypto.Signer
		err error
	)
	switch alg {
	case AlgEdDSA:
		_, s, err = ed25519.GenerateKey(rand.Reader)
	case AlgES256:
		s, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case AlgRS256:
		s, err = rsa.GenerateKey(rand.Reader, minRSABits)
	default:
		return nil, fmt.Errorf("%w: algorithm %q not supported (EdDSA, ES256, RS256)", ErrBadKey, alg)
	}
	if err != nil {
		return nil, fmt.Errorf("generate %s key: %w", alg, err)
	}
	return newKey(s, "")
}
