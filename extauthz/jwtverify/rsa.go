package jwtverify

import (
	"crypto"
	"crypto/fips140"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"errors"
	"maps"
	"math/big"
	"sync"
	"sync/atomic"
	"unsafe"

	"filippo.io/bigmod"
	"github.com/golang-jwt/jwt/v5"
)

// RS256, RS384 and RS512 signatures are checked here with a modulus kept in
// Montgomery form per public key, instead of by crypto/rsa, which rebuilds
// that form from the key on every verification (Go 1.26 has no API to keep
// it): about a third of an RS256 verification's cost. The arithmetic is
// filippo.io/bigmod, the standard library's own crypto/internal/fips140/bigmod
// re-exported by its author (constant-time where it matters; a signature and
// a public key are public anyway). PS* and every key this file does not take
// go to golang-jwt and crypto/rsa as before.
//
// The check is RFC 8017 §8.2.2 as crypto/rsa does it: s < n, m = s^e mod n,
// and the whole encoded message compared with the one built from the digest
// (EMSA-PKCS1-v1_5 encode and compare, never a parse of the padding), so a
// signature whose padding or DigestInfo differs in any byte is refused.

// errRSASignature is the one error of a refused RSA signature.
var errRSASignature = errors.New("jwtverify: RSA signature invalid")

// digestInfoPrefixes are the DER DigestInfo headers of RFC 8017 §9.2 note 1,
// each followed by the digest in the encoded message.
var digestInfoPrefixes = map[crypto.Hash][]byte{
	crypto.SHA256: {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20},
	crypto.SHA384: {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30},
	crypto.SHA512: {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40},
}

// maxRSAModuli bounds the moduli kept: far more keys than an issuer
// publishes at once; when full, one is dropped for each new one.
const maxRSAModuli = 64

// rsaModuli keeps the Montgomery form of the RSA public keys seen, by key
// pointer: key sources (jwks.Set, static keys) hand out the same
// *rsa.PublicKey for a key until it is rotated away. Reads take no lock (a
// copy-on-write map); a new key costs one copy of at most maxRSAModuli
// entries. Each entry also keeps the modulus and exponent it was built
// from, and is used only while the key still holds them, so a key changed
// in place after use is judged by what it holds now.
type rsaModuli struct {
	mu sync.Mutex // serialises writers
	m  atomic.Pointer[map[*rsa.PublicKey]keptModulus]
}

// keptModulus is a modulus in Montgomery form and the key values it is for.
type keptModulus struct {
	n   *bigmod.Modulus
	big *big.Int // a copy of the key's N
	e   int
}

// modulus returns pub's modulus in Montgomery form, or nil when pub is not
// one this file checks (then crypto/rsa judges it, and refuses what it must).
func (r *rsaModuli) modulus(pub *rsa.PublicKey) *bigmod.Modulus {
	if p := r.m.Load(); p != nil {
		if k, ok := (*p)[pub]; ok && pub.E == k.e && pub.N != nil && pub.N.Cmp(k.big) == 0 {
			return k.n
		}
	}
	if !fastRSAKey(pub) {
		return nil
	}
	n, err := bigmod.NewModulus(pub.N.Bytes())
	if err != nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	next := map[*rsa.PublicKey]keptModulus{}
	if p := r.m.Load(); p != nil {
		next = maps.Clone(*p)
	}
	for k := range next {
		if len(next) < maxRSAModuli {
			break
		}
		delete(next, k) // any one: more live keys than this is not a real issuer
	}
	next[pub] = keptModulus{n: n, big: new(big.Int).Set(pub.N), e: pub.E}
	r.m.Store(&next)
	return n
}

// fastRSAKey reports whether pub meets crypto/rsa's own rules for a public
// key (odd modulus of at least 1024 bits, odd exponent 3 ≤ e < 2³¹), so that
// this file never accepts a key crypto/rsa would refuse. jwks refuses more
// (fewer than 2048 bits).
func fastRSAKey(pub *rsa.PublicKey) bool {
	return pub != nil && pub.N != nil && pub.N.Sign() > 0 && pub.N.Bit(0) == 1 &&
		pub.N.BitLen() >= 1024 && pub.E >= 3 && pub.E&1 == 1 && pub.E <= 1<<31-1
}

// verifySignature checks sig over input with key by method: RS256/384/512
// with an RSA key here, everything else by method (golang-jwt). In FIPS
// 140-3 mode every signature goes to crypto/rsa, whose validated module
// also applies FIPS's stricter key rules.
func (r *rsaModuli) verifySignature(method jwt.SigningMethod, input string, sig []byte, key crypto.PublicKey) error {
	m, isRSA := method.(*jwt.SigningMethodRSA)
	pub, isRSAKey := key.(*rsa.PublicKey)
	if !isRSA || !isRSAKey || fips140.Enabled() {
		return method.Verify(input, sig, key)
	}
	n := r.modulus(pub)
	if n == nil {
		return method.Verify(input, sig, key)
	}
	return verifyPKCS1v15(n, pub.E, m.Hash, input, sig)
}

// verifyPKCS1v15 is RSASSA-PKCS1-v1_5-VERIFY (RFC 8017 §8.2.2) of input's
// digest under hash h, with the modulus n and exponent e.
func verifyPKCS1v15(n *bigmod.Modulus, e int, h crypto.Hash, input string, sig []byte) error {
	prefix, ok := digestInfoPrefixes[h]
	if !ok {
		return errRSASignature
	}
	k := n.Size()
	tLen := len(prefix) + h.Size()
	// Step 1: the signature is exactly as long as the modulus; §9.2 step 3:
	// room for at least 8 bytes of padding.
	if len(sig) != k || k < tLen+11 {
		return errRSASignature
	}
	s, err := bigmod.NewNat().SetBytes(sig, n) // refuses s ≥ n (RSAVP1 step 1)
	if err != nil {
		return errRSASignature
	}
	em := bigmod.NewNat().ExpShortVarTime(s, uint(e), n).Bytes(n)
	// EM = 0x00 || 0x01 || PS (0xff …) || 0x00 || DigestInfo prefix || digest,
	// compared part by part with what it must be, every byte of it.
	var sum [sha512.Size]byte
	ok = em[0] == 0 && em[1] == 1 && em[k-tLen-1] == 0
	for _, b := range em[2 : k-tLen-1] {
		ok = ok && b == 0xff
	}
	ok = ok && subtle.ConstantTimeCompare(em[k-tLen:k-h.Size()], prefix) == 1
	ok = ok && subtle.ConstantTimeCompare(em[k-h.Size():], digest(h, input, sum[:0])) == 1
	if !ok {
		return errRSASignature
	}
	return nil
}

// digest appends input's hash under h (one digestInfoPrefixes names) to out.
// The string is hashed in place: the hash functions only read their input.
func digest(h crypto.Hash, input string, out []byte) []byte {
	in := unsafe.Slice(unsafe.StringData(input), len(input))
	switch h {
	case crypto.SHA256:
		d := sha256.Sum256(in)
		return append(out, d[:]...)
	case crypto.SHA384:
		d := sha512.Sum384(in)
		return append(out, d[:]...)
	case crypto.SHA512:
		d := sha512.Sum512(in)
		return append(out, d[:]...)
	}
	return out
}
