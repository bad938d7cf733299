package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokentailor/tokentailor/extauthz/authztest"
)

// capture runs the CLI in-process and returns its exit code and output.
func capture(t *testing.T, args ...string) (int, string) {
	t.Helper()
	r, w, _ := os.Pipe()
	oldOut, oldErr := os.Stdout, os.Stderr
	os.Stdout, os.Stderr = w, w
	done := make(chan string)
	go func() { b, _ := io.ReadAll(r); done <- string(b) }()
	code := run(context.Background(), args)
	w.Close()
	os.Stdout, os.Stderr = oldOut, oldErr
	return code, <-done
}

func TestCheckConfig(t *testing.T) {
	for _, f := range []string{"../../docs/examples/tokentailor-sidecar.yaml", "../../docs/examples/tokentailor-gateway.yaml"} {
		if code, out := capture(t, "check-config", "-offline", f); code != 0 {
			t.Errorf("%s: exit %d: %s", f, code, out)
		}
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("listen: {grpc: 127.0.0.1:1}\nroutes: [{name: a, upstream: {mode: forward, ttl: -1s}}]\n"), 0o600)
	code, out := capture(t, "check-config", bad)
	if code == 0 || !strings.Contains(out, "routes[0].upstream.ttl: must be positive") {
		t.Fatalf("exit %d, output %q: want a message naming the field", code, out)
	}
	// Without -offline the keys are loaded: a missing key file fails.
	missing := filepath.Join(t.TempDir(), "missing-key.yaml")
	os.WriteFile(missing, []byte("listen: {grpc: 127.0.0.1:1}\nmint: {issuer: https://x, keys: [{file: nope.pem}]}\nroutes: [{name: a, upstream: {audience: b}}]\n"), 0o600)
	if code, out := capture(t, "check-config", missing); code == 0 || !strings.Contains(out, "mint.keys[0]") {
		t.Fatalf("exit %d, output %q: want the key file named", code, out)
	}
}

// TestCheckConfigReachesDiscovery: without -offline, check-config fetches
// the metadata endpoints come from and names each one it lacks (serve would
// answer 503 to every request needing it), and passes when they are there.
func TestCheckConfigReachesDiscovery(t *testing.T) {
	is := authztest.New(t)
	is.Handle("GET /meta-without-introspection", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		md := is.Metadata()
		delete(md, "introspection_endpoint")
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(md)
	}))
	t.Setenv("TT_CHECK_SECRET", "pw")
	tests := []struct {
		name     string
		metadata string // path of the metadata document
		wantCode int
		want     string
	}{
		{name: "complete metadata", metadata: "/.well-known/openid-configuration", wantCode: 0, want: "ok (1 issuers"},
		{name: "no introspection_endpoint", metadata: "/meta-without-introspection", wantCode: 1, want: "issuers[0].introspection.endpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "c.yaml")
			cfg := "listen: {grpc: 127.0.0.1:1}\nissuers:\n  - issuer: " + is.URL() + "\n    discovery_url: " + is.URL() + tt.metadata +
				"\n    audiences: [api]\n    introspection: {}\n    client: {id: tt, secret: {env: TT_CHECK_SECRET}}\n" +
				"routes: [{name: a, upstream: {mode: forward}}]\n"
			if err := os.WriteFile(f, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			if code, out := capture(t, "check-config", f); code != tt.wantCode || !strings.Contains(out, tt.want) {
				t.Fatalf("exit %d, output %q: want exit %d and %q", code, out, tt.wantCode, tt.want)
			}
		})
	}
}

func TestUnknownCommand(t *testing.T) {
	if code, _ := capture(t, "frobnicate"); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	if code, out := capture(t, "version"); code != 0 || !strings.Contains(out, "tokentailor") {
		t.Fatalf("version: %d %q", code, out)
	}
}

func TestExplain(t *testing.T) {
	is := authztest.New(t)
	dir := t.TempDir()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	os.WriteFile(filepath.Join(dir, "k.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	cfg := strings.ReplaceAll(`
listen: {grpc: 127.0.0.1:0}
mint: {issuer: https://tt.test, keys: [{file: k.pem}]}
issuers: [{issuer: ISS, jwks_url: ISS/jwks.json, audiences: [api]}]
routes:
  - name: orders
    match: {path_prefix: /orders}
    require: {scopes: [orders:read]}
    upstream: {audience: orders-api, scopes: [orders:read], copy_claims: {email: ""}}
`, "ISS", is.URL())
	os.WriteFile(filepath.Join(dir, "c.yaml"), []byte(cfg), 0o600)
	tok := is.Sign(t, jwt.MapClaims{"iss": is.URL(), "sub": "alice", "aud": "api", "scope": "orders:read x", "email": "a@x", "exp": time.Now().Add(time.Hour).Unix()})
	code, out := capture(t, "explain", "-config", filepath.Join(dir, "c.yaml"), "-token", tok, "-path", "/orders/1")
	if code != 0 || !strings.Contains(out, "ALLOW") || !strings.Contains(out, `"aud": "orders-api"`) || !strings.Contains(out, `"email": "a@x"`) {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if strings.Contains(out, tok) {
		t.Fatal("explain printed the client's token")
	}
	os.WriteFile(filepath.Join(dir, "tok"), []byte(tok+"\n"), 0o600)
	if code, out := capture(t, "explain", "-config", filepath.Join(dir, "c.yaml"), "-token-file", filepath.Join(dir, "tok"), "-path", "/orders/1"); code != 0 || !strings.Contains(out, "ALLOW") {
		t.Fatalf("-token-file: exit %d:\n%s", code, out)
	}
	code, out = capture(t, "explain", "-config", filepath.Join(dir, "c.yaml"), "-path", "/orders/1")
	if code != 3 || !strings.Contains(out, "DENY 401") {
		t.Fatalf("no token: exit %d:\n%s", code, out)
	}
}

func TestInjectWebhookNeedsCertificate(t *testing.T) {
	code, out := capture(t, "inject-webhook", "-addr", "127.0.0.1:0")
	if code != 2 || !strings.Contains(out, "-cert and -key are required") {
		t.Fatalf("exit %d: %s", code, out)
	}
	dir := t.TempDir()
	code, out = capture(t, "inject-webhook", "-addr", "127.0.0.1:0", "-cert", filepath.Join(dir, "no.crt"), "-key", filepath.Join(dir, "no.key"))
	if code != 1 || !strings.Contains(out, "no.crt") {
		t.Fatalf("missing certificate files: exit %d: %s", code, out)
	}
}
