package httpauthz

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/response"
)

// newReq builds a server-side request as net/http would hand it over.
func newReq(method, target, host string, h http.Header) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	r.Host = host
	for k, v := range h {
		r.Header[http.CanonicalHeaderKey(k)] = v
	}
	return r
}

func TestFromHTTP(t *testing.T) {
	tests := []struct {
		name       string
		method     string
		target     string
		host       string
		header     http.Header
		wantConv   Convention
		wantMethod string
		wantHost   string
		wantPath   string
		wantRaw    string
		wantScheme string
		wantErr    error
	}{
		{name: "envoy http_service: prefix stripped, method and host are the original's",
			method: "post", target: "/envoy/orders/1?x=1", host: "Shop.Example.com",
			wantConv: Envoy, wantMethod: "POST", wantHost: "shop.example.com", wantPath: "/orders/1", wantRaw: "/orders/1?x=1", wantScheme: "http"},
		{name: "envoy http_service: root path", method: "GET", target: "/envoy/", host: "a",
			wantConv: Envoy, wantMethod: "GET", wantHost: "a", wantPath: "/", wantRaw: "/", wantScheme: "http"},
		{name: "a prefix that is not a segment is not Envoy's", method: "GET", target: "/envoyx/orders", host: "a", wantErr: ErrNotFound},
		{name: "other paths are not answered", method: "GET", target: "/orders", host: "a", wantErr: ErrNotFound},
		{name: "forward-auth with a longer path is not answered", method: "GET", target: "/forward-auth/x", host: "a", wantErr: ErrNotFound},
		{name: "caddy forward_auth",
			method: "GET", target: "/forward-auth", host: "tokentailor",
			header: http.Header{"X-Forwarded-Method": {"delete"}, "X-Forwarded-Uri": {"/orders/9?a=b"},
				"X-Forwarded-Host": {"API.example.com"}, "X-Forwarded-Proto": {"HTTPS"}},
			wantConv: Forwarded, wantMethod: "DELETE", wantHost: "api.example.com", wantPath: "/orders/9", wantRaw: "/orders/9?a=b", wantScheme: "https"},
		{name: "nginx auth_request",
			method: "GET", target: "/forward-auth", host: "tokentailor",
			header:   http.Header{"X-Original-Method": {"GET"}, "X-Original-Uri": {"/docs/a"}, "X-Forwarded-Host": {"shop"}},
			wantConv: Original, wantMethod: "GET", wantHost: "shop", wantPath: "/docs/a", wantRaw: "/docs/a", wantScheme: "http"},
		{name: "both conventions: a client's copy got through",
			method: "GET", target: "/forward-auth", host: "t",
			header:  http.Header{"X-Original-Uri": {"/docs"}, "X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/orders"}, "X-Forwarded-Host": {"h"}},
			wantErr: ErrBadForward},
		{name: "missing method", method: "GET", target: "/forward-auth", host: "t",
			header: http.Header{"X-Forwarded-Uri": {"/orders"}, "X-Forwarded-Host": {"h"}}, wantErr: ErrBadForward},
		{name: "missing host: the auth request's own Host would be the wrong one", method: "GET", target: "/forward-auth", host: "t",
			header: http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/orders"}}, wantErr: ErrBadForward},
		{name: "repeated uri", method: "GET", target: "/forward-auth", host: "t",
			header: http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/docs", "/orders"}, "X-Forwarded-Host": {"h"}}, wantErr: ErrBadForward},
		{name: "empty uri", method: "GET", target: "/forward-auth", host: "t",
			header: http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {""}, "X-Forwarded-Host": {"h"}}, wantErr: ErrBadForward},
		{name: "absolute uri", method: "GET", target: "/forward-auth", host: "t",
			header: http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"http://evil/orders"}, "X-Forwarded-Host": {"h"}}, wantErr: ErrBadForward},
		{name: "host list from chained proxies", method: "GET", target: "/forward-auth", host: "t",
			header: http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/"}, "X-Forwarded-Host": {"a, b"}}, wantErr: ErrBadForward},
		{name: "repeated proto", method: "GET", target: "/forward-auth", host: "t",
			header: http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/"}, "X-Forwarded-Host": {"h"}, "X-Forwarded-Proto": {"http", "https"}}, wantErr: ErrBadForward},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, conv, err := FromHTTP(newReq(tc.method, tc.target, tc.host, tc.header))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if conv != tc.wantConv || got.Method != tc.wantMethod || got.Host != tc.wantHost || got.Path != tc.wantPath ||
				got.RawPath != tc.wantRaw || got.Scheme != tc.wantScheme {
				t.Errorf("got %s %s %s %s (raw %s, scheme %s), want %s %s %s %s (raw %s, scheme %s)",
					conv, got.Method, got.Host, got.Path, got.RawPath, got.Scheme,
					tc.wantConv, tc.wantMethod, tc.wantHost, tc.wantPath, tc.wantRaw, tc.wantScheme)
			}
		})
	}
}

// Headers arrive as the gRPC path reads Envoy's header_map: lower-case
// names, duplicates joined and counted, so a duplicated Authorization header
// is refused the same way.
func TestFromHTTPHeaders(t *testing.T) {
	r := newReq("GET", "/envoy/orders", "shop", http.Header{"Authorization": {"Bearer a", "Bearer b"}, "X-Other": {"1"}})
	got, _, err := FromHTTP(r)
	if err != nil {
		t.Fatal(err)
	}
	if got.Headers["authorization"] != "Bearer a,Bearer b" || got.HeaderCount["authorization"] != 2 {
		t.Errorf("authorization = %q (count %d)", got.Headers["authorization"], got.HeaderCount["authorization"])
	}
	if got.Headers["x-other"] != "1" || got.Headers["host"] != "shop" {
		t.Errorf("headers = %v", got.Headers)
	}
}

func TestStatus(t *testing.T) {
	tests := []struct {
		name string
		in   int
		conv Convention
		want int
	}{
		{name: "envoy keeps 400", in: 400, conv: Envoy, want: 400},
		{name: "caddy keeps 400", in: 400, conv: Forwarded, want: 400},
		{name: "nginx: 400 would become 500, answer 403", in: 400, conv: Original, want: 403},
		{name: "nginx keeps 401", in: 401, conv: Original, want: 401},
		{name: "nginx keeps 403", in: 403, conv: Original, want: 403},
		{name: "nginx keeps 503 (its config maps its 500 back)", in: 503, conv: Original, want: 503},
		{name: "unset denial status is 403, as in Envoy", in: 0, conv: Envoy, want: 403},
		{name: "a 2xx is never a denial status", in: 200, conv: Forwarded, want: 403},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Status(tc.in, tc.conv); got != tc.want {
				t.Errorf("Status(%d, %s) = %d, want %d", tc.in, tc.conv, got, tc.want)
			}
		})
	}
}

func TestWrite(t *testing.T) {
	b := &response.Builder{Realm: "tt", InternalHeaders: []string{"authorization", "x-internal"}, CredentialHeader: "authorization"}
	grant := &extauthz.Grant{Header: "authorization", Prefix: "Bearer ", Mode: extauthz.ModeMint}
	minted := b.Allow(grant, extauthz.Token{Value: "minted.jwt.value"}, extauthz.Credential{Header: "authorization"},
		map[string]string{"x-internal": "forged"})
	public := b.AllowPublic(&extauthz.Grant{Header: "authorization"})
	scope, _ := b.Deny(&extauthz.ScopeError{Required: []string{"orders:write"}})
	ambiguous, _ := b.Deny(extauthz.ErrAmbiguousRequest)

	tests := []struct {
		name       string
		write      func(w http.ResponseWriter)
		wantStatus int
		wantHeader map[string][]string
		wantBody   string
	}{
		{name: "allow: token set, other internal header removed",
			write:      func(w http.ResponseWriter) { Write(w, minted, Envoy) },
			wantStatus: 200,
			wantHeader: map[string][]string{"Authorization": {"Bearer minted.jwt.value"}, "X-Envoy-Auth-Headers-To-Remove": {"x-internal"}, "X-Internal": nil}},
		{name: "allow for Caddy: the removed header is answered empty",
			write:      func(w http.ResponseWriter) { Write(w, minted, Forwarded) },
			wantStatus: 200,
			wantHeader: map[string][]string{"Authorization": {"Bearer minted.jwt.value"}, "X-Internal": {""}}},
		{name: "public for nginx: every internal header answered empty",
			write:      func(w http.ResponseWriter) { Write(w, public, Original) },
			wantStatus: 200,
			wantHeader: map[string][]string{"Authorization": {""}, "X-Internal": {""}}},
		{name: "public for Envoy: removal in x-envoy-auth-headers-to-remove only",
			write:      func(w http.ResponseWriter) { Write(w, public, Envoy) },
			wantStatus: 200,
			wantHeader: map[string][]string{"Authorization": nil, "X-Envoy-Auth-Headers-To-Remove": {"authorization, x-internal"}}},
		{name: "insufficient scope: 403 with the challenge and the body",
			write:      func(w http.ResponseWriter) { Write(w, scope, Forwarded) },
			wantStatus: 403,
			wantHeader: map[string][]string{"Www-Authenticate": {`Bearer realm="tt", error="insufficient_scope", error_description="the access token lacks a required scope", scope="orders:write"`},
				"Content-Type": {"application/json"}},
			wantBody: `"insufficient_scope"`},
		{name: "ambiguous request for nginx: 403, not a 400 nginx would turn into 500",
			write:      func(w http.ResponseWriter) { Write(w, ambiguous, Original) },
			wantStatus: 403, wantBody: "invalid_request"},
		{name: "ambiguous request for Caddy: 400",
			write:      func(w http.ResponseWriter) { Write(w, ambiguous, Forwarded) },
			wantStatus: 400, wantBody: "invalid_request"},
		{name: "an empty response fails closed",
			write:      func(w http.ResponseWriter) { Write(w, nil, Forwarded) },
			wantStatus: 503, wantBody: "temporarily_unavailable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			tc.write(rec)
			if rec.Code != tc.wantStatus {
				t.Fatalf("status = %d, want %d", rec.Code, tc.wantStatus)
			}
			for k, want := range tc.wantHeader {
				if diff := cmp.Diff(want, rec.Header()[k]); diff != "" {
					t.Errorf("header %s (-want +got):\n%s", k, diff)
				}
			}
			if !strings.Contains(rec.Body.String(), tc.wantBody) {
				t.Errorf("body = %q, want it to contain %q", rec.Body.String(), tc.wantBody)
			}
		})
	}
}

// FuzzFromHTTP feeds arbitrary forwarded-request headers and request targets:
// never a panic, and either an error wrapping a sentinel or a request whose
// path is origin-form, whose method and host came from exactly one source.
func FuzzFromHTTP(f *testing.F) {
	f.Add("/forward-auth", "GET", "/orders", "shop", "", "")
	f.Add("/forward-auth", "", "", "h", "GET", "/docs")
	f.Add("/envoy/a?b", "", "", "", "", "")
	f.Add("/forward-auth?x", "get", "/a#b", "A, B", "POST", "/c")
	f.Add("/envoyx", "\x00", "\r\n", "\xff", "", "/")
	f.Fuzz(func(t *testing.T, target, xfMethod, xfURI, xfHost, xoMethod, xoURI string) {
		if !strings.HasPrefix(target, "/") || strings.ContainsAny(target, " \t\r\n\x00") {
			return // not a request line net/http would accept
		}
		r := newReq("GET", "/", "host", nil)
		r.RequestURI = target
		for k, v := range map[string]string{"X-Forwarded-Method": xfMethod, "X-Forwarded-Uri": xfURI,
			"X-Forwarded-Host": xfHost, "X-Original-Method": xoMethod, "X-Original-Uri": xoURI} {
			if v != "" {
				r.Header.Set(k, v)
			}
		}
		got, conv, err := FromHTTP(r)
		if err != nil {
			if !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrBadForward) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		if !strings.HasPrefix(got.RawPath, "/") || strings.ContainsAny(got.Path, "?#") {
			t.Errorf("path %q (raw %q) is not origin-form", got.Path, got.RawPath)
		}
		switch conv {
		case Forwarded:
			if got.Method != strings.ToUpper(xfMethod) && got.Method != asciiUpper(xfMethod) {
				t.Errorf("method %q not from X-Forwarded-Method %q", got.Method, xfMethod)
			}
			if xoMethod != "" || xoURI != "" {
				t.Error("X-Original-* present but the X-Forwarded-* convention was used")
			}
		case Original:
			if xfMethod != "" || xfURI != "" {
				t.Error("X-Forwarded-Method/Uri present but the X-Original-* convention was used")
			}
		case Envoy:
			if !strings.HasPrefix(target, EnvoyPrefix+"/") {
				t.Errorf("Envoy convention for target %q", target)
			}
		default:
			t.Fatalf("no convention without an error")
		}
	})
}
