// Package keyfile reads PEM private keys, one key per file, the way every
// part of tokentailor that signs (minted tokens, private_key_jwt client
// assertions) loads its key: PKCS#8 ("PRIVATE KEY"), PKCS#1 ("RSA PRIVATE
// KEY") or SEC1 ("EC PRIVATE KEY", optionally after an "EC PARAMETERS"
// block). Public keys, certificates, encrypted keys, several keys and
// trailing data are refused with an error wrapping ErrBadKey that never
// shows key material. Which kinds of key a caller accepts is its own choice.
package keyfile

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// ErrBadKey is wrapped by every error about an unusable key file.
var ErrBadKey = errors.New("unusable private key")

// MaxBytes bounds a key file: a PEM private key is a few KiB.
const MaxBytes = 1 << 20

// Load reads and parses the key file at path; errors name the file.
func Load(path string) (crypto.Signer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	k, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return k, nil
}

// Parse parses the one private key in pemBytes.
func Parse(pemBytes []byte) (crypto.Signer, error) {
	if len(pemBytes) > MaxBytes {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrBadKey, MaxBytes)
	}
	block, err := onePEMBlock(pemBytes)
	if err != nil {
		return nil, err
	}
	return parsePrivate(block)
}

// onePEMBlock returns the only private-key block, refusing anything else.
func onePEMBlock(data []byte) (*pem.Block, error) {
	var key *pem.Block
	rest := data
	for {
		b, r := pem.Decode(rest)
		if b == nil {
			break
		}
		rest = r
		switch {
		case b.Type == "EC PARAMETERS":
			continue // redundant with the curve inside the SEC1 key
		case key != nil:
			return nil, fmt.Errorf("%w: several PEM blocks (%q after %q); one key per file", ErrBadKey, b.Type, key.Type)
		}
		key = b
	}
	if key == nil {
		return nil, fmt.Errorf("%w: no PEM block found", ErrBadKey)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%w: data after the PEM block", ErrBadKey)
	}
	if strings.Contains(key.Headers["Proc-Type"], "ENCRYPTED") {
		return nil, fmt.Errorf("%w: PEM key is encrypted; decrypt it (openssl pkey -in k.pem -out plain.pem)", ErrBadKey)
	}
	return key, nil
}

func parsePrivate(b *pem.Block) (crypto.Signer, error) {
	var (
		k   any
		err error
	)
	switch b.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(b.Bytes)
	case "ENCRYPTED PRIVATE KEY":
		return nil, fmt.Errorf("%w: PEM key is encrypted (PKCS#8); decrypt it (openssl pkey -in k.pem -out plain.pem)", ErrBadKey)
	case "PUBLIC KEY", "RSA PUBLIC KEY", "CERTIFICATE":
		return nil, fmt.Errorf("%w: PEM block %q holds no private key", ErrBadKey, b.Type)
	default:
		return nil, fmt.Errorf("%w: unsupported PEM block %q (want PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)", ErrBadKey, b.Type)
	}
	if err != nil {
		// x509's messages describe the DER structure, never the key material.
		return nil, fmt.Errorf("%w: %q: %v", ErrBadKey, b.Type, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: %T keys cannot sign", ErrBadKey, k)
	}
	return s, nil
}
