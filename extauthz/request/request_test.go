package request

import (
	"errors"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/google/go-cmp/cmp"

	"github.com/tokentailor/tokentailor/extauthz"
)

func checkWith(h *authv3.AttributeContext_HttpRequest) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: h},
	}}
}

func TestFromCheck(t *testing.T) {
	tests := []struct {
		name    string
		req     *authv3.CheckRequest
		want    extauthz.Request
		wantErr error
	}{
		{
			name:    "nil request",
			req:     nil,
			wantErr: ErrNotHTTP,
		},
		{
			name:    "no attributes",
			req:     &authv3.CheckRequest{},
			wantErr: ErrNotHTTP,
		},
		{
			name: "no http attributes",
			req: &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
				Request: &authv3.AttributeContext_Request{},
			}},
			wantErr: ErrNotHTTP,
		},
		{
			name: "merged headers map",
			req: &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
				Source: &authv3.AttributeContext_Peer{Principal: "spiffe://cluster.local/ns/a/sa/b"},
				Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
					Method: "GET",
					Scheme: "https",
					Host:   "API.Example.com",
					Path:   "/orders/7?expand=items&x=1",
					Headers: map[string]string{
						":authority":    "API.Example.com",
						":path":         "/orders/7?expand=items&x=1",
						"authorization": "Bearer abc",
					},
				}},
				ContextExtensions: map[string]string{"route": "orders"},
			}},
			want: extauthz.Request{
				Method:  "GET",
				Scheme:  "https",
				Host:    "api.example.com",
				Path:    "/orders/7",
				RawPath: "/orders/7?expand=items&x=1",
				Headers: map[string]string{
					":authority":    "API.Example.com",
					":path":         "/orders/7?expand=items&x=1",
					"authorization": "Bearer abc",
				},
				ContextExtensions: map[string]string{"route": "orders"},
				SourcePrincipal:   "spiffe://cluster.local/ns/a/sa/b",
			},
		},
		{
			name: "host header when neither host attribute nor :authority",
			req: checkWith(&authv3.AttributeContext_HttpRequest{
				Method: "GET", Path: "/", Headers: map[string]string{"host": "H1.test"},
			}),
			want: extauthz.Request{
				Method: "GET", Host: "h1.test", Path: "/", RawPath: "/",
				Headers: map[string]string{"host": "H1.test"},
			},
		},
		{
			name: "pseudo headers fill missing attributes",
			req: checkWith(&authv3.AttributeContext_HttpRequest{
				Headers: map[string]string{
					":method":    "POST",
					":scheme":    "HTTP",
					":authority": "svc.local:8080",
					":path":      "/a/b#frag",
				},
			}),
			want: extauthz.Request{
				Method:  "POST",
				Scheme:  "http",
				Host:    "svc.local:8080",
				Path:    "/a/b",
				RawPath: "/a/b#frag",
				Headers: map[string]string{
					":method":    "POST",
					":scheme":    "HTTP",
					":authority": "svc.local:8080",
					":path":      "/a/b#frag",
				},
			},
		},
		{
			name: "hand-built map with upper-case keys is normalised",
			req: checkWith(&authv3.AttributeContext_HttpRequest{
				Method: "GET", Path: "/",
				Headers: map[string]string{
					"Authorization": "Bearer a",
					"authorization": "Bearer b",
					"X-Trace":       "1",
				},
			}),
			want: extauthz.Request{
				Method: "GET", Path: "/", RawPath: "/",
				Headers: map[string]string{
					"authorization": "Bearer a,Bearer b",
					"x-trace":       "1",
				},
			},
		},
		{
			// Only ASCII letters are lower-cased, on every path: the Kelvin
			// sign (U+212A) would turn into 'k' with strings.ToLower, making
			// a name no client sent merge into "cookie" on this path only.
			name: "names lower-cased in ASCII only",
			req: checkWith(&authv3.AttributeContext_HttpRequest{
				Path: "/",
				Headers: map[string]string{
					"Cookie":      "a=1",
					"coo\u212aie": "b=2",
				},
			}),
			want: extauthz.Request{
				Path: "/", RawPath: "/",
				Headers: map[string]string{"cookie": "a=1", "coo\u212aie": "b=2"},
			},
		},
		{
			name: "header_map names lower-cased in ASCII only",
			req: checkWith(&authv3.AttributeContext_HttpRequest{
				Path: "/",
				HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
					{Key: "COO\u212aIE", RawValue: []byte("b=2")},
				}},
			}),
			want: extauthz.Request{
				Path: "/", RawPath: "/",
				Headers:     map[string]string{"coo\u212aie": "b=2"},
				HeaderCount: map[string]int{"coo\u212aie": 1},
			},
		},
		{
			name: "raw header_map joins duplicates and counts them",
			req: checkWith(&authv3.AttributeContext_HttpRequest{
				Method: "GET", Host: "h", Path: "/p?q",
				HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
					{Key: ":authority", RawValue: []byte("h")},
					{Key: "Authorization", RawValue: []byte("Bearer one")},
					{Key: "authorization", RawValue: []byte("Bearer two")},
					{Key: "x-legacy", Value: "from value"},
					{Key: "x-empty"},
				}},
			}),
			want: extauthz.Request{
				Method: "GET", Host: "h", Path: "/p", RawPath: "/p?q",
				Headers: map[string]string{
					":authority":    "h",
					"authorization": "Bearer one,Bearer two",
					"x-legacy":      "from value",
					"x-empty":       "",
				},
				HeaderCount: map[string]int{
					":authority":    1,
					"authorization": 2,
					"x-legacy":      1,
					"x-empty":       1,
				},
			},
		},
		{
			name: "header_map wins over headers",
			req: checkWith(&authv3.AttributeContext_HttpRequest{
				Path:    "/",
				Headers: map[string]string{"authorization": "Bearer merged"},
				HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
					{Key: "authorization", RawValue: []byte("Bearer raw")},
				}},
			}),
			want: extauthz.Request{
				Path: "/", RawPath: "/",
				Headers:     map[string]string{"authorization": "Bearer raw"},
				HeaderCount: map[string]int{"authorization": 1},
			},
		},
		{
			// Frameworks serve "delete" as DELETE, so routes must see it as
			// DELETE too (issue 11).
			name: "method upper-cased",
			req: checkWith(&authv3.AttributeContext_HttpRequest{
				Method: "delete", Path: "/orders/1",
			}),
			want: extauthz.Request{Method: "DELETE", Path: "/orders/1", RawPath: "/orders/1"},
		},
		{
			name: "pseudo-header method upper-cased",
			req: checkWith(&authv3.AttributeContext_HttpRequest{
				Path:    "/",
				Headers: map[string]string{":method": "Patch"},
			}),
			want: extauthz.Request{Method: "PATCH", Path: "/", RawPath: "/", Headers: map[string]string{":method": "Patch"}},
		},
		{
			// strings.ToLower maps the Kelvin sign (U+212A) to 'k': the host
			// would then look like "key.test", a name it is not.
			name: "only ASCII letters change case",
			req: checkWith(&authv3.AttributeContext_HttpRequest{
				Method: "getı", Host: "KEY.Test", Path: "/",
			}),
			want: extauthz.Request{Method: "GETı", Host: "Key.test", Path: "/", RawPath: "/"},
		},
		{
			name: "host header when authority is absent",
			req: checkWith(&authv3.AttributeContext_HttpRequest{
				Path:    "/",
				Headers: map[string]string{"host": "Legacy.Example"},
			}),
			want: extauthz.Request{
				Host: "legacy.example", Path: "/", RawPath: "/",
				Headers: map[string]string{"host": "Legacy.Example"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FromCheck(tt.req)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("FromCheck() error = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("FromCheck() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestFromCheckReusesEnvoyMaps pins the hot-path promise: a map sent by Envoy
// (lower-case keys) is used as it is, not copied.
func TestFromCheckReusesEnvoyMaps(t *testing.T) {
	headers := map[string]string{"authorization": "Bearer x", ":path": "/"}
	ext := map[string]string{"route": "r"}
	req := checkWith(&authv3.AttributeContext_HttpRequest{Headers: headers, Path: "/"})
	req.Attributes.ContextExtensions = ext
	got, err := FromCheck(req)
	if err != nil {
		t.Fatal(err)
	}
	headers["probe"] = "1"
	ext["probe"] = "1"
	if got.Headers["probe"] != "1" || got.ContextExtensions["probe"] != "1" {
		t.Errorf("FromCheck copied Envoy's maps; want them shared")
	}
	if allocs := testing.AllocsPerRun(100, func() { _, _ = FromCheck(req) }); allocs != 0 {
		t.Errorf("FromCheck with merged headers: %v allocs, want 0", allocs)
	}
}

// TestFromCheckLowerKeys: given a map whose keys are lower case, it builds
// the same view as FromCheck, sharing the map; given header_map, it reads
// that as FromCheck does.
func TestFromCheckLowerKeys(t *testing.T) {
	for _, h := range []*authv3.AttributeContext_HttpRequest{
		{Method: "get", Host: "H.test", Path: "/p?q", Headers: map[string]string{"authorization": "Bearer a", "x": "1"}},
		{Path: "/", Headers: map[string]string{":method": "POST", ":authority": "a.test"}},
		{Path: "/", HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: "Authorization", RawValue: []byte("Bearer a")}}}},
	} {
		req := checkWith(h)
		want, err := FromCheck(req)
		if err != nil {
			t.Fatal(err)
		}
		got, err := FromCheckLowerKeys(req)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("FromCheckLowerKeys differs from FromCheck (-want +got):\n%s", d)
		}
	}
	if _, err := FromCheckLowerKeys(&authv3.CheckRequest{}); !errors.Is(err, ErrNotHTTP) {
		t.Errorf("no HTTP attributes: %v, want ErrNotHTTP", err)
	}
}

func FuzzFromCheck(f *testing.F) {
	f.Add("GET", "Example.COM", "/a?b#c", "authorization", []byte("Bearer x"), "Authorization", "Bearer y")
	f.Add("", "", "", ":authority", []byte{}, "", "")
	f.Add("POST", "h", "?", "x", []byte{0xff, 0x00}, "X", "v")
	f.Add("delete", "\u212Aey.test", "/admin;x/users", ":method", []byte("get"), "x", "v")
	f.Add("", "", "", ":method", []byte("Patch"), ":path", "/a;b/../c")
	f.Fuzz(func(t *testing.T, method, host, path, k1 string, v1 []byte, k2, v2 string) {
		req := checkWith(&authv3.AttributeContext_HttpRequest{
			Method: method, Host: host, Path: path,
			HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
				{Key: k1, RawValue: v1}, {Key: k2, Value: v2},
			}},
		})
		got, err := FromCheck(req)
		if err != nil {
			t.Fatalf("FromCheck() = %v on an HTTP request", err)
		}
		total := 0
		for k, n := range got.HeaderCount {
			if HasUpper(k) {
				t.Errorf("header key %q not lower case", k)
			}
			total += n
		}
		if total != 2 {
			t.Errorf("HeaderCount sums to %d, want 2", total)
		}
		// The path comes from attributes.request.http.path; only when Envoy
		// left that empty does the :path pseudo-header stand in.
		wantRaw := path
		if path == "" {
			wantRaw = got.Headers[":path"]
		}
		if got.RawPath != wantRaw || len(got.Path) > len(wantRaw) {
			t.Errorf("Path %q / RawPath %q from path %q, :path %q", got.Path, got.RawPath, path, got.Headers[":path"])
		}
		if HasUpper(got.Host) {
			t.Errorf("Host %q not lower case", got.Host)
		}
		// Case changes touch ASCII letters only, so lengths and every other
		// byte are kept.
		wantMethod := method
		if method == "" {
			wantMethod = got.Headers[":method"]
		}
		if !strings.EqualFold(got.Method, wantMethod) || len(got.Method) != len(wantMethod) || strings.ContainsAny(got.Method, "abcdefghijklmnopqrstuvwxyz") {
			t.Errorf("Method %q from %q", got.Method, wantMethod)
		}
		for i := 0; i < len(got.Method); i++ {
			if c := got.Method[i]; c >= 0x80 && c != wantMethod[i] {
				t.Errorf("Method %q from %q: a non-ASCII byte changed", got.Method, wantMethod)
			}
		}
		if host != "" && (len(got.Host) != len(host) || !strings.EqualFold(got.Host, host)) {
			t.Errorf("Host %q from %q", got.Host, host)
		}
	})
}

// BenchmarkFromCheck converts the CheckRequest of a typical API call, every
// attribute set as Envoy sets them.
func BenchmarkFromCheck(b *testing.B) {
	req := checkWith(&authv3.AttributeContext_HttpRequest{
		Method: "GET", Scheme: "https", Host: "orders.example.com", Path: "/orders/42?view=full",
		Headers: map[string]string{
			":authority": "orders.example.com", ":path": "/orders/42?view=full", ":method": "GET",
			":scheme": "https", "accept": "application/json", "accept-encoding": "gzip, br",
			"user-agent": "bench/1", "x-forwarded-proto": "https", "x-request-id": "3f1b2c4d-1",
			"x-envoy-expected-rq-timeout-ms": "15000", "content-length": "0", "authorization": "Bearer eyJ.a.b",
		},
	})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := FromCheck(req); err != nil {
			b.Fatal(err)
		}
	}
}
