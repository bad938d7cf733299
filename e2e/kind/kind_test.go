//go:build e2e

// Package kind is the Kubernetes end-to-end test: a kind cluster, the
// tokentailor image built and loaded, the webhook and the dev overlay
// (k8s/overlays/dev) installed, and requests sent through the Envoy that the
// webhook injected next to an unmodified echo app.
//
//	go test -tags e2e ./e2e/kind/ -v -timeout 20m
//
// Needs docker, kind and kubectl on PATH (kind from sigs.k8s.io/kind). Without
// them the test skips and says so. TOKENTAILOR_E2E_KEEP=1 keeps the cluster.
//
// The test is its own authorization server: the dev overlay trusts HS256
// tokens signed with the key hmac-secret of the Secret tokentailor-signing-key,
// which the test creates.
package kind

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const cluster = "tokentailor-e2e"

func run(t *testing.T, ctx context.Context, stdin []byte, name string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = repoRoot(t)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(wd, "..", "..")
}

func TestKindInjectedSidecar(t *testing.T) {
	for _, tool := range []string{"docker", "kind", "kubectl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("e2e needs %s on PATH (with a running Docker engine): %v", tool, err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	if err := exec.CommandContext(ctx, "docker", "info").Run(); err != nil {
		t.Skipf("e2e needs a running Docker engine: docker info: %v", err)
	}

	run(t, ctx, nil, "docker", "build", "-t", "tokentailor:dev", "--build-arg", "VERSION=e2e", ".")
	run(t, ctx, nil, "kind", "create", "cluster", "--name", cluster, "--wait", "120s")
	if os.Getenv("TOKENTAILOR_E2E_KEEP") == "" {
		t.Cleanup(func() {
			_ = exec.Command("kind", "delete", "cluster", "--name", cluster).Run()
		})
	}
	run(t, ctx, nil, "kind", "load", "docker-image", "tokentailor:dev", "--name", cluster)
	kubectl := func(stdin []byte, args ...string) string {
		return run(t, ctx, stdin, "kubectl", append([]string{"--context", "kind-" + cluster}, args...)...)
	}

	// Namespaces first, then the Secrets the pods mount, then everything.
	kubectl(nil, "create", "namespace", "tokentailor-system")
	kubectl(nil, "create", "namespace", "shop")
	kubectl(nil, "label", "namespace", "shop", "tokentailor.io/injection=enabled")
	caPEM, certPEM, keyPEM := webhookCert(t, "tokentailor-webhook.tokentailor-system.svc")
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	kubectl(nil, "-n", "tokentailor-system", "create", "secret", "tls", "tokentailor-webhook-tls",
		"--cert", write("tls.crt", certPEM), "--key", write("tls.key", keyPEM))
	hmacKey := make([]byte, 32)
	if _, err := rand.Read(hmacKey); err != nil {
		t.Fatal(err)
	}
	_, _, signingPEM := webhookCert(t, "unused")
	kubectl(nil, "-n", "shop", "create", "secret", "generic", "tokentailor-signing-key",
		"--from-file=signing.pem="+write("signing.pem", signingPEM),
		"--from-file=hmac-secret="+write("hmac-secret", []byte(base64.RawURLEncoding.EncodeToString(hmacKey))))

	kubectl(nil, "apply", "--server-side", "-k", "k8s/overlays/dev")
	caPatch := fmt.Sprintf(`[{"op":"add","path":"/webhooks/0/clientConfig/caBundle","value":%q}]`, base64.StdEncoding.EncodeToString(caPEM))
	kubectl(nil, "patch", "mutatingwebhookconfiguration", "tokentailor-sidecar-injector", "--type=json", "-p", caPatch)
	kubectl(nil, "patch", "validatingwebhookconfiguration", "tokentailor-injection-guard", "--type=json", "-p", caPatch)
	kubectl(nil, "-n", "tokentailor-system", "rollout", "status", "deploy/tokentailor-webhook", "--timeout=180s")
	// The echo pods may have been created before the webhook was ready.
	kubectl(nil, "-n", "shop", "rollout", "restart", "deploy/echo")
	kubectl(nil, "-n", "shop", "rollout", "status", "deploy/echo", "--timeout=240s")

	containers := kubectl(nil, "-n", "shop", "get", "pods", "-l", "app.kubernetes.io/name=echo",
		"-o", "jsonpath={.items[0].spec.containers[*].name}")
	if containers != "app tokentailor-proxy tokentailor" {
		t.Fatalf("injected containers = %q", containers)
	}

	// Requests from a client pod through the Service (Envoy port only).
	secret := []byte(base64.RawURLEncoding.EncodeToString(hmacKey))
	tests := []struct {
		name       string
		token      string
		path       string
		wantStatus int
		wantAud    string
	}{
		{name: "allowed, narrowed token", token: hs256(t, secret, "orders:read orders:write"), path: "/orders/1", wantStatus: http.StatusOK, wantAud: "orders-api"},
		{name: "no token", path: "/orders/1", wantStatus: http.StatusUnauthorized},
		{name: "missing scope", token: hs256(t, secret, "profile"), path: "/orders/1", wantStatus: http.StatusForbidden},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"-n", "shop", "run", fmt.Sprintf("curl-%d", i), "--rm", "-i", "--restart=Never",
				"--image=curlimages/curl:8.11.1", "--", "-s", "-w", "\n%{http_code}", "http://echo.shop.svc" + tt.path}
			if tt.token != "" {
				args = append(args, "-H", "Authorization: Bearer "+tt.token)
			}
			out := strings.TrimSpace(kubectl(nil, args...))
			lines := strings.Split(out, "\n")
			status := lines[len(lines)-1]
			if status != fmt.Sprint(tt.wantStatus) {
				t.Fatalf("status %s, want %d: %s", status, tt.wantStatus, out)
			}
			if tt.wantAud == "" {
				return
			}
			var echoed struct {
				Headers map[string]string `json:"headers"`
			}
			if err := json.Unmarshal([]byte(strings.Join(lines[:len(lines)-1], "\n")), &echoed); err != nil {
				t.Fatalf("echo body: %v: %s", err, out)
			}
			auth := strings.TrimPrefix(echoed.Headers["authorization"], "Bearer ")
			if auth == "" || auth == tt.token {
				t.Fatalf("app got authorization %q, want a narrowed token", echoed.Headers["authorization"])
			}
			claims := decodeClaims(t, auth)
			if claims["aud"] != tt.wantAud && !contains(claims["aud"], tt.wantAud) {
				t.Errorf("narrowed token aud = %v, want %s", claims["aud"], tt.wantAud)
			}
			if claims["scope"] != "orders:read" {
				t.Errorf("narrowed token scope = %v, want orders:read", claims["scope"])
			}
		})
	}
}

func contains(v any, s string) bool {
	l, ok := v.([]any)
	if !ok {
		return false
	}
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// hs256 signs a token of the dev overlay's test issuer.
func hs256(t *testing.T, key []byte, scope string) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	now := time.Now()
	signing := enc(map[string]string{"alg": "HS256", "typ": "JWT"}) + "." + enc(map[string]any{
		"iss": "https://e2e-issuer.test", "sub": "alice", "aud": "api.example.com",
		"scope": scope, "iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(),
	})
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(signing))
	return signing + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

func decodeClaims(t *testing.T, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// webhookCert returns a CA, and a serving certificate and P-256 key for dns
// signed by it, all PEM.
func webhookCert(t *testing.T, dns string) (caPEM, certPEM, keyPEM []byte) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tokentailor e2e CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: dns}, DNSNames: []string{dns},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}
