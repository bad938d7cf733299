package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"sigs.k8s.io/yaml"

	"github.com/tokentailor/tokentailor/envoy"
	"github.com/tokentailor/tokentailor/envoy/authzfilter"
	"github.com/tokentailor/tokentailor/extauthz/authztest"
)

// Addresses in docs/proxies/ that a test moves to free loopback ports; nothing
// else in the shipped files is changed.
const (
	proxyFrontAddr = "127.0.0.1:8080"
	proxyAuthzAddr = "127.0.0.1:9192"
	proxyAppAddr   = "127.0.0.1:3000"
)

// proxyFront starts a proxy in front of app, asking tt; it returns the
// proxy's base URL.
type proxyFront func(t *testing.T, tt *tokentailor, app string) string

// TestRealProxyJourneys runs one journey table through a real nginx
// (auth_request), a real Caddy (forward_auth), both with the files shipped in
// docs/proxies/ and tokentailor's HTTP listener, and through the Envoy model
// (envoy/authzfilter over gRPC, envoy/sidecar.yaml), so the three can be
// compared case by case. The app is unmodified: it verifies the token it gets
// with tokentailor's JWKS alone.
func TestRealProxyJourneys(t *testing.T) {
	fronts := []struct {
		name  string
		start proxyFront
		// routesTxn: the front routes the test's /txn path to the app
		// (the shipped nginx and Caddy files route every path; the shipped
		// Envoy bootstrap only the example's routes).
		routesTxn bool
	}{
		{name: "envoy-model-grpc", start: envoyModelFront},
		{name: "nginx", start: nginxFront, routesTxn: true},
		{name: "caddy", start: caddyFront, routesTxn: true},
	}
	for _, f := range fronts {
		t.Run(f.name, func(t *testing.T) { proxyJourneys(t, f.start, f.routesTxn) })
	}
}

func proxyJourneys(t *testing.T, start proxyFront, routesTxn bool) {
	is := authztest.New(t)
	intro := is.Introspection(t, authztest.WithClientSecret("tokentailor", clientSecret))
	dir := shortTempDir(t)
	cfg, tt := exampleConfig(t, "tokentailor-sidecar.yaml", is, dir, true)
	tt.http = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg = setListen(t, cfg, "http", tt.http)
	cfg = withTxnRoute(t, cfg)
	startTokentailor(t, tt, dir, cfg)
	app := newApp(t, "app", "http://"+tt.admin+"/.well-known/jwks.json", mintIssuer, "orders-api")
	base := start(t, tt, app.URL)

	exp := time.Now().Add(10 * time.Minute).Unix()
	jwtIn := is.Sign(t, jwt.MapClaims{"sub": "alice", "aud": "api.example.com", "scope": "orders:read orders:write profile",
		"client_id": "web", "tenant": "acme", "email": "alice@example.com", "exp": exp})
	readOnly := is.Sign(t, jwt.MapClaims{"sub": "alice", "aud": "api.example.com", "scope": "orders:read", "exp": exp})
	const opaque = "opaque-proxy-token-0123456789"
	intro.Register(opaque, map[string]any{"sub": "bob", "aud": "api.example.com", "scope": "orders:read",
		"client_id": "web", "tenant": "acme", "exp": exp, "token_type": "Bearer"})
	const forged = "Bearer forged.internal.token"

	tests := []struct {
		name       string
		method     string
		path       string
		header     http.Header
		wantStatus int
		// wantChallenge must be in WWW-Authenticate ("" checks nothing).
		wantChallenge string
		// narrowed: the app got a token minted for it, not the client's.
		narrowed bool
		incoming string
		wantSub  string
		// noForged: the app got no Authorization holding forged.
		noForged bool
		// txn: the app got a Txn-Token (verified by go-jose) and no Authorization.
		txn bool
		// noTxn: the app got no Txn-Token header.
		noTxn bool
		// stop stops tokentailor before the request.
		stop bool
	}{
		{name: "allowed JWT", method: "GET", path: "/orders/42?expand=items", header: bearer(jwtIn),
			wantStatus: 200, narrowed: true, incoming: jwtIn, wantSub: "alice"},
		{name: "allowed opaque (phantom token)", method: "GET", path: "/orders", header: bearer(opaque),
			wantStatus: 200, narrowed: true, incoming: opaque, wantSub: "bob"},
		{name: "insufficient scope", method: "POST", path: "/orders", header: bearer(readOnly),
			wantStatus: 403, wantChallenge: `error="insufficient_scope"`},
		{name: "no token", method: "GET", path: "/orders", wantStatus: 401, wantChallenge: "Bearer realm="},
		{name: "spoofed internal header stripped on a public route", method: "GET", path: "/docs/intro",
			header: http.Header{"Authorization": {forged}}, wantStatus: 200, noForged: true},
		{name: "public route without a token", method: "GET", path: "/docs/intro", wantStatus: 200, noForged: true},
		{name: "Txn-Token for the upstream, verified by go-jose", method: "GET", path: txnPath + "/7", header: bearer(jwtIn),
			wantStatus: 200, txn: true, incoming: jwtIn, wantSub: "alice"},
		{name: "Txn-Token from a phantom token", method: "GET", path: txnPath + "/7", header: bearer(opaque),
			wantStatus: 200, txn: true, incoming: opaque, wantSub: "bob"},
		{name: "client-sent Txn-Token stripped on a mint route", method: "GET", path: "/orders/1",
			header: http.Header{"Authorization": {"Bearer " + jwtIn}, "Txn-Token": {"forged.txn.token"}}, wantStatus: 200, noTxn: true},
		{name: "spoofed forwarded-request headers do not open a route", method: "GET", path: "/orders",
			header: http.Header{"X-Forwarded-Uri": {"/docs/x"}, "X-Forwarded-Method": {"GET"},
				"X-Original-Uri": {"/docs/x"}, "X-Original-Method": {"GET"}, "X-Forwarded-Host": {"evil.example"}},
			wantStatus: 401},
		{name: "tokentailor down: the proxy denies", method: "GET", path: "/orders", header: bearer(jwtIn),
			wantStatus: 503, stop: true},
	}
	for _, tc := range tests {
		if tc.txn && !routesTxn {
			continue // the Envoy model's Txn-Token journeys: extauthz/server's tests
		}
		t.Run(tc.name, func(t *testing.T) {
			if tc.stop {
				tt.stop()
			}
			resp, s := do(t, base, tc.method, tc.path, tc.header)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status = %d, want %d (app reached: %q)", resp.StatusCode, tc.wantStatus, s.App)
			}
			if ch := resp.Header.Get("WWW-Authenticate"); !strings.Contains(ch, tc.wantChallenge) {
				t.Errorf("WWW-Authenticate = %q, want it to contain %q", ch, tc.wantChallenge)
			}
			if (tc.wantStatus == 200) != (s.App == "app") {
				t.Fatalf("status %d but app reached = %q", resp.StatusCode, s.App)
			}
			if tc.narrowed {
				checkNarrowed(t, s, tc.incoming, "orders-api", []string{"orders:read"}, exp)
				if s.Claims["sub"] != tc.wantSub {
					t.Errorf("sub = %v, want %s", s.Claims["sub"], tc.wantSub)
				}
				if s.Path != tc.path {
					t.Errorf("app path = %q, want %q", s.Path, tc.path)
				}
			}
			if tc.txn {
				checkTxnToken(t, s, tc.wantSub, exp)
			}
			if tc.noTxn && nonEmpty(s.Header.Values("Txn-Token")) != 0 {
				t.Errorf("the app got a client-sent Txn-Token %q", s.Header.Values("Txn-Token"))
			}
			if tc.noForged {
				for _, v := range s.Header.Values("Authorization") {
					if v != "" {
						t.Errorf("the app got Authorization %q on a public route; want none", v)
					}
				}
			}
		})
	}
}

// setListen sets listen.key in a tokentailor config.
func setListen(t *testing.T, cfg []byte, key, value string) []byte {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal(cfg, &doc); err != nil {
		t.Fatal(err)
	}
	doc["listen"].(map[string]any)[key] = value
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// envoyModelFront is the Envoy model over gRPC with envoy/sidecar.yaml.
func envoyModelFront(t *testing.T, tt *tokentailor, app string) string {
	t.Helper()
	return startHarness(t, envoy.Sidecar(), tt, map[string]string{envoy.AppCluster: app}, authzfilter.AppendLegacy)
}

// proxyBinary finds a proxy's binary: the environment variable env, else
// name on PATH or in /usr/sbin; "" when absent.
func proxyBinary(env, name string) string {
	if p := os.Getenv(env); p != "" {
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if p := filepath.Join("/usr/sbin", name); fileExists(p) {
		return p
	}
	return ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// shippedProxyConfig reads docs/proxies/name and moves its three addresses to
// the test's ports; it fails if an address is not in the file, so the file
// and the test cannot drift apart.
func shippedProxyConfig(t *testing.T, name string, repl map[string]string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "docs", "proxies", name))
	if err != nil {
		t.Fatal(err)
	}
	s := string(raw)
	for from, to := range repl {
		if !strings.Contains(s, from) {
			t.Fatalf("docs/proxies/%s no longer holds %q", name, from)
		}
		s = strings.ReplaceAll(s, from, to)
	}
	return []byte(s)
}

func hostOf(t *testing.T, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// nginxFront runs a real nginx with docs/proxies/nginx.conf.
func nginxFront(t *testing.T, tt *tokentailor, app string) string {
	t.Helper()
	bin := proxyBinary("NGINX_BIN", "nginx")
	if bin == "" {
		t.Skip("no nginx binary: apt-get install nginx (or set NGINX_BIN) to run the journeys through a real nginx")
	}
	front := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	conf := shippedProxyConfig(t, "nginx.conf", map[string]string{
		proxyFrontAddr: front, proxyAuthzAddr: tt.http, proxyAppAddr: hostOf(t, app),
	})
	dir := shortTempDir(t)
	// Workers drop to an unprivileged user when nginx runs as root: let
	// them reach the prefix.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "nginx.conf")
	writeFile(t, path, conf)
	startProxy(t, "nginx", exec.Command(bin, "-p", dir, "-c", path, "-e", "stderr", "-g", "daemon off;"), front)
	return "http://" + front
}

// caddyFront runs a real Caddy with docs/proxies/Caddyfile.
func caddyFront(t *testing.T, tt *tokentailor, app string) string {
	t.Helper()
	bin := proxyBinary("CADDY_BIN", "caddy")
	if bin == "" {
		t.Skip("no caddy binary: apt-get install caddy (or set CADDY_BIN) to run the journeys through a real Caddy")
	}
	port := freePort(t)
	conf := shippedProxyConfig(t, "Caddyfile", map[string]string{
		":8080 {": fmt.Sprintf(":%d {", port), proxyAuthzAddr: tt.http, proxyAppAddr: hostOf(t, app),
	})
	dir := shortTempDir(t)
	path := filepath.Join(dir, "Caddyfile")
	writeFile(t, path, conf)
	cmd := exec.Command(bin, "run", "--adapter", "caddyfile", "--config", path)
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	front := fmt.Sprintf("127.0.0.1:%d", port)
	startProxy(t, "caddy", cmd, front)
	return "http://" + front
}

// startProxy starts cmd and waits until GET /healthz through it answers 200
// (the app's probe, which the shipped configs pass unchecked).
func startProxy(t *testing.T, name string, cmd *exec.Cmd, front string) {
	t.Helper()
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, logs.String())
		}
	})
	waitHTTP(t, "http://"+front+"/healthz", done, logs)
}
