package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"sigs.k8s.io/yaml"

	"github.com/tokentailor/tokentailor/envoy/authzfilter"
	"github.com/tokentailor/tokentailor/extauthz/authztest"
)

// binary is the tokentailor binary TestMain builds; set once, read only.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tt-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "tokentailor")
	build := exec.Command("go", "build", "-o", binary, "github.com/tokentailor/tokentailor/cmd/tokentailor")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building cmd/tokentailor:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const clientSecret = "e2e-client-secret"

// syncBuffer collects a process's output for failure messages.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// tokentailor is one running tokentailor process.
type tokentailor struct {
	t      *testing.T
	cmd    *exec.Cmd
	done   chan struct{}
	logs   *syncBuffer
	admin  string // host:port
	socket string // unix socket path, or ""
	grpc   string // host:port, or ""
	http   string // the HTTP authorization listener, host:port, or ""
}

// target is the gRPC target Envoy's cluster would dial.
func (tt *tokentailor) target() string {
	if tt.socket != "" {
		return "unix://" + tt.socket
	}
	return tt.grpc
}

// freePort returns a loopback port free at the time of the call.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// shortTempDir is a temp dir with a short path: unix socket paths are
// limited to about 100 bytes, which t.TempDir can exceed.
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "tt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// exampleConfig reads docs/examples/name and rewrites what ties it to a
// real deployment: the issuer (the double), the listeners (temp socket, free
// ports), the signing key and the client secret (temp files).
func exampleConfig(t *testing.T, name string, is *authztest.Issuer, dir string, useSocket bool) (cfg []byte, tt *tokentailor) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "docs", "examples", name))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	tt = &tokentailor{t: t, admin: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	listen := doc["listen"].(map[string]any)
	delete(listen, "socket")
	delete(listen, "grpc")
	if useSocket {
		tt.socket = filepath.Join(dir, "ext_authz.sock")
		listen["socket"] = tt.socket
	} else {
		tt.grpc = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		listen["grpc"] = tt.grpc
	}
	listen["admin"] = tt.admin
	listen["shutdown_grace"] = "1s"
	listen["drain"] = "0s"
	doc["log"] = map[string]any{"level": "debug", "format": "text"}

	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "signing.pem")
	secretFile := filepath.Join(dir, "client-secret")
	writeFile(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	writeFile(t, secretFile, []byte(clientSecret+"\n"))
	mint := doc["mint"].(map[string]any)
	mint["keys"] = []any{map[string]any{"file": keyFile}}

	for _, v := range doc["issuers"].([]any) {
		iss := v.(map[string]any)
		iss["issuer"] = is.URL()
		iss["discovery"] = true
		if c, ok := iss["client"].(map[string]any); ok {
			c["secret"] = map[string]any{"file": secretFile}
		}
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out, tt
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// startTokentailor runs the built binary with cfg and waits for /readyz.
func startTokentailor(t *testing.T, tt *tokentailor, dir string, cfg []byte) {
	t.Helper()
	path := filepath.Join(dir, "tokentailor.yaml")
	writeFile(t, path, cfg)
	tt.logs = &syncBuffer{}
	tt.cmd = exec.Command(binary, "serve", "-config", path)
	tt.cmd.Stdout, tt.cmd.Stderr = tt.logs, tt.logs
	if err := tt.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tt.done = make(chan struct{})
	go func() { _ = tt.cmd.Wait(); close(tt.done) }()
	t.Cleanup(tt.stop)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("tokentailor output:\n%s", tt.logs.String())
		}
	})
	waitHTTP(t, "http://"+tt.admin+"/readyz", tt.done, tt.logs)
}

// stop ends the process (SIGTERM, then SIGKILL) and waits for it.
func (tt *tokentailor) stop() {
	if tt.cmd == nil || tt.cmd.Process == nil {
		return
	}
	select {
	case <-tt.done:
		return
	default:
	}
	_ = tt.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-tt.done:
	case <-time.After(5 * time.Second):
		_ = tt.cmd.Process.Kill()
		<-tt.done
	}
}

// waitHTTP polls url until it answers 200, the process ends, or 20s pass.
func waitHTTP(t *testing.T, u string, exited <-chan struct{}, logs fmt.Stringer) {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
		if resp, err := client.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-exited:
			t.Fatalf("process exited before %s answered 200:\n%s", u, logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never answered 200:\n%s", u, logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// seen is what the app echoes: the request as it arrived, and the verdict
// of its own verification of the Authorization JWT.
type seen struct {
	App       string         `json:"app"`
	Path      string         `json:"path"`
	Header    http.Header    `json:"header"`
	Claims    map[string]any `json:"claims"`
	VerifyErr string         `json:"verify_err"`
	// TxnClaims and TxnVerifyErr are the app's verdict on a Txn-Token
	// header, by verifyTxnToken (go-jose); empty without one.
	TxnClaims    map[string]any `json:"txn_claims"`
	TxnVerifyErr string         `json:"txn_verify_err"`
}

// newApp is an unmodified upstream: it echoes what it got and verifies a
// bearer JWT using nothing but tokentailor's published JWKS, as a real
// service would; it knows tokentailor's issuer and its own audience.
func newApp(t *testing.T, name, jwksURL, issuer, audience string) *httptest.Server {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := seen{App: name, Path: r.RequestURI, Header: r.Header}
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/healthz" {
			_ = json.NewEncoder(w).Encode(s)
			return
		}
		if txn := r.Header.Values("Txn-Token"); nonEmpty(txn) > 0 {
			s.TxnClaims, s.TxnVerifyErr = nil, "want exactly one Txn-Token header"
			if len(txn) == 1 {
				claims, err := verifyTxnToken(r.Context(), client, jwksURL, txn[0])
				s.TxnClaims = claims
				if err != nil {
					s.TxnVerifyErr = err.Error()
				} else {
					s.TxnVerifyErr = ""
				}
			}
		}
		if auth := r.Header.Values("Authorization"); len(auth) == 1 && strings.HasPrefix(auth[0], "Bearer ") {
			claims, err := verifyWithJWKS(r.Context(), client, jwksURL, strings.TrimPrefix(auth[0], "Bearer "), issuer, audience)
			s.Claims = claims
			if err != nil {
				s.VerifyErr = err.Error()
			}
		} else {
			s.VerifyErr = fmt.Sprintf("want one bearer Authorization header, got %d", len(auth))
		}
		_ = json.NewEncoder(w).Encode(s)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// fetchJWKS GETs the JWKS at jwksURL (at most 1 MiB) and parses it with
// go-jose.
func fetchJWKS(ctx context.Context, client *http.Client, jwksURL string) (*jose.JSONWebKeySet, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, jwksURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	return &set, nil
}

// verifyWithJWKS fetches the JWKS (go-jose parses it) and verifies token
// with golang-jwt: signature by the kid's key, iss, aud, exp required.
func verifyWithJWKS(ctx context.Context, client *http.Client, jwksURL, token, issuer, audience string) (map[string]any, error) {
	set, err := fetchJWKS(ctx, client, jwksURL)
	if err != nil {
		return nil, err
	}
	claims := jwt.MapClaims{}
	_, err = jwt.NewParser(
		jwt.WithValidMethods([]string{"EdDSA", "ES256", "RS256"}),
		jwt.WithIssuer(issuer), jwt.WithAudience(audience), jwt.WithExpirationRequired(),
	).ParseWithClaims(token, claims, func(tok *jwt.Token) (any, error) {
		kid, _ := tok.Header["kid"].(string)
		keys := set.Key(kid)
		if len(keys) == 0 {
			return nil, fmt.Errorf("kid %q not in tokentailor's JWKS", kid)
		}
		return keys[0].Key, nil
	})
	return claims, err
}

// harnessFront serves the bootstrap's listener with authzfilter.Proxy, its
// ext_authz cluster dialled at tt, its clusters at upstreams.
func harnessFront(t *testing.T, bootstrap []byte, tt *tokentailor, upstreams map[string]string) string {
	t.Helper()
	return harnessFrontMode(authzfilter.AppendLegacy)(t, bootstrap, tt, upstreams)
}

// harnessFrontMode is harnessFront with the given header append model.
func harnessFrontMode(mode authzfilter.AppendMode) frontFunc {
	return func(t *testing.T, bootstrap []byte, tt *tokentailor, upstreams map[string]string) string {
		t.Helper()
		return startHarness(t, bootstrap, tt, upstreams, mode)
	}
}

func startHarness(t *testing.T, bootstrap []byte, tt *tokentailor, upstreams map[string]string, mode authzfilter.AppendMode) string {
	t.Helper()
	s, err := authzfilter.Load(bootstrap, "inbound")
	if err != nil {
		t.Fatal(err)
	}
	s.Filter.AppendMode = mode
	conn, err := grpc.NewClient(tt.target(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ups := map[string]*url.URL{}
	for name, u := range upstreams {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		ups[name] = pu
	}
	p, err := authzfilter.NewProxy(s, authv3.NewAuthorizationClient(conn), authzfilter.ProxyOptions{Upstreams: ups})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(p)
	t.Cleanup(front.Close)
	return front.URL
}

// do sends one request through the front and decodes the app's echo when
// the app answered.
func do(t *testing.T, front, method, path string, header http.Header) (*http.Response, seen) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, front+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var s seen
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(body, &s); err != nil {
			t.Fatalf("app answer: %v: %s", err, body)
		}
	}
	return resp, s
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }
