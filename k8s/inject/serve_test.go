package inject

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tokentailor/tokentailor/envoy"
)

// writeCert writes a self-signed certificate for 127.0.0.1 with the given
// serial to dir and returns the file paths.
func writeCert(t *testing.T, dir string, serial int64) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "tokentailor-webhook"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func servedSerial(t *testing.T, addr string) int64 {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // the test reads the served certificate
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

func TestServeReloadsCertificate(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeCert(t, dir, 1)
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, ln, Options{CertFile: certFile, KeyFile: keyFile, CertCheckInterval: time.Minute, Now: clock.now}, nil)
	}()
	addr := ln.Addr().String()

	if got := servedSerial(t, addr); got != 1 {
		t.Fatalf("serial = %d, want 1", got)
	}
	writeCert(t, dir, 2)
	if got := servedSerial(t, addr); got != 1 {
		t.Errorf("serial before the check interval = %d, want 1", got)
	}
	clock.add(time.Minute)
	if got := servedSerial(t, addr); got != 2 {
		t.Errorf("serial after renewal = %d, want 2", got)
	}
	// A broken renewal keeps the last good certificate.
	if err := os.WriteFile(keyFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	clock.add(time.Minute)
	if got := servedSerial(t, addr); got != 2 {
		t.Errorf("serial after broken renewal = %d, want 2", got)
	}

	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve after cancel: %v", err)
	}
}

func TestServeRefusesBadOptions(t *testing.T) {
	dir := t.TempDir()
	certFile, _ := writeCert(t, dir, 1)
	tests := []struct {
		name string
		opts Options
	}{
		{name: "no cert files", opts: Options{}},
		{name: "key missing", opts: Options{CertFile: certFile, KeyFile: filepath.Join(dir, "missing.key")}},
		{name: "key is the cert", opts: Options{CertFile: certFile, KeyFile: certFile}},
		{name: "template without app cluster", opts: Options{CertFile: certFile, KeyFile: certFile, EnvoyTemplate: []byte("static_resources: {clusters: []}")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			if err := Serve(t.Context(), ln, tt.opts, nil); !errors.Is(err, ErrInvalidOptions) {
				t.Errorf("Serve = %v, want ErrInvalidOptions", err)
			}
		})
	}
}

func TestRenderEnvoy(t *testing.T) {
	tests := []struct {
		name     string
		template string
		port     int32
		wantErr  bool
	}{
		{name: "sidecar template", template: string(envoy.Sidecar()), port: 8081},
		{name: "port zero", template: string(envoy.Sidecar()), port: 0, wantErr: true},
		{name: "not YAML", template: "{", port: 3000, wantErr: true},
		{name: "no app cluster", template: "static_resources: {clusters: [{name: other}]}", port: 3000, wantErr: true},
		{name: "app cluster on a pipe", template: "static_resources: {clusters: [{name: app, load_assignment: {endpoints: [{lb_endpoints: [{endpoint: {address: {pipe: {path: /x}}}}]}]}}]}", port: 3000, wantErr: true},
		{name: "app cluster twice", template: "static_resources: {clusters: [{name: app}, {name: app}]}", port: 3000, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := RenderEnvoy([]byte(tt.template), tt.port)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			again, err := RenderEnvoy(out, envoy.AppPort)
			if err != nil {
				t.Fatal(err)
			}
			orig, err := RenderEnvoy([]byte(tt.template), envoy.AppPort)
			if err != nil {
				t.Fatal(err)
			}
			if string(again) != string(orig) {
				t.Error("rendering changed more than the app port")
			}
		})
	}
}
