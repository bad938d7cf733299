package authzfilter

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/tokentailor/tokentailor/envoy"
)

// fakeAuthz is an AuthorizationClient answering from a function and
// recording the requests.
type fakeAuthz struct {
	mu    sync.Mutex
	reqs  []*authv3.CheckRequest
	check func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error)
}

func (f *fakeAuthz) Check(ctx context.Context, in *authv3.CheckRequest, _ ...grpc.CallOption) (*authv3.CheckResponse, error) {
	f.mu.Lock()
	f.reqs = append(f.reqs, in)
	f.mu.Unlock()
	return f.check(ctx, in)
}

// echo is the upstream app: it answers with the request it got as JSON.
func echo(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"path": r.RequestURI, "host": r.Host, "header": r.Header})
	}))
	t.Cleanup(srv.Close)
	return srv
}

type echoed struct {
	Path   string      `json:"path"`
	Host   string      `json:"host"`
	Header http.Header `json:"header"`
}

func TestProxy(t *testing.T) {
	s, err := Load(envoy.Sidecar(), envoy.InboundListener)
	if err != nil {
		t.Fatal(err)
	}
	app := echo(t)
	appURL, _ := url.Parse(app.URL)
	authz := &fakeAuthz{check: func(_ context.Context, in *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		h := in.GetAttributes().GetRequest().GetHttp().GetHeaders()
		switch h["authorization"] {
		case "Bearer good":
			return okResp(&authv3.OkHttpResponse{
				Headers: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "authorization", Value: "Bearer inner"},
					AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}},
				HeadersToRemove:      []string{"x-internal-token"},
				ResponseHeadersToAdd: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-checked", Value: "1"}}},
			}), nil
		case "Bearer slow":
			return nil, grpcstatus.Error(codes.DeadlineExceeded, "timeout")
		}
		return &authv3.CheckResponse{Status: &status.Status{Code: int32(codes.Unauthenticated)},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
				Status:  &typev3.HttpStatus{Code: typev3.StatusCode_Unauthorized},
				Headers: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "www-authenticate", Value: `Bearer realm="tt"`}}},
			}}}, nil
	}}
	p, err := NewProxy(s, authz, ProxyOptions{Upstreams: map[string]*url.URL{"app": appURL}})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(p)
	t.Cleanup(front.Close)

	tests := []struct {
		name       string
		method     string
		path       string
		header     http.Header
		wantStatus int
		wantChecks int
		check      func(t *testing.T, resp *http.Response, got echoed)
	}{
		{
			name: "allowed: token swapped, internal header stripped, response header added", method: "GET", path: "/orders/1?a=b",
			header:     http.Header{"Authorization": {"Bearer good"}, "X-Internal-Token": {"forged"}},
			wantStatus: 200, wantChecks: 1,
			check: func(t *testing.T, resp *http.Response, got echoed) {
				if a := got.Header.Values("Authorization"); len(a) != 1 || a[0] != "Bearer inner" {
					t.Errorf("upstream Authorization = %q", a)
				}
				if got.Header.Get("X-Internal-Token") != "" {
					t.Error("client-sent internal header reached the app")
				}
				if got.Path != "/orders/1?a=b" {
					t.Errorf("upstream path = %q", got.Path)
				}
				if resp.Header.Get("X-Checked") != "1" {
					t.Error("response_headers_to_add not applied")
				}
			},
		},
		{
			name: "denied: 401 with WWW-Authenticate, app not reached", method: "GET", path: "/orders/1",
			header: http.Header{"Authorization": {"Bearer bad"}}, wantStatus: 401, wantChecks: 1,
			check: func(t *testing.T, resp *http.Response, _ echoed) {
				if resp.Header.Get("Www-Authenticate") != `Bearer realm="tt"` {
					t.Errorf("WWW-Authenticate = %q", resp.Header.Get("Www-Authenticate"))
				}
			},
		},
		{name: "check error: status_on_error 503", method: "POST", path: "/orders", header: http.Header{"Authorization": {"Bearer slow"}}, wantStatus: 503, wantChecks: 1},
		{name: "healthz: no check", method: "GET", path: "/healthz", wantStatus: 200, wantChecks: 0},
		{name: "unknown path: 404 without check", method: "GET", path: "/admin", wantStatus: 404, wantChecks: 0},
		{
			name: "dot segments normalised before routing", method: "GET", path: "/docs/../orders/1",
			header: http.Header{"Authorization": {"Bearer good"}}, wantStatus: 200, wantChecks: 1,
			check: func(t *testing.T, _ *http.Response, got echoed) {
				if got.Path != "/orders/1" {
					t.Errorf("upstream path = %q", got.Path)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			authz.mu.Lock()
			authz.reqs = nil
			authz.mu.Unlock()
			req, err := http.NewRequestWithContext(t.Context(), tt.method, front.URL+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.URL.Opaque, _, _ = strings.Cut(tt.path, "?") // keep dot segments as sent
			for k, v := range tt.header {
				req.Header[k] = v
			}
			resp, err := front.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d (%s)", resp.StatusCode, tt.wantStatus, body)
			}
			authz.mu.Lock()
			n := len(authz.reqs)
			var ext map[string]string
			if n > 0 {
				ext = authz.reqs[0].GetAttributes().GetContextExtensions()
			}
			authz.mu.Unlock()
			if n != tt.wantChecks {
				t.Errorf("checks = %d, want %d", n, tt.wantChecks)
			}
			if n > 0 && ext["route"] == "" {
				t.Error("no route context extension sent")
			}
			var got echoed
			if resp.StatusCode == 200 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
				if err := json.Unmarshal(body, &got); err != nil {
					t.Fatal(err)
				}
			}
			if tt.check != nil {
				tt.check(t, resp, got)
			}
		})
	}
}

func TestNormalizePath(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/a/./b", "/a/b"},
		{"/a/../b?x=../y", "/b?x=../y"},
		{"/../../a", "/a"},
		{"//a///b/", "/a/b/"},
		{"/a/b/..", "/a/"},
	}
	for _, tt := range tests {
		if got := normalizePath(tt.in, true, true); got != tt.want {
			t.Errorf("normalizePath(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
