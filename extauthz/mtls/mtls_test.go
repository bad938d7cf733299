package mtls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tokentailor/tokentailor/extauthz"
)

func readFixture(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestThumbprintMatchesOpenSSL: the thumbprint of the fixture certificate,
// as Envoy would send it, is the one openssl computed (testdata/README.md).
func TestThumbprintMatchesOpenSSL(t *testing.T) {
	cert, err := ParseCertificate(readFixture(t, "client.envoy-encoded"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := Thumbprint(cert), readFixture(t, "client.x5t-s256"); got != want {
		t.Fatalf("Thumbprint = %s, openssl says %s", got, want)
	}
}

func TestCheck(t *testing.T) {
	encoded := readFixture(t, "client.envoy-encoded")
	plain := readFixture(t, "client.pem")
	x5t := readFixture(t, "client.x5t-s256")
	other := otherCertificatePEM(t)
	bound := func(v any) map[string]any { return map[string]any{"sub": "a", "cnf": map[string]any{"x5t#S256": v}} }
	tests := []struct {
		name    string
		claims  map[string]any
		cert    string
		wantErr error
	}{
		{name: "bound, Envoy's URL-encoded certificate", claims: bound(x5t), cert: encoded},
		{name: "bound, plain PEM", claims: bound(x5t), cert: plain},
		{name: "bound, '+' '/' '=' left raw by the encoder", claims: bound(x5t), cert: strings.NewReplacer("%2B", "+", "%2F", "/", "%3D", "=").Replace(encoded)},
		{name: "not bound, no certificate", claims: map[string]any{"sub": "a"}},
		{name: "not bound, cnf with jkt only", claims: map[string]any{"cnf": map[string]any{"jkt": "x"}}},
		{name: "bound, no certificate", claims: bound(x5t), wantErr: ErrNoCertificate},
		{name: "bound, another certificate", claims: bound(x5t), cert: other, wantErr: ErrCertificateMismatch},
		{name: "bound, thumbprint in another case", claims: bound(strings.ToUpper(x5t)), cert: encoded, wantErr: ErrCertificateMismatch},
		{name: "bound, certificate garbage", claims: bound(x5t), cert: "%%%", wantErr: ErrBadCertificate},
		{name: "bound, a key instead of a certificate", claims: bound(x5t), cert: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", wantErr: ErrBadCertificate},
		{name: "bound, certificate too large", claims: bound(x5t), cert: strings.Repeat("A", maxCertificateBytes+1), wantErr: ErrBadCertificate},
		{name: "x5t#S256 not a string", claims: bound(42), cert: encoded, wantErr: ErrBadConfirmation},
		{name: "cnf not an object", claims: map[string]any{"cnf": "x"}, cert: encoded, wantErr: ErrBadConfirmation},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Check(tt.claims, tt.cert)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Check: %v, want %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, extauthz.ErrInvalidToken) {
				t.Errorf("%v is not a 401 invalid_token reason", err)
			}
		})
	}
}

func otherCertificatePEM(t *testing.T) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "client.example"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// FuzzParseCertificate: whatever Envoy (or an attacker reaching the gRPC
// port) sends as source.certificate, parsing never panics, and Check on a
// bound token never passes unless the thumbprint matches.
func FuzzParseCertificate(f *testing.F) {
	f.Add(readFixture(f, "client.envoy-encoded"))
	f.Add(readFixture(f, "client.pem"))
	f.Add("-----BEGIN CERTIFICATE-----%0A%0A-----END CERTIFICATE-----")
	f.Add("%")
	f.Add("")
	want := readFixture(f, "client.x5t-s256")
	f.Fuzz(func(t *testing.T, s string) {
		cert, err := ParseCertificate(s)
		if err != nil {
			return
		}
		if Check(map[string]any{"cnf": map[string]any{"x5t#S256": want}}, s) == nil && Thumbprint(cert) != want {
			t.Fatal("a bound token passed with another certificate")
		}
	})
}
