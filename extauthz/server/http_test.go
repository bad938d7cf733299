package server

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// httpConfig is baseConfig with the HTTP authorization listener on.
var httpConfig = strings.Replace(baseConfig, "  grpc: 127.0.0.1:0\n", "  grpc: 127.0.0.1:0\n  http: 127.0.0.1:0\n", 1)

// forwardAuth asks the HTTP listener as Caddy's forward_auth would.
func (h *harness) forwardAuth(method, uri string, headers map[string]string) *http.Response {
	h.t.Helper()
	req, err := http.NewRequestWithContext(h.t.Context(), http.MethodGet, "http://"+h.srv.HTTPAddr().String()+"/forward-auth", nil)
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("X-Forwarded-Method", method)
	req.Header.Set("X-Forwarded-Uri", uri)
	req.Header.Set("X-Forwarded-Host", "app.test")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// The HTTP listener decides exactly as the gRPC service does: same routes,
// same minted token from the same cache, same denials.
func TestHTTPListenerAgreesWithGRPC(t *testing.T) {
	h := newHarness(t, httpConfig)
	tok := h.token(jwt.MapClaims{"scope": "orders:read profile"})
	// Twice, so that the minted token is in the cache (a token's first
	// Check keeps none) and both listeners answer with it.
	for range 2 {
		h.check("GET", "/orders/1", map[string]string{"authorization": "Bearer " + tok})
	}
	tests := []struct {
		name    string
		method  string
		path    string
		headers map[string]string
	}{
		{name: "allowed", method: "GET", path: "/orders/1", headers: map[string]string{"authorization": "Bearer " + tok}},
		{name: "no token", method: "GET", path: "/orders/1"},
		{name: "bad token", method: "GET", path: "/orders/1", headers: map[string]string{"authorization": "Bearer x.y.z"}},
		{name: "public", method: "GET", path: "/docs/a", headers: map[string]string{"x-internal-token": "forged"}},
		{name: "no route", method: "GET", path: "/nowhere", headers: map[string]string{"authorization": "Bearer " + tok}},
		{name: "ambiguous path", method: "GET", path: "/orders/../admin", headers: map[string]string{"authorization": "Bearer " + tok}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := h.check(tc.method, tc.path, tc.headers)
			r := h.forwardAuth(tc.method, tc.path, tc.headers)
			if r.StatusCode != httpStatus(g) {
				t.Fatalf("HTTP status %d, gRPC %d", r.StatusCode, httpStatus(g))
			}
			for _, name := range []string{"authorization", "www-authenticate"} {
				if got, want := r.Header.Get(name), header(g, name); got != want {
					t.Errorf("%s: HTTP %q, gRPC %q", name, got, want)
				}
			}
			if rm := strings.Join(g.GetOkResponse().GetHeadersToRemove(), ", "); r.Header.Get("X-Envoy-Auth-Headers-To-Remove") != rm {
				t.Errorf("removals: HTTP %q, gRPC %q", r.Header.Get("X-Envoy-Auth-Headers-To-Remove"), rm)
			}
		})
	}
}

func TestHTTPListenerEnvoyConvention(t *testing.T) {
	h := newHarness(t, httpConfig)
	tok := h.token(nil)
	// A token's first Check keeps no minted token: this one is the second.
	h.check("GET", "/orders/7?x=1", map[string]string{"authorization": "Bearer " + tok})
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+h.srv.HTTPAddr().String()+"/envoy/orders/7?x=1", nil)
	req.Host = "app.test"
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status = %d", resp.StatusCode)
	}
	g := h.check("GET", "/orders/7?x=1", map[string]string{"authorization": "Bearer " + tok})
	if got := resp.Header.Get("Authorization"); got == "" || got != header(g, "authorization") {
		t.Fatalf("authorization = %q, want the gRPC answer's (cached) token", got)
	}
}

// Peers outside listen.http_trusted_proxies get 403 before anything is read.
func TestHTTPListenerTrustedPeers(t *testing.T) {
	h := newHarness(t, baseConfig)
	tok := h.token(nil)
	tests := []struct {
		name    string
		trusted []string
		remote  string
		unix    bool
		want    int
	}{
		{name: "loopback by default", trusted: []string{"127.0.0.0/8", "::1/128"}, remote: "127.0.0.1:5555", want: 200},
		{name: "IPv6 loopback by default", trusted: []string{"127.0.0.0/8", "::1/128"}, remote: "[::1]:5555", want: 200},
		{name: "another host is refused", trusted: []string{"127.0.0.0/8"}, remote: "10.0.0.9:5555", want: 403},
		{name: "a configured proxy network", trusted: []string{"10.0.0.0/24"}, remote: "10.0.0.9:5555", want: 200},
		{name: "an IPv4-mapped address is read as IPv4", trusted: []string{"10.0.0.0/24"}, remote: "[::ffff:10.0.0.9]:5555", want: 200},
		{name: "loopback refused when the list omits it", trusted: []string{"10.0.0.0/24"}, remote: "127.0.0.1:5555", want: 403},
		{name: "an unparsable peer is refused", trusted: []string{"0.0.0.0/0"}, remote: "@", want: 403},
		{name: "a unix socket peer is trusted", trusted: nil, remote: "@", unix: true, want: 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var prefixes []netip.Prefix
			for _, s := range tc.trusted {
				prefixes = append(prefixes, netip.MustParsePrefix(s))
			}
			hh := NewHTTPAuthz(h.srv.Authz(), prefixes)
			if tc.unix {
				hh = hh.trustingAll()
			}
			r := httptest.NewRequest(http.MethodGet, "/forward-auth", nil)
			r.RemoteAddr = tc.remote
			r.Header.Set("X-Forwarded-Method", "GET")
			r.Header.Set("X-Forwarded-Uri", "/orders")
			r.Header.Set("X-Forwarded-Host", "app.test")
			r.Header.Set("Authorization", "Bearer "+tok)
			rec := httptest.NewRecorder()
			hh.ServeHTTP(rec, r)
			if rec.Code != tc.want {
				t.Fatalf("status = %d, want %d (%s)", rec.Code, tc.want, rec.Body)
			}
			if tc.want == 403 && rec.Header().Get("Authorization") != "" {
				t.Fatal("an untrusted peer got a token")
			}
		})
	}
}

// The HTTP listener serves the current pipeline: a reload reaches it.
func TestHTTPListenerFollowsReload(t *testing.T) {
	h := newHarness(t, httpConfig)
	tok := h.token(nil)
	hdr := map[string]string{"authorization": "Bearer " + tok}
	if r := h.forwardAuth("GET", "/orders", hdr); r.StatusCode != 200 {
		t.Fatalf("before reload: %d", r.StatusCode)
	}
	h.write("config.yaml", strings.ReplaceAll(strings.Replace(httpConfig, "path_prefix: /orders", "path_prefix: /bestellungen", 1), "{{ISSUER}}", h.is.URL()))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.srv.Reload(ctx, false); err != nil {
		t.Fatal(err)
	}
	if r := h.forwardAuth("GET", "/orders", hdr); r.StatusCode != 403 {
		t.Errorf("/orders after reload: %d, want 403 (no route)", r.StatusCode)
	}
	if r := h.forwardAuth("GET", "/bestellungen", hdr); r.StatusCode != 200 {
		t.Errorf("/bestellungen after reload: %d, want 200", r.StatusCode)
	}
}

// The HTTP listener on a unix socket answers; bad forwarded headers are 400
// and counted.
func TestHTTPListenerSocketAndBadRequests(t *testing.T) {
	dir := shortDir(t)
	sock := filepath.Join(dir, "http.sock")
	h := newHarness(t, strings.Replace(baseConfig, "  grpc: 127.0.0.1:0\n", "  grpc: 127.0.0.1:0\n  http_socket: "+sock+"\n", 1))
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	do := func(h map[string]string) int {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://tokentailor/forward-auth", nil)
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	tok := h.token(nil)
	if st := do(map[string]string{"X-Original-Method": "GET", "X-Original-Uri": "/orders", "X-Forwarded-Host": "app.test", "Authorization": "Bearer " + tok}); st != 200 {
		t.Errorf("nginx convention over the socket: %d", st)
	}
	if st := do(map[string]string{"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/orders"}); st != 400 {
		t.Errorf("no X-Forwarded-Host: %d, want 400", st)
	}
	if st := do(map[string]string{"X-Original-Method": "GET", "X-Original-Uri": "/orders"}); st != 403 {
		t.Errorf("nginx convention without X-Forwarded-Host: %d, want 403 (nginx would turn 400 into 500)", st)
	}
	res, err := http.Get("http://" + h.srv.AdminAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(body), `reason="bad_request"`) {
		t.Error("bad forwarded-request headers are not counted")
	}
	if strings.Contains(string(body), tok) {
		t.Fatal("token material in metrics")
	}
}

// shortDir is a temp dir short enough for a unix socket path (about 100
// bytes), which t.TempDir can exceed.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "tt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
