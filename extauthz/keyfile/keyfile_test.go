package keyfile

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The fixtures are the signing-key files of extauthz/mint, which reads its
// keys through this package.
const fixtures = "../mint/testdata"

func TestParse(t *testing.T) {
	tests := []struct {
		file    string
		want    string // type of the key, "" for an error
		wantErr string // part of the message
	}{
		{file: "ed25519.pem", want: "ed25519"},
		{file: "p256-pkcs8.pem", want: "ecdsa"},
		{file: "p256-sec1.pem", want: "ecdsa"},
		{file: "p256-ecparams.pem", want: "ecdsa"},
		{file: "bad-certificate.pem", wantErr: "no private key"},
		{file: "bad-encrypted-legacy.pem", wantErr: "encrypted"},
		{file: "rsa2048-pkcs8.pem", want: "rsa"},
		{file: "rsa2048-pkcs1.pem", want: "rsa"},
		{file: "bad-encrypted-pkcs8.pem", wantErr: "encrypted"},
		{file: "bad-public.pem", wantErr: "no private key"},
		{file: "bad-two-keys.pem", wantErr: "several PEM blocks"},
		{file: "bad-garbage.pem", wantErr: "no PEM block"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(fixtures, tt.file))
			if err != nil {
				t.Fatalf("fixture missing: %v", err)
			}
			k, err := Parse(data)
			if tt.want == "" {
				if !errors.Is(err, ErrBadKey) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want ErrBadKey mentioning %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "PRIVATE KEY-----") {
					t.Fatal("error shows key material")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got string
			switch k.(type) {
			case ed25519.PrivateKey:
				got = "ed25519"
			case *ecdsa.PrivateKey:
				got = "ecdsa"
			case *rsa.PrivateKey:
				got = "rsa"
			}
			if got != tt.want {
				t.Fatalf("key type %T, want %s", k, tt.want)
			}
		})
	}
}

func TestParseRefusesHugeAndTrailing(t *testing.T) {
	if _, err := Parse(make([]byte, MaxBytes+1)); !errors.Is(err, ErrBadKey) {
		t.Fatalf("huge input: %v", err)
	}
	good, err := os.ReadFile(filepath.Join(fixtures, "ed25519.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(append(good, "trailing"...)); !errors.Is(err, ErrBadKey) {
		t.Fatalf("trailing data: %v", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.pem")); err == nil || !strings.Contains(err.Error(), "missing.pem") {
		t.Fatalf("missing file: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"ed25519.pem", "p256-pkcs8.pem", "rsa2048-pkcs1.pem", "bad-two-keys.pem", "bad-encrypted-pkcs8.pem"} {
		if b, err := os.ReadFile(filepath.Join(fixtures, name)); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := Parse(data)
		if (k == nil) == (err == nil) {
			t.Fatalf("key %v with error %v", k, err)
		}
		if err != nil && !errors.Is(err, ErrBadKey) {
			t.Fatalf("error does not wrap ErrBadKey: %v", err)
		}
	})
}
