package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/health"
	"google.golang.org/grpc/health/grpc_health_v1"

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
	os.WriteFile(bad, []byte("listen: {grpc: 127.0.0.1:1}\nroutes: [{name: a, require: {}, upstream: {mode: forward, ttl: -1s}}]\n"), 0o600)
	code, out := capture(t, "check-config", bad)
	if code == 0 || !strings.Contains(out, "routes[0].upstream.ttl: must be positive") {
		t.Fatalf("exit %d, output %q: want a message naming the field", code, out)
	}
	// Without -offline the keys are loaded: a missing key file fails.
	missing := filepath.Join(t.TempDir(), "missing-key.yaml")
	os.WriteFile(missing, []byte("listen: {grpc: 127.0.0.1:1}\nmint: {issuer: https://x, keys: [{file: nope.pem}]}\nroutes: [{name: a, require: {}, upstream: {audience: b}}]\n"), 0o600)
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
				"routes: [{name: a, require: {}, upstream: {mode: forward}}]\n"
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

// withStdin runs f with os.Stdin reading s.
func withStdin(t *testing.T, s string, f func()) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	go func() { io.WriteString(w, s); w.Close() }()
	old := os.Stdin
	os.Stdin = r
	defer func() { os.Stdin = old; r.Close() }()
	f()
}

// TestExplainTokenFromStdinAndRealm: "-token -" reads the token from stdin
// as the help says, and a denial shows the challenge the server sends, with
// the configured realm.
func TestExplainTokenFromStdinAndRealm(t *testing.T) {
	is := authztest.New(t)
	dir := t.TempDir()
	cfg := strings.ReplaceAll(`
listen: {grpc: 127.0.0.1:0}
mint: {realm: shop}
issuers: [{issuer: ISS, jwks_url: ISS/jwks.json, audiences: [api]}]
routes:
  - name: orders
    match: {path_prefix: /orders}
    require: {scopes: [orders:read]}
    upstream: {mode: forward}
`, "ISS", is.URL())
	conf := filepath.Join(dir, "c.yaml")
	os.WriteFile(conf, []byte(cfg), 0o600)
	good := is.Sign(t, jwt.MapClaims{"iss": is.URL(), "sub": "alice", "aud": "api", "scope": "orders:read", "exp": time.Now().Add(time.Hour).Unix()})
	noScope := is.Sign(t, jwt.MapClaims{"iss": is.URL(), "sub": "alice", "aud": "api", "scope": "x", "exp": time.Now().Add(time.Hour).Unix()})
	tests := []struct {
		name     string
		stdin    string
		args     []string
		wantCode int
		want     []string
	}{
		{name: "token from stdin", stdin: good + "\n", args: []string{"-token", "-"}, wantCode: 0, want: []string{"ALLOW (mode forward)", "sub=alice"}},
		{name: "no token: realm only", args: nil, wantCode: 3, want: []string{"DENY 401", `www-authenticate: Bearer realm="shop"` + "\n"}},
		{name: "bad token from stdin", stdin: "not-a-jwt.x.y\n", args: []string{"-token", "-"}, wantCode: 3,
			want: []string{"DENY 401", `www-authenticate: Bearer realm="shop", error="invalid_token"`}},
		{name: "scope: realm and scope", stdin: noScope, args: []string{"-token", "-"}, wantCode: 3,
			want: []string{"DENY 403", `www-authenticate: Bearer realm="shop", error="insufficient_scope", error_description="the access token lacks a required scope", scope="orders:read"`}},
		{name: "both -token and -token-file", args: []string{"-token", good, "-token-file", "-"}, wantCode: 2, want: []string{"use one"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var code int
			var out string
			withStdin(t, tt.stdin, func() {
				code, out = capture(t, append([]string{"explain", "-config", conf, "-path", "/orders/1"}, tt.args...)...)
			})
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d:\n%s", code, tt.wantCode, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, good) || strings.Contains(out, noScope) {
				t.Error("explain printed the client's token")
			}
		})
	}
}

// TestExplainWithoutClientSecrets: explain decides a JWT without the client
// secrets it does not use, names the ones it could not load, and answers
// 503 for a token that would need them, as serve would without them.
func TestExplainWithoutClientSecrets(t *testing.T) {
	is := authztest.New(t)
	is.Introspection(t, authztest.WithClientSecret("tokentailor", "s3cret"))
	dir := t.TempDir()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	os.WriteFile(filepath.Join(dir, "k.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	cfg := strings.ReplaceAll(`
listen: {grpc: 127.0.0.1:0}
mint: {issuer: https://tt.test, keys: [{file: k.pem}]}
issuers:
  - issuer: ISS
    jwks_url: ISS/jwks.json
    audiences: [api]
    introspection: {endpoint: ISS/introspect}
    client: {id: tokentailor, secret: {file: /nonexistent/tokentailor-client-secret}}
routes:
  - name: orders
    require: {}
    match: {path_prefix: /orders}
    upstream: {audience: orders-api}
`, "ISS", is.URL())
	conf := filepath.Join(dir, "c.yaml")
	os.WriteFile(conf, []byte(cfg), 0o600)
	tok := is.Sign(t, jwt.MapClaims{"iss": is.URL(), "sub": "alice", "aud": "api", "exp": time.Now().Add(time.Hour).Unix()})
	tests := []struct {
		name     string
		token    string
		wantCode int
		want     []string
	}{
		{name: "JWT decided", token: tok, wantCode: 0, want: []string{"issuers[0].client: not loaded", "ALLOW (mode mint)", `"aud": "orders-api"`}},
		{name: "opaque token needs the secret", token: "opaque-1", wantCode: 3, want: []string{"issuers[0].client: not loaded", "DENY 503"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := capture(t, "explain", "-config", conf, "-token", tt.token, "-path", "/orders/1")
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d:\n%s", code, tt.wantCode, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
	// serve and check-config still refuse the config.
	if code, out := capture(t, "check-config", conf); code != 1 || !strings.Contains(out, "issuers[0].client") {
		t.Fatalf("check-config: exit %d:\n%s", code, out)
	}
}

// The gRPC listener refuses gzip-compressed Checks (server.refuseGzip), and
// can refuse only one encoding that way: any other compressor a dependency
// registers would be unpacked in full before a Check's size is judged. This
// binary must register gzip (the OTLP exporter's) and no other compressor,
// whatever its name. The test binary links every package the tokentailor
// binary does (it is package main of cmd/tokentailor), and a gRPC client
// advertises every registered compressor in grpc-accept-encoding, so one
// call to an in-process server sees the whole list, not only names we know.
func TestOnlyGzipIsRegistered(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	advertised := make(chan []string, 1)
	srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		names, err := grpc.ClientSupportedCompressors(ctx)
		if err != nil {
			return nil, err
		}
		advertised <- names
		return h(ctx, req)
	}))
	grpc_health_v1.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := grpc_health_v1.NewHealthClient(conn).Check(ctx, &grpc_health_v1.HealthCheckRequest{}); err != nil {
		t.Fatalf("health check: %v", err)
	}
	names := <-advertised

	if !slices.Contains(names, "gzip") {
		if encoding.GetCompressor("gzip") != nil {
			t.Fatalf("gzip is registered but the client advertised %q: grpc-accept-encoding no longer lists the registered compressors, so this test cannot see them", names)
		}
		t.Error("gzip is no longer registered: the refusal in server.GRPCOptions may go")
	}
	for _, name := range names {
		if name != "gzip" {
			t.Errorf("compressor %q is registered: gRPC would unpack %s-compressed Checks in full; refuse it too (server.GRPCOptions) or drop the package that registers it", name, name)
		}
	}
}
