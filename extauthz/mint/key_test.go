package mint

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/tokentailor/tokentailor/extauthz/keyfile"
)

func TestLoadKeyFixtures(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		kid     string
		wantAlg string
		wantErr error
	}{
		{name: "ed25519 pkcs8", file: "ed25519.pem", wantAlg: AlgEdDSA},
		{name: "p256 pkcs8", file: "p256-pkcs8.pem", wantAlg: AlgES256},
		{name: "p256 sec1", file: "p256-sec1.pem", wantAlg: AlgES256},
		{name: "p256 sec1 after EC PARAMETERS", file: "p256-ecparams.pem", wantAlg: AlgES256},
		{name: "rsa2048 pkcs8", file: "rsa2048-pkcs8.pem", wantAlg: AlgRS256},
		{name: "rsa2048 pkcs1", file: "rsa2048-pkcs1.pem", wantAlg: AlgRS256},
		{name: "configured kid", file: "ed25519.pem", kid: "2026-01", wantAlg: AlgEdDSA},
		{name: "kid with control character", file: "ed25519.pem", kid: "a\nb", wantErr: ErrBadKey},
		{name: "kid too long", file: "ed25519.pem", kid: strings.Repeat("k", maxKIDLen+1), wantErr: ErrBadKey},
		{name: "rsa 1024", file: "bad-rsa1024.pem", wantErr: ErrBadKey},
		{name: "p384", file: "bad-p384.pem", wantErr: ErrBadKey},
		{name: "x25519 cannot sign", file: "bad-x25519.pem", wantErr: ErrBadKey},
		{name: "encrypted pkcs8", file: "bad-encrypted-pkcs8.pem", wantErr: ErrBadKey},
		{name: "encrypted legacy pem", file: "bad-encrypted-legacy.pem", wantErr: ErrBadKey},
		{name: "public key", file: "bad-public.pem", wantErr: ErrBadKey},
		{name: "certificate", file: "bad-certificate.pem", wantErr: ErrBadKey},
		{name: "two keys", file: "bad-two-keys.pem", wantErr: ErrBadKey},
		{name: "garbage", file: "bad-garbage.pem", wantErr: ErrBadKey},
		{name: "PEM around non-DER", file: "bad-not-der.pem", wantErr: ErrBadKey},
		{name: "empty file", file: "bad-empty.pem", wantErr: ErrBadKey},
		{name: "missing file", file: "no-such.pem", wantErr: fs.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join("testdata", tt.file)
			k, err := LoadKey(path, tt.kid)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("LoadKey(%s) error = %v, want %v", tt.file, err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), path) {
					t.Errorf("error %q does not name the file %s", err, path)
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadKey(%s): %v", tt.file, err)
			}
			if k.Alg != tt.wantAlg {
				t.Errorf("Alg = %q, want %q", k.Alg, tt.wantAlg)
			}
			wantKID := tt.kid
			if wantKID == "" {
				wantKID, err = Thumbprint(k.Public())
				if err != nil {
					t.Fatal(err)
				}
			}
			if k.ID != wantKID {
				t.Errorf("ID = %q, want %q", k.ID, wantKID)
			}
		})
	}
}

func TestParseKeyRejectsTrailingData(t *testing.T) {
	pemBytes, err := os.ReadFile("testdata/ed25519.pem")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseKey(append(pemBytes, "trailing"...), ""); !errors.Is(err, ErrBadKey) {
		t.Fatalf("error = %v, want ErrBadKey", err)
	}
	if _, err := ParseKey(append(pemBytes, "\n\n  \n"...), ""); err != nil {
		t.Fatalf("trailing whitespace refused: %v", err)
	}
}

func TestParseKeyRejectsHugeInput(t *testing.T) {
	if _, err := ParseKey(make([]byte, keyfile.MaxBytes+1), ""); !errors.Is(err, ErrBadKey) {
		t.Fatalf("error = %v, want ErrBadKey", err)
	}
}

func TestKeyErrorsNeverShowKeyMaterial(t *testing.T) {
	for _, file := range []string{"bad-rsa1024.pem", "bad-p384.pem", "bad-two-keys.pem", "bad-not-der.pem"} {
		pemBytes, err := os.ReadFile(filepath.Join("testdata", file))
		if err != nil {
			t.Fatal(err)
		}
		_, err = ParseKey(pemBytes, "")
		if err == nil {
			t.Fatalf("%s: accepted", file)
		}
		for _, line := range strings.Split(string(pemBytes), "\n") {
			if len(line) > 16 && !strings.HasPrefix(line, "-----") && strings.Contains(err.Error(), line) {
				t.Errorf("%s: error shows PEM content: %v", file, err)
			}
		}
	}
}

// TestThumbprintRFC7638Vector checks the example of RFC 7638 §3.1.
func TestThumbprintRFC7638Vector(t *testing.T) {
	const (
		n    = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
		want = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
	)
	nb, err := base64.RawURLEncoding.DecodeString(n)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Thumbprint(&rsa.PublicKey{N: new(big.Int).SetBytes(nb), E: 65537})
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("Thumbprint = %s, want %s", got, want)
	}
}

// TestThumbprintAgreesWithGoJose cross-checks every key kind against an
// independent implementation.
func TestThumbprintAgreesWithGoJose(t *testing.T) {
	for _, alg := range []string{AlgEdDSA, AlgES256, AlgRS256} {
		t.Run(alg, func(t *testing.T) {
			k := testKey(t, alg)
			want, err := (&jose.JSONWebKey{Key: k.Public()}).Thumbprint(crypto.SHA256)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Thumbprint(k.Public())
			if err != nil {
				t.Fatal(err)
			}
			if got != base64.RawURLEncoding.EncodeToString(want) || k.ID != got {
				t.Fatalf("Thumbprint = %s, ID = %s, go-jose = %x", got, k.ID, want)
			}
		})
	}
}

func TestThumbprintRejectsOtherKeys(t *testing.T) {
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		pub  crypto.PublicKey
	}{
		{name: "P-384", pub: &p384.PublicKey},
		{name: "short ed25519", pub: ed25519.PublicKey{1, 2, 3}},
		{name: "rsa without modulus", pub: &rsa.PublicKey{E: 65537}},
		{name: "not a key", pub: "key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Thumbprint(tt.pub); !errors.Is(err, ErrBadKey) {
				t.Fatalf("error = %v, want ErrBadKey", err)
			}
		})
	}
}

func TestGenerateKey(t *testing.T) {
	tests := []struct {
		alg     string
		wantErr error
	}{
		{alg: AlgEdDSA},
		{alg: AlgES256},
		{alg: AlgRS256},
		{alg: "HS256", wantErr: ErrBadKey},
		{alg: "ES384", wantErr: ErrBadKey},
		{alg: "none", wantErr: ErrBadKey},
	}
	for _, tt := range tests {
		t.Run(tt.alg, func(t *testing.T) {
			k, err := GenerateKey(tt.alg)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if err == nil && k.Alg != tt.alg {
				t.Fatalf("Alg = %q, want %q", k.Alg, tt.alg)
			}
		})
	}
}

// TestJWKRoundTrip parses every key's JWK with go-jose and compares the
// public key and the metadata.
func TestJWKRoundTrip(t *testing.T) {
	for _, file := range []string{"ed25519.pem", "p256-sec1.pem", "rsa2048-pkcs1.pem"} {
		t.Run(file, func(t *testing.T) {
			k, err := LoadKey(filepath.Join("testdata", file), "")
			if err != nil {
				t.Fatal(err)
			}
			var jwk jose.JSONWebKey
			if err := jwk.UnmarshalJSON(k.JWK()); err != nil {
				t.Fatalf("go-jose rejects %s: %v", k.JWK(), err)
			}
			if jwk.KeyID != k.ID || jwk.Algorithm != k.Alg || jwk.Use != "sig" || !jwk.IsPublic() {
				t.Errorf("jwk = kid %q alg %q use %q public %v", jwk.KeyID, jwk.Algorithm, jwk.Use, jwk.IsPublic())
			}
			type equaler interface{ Equal(crypto.PublicKey) bool }
			if !k.Public().(equaler).Equal(jwk.Key) {
				t.Errorf("public key differs after the JWK round trip")
			}
		})
	}
}

// TestSignerWorksWithJWTLibrary: Signer's promise to the dev issuer.
func TestSignerWorksWithJWTLibrary(t *testing.T) {
	for _, alg := range []string{AlgEdDSA, AlgES256, AlgRS256} {
		t.Run(alg, func(t *testing.T) {
			k := testKey(t, alg)
			signed, err := jwt.NewWithClaims(jwt.GetSigningMethod(alg), jwt.MapClaims{"sub": "dev"}).SignedString(k.Signer())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := jwt.Parse(signed, func(*jwt.Token) (any, error) { return k.Public(), nil },
				jwt.WithValidMethods([]string{alg})); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestECDSADERToRaw(t *testing.T) {
	tests := []struct {
		name    string
		der     []byte
		want    []byte
		wantErr bool
	}{
		{name: "short integers are left-padded", der: []byte{0x30, 0x06, 0x02, 0x01, 0x05, 0x02, 0x01, 0x07},
			want: append(append(make([]byte, 31), 5), append(make([]byte, 31), 7)...)},
		{name: "leading zero of a positive integer is dropped", der: append([]byte{0x30, 0x26, 0x02, 0x21, 0x00}, append(fill(32, 0xff), 0x02, 0x01, 0x01)...),
			want: append(fill(32, 0xff), append(make([]byte, 31), 1)...)},
		{name: "empty", der: nil, wantErr: true},
		{name: "not a sequence", der: []byte{0x31, 0x00}, wantErr: true},
		{name: "length mismatch", der: []byte{0x30, 0x07, 0x02, 0x01, 0x05, 0x02, 0x01, 0x07}, wantErr: true},
		{name: "integer overruns", der: []byte{0x30, 0x06, 0x02, 0x09, 0x05, 0x02, 0x01, 0x07}, wantErr: true},
		{name: "one integer", der: []byte{0x30, 0x03, 0x02, 0x01, 0x05}, wantErr: true},
		{name: "too wide", der: append([]byte{0x30, 0x25, 0x02, 0x21}, append(fill(33, 0x01), 0x02, 0x00)...), wantErr: true},
		{name: "trailing bytes", der: []byte{0x30, 0x07, 0x02, 0x01, 0x05, 0x02, 0x01, 0x07, 0x00}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ecdsaDERToRaw(tt.der, 32)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error = %v, wantErr %v", err, tt.wantErr)
			}
			if !tt.wantErr && string(got) != string(tt.want) {
				t.Fatalf("got %x, want %x", got, tt.want)
			}
		})
	}
}

func fill(n int, b byte) []byte {
	s := make([]byte, n)
	for i := range s {
		s[i] = b
	}
	return s
}

// testKey loads the fixture key for alg (faster than generating RSA keys).
func testKey(t testing.TB, alg string) *Key {
	t.Helper()
	file := map[string]string{AlgEdDSA: "ed25519.pem", AlgES256: "p256-pkcs8.pem", AlgRS256: "rsa2048-pkcs8.pem"}[alg]
	k, err := LoadKey(filepath.Join("testdata", file), "")
	if err != nil {
		t.Fatal(err)
	}
	return k
}
