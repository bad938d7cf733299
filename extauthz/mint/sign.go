package mint

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"unsafe"
)

// sign returns prefix followed by the compact JWS of claims under the key's
// precomputed header: the header value that carries the token upstream, of
// which the token is the tail.
func (k *Key) sign(prefix string, claims []byte) (string, error) {
	// One allocation, sized for the whole value, which becomes the string.
	n := len(prefix) + len(k.header) + b64.EncodedLen(len(claims))
	buf := make([]byte, 0, n+1+b64.EncodedLen(k.sigLen))
	buf = append(buf, prefix...)
	buf = append(buf, k.header...)
	buf = b64.AppendEncode(buf, claims)
	input := buf[len(prefix):] // the JWS signing input: header '.' payload
	var sig []byte
	var err error
	switch k.hash {
	case 0: // Ed25519 signs the message itself
		sig, err = k.signer.Sign(nil, input, crypto.Hash(0))
	default:
		digest := sha256.Sum256(input)
		sig, err = k.signer.Sign(rand.Reader, digest[:], k.hash)
		if err == nil && k.Alg == AlgES256 {
			sig, err = ecdsaDERToRaw(sig, 32)
		}
	}
	if err != nil {
		return "", fmt.Errorf("sign %s: %w", k.Alg, err)
	}
	buf = append(buf, '.')
	buf = b64.AppendEncode(buf, sig)
	// buf is never written again: the token string shares its bytes.
	return unsafe.String(unsafe.SliceData(buf), len(buf)), nil
}

var errBadECDSASignature = errors.New("malformed ECDSA signature")

// ecdsaDERToRaw turns an ASN.1 ECDSA signature, SEQUENCE { r INTEGER, s
// INTEGER }, into JWS form (RFC 7518 §3.4): r and s as fixed-width
// big-endian, concatenated.
func ecdsaDERToRaw(der []byte, size int) ([]byte, error) {
	bad := errBadECDSASignature
	if len(der) < 2 || der[0] != 0x30 || der[1]&0x80 != 0 || int(der[1]) != len(der)-2 {
		return nil, bad
	}
	rest := der[2:]
	out := make([]byte, 2*size)
	for i := range 2 {
		if len(rest) < 2 || rest[0] != 0x02 || rest[1]&0x80 != 0 || int(rest[1]) > len(rest)-2 {
			return nil, bad
		}
		v := rest[2 : 2+int(rest[1])]
		rest = rest[2+int(rest[1]):]
		for len(v) > 0 && v[0] == 0 {
			v = v[1:]
		}
		if len(v) > size {
			return nil, bad
		}
		copy(out[(i+1)*size-len(v):(i+1)*size], v)
	}
	if len(rest) != 0 {
		return nil, bad
	}
	return out, nil
}
