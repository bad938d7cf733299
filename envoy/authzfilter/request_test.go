package authzfilter

import (
	"net/http"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
)

func baseRequest() Request {
	return Request{
		Method: "GET", Scheme: "http", Host: "app.example.com", Path: "/orders/1?x=1&y=2",
		Header: http.Header{
			"Authorization": {"Bearer abc"},
			"Accept":        {"text/plain", "application/json"},
			"X-Custom":      {"v"},
		},
		RemoteAddr: "10.0.0.7:51234",
		Protocol:   "HTTP/1.1",
	}
}

func wantHTTP(headers map[string]string) *authv3.AttributeContext_HttpRequest {
	return &authv3.AttributeContext_HttpRequest{
		Method: "GET", Path: "/orders/1?x=1&y=2", Host: "app.example.com", Scheme: "http", Protocol: "HTTP/1.1",
		Headers: headers,
	}
}

func TestBuildCheckRequest(t *testing.T) {
	exact := func(names ...string) func(string) bool {
		return func(s string) bool {
			for _, n := range names {
				if s == n {
					return true
				}
			}
			return false
		}
	}
	tests := []struct {
		name   string
		mutate func(*Request)
		opts   CheckOptions
		want   *authv3.AttributeContext_HttpRequest
		ext    map[string]string
	}{
		{
			name: "pseudo-headers, lower case, duplicates joined with a bare comma",
			want: wantHTTP(map[string]string{
				":authority": "app.example.com", ":path": "/orders/1?x=1&y=2", ":method": "GET", ":scheme": "http",
				"authorization": "Bearer abc", "accept": "text/plain,application/json", "x-custom": "v",
			}),
		},
		{
			name: "context extensions passed through",
			opts: CheckOptions{ContextExtensions: map[string]string{"route": "orders-read"}},
			ext:  map[string]string{"route": "orders-read"},
			want: wantHTTP(map[string]string{
				":authority": "app.example.com", ":path": "/orders/1?x=1&y=2", ":method": "GET", ":scheme": "http",
				"authorization": "Bearer abc", "accept": "text/plain,application/json", "x-custom": "v",
			}),
		},
		{
			name: "allowed headers keep authorization and the routing pseudo-headers",
			opts: CheckOptions{Allowed: exact("x-custom")},
			want: wantHTTP(map[string]string{
				":authority": "app.example.com", ":path": "/orders/1?x=1&y=2", ":method": "GET",
				"authorization": "Bearer abc", "x-custom": "v",
			}),
		},
		{
			name: "disallowed wins over allowed",
			opts: CheckOptions{Allowed: exact("x-custom", "accept"), Disallowed: exact("accept", "authorization")},
			want: wantHTTP(map[string]string{
				":authority": "app.example.com", ":path": "/orders/1?x=1&y=2", ":method": "GET",
				"x-custom": "v",
			}),
		},
		{
			name:   "client-sent partial body header is skipped, invalid UTF-8 sanitised",
			mutate: func(r *Request) { r.Header = http.Header{"X-Envoy-Auth-Partial-Body": {"true"}, "X-Bin": {"a\xffb"}} },
			want: wantHTTP(map[string]string{
				":authority": "app.example.com", ":path": "/orders/1?x=1&y=2", ":method": "GET", ":scheme": "http",
				"x-bin": "a!b",
			}),
		},
		{
			name:   "non-canonical duplicate keys merge too",
			mutate: func(r *Request) { r.Header = http.Header{"X-A": {"1"}, "x-a": {"2"}} },
			want: wantHTTP(map[string]string{
				":authority": "app.example.com", ":path": "/orders/1?x=1&y=2", ":method": "GET", ":scheme": "http",
				"x-a": "1,2",
			}),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := baseRequest()
			if tt.mutate != nil {
				tt.mutate(&req)
			}
			got := BuildCheckRequest(req, tt.opts)
			want := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
				Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
					SocketAddress: &corev3.SocketAddress{Address: "10.0.0.7", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 51234}}}}},
				Destination:       &authv3.AttributeContext_Peer{Address: &corev3.Address{}},
				Request:           &authv3.AttributeContext_Request{Http: tt.want},
				ContextExtensions: tt.ext,
			}}
			if name := tt.name; strings.HasPrefix(name, "non-canonical") {
				// map order decides which comes first; accept either.
				h := got.GetAttributes().GetRequest().GetHttp().GetHeaders()
				if h["x-a"] == "2,1" {
					h["x-a"] = "1,2"
				}
			}
			if d := cmp.Diff(want, got, protocmp.Transform()); d != "" {
				t.Errorf("CheckRequest (-want +got):\n%s", d)
			}
		})
	}
}

func TestBuildCheckRequestRawHeaders(t *testing.T) {
	req := baseRequest()
	req.Header = http.Header{"Accept": {"a", "b"}}
	got := BuildCheckRequest(req, CheckOptions{EncodeRawHeaders: true})
	hr := got.GetAttributes().GetRequest().GetHttp()
	if len(hr.GetHeaders()) != 0 {
		t.Errorf("headers = %v, want empty with encode_raw_headers", hr.GetHeaders())
	}
	want := &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
		{Key: ":authority", RawValue: []byte("app.example.com")},
		{Key: ":path", RawValue: []byte("/orders/1?x=1&y=2")},
		{Key: ":method", RawValue: []byte("GET")},
		{Key: ":scheme", RawValue: []byte("http")},
		{Key: "accept", RawValue: []byte("a")},
		{Key: "accept", RawValue: []byte("b")},
	}}
	if d := cmp.Diff(want, hr.GetHeaderMap(), protocmp.Transform()); d != "" {
		t.Errorf("header_map (-want +got):\n%s", d)
	}
}

func TestRequestFromHTTP(t *testing.T) {
	r, err := http.NewRequest("POST", "http://svc.local/a/b?q=1", nil)
	if err != nil {
		t.Fatal(err)
	}
	r.RequestURI = "/a/b?q=1"
	r.Header.Set("X-Y", "z")
	got := RequestFromHTTP(r)
	if got.Method != "POST" || got.Host != "svc.local" || got.Path != "/a/b?q=1" || got.Scheme != "http" || got.Header.Get("x-y") != "z" {
		t.Errorf("RequestFromHTTP = %+v", got)
	}
}

func BenchmarkBuildCheckRequest(b *testing.B) {
	req := baseRequest()
	opts := CheckOptions{ContextExtensions: map[string]string{"route": "orders-read"}}
	b.ReportAllocs()
	for b.Loop() {
		_ = BuildCheckRequest(req, opts)
	}
}
