package jwtverify

import (
	"crypto"
	"crypto/fips140"
	"crypto/rand"
	"crypto/rsa"
	"math/big"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// rsaTestKeys are generated once per test binary: a 2048-bit key and one of
// 2052 bits, whose modulus does not fill its top byte.
var rsaTestKeys = sync.OnceValue(func() []*rsa.PrivateKey {
	var keys []*rsa.PrivateKey
	for _, bits := range []int{2048, 2052} {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			panic(err)
		}
		keys = append(keys, k)
	}
	return keys
})

// rawSign returns em^d mod n as a k-byte signature: a "signature" of any
// encoded message, to build paddings a signer would never produce.
func rawSign(k *rsa.PrivateKey, em []byte) []byte {
	s := new(big.Int).Exp(new(big.Int).SetBytes(em), k.D, k.N)
	return s.FillBytes(make([]byte, k.Size()))
}

// encodedMessage is EMSA-PKCS1-v1_5 (RFC 8017 §9.2) of input under h, for a
// k-byte modulus.
func encodedMessage(h crypto.Hash, input string, k int) []byte {
	prefix := digestInfoPrefixes[h]
	tLen := len(prefix) + h.Size()
	em := make([]byte, k)
	em[1] = 1
	for i := 2; i < k-tLen-1; i++ {
		em[i] = 0xff
	}
	copy(em[k-tLen:], prefix)
	d := h.New()
	d.Write([]byte(input))
	copy(em[k-h.Size():], d.Sum(nil))
	return em
}

// stdVerify is crypto/rsa's verdict, the reference this file must agree with.
func stdVerify(pub *rsa.PublicKey, h crypto.Hash, input string, sig []byte) error {
	d := h.New()
	d.Write([]byte(input))
	return rsa.VerifyPKCS1v15(pub, h, d.Sum(nil), sig)
}

var rsaMethods = []*jwt.SigningMethodRSA{jwt.SigningMethodRS256, jwt.SigningMethodRS384, jwt.SigningMethodRS512}

// TestRSAAgreesWithCryptoRSA: for valid signatures and for each way a
// signature can be wrong (length, range, padding, DigestInfo, digest, hash),
// the kept-modulus check gives crypto/rsa's verdict.
func TestRSAAgreesWithCryptoRSA(t *testing.T) {
	const input = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9"
	for _, key := range rsaTestKeys() {
		k := key.Size()
		for _, m := range rsaMethods {
			h := m.Hash
			em := encodedMessage(h, input, k)
			tLen := len(digestInfoPrefixes[h]) + h.Size()
			mutate := func(f func(em []byte)) []byte {
				e := append([]byte(nil), em...)
				f(e)
				return rawSign(key, e)
			}
			valid := rawSign(key, em)
			nBytes := key.N.FillBytes(make([]byte, k))
			cases := []struct {
				name string
				sig  []byte
				ok   bool
			}{
				{"valid", valid, true},
				{"digest bit flipped", mutate(func(e []byte) { e[k-1] ^= 1 }), false},
				{"last byte flipped", func() []byte { s := append([]byte(nil), valid...); s[k-1] ^= 1; return s }(), false},
				{"one byte short", valid[1:], false},
				{"one byte long", append([]byte{0}, valid...), false},
				{"empty", nil, false},
				{"zero", make([]byte, k), false},
				{"equal to n", nBytes, false},
				{"block type 2", mutate(func(e []byte) { e[1] = 2 }), false},
				{"padding byte not ff", mutate(func(e []byte) { e[k/2-tLen/2] = 0xfe }), false},
				{"separator not zero", mutate(func(e []byte) { e[k-tLen-1] = 0xff }), false},
				{"early separator, garbage after digest", mutate(func(e []byte) {
					copy(e[2+8:], e[k-tLen-1:])
					for i := 2 + 8 + tLen + 1; i < k; i++ {
						e[i] = 0xaa
					}
				}), false},
				{"other hash OID", mutate(func(e []byte) { e[k-h.Size()-4] ^= 0x03 }), false},
				{"DigestInfo without NULL", mutate(func(e []byte) {
					// 30 2f 30 0b 06 09 <oid> 04 20 <digest>: shift the
					// prefix, dropping 05 00; one more 0xff of padding.
					p := digestInfoPrefixes[h]
					alt := append([]byte{p[0], p[1] - 2, p[2], p[3] - 2}, p[4:15]...)
					alt = append(alt, p[17:]...)
					start := k - len(alt) - h.Size()
					e[start-1] = 0
					for i := 2; i < start-1; i++ {
						e[i] = 0xff
					}
					copy(e[start:], alt)
				}), false},
				{"digest of other input", rawSign(key, encodedMessage(h, input+".", k)), false},
			}
			for _, c := range cases {
				t.Run(strconv.Itoa(key.N.BitLen())+"/"+m.Name+"/"+c.name, func(t *testing.T) {
					var r rsaModuli
					got := r.verifySignature(m, input, c.sig, &key.PublicKey)
					want := stdVerify(&key.PublicKey, h, input, c.sig)
					if (got == nil) != (want == nil) {
						t.Fatalf("kept modulus says %v, crypto/rsa says %v", got, want)
					}
					if (got == nil) != c.ok {
						t.Fatalf("verdict %v, want ok=%v", got, c.ok)
					}
				})
			}
			// A signature made for one hash never passes as another.
			for _, other := range rsaMethods {
				if other == m {
					continue
				}
				var r rsaModuli
				if r.verifySignature(other, input, valid, &key.PublicKey) == nil {
					t.Errorf("%s signature accepted as %s", m.Name, other.Name)
				}
			}
		}
	}
}

// TestRSAKeysTakenOrLeft: keys crypto/rsa refuses are left to it (and
// refused there); kept moduli stay bounded and still verify after a reset.
func TestRSAKeysTakenOrLeft(t *testing.T) {
	skipInFIPSMode(t)
	key := rsaTestKeys()[0]
	pub := &key.PublicKey
	bad := []struct {
		name string
		pub  *rsa.PublicKey
	}{
		{"nil modulus", &rsa.PublicKey{E: 65537}},
		{"even modulus", &rsa.PublicKey{N: new(big.Int).Add(pub.N, big.NewInt(1)), E: 65537}},
		{"512 bits", &rsa.PublicKey{N: new(big.Int).Rsh(pub.N, 1536), E: 65537}},
		{"even exponent", &rsa.PublicKey{N: pub.N, E: 65536}},
		{"exponent 1", &rsa.PublicKey{N: pub.N, E: 1}},
		{"exponent ≥ 2³¹", &rsa.PublicKey{N: pub.N, E: 1<<31 + 1}},
	}
	var r rsaModuli
	for _, c := range bad {
		if r.modulus(c.pub) != nil {
			t.Errorf("%s: modulus kept", c.name)
		}
		if r.verifySignature(jwt.SigningMethodRS256, "a.b", make([]byte, 256), c.pub) == nil {
			t.Errorf("%s: signature accepted", c.name)
		}
	}
	const input = "a.b"
	sig := rawSign(key, encodedMessage(crypto.SHA256, input, key.Size()))
	for i := range 3 * maxRSAModuli {
		p := &rsa.PublicKey{N: pub.N, E: pub.E} // a new pointer each time
		if err := r.verifySignature(jwt.SigningMethodRS256, input, sig, p); err != nil {
			t.Fatalf("key %d: %v", i, err)
		}
		if n := len(*r.m.Load()); n > maxRSAModuli {
			t.Fatalf("%d moduli kept, bound %d", n, maxRSAModuli)
		}
	}
	if r.modulus(pub) != r.modulus(pub) {
		t.Error("the same key's modulus is built twice")
	}
}

// TestRSAKeyChangedInPlace: a key whose modulus is changed after its
// modulus was kept is judged by what it holds now, as crypto/rsa would.
func TestRSAKeyChangedInPlace(t *testing.T) {
	skipInFIPSMode(t)
	a, b := rsaTestKeys()[0], rsaTestKeys()[1]
	pub := &rsa.PublicKey{N: new(big.Int).Set(a.N), E: a.E}
	const input = "a.b"
	sigA := rawSign(a, encodedMessage(crypto.SHA256, input, a.Size()))
	sigB := rawSign(b, encodedMessage(crypto.SHA256, input, b.Size()))
	var r rsaModuli
	if err := r.verifySignature(jwt.SigningMethodRS256, input, sigA, pub); err != nil {
		t.Fatal(err)
	}
	pub.N.Set(b.N)
	if r.verifySignature(jwt.SigningMethodRS256, input, sigA, pub) == nil {
		t.Fatal("a signature of the old key accepted after the key changed")
	}
	if err := r.verifySignature(jwt.SigningMethodRS256, input, sigB, pub); err != nil {
		t.Fatalf("the changed key's own signature: %v", err)
	}
}

// skipInFIPSMode skips a test of the kept moduli in FIPS 140-3 mode, where
// none is kept (TestRSAFIPSModeLeftToCryptoRSA).
func skipInFIPSMode(t *testing.T) {
	if fips140.Enabled() {
		t.Skip("FIPS 140-3 mode: every RSA signature goes to crypto/rsa")
	}
}

// TestRSAFIPSModeLeftToCryptoRSA: in FIPS 140-3 mode (GODEBUG=fips140=on,
// in a child process) RSA signatures are verified by crypto/rsa, inside its
// validated module and under its stricter key rules; no modulus is kept.
func TestRSAFIPSModeLeftToCryptoRSA(t *testing.T) {
	if os.Getenv("TOKENTAILOR_FIPS_CHILD") == "1" {
		if !fips140.Enabled() {
			t.Fatal("the child is not in FIPS 140-3 mode")
		}
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		const input = "a.b"
		sig := rawSign(key, encodedMessage(crypto.SHA256, input, key.Size()))
		var r rsaModuli
		if err := r.verifySignature(jwt.SigningMethodRS256, input, sig, &key.PublicKey); err != nil {
			t.Fatalf("a valid signature: %v", err)
		}
		if r.verifySignature(jwt.SigningMethodRS256, input+".", sig, &key.PublicKey) == nil {
			t.Fatal("a signature of another input accepted")
		}
		if r.m.Load() != nil {
			t.Fatal("a modulus was kept in FIPS 140-3 mode")
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestRSAFIPSModeLeftToCryptoRSA$", "-test.v")
	cmd.Env = append(os.Environ(), "GODEBUG=fips140=on", "TOKENTAILOR_FIPS_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestRSAFIPSModeLeftToCryptoRSA") {
		t.Fatalf("child in FIPS 140-3 mode: %v\n%s", err, out)
	}
}

// FuzzRSAPKCS1v15: for any encoded message (signed raw, so every padding and
// DigestInfo variant is a mathematically valid signature of it) and for any
// signature bytes, the kept-modulus check agrees with crypto/rsa.
func FuzzRSAPKCS1v15(f *testing.F) {
	key := rsaTestKeys()[0]
	k := key.Size()
	f.Add(encodedMessage(crypto.SHA256, "a.b", k), "a.b", uint8(0), false)
	f.Add(encodedMessage(crypto.SHA512, "x.y", k), "x.y", uint8(2), false)
	f.Add(rawSign(key, encodedMessage(crypto.SHA384, "a.b", k)), "a.b", uint8(1), true)
	f.Add([]byte{0, 1, 0xff, 0}, "", uint8(0), false)
	f.Fuzz(func(t *testing.T, data []byte, input string, hash uint8, asSignature bool) {
		m := rsaMethods[int(hash)%len(rsaMethods)]
		sig := data
		if !asSignature {
			// data is the encoded message: made k bytes below n, then signed.
			em := make([]byte, k)
			copy(em[max(k-len(data), 1):], data[max(len(data)-k+1, 0):])
			sig = rawSign(key, em)
		}
		var r rsaModuli
		got := r.verifySignature(m, input, sig, &key.PublicKey)
		want := stdVerify(&key.PublicKey, m.Hash, input, sig)
		if (got == nil) != (want == nil) {
			t.Fatalf("kept modulus says %v, crypto/rsa says %v", got, want)
		}
	})
}
