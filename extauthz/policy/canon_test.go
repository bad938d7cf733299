package policy

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/config"
)

// upstreamConfig has strict routes for parts of one upstream and a public
// catch-all: a request that misses its strict route lands on the laxest one.
const upstreamConfig = `
listen: {grpc: "127.0.0.1:9191"}
mint: {issuer: https://tt.internal, keys: [{file: k.pem}]}
issuers: [{issuer: https://idp.test, jwks_url: https://idp.test/jwks, audiences: [api]}]
routes:
  - name: admin-host
    match: {hosts: [Admin.Example.com.]}
    require: {scopes: [admin]}
    upstream: {audience: admin-api}
  - name: admin
    match: {path_prefix: /admin}
    require: {scopes: [admin]}
    upstream: {audience: admin-api}
  - name: orders-delete
    match: {path_prefix: /orders, methods: [delete]}
    require: {scopes: ["orders:delete"]}
    upstream: {audience: orders-api}
  - name: report
    match: {path: /report, methods: [GET]}
    require: {scopes: [report]}
    upstream: {audience: report-api}
  - name: email
    match: {path: "/users/a%40b"}
    require: {scopes: [users]}
    upstream: {audience: users-api}
  - name: cafe
    match: {path: "/caf%c3%a9"}
    require: {scopes: [cafe]}
    upstream: {audience: cafe-api}
  - name: open
    public: true
    match: {path_prefix: /}
default_route: open
`

func upstreamEngine(t testing.TB) *Engine {
	t.Helper()
	cfg, err := config.Parse([]byte(upstreamConfig), "")
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestSelectSeesWhatTheUpstreamServes is issue 11's regression test: on the
// main branch before it, the ;params, lower-case method, HEAD, escape-case
// and trailing-dot rows landed on the public route, and refusals were 403
// route_unknown instead of 400.
func TestSelectSeesWhatTheUpstreamServes(t *testing.T) {
	e := upstreamEngine(t)
	tests := []struct {
		name    string
		method  string
		host    string
		path    string
		want    string
		wantErr error
	}{
		// Path parameters: Tomcat, Jetty and Spring cut them per segment.
		{name: "baseline", method: "GET", path: "/admin/users", want: "admin"},
		{name: "params on the prefix segment", method: "GET", path: "/admin;x/users", want: "admin"},
		{name: "empty params on the prefix segment", method: "GET", path: "/admin;/users", want: "admin"},
		{name: "several params and a session id", method: "GET", path: "/admin;x=1;y=2/users;jsessionid=ab", want: "admin"},
		{name: "params on the last segment", method: "GET", path: "/admin;v=1", want: "admin"},
		{name: "params hiding a dot segment", method: "GET", path: "/admin;/..;/x", wantErr: extauthz.ErrAmbiguousRequest},
		{name: "dot segment with params first", method: "GET", path: "/..;/admin", wantErr: extauthz.ErrAmbiguousRequest},
		{name: "segment of params only", method: "GET", path: "/;x/admin", wantErr: extauthz.ErrAmbiguousRequest},
		{name: "encoded semicolon", method: "GET", path: "/admin%3Bx/users", wantErr: extauthz.ErrAmbiguousRequest},
		{name: "encoded semicolon lower hex", method: "GET", path: "/admin%3b/users", wantErr: extauthz.ErrAmbiguousRequest},
		{name: "encoded slash inside params", method: "GET", path: "/admin;x%2F../users", wantErr: extauthz.ErrAmbiguousRequest},

		// Methods: upper-cased; a GET route covers HEAD.
		{name: "lower-case method", method: "delete", path: "/orders/1", want: "orders-delete"},
		{name: "mixed-case method", method: "Delete", path: "/orders/1", want: "orders-delete"},
		{name: "upper-case method", method: "DELETE", path: "/orders/1", want: "orders-delete"},
		{name: "other method falls through", method: "GET", path: "/orders/1", want: "open"},
		{name: "HEAD on a GET route", method: "HEAD", path: "/report", want: "report"},
		{name: "lower-case head on a GET route", method: "head", path: "/report", want: "report"},
		{name: "POST is not GET", method: "POST", path: "/report", want: "open"},
		{name: "method not a token", method: "GE T", path: "/report", wantErr: extauthz.ErrAmbiguousRequest},
		{name: "method not ASCII", method: "GET\u0131", path: "/report", wantErr: extauthz.ErrAmbiguousRequest},
		{name: "no method", path: "/report", wantErr: extauthz.ErrAmbiguousRequest},

		// Escapes: one spelling for what decoding servers read as one byte.
		{name: "encoded at sign", method: "GET", path: "/users/a%40b", want: "email"},
		{name: "raw at sign", method: "GET", path: "/users/a@b", want: "email"},
		{name: "upper-case hex", method: "GET", path: "/caf%C3%A9", want: "cafe"},
		{name: "lower-case hex", method: "GET", path: "/caf%c3%a9", want: "cafe"},
		{name: "raw UTF-8", method: "GET", path: "/caf\u00e9", want: "cafe"},
		{name: "overlong UTF-8 dot", method: "GET", path: "/admin/%C0%AE%C0%AE/x", wantErr: extauthz.ErrAmbiguousRequest},
		{name: "encoded unreserved", method: "GET", path: "/%61dmin/users", wantErr: extauthz.ErrAmbiguousRequest},
		{name: "encoded percent", method: "GET", path: "/admin%252Fusers", wantErr: extauthz.ErrAmbiguousRequest},
		{name: "encoded NUL", method: "GET", path: "/admin%00/users", wantErr: extauthz.ErrAmbiguousRequest},
		{name: "raw control character", method: "GET", path: "/admin\x01/users", wantErr: extauthz.ErrAmbiguousRequest},
		{name: "broken escape", method: "GET", path: "/admin%4", wantErr: extauthz.ErrAmbiguousRequest},

		// Separators.
		{name: "encoded slash", method: "GET", path: "/admin%2Fusers", wantErr: extauthz.ErrAmbiguousRequest},
		{name: "encoded slash lower hex", method: "GET", path: "/x/..%2fadmin", wantErr: extauthz.ErrAmbiguousRequest},
		{name: "encoded backslash", method: "GET", path: "/x%5C..%5Cadmin", wantErr: extauthz.ErrAmbiguousRequest},
		{name: "backslash", method: "GET", path: "/x\\..\\admin", wantErr: extauthz.ErrAmbiguousRequest},
		{name: "doubled slash", method: "GET", path: "/admin//users", wantErr: extauthz.ErrAmbiguousRequest},
		{name: "leading doubled slash", method: "GET", path: "//admin", wantErr: extauthz.ErrAmbiguousRequest},
		{name: "trailing slash kept", method: "GET", path: "/admin/", want: "admin"},
		{name: "relative path", method: "GET", path: "admin/users", wantErr: extauthz.ErrAmbiguousRequest},
		{name: "asterisk form", method: "OPTIONS", path: "*", want: "open"},

		// Dots.
		{name: "dot segment", method: "GET", path: "/x/../admin", wantErr: extauthz.ErrAmbiguousRequest},
		{name: "single dot segment", method: "GET", path: "/admin/./users", wantErr: extauthz.ErrAmbiguousRequest},
		{name: "encoded dot segment", method: "GET", path: "/x/%2E%2e/admin", wantErr: extauthz.ErrAmbiguousRequest},
		{name: "trailing dot in a segment", method: "GET", path: "/admin./users", wantErr: extauthz.ErrAmbiguousRequest},
		{name: "trailing dots in a segment", method: "GET", path: "/admin../users", wantErr: extauthz.ErrAmbiguousRequest},
		{name: "trailing space in a segment", method: "GET", path: "/admin%20/users", wantErr: extauthz.ErrAmbiguousRequest},
		{name: "inner dot kept", method: "GET", path: "/admin/users.json", want: "admin"},

		// Hosts.
		{name: "host case and trailing dot", method: "GET", host: "ADMIN.example.COM.", path: "/x", want: "admin-host"},
		{name: "host with port", method: "GET", host: "admin.example.com:8443", path: "/x", want: "admin-host"},
		{name: "host trailing dot and port", method: "GET", host: "admin.example.com.:443", path: "/x", want: "admin-host"},
		{name: "host with two trailing dots", method: "GET", host: "admin.example.com..", path: "/x", wantErr: extauthz.ErrAmbiguousRequest},
		{name: "host with empty label", method: "GET", host: "admin..example.com", path: "/x", wantErr: extauthz.ErrAmbiguousRequest},
		{name: "host with leading dot", method: "GET", host: ".admin.example.com", path: "/x", wantErr: extauthz.ErrAmbiguousRequest},
		{name: "host with a space", method: "GET", host: "admin.example.com x", path: "/x", wantErr: extauthz.ErrAmbiguousRequest},
		{name: "host not ASCII", method: "GET", host: "\u212Aey.example.com", path: "/x", wantErr: extauthz.ErrAmbiguousRequest},
		{name: "host with bad port", method: "GET", host: "admin.example.com:x", path: "/x", wantErr: extauthz.ErrAmbiguousRequest},
		{name: "IPv6 literal", method: "GET", host: "[::1]:8080", path: "/x", want: "open"},
		{name: "port without a name", method: "GET", host: ":0", path: "/x", wantErr: extauthz.ErrAmbiguousRequest},
		{name: "broken IPv6 literal", method: "GET", host: "[::1", path: "/x", wantErr: extauthz.ErrAmbiguousRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt, err := e.Select(&extauthz.Request{Method: tt.method, Host: tt.host, Path: tt.path})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Select = %v, %v; want %v", routeName(rt), err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if rt.Name != tt.want {
				t.Fatalf("route = %q, want %q", rt.Name, tt.want)
			}
		})
	}
}

func routeName(rt *Route) string {
	if rt == nil {
		return "<none>"
	}
	return rt.Name
}

// A route named by Envoy is Envoy's choice: its path was already matched
// by Envoy's router, so tokentailor's path rules do not apply to it.
func TestSelectNamedRouteSkipsCanonicalisation(t *testing.T) {
	e := upstreamEngine(t)
	rt, err := e.Select(&extauthz.Request{Path: "/x/../admin", ContextExtensions: map[string]string{"route": "admin"}})
	if err != nil || rt.Name != "admin" {
		t.Fatalf("Select = %v, %v", routeName(rt), err)
	}
}

func TestCompileMatch(t *testing.T) {
	tests := []struct {
		name        string
		match       config.Match
		wantErr     error
		wantPath    string
		wantPrefix  string
		wantMethods []string
		wantHosts   []string
	}{
		{name: "escapes brought to canonical form", match: config.Match{Path: "/users/a%40b/caf%c3%a9"}, wantPath: "/users/a@b/caf%C3%A9"},
		{name: "prefix kept", match: config.Match{PathPrefix: "/docs/"}, wantPrefix: "/docs/"},
		{name: "params could never match", match: config.Match{Path: "/admin;x"}, wantErr: extauthz.ErrAmbiguousRequest},
		{name: "dot segment could never match", match: config.Match{PathPrefix: "/a/../b"}, wantErr: extauthz.ErrAmbiguousRequest},
		{name: "doubled slash could never match", match: config.Match{PathPrefix: "/a//b"}, wantErr: extauthz.ErrAmbiguousRequest},
		{name: "encoded slash could never match", match: config.Match{Path: "/a%2Fb"}, wantErr: extauthz.ErrAmbiguousRequest},
		{name: "trailing dot could never match", match: config.Match{Path: "/a."}, wantErr: extauthz.ErrAmbiguousRequest},
		{name: "methods upper-cased, GET brings HEAD", match: config.Match{Methods: []string{"get", "Post", "GET"}}, wantMethods: []string{"GET", "POST", "HEAD"}},
		{name: "HEAD listed once", match: config.Match{Methods: []string{"HEAD", "GET"}}, wantMethods: []string{"HEAD", "GET"}},
		{name: "method not a token", match: config.Match{Methods: []string{"GET\u00e9"}}, wantErr: extauthz.ErrAmbiguousRequest},
		{name: "hosts lower case without trailing dot", match: config.Match{Hosts: []string{"Shop.Example.com."}}, wantHosts: []string{"shop.example.com"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := compileMatch(&tt.match)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("compileMatch = %+v, %v; want %v", m, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.path != tt.wantPath || m.prefix != tt.wantPrefix || !equal(m.methods, tt.wantMethods) || !equal(m.hosts, tt.wantHosts) {
				t.Fatalf("compileMatch = %+v", m)
			}
		})
	}
}

func equal(a, b []string) bool { return strings.Join(a, "\x00") == strings.Join(b, "\x00") }

func TestNewRefusesRoutesThatCouldNeverMatch(t *testing.T) {
	cfg, err := config.Parse([]byte(strings.Replace(upstreamConfig, "path_prefix: /admin}", "path_prefix: /admin;x}", 1)), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(cfg); !errors.Is(err, extauthz.ErrAmbiguousRequest) || !strings.Contains(err.Error(), "routes[1]") {
		t.Fatalf("New = %v, want an error naming routes[1]", err)
	}
}

func TestCanonicalPath(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{in: "/", want: "/"},
		{in: "", want: ""},
		{in: "/a/b/", want: "/a/b/"},
		{in: "/a;x/b;y", want: "/a/b"},
		{in: "/a/;x", want: "/a/"},
		{in: "/a%40b%3a%21", want: "/a@b:!"},
		{in: "/a%7cb", want: "/a%7Cb"},
		{in: "/a|b", want: "/a%7Cb"},
		{in: "/a b", want: "/a%20b"},
		{in: "/%5B1%5d", want: "/%5B1%5D"},
		{in: "/q%3Fx%23y", want: "/q%3Fx%23y"},
		{in: "/a%2Bb+c", want: "/a+b+c"},
		{in: "/a\xff", wantErr: true},
		{in: "/%FF", wantErr: true},
		{in: "/.hidden", want: "/.hidden"},
		{in: "/...", wantErr: true},
		{in: "/a.", wantErr: true},
		{in: "/a;x.", want: "/a"},
		{in: "/a%7E", wantErr: true},
		{in: "/a%", wantErr: true},
		{in: "/a%2", wantErr: true},
		{in: "/a%7f", wantErr: true},
		{in: "/a\x7f", wantErr: true},
		{in: "/" + strings.Repeat("caf%c3%a9;p/", 40) + "x", want: "/" + strings.Repeat("caf%C3%A9/", 40) + "x"},
		{in: "/" + strings.Repeat("%C3%A9", 100) + "%C3", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in[:min(len(tt.in), 40)], func(t *testing.T) {
			got, err := canonicalPath(tt.in)
			if tt.wantErr {
				if !errors.Is(err, extauthz.ErrAmbiguousRequest) {
					t.Fatalf("canonicalPath(%q) = %q, %v; want ErrAmbiguousRequest", tt.in, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("canonicalPath(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

// The hot path: a path, host and method already canonical cost nothing.
func TestCanonicalTargetDoesNotAllocateWhenCanonical(t *testing.T) {
	r := &extauthz.Request{Method: "GET", Host: "shop.example.com:8443", Path: "/orders/7/items/caf%C3%A9"}
	if allocs := testing.AllocsPerRun(100, func() { _, _ = canonicalTarget(r) }); allocs != 0 {
		t.Errorf("canonicalTarget: %v allocs, want 0", allocs)
	}
}

// servletPath is how a Servlet container (Tomcat, Jetty; Spring on top of
// them) reads a path: ";params" cut from each segment, then each segment
// percent-decoded. ok is false when it cannot be decoded.
func servletPath(p string) (string, bool) {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		s, _, _ = strings.Cut(s, ";")
		d, err := url.PathUnescape(s)
		if err != nil {
			return "", false
		}
		segs[i] = d
	}
	return strings.Join(segs, "/"), true
}

// decodedPath is how Go's net/http and nginx read a path: percent-decoded,
// ';' an ordinary character.
func decodedPath(p string) (string, bool) {
	d, err := url.PathUnescape(p)
	return d, err == nil
}

// checkCanonical checks what canonicalPath promises for an accepted path p.
func checkCanonical(t interface{ Fatalf(string, ...any) }, p, c string) {
	if again, err := canonicalPath(c); err != nil || again != c {
		t.Fatalf("canonicalPath(%q) = %q, but canonicalPath(%q) = %q, %v", p, c, c, again, err)
	}
	if c == "" || c == "*" {
		if c != p {
			t.Fatalf("canonicalPath(%q) = %q", p, c)
		}
		return
	}
	if strings.ContainsAny(c, ";\\") || strings.Contains(c, "//") || strings.Contains(c, "./") || strings.HasSuffix(c, ".") {
		t.Fatalf("canonicalPath(%q) = %q holds a form it refuses", p, c)
	}
	for i := 0; i < len(c); i++ {
		if c[i] == '%' && (i+2 >= len(c) || strings.ContainsAny(c[i+1:i+3], "abcdef")) {
			t.Fatalf("canonicalPath(%q) = %q: escape not in upper-case hex", p, c)
		}
	}
	// The canonical path names the same resource as p for a Servlet
	// container, and, when p has no params, for a decoding server.
	sp, ok1 := servletPath(p)
	sc, ok2 := servletPath(c)
	if !ok1 || !ok2 || sp != sc {
		t.Fatalf("canonicalPath(%q) = %q: a Servlet container reads %q and %q", p, c, sp, sc)
	}
	if !strings.Contains(p, ";") {
		dp, ok1 := decodedPath(p)
		dc, ok2 := decodedPath(c)
		if !ok1 || !ok2 || dp != dc {
			t.Fatalf("canonicalPath(%q) = %q: a decoding server reads %q and %q", p, c, dp, dc)
		}
	}
}

func FuzzCanonicalPath(f *testing.F) {
	for _, s := range []string{
		"/", "/admin;x/users", "/admin;/..;/x", "/..;/admin", "/admin%3Bx", "/caf%c3%a9", "/a%40b",
		"/x/%2e%2E/y", "//a", "/a\\b", "/admin./x", "/admin%20/x", "/%C0%AE", "*", "", "/a|b c\xff",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		c, err := canonicalPath(p)
		if err != nil {
			if !errors.Is(err, extauthz.ErrAmbiguousRequest) || c != "" {
				t.Fatalf("canonicalPath(%q) = %q, %v", p, c, err)
			}
			return
		}
		checkCanonical(t, p, c)
	})
}

func FuzzSelect(f *testing.F) {
	f.Add("delete", "Admin.example.com.:80", "/admin;x/users")
	f.Add("GET", "[::1]", "/caf%c3%a9")
	f.Add("head", "", "/report;x")
	e := upstreamEngine(f)
	f.Fuzz(func(t *testing.T, method, host, path string) {
		rt, err := e.Select(&extauthz.Request{Method: method, Host: host, Path: path})
		switch {
		case err == nil && rt == nil:
			t.Fatal("no route and no error")
		case err != nil && rt != nil:
			t.Fatalf("route %q and error %v", rt.Name, err)
		case err != nil && !errors.Is(err, extauthz.ErrAmbiguousRequest):
			// The config has a default route: only a refusal may fail.
			t.Fatalf("Select = %v", err)
		}
	})
}

// resource is a request as a common upstream (a Servlet container behind a
// case-insensitive method table) reads it: the method upper-cased, the host
// without case, port or trailing dot, the path split into decoded segments
// without params.
type resource struct {
	method   string
	host     string
	segments []string // decoded, none empty, none "." or "..", none ending in '.'
	slash    bool     // a trailing slash
}

// segmentBytes are the bytes generated inside decoded segments: letters of
// the routes' words, characters each encoding rule treats differently
// (sub-delims, ':' and '@', space, non-ASCII) and '.'.
var segmentBytes = []byte("adminorsepcuftbADM019-_~.!$&'()*+,=:@ \u00e9")

func genResource(t *rapid.T) resource {
	words := []string{"admin", "orders", "users", "a@b", "caf\u00e9", "report", "docs", "1", "x y"}
	r := resource{
		method: rapid.SampledFrom([]string{"GET", "HEAD", "POST", "PUT", "DELETE", "PURGE"}).Draw(t, "method"),
		host:   rapid.SampledFrom([]string{"", "admin.example.com", "shop.example.com", "10.0.0.1"}).Draw(t, "host"),
		slash:  rapid.Bool().Draw(t, "slash"),
	}
	n := rapid.IntRange(0, 4).Draw(t, "segments")
	for i := 0; i < n; i++ {
		var seg string
		if rapid.Bool().Draw(t, "word") {
			seg = rapid.SampledFrom(words).Draw(t, "seg")
		} else {
			b := rapid.SliceOfN(rapid.SampledFrom(segmentBytes), 1, 6).Draw(t, "bytes")
			seg = string(b)
		}
		if !utf8Valid(seg) || strings.Trim(seg, ".") == "" || strings.HasSuffix(seg, ".") || strings.HasSuffix(seg, " ") {
			seg = "s" + strings.TrimRight(seg, ". ") + "s"
			if !utf8Valid(seg) {
				seg = "s"
			}
		}
		r.segments = append(r.segments, seg)
	}
	return r
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\x00") == s }

// plain is the spelling an honest client sends: upper-case method, bare
// host, bytes raw where a path may hold them, else escaped in upper case.
func (r resource) plain() extauthz.Request {
	var b strings.Builder
	for _, s := range r.segments {
		b.WriteByte('/')
		for i := 0; i < len(s); i++ {
			c := s[i]
			if isUnreserved(c) || c == '.' || isSubDelim(c) || c == ':' || c == '@' {
				b.WriteByte(c)
			} else {
				b.WriteByte('%')
				b.WriteByte(upperHex[c>>4])
				b.WriteByte(upperHex[c&15])
			}
		}
	}
	if r.slash || len(r.segments) == 0 {
		b.WriteByte('/')
	}
	return extauthz.Request{Method: r.method, Host: r.host, Path: b.String()}
}

// spell draws another spelling of r that the upstream reads as r: method and
// host case, a trailing dot and a port on the host, ";params" on segments,
// and each byte raw or escaped in either hex case. refusable reports whether
// it escaped an unreserved character or '.', which tokentailor refuses
// (honest clients never do it) rather than matches.
func (r resource) spell(t *rapid.T) (req extauthz.Request, refusable bool) {
	flipCase := func(s, label string) string {
		b := []byte(s)
		for i, c := range b {
			if ('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') && rapid.Bool().Draw(t, label) {
				b[i] = c ^ 0x20
			}
		}
		return string(b)
	}
	hexDigit := func(d byte) byte {
		h := upperHex[d]
		if h >= 'A' && rapid.Bool().Draw(t, "lowerhex") {
			h += 'a' - 'A'
		}
		return h
	}
	req.Method = flipCase(r.method, "methodcase")
	if r.host != "" {
		req.Host = flipCase(r.host, "hostcase")
		if rapid.Bool().Draw(t, "hostdot") {
			req.Host += "."
		}
		if rapid.Bool().Draw(t, "port") {
			req.Host += ":8443"
		}
	}
	var b strings.Builder
	params := func() {
		if rapid.IntRange(0, 3).Draw(t, "params") == 0 {
			b.WriteByte(';')
			b.WriteString(rapid.SampledFrom([]string{"", "x", "jsessionid=AB12", "v=1;w=2", "..", "a@b"}).Draw(t, "param"))
		}
	}
	for _, s := range r.segments {
		b.WriteByte('/')
		for i := 0; i < len(s); i++ {
			c := s[i]
			raw := isUnreserved(c) || c == '.' || isSubDelim(c) || c == ':' || c == '@' || c >= 0x80 && c != 0xff || c == ' '
			if raw && rapid.IntRange(0, 3).Draw(t, "escape") != 0 {
				b.WriteByte(c)
				continue
			}
			if isUnreserved(c) || c == '.' {
				refusable = true
			}
			b.WriteByte('%')
			b.WriteByte(hexDigit(c >> 4))
			b.WriteByte(hexDigit(c & 15))
		}
		params()
	}
	if r.slash || len(r.segments) == 0 {
		b.WriteByte('/')
		if len(r.segments) > 0 {
			params()
		}
	}
	req.Path = b.String()
	return req, refusable
}

// TestPropertySameResourceSameRoute: two requests a common upstream reads
// as the same method and resource select the same route. A spelling may
// instead be refused only when it escapes an unreserved character or a dot.
func TestPropertySameResourceSameRoute(t *testing.T) {
	e := upstreamEngine(t)
	rapid.Check(t, func(t *rapid.T) {
		r := genResource(t)
		plain := r.plain()
		want, err := e.Select(&plain)
		if err != nil {
			t.Fatalf("plain spelling %+v refused: %v", plain, err)
		}
		for i := 0; i < 2; i++ {
			req, refusable := r.spell(t)
			got, err := e.Select(&req)
			switch {
			case err != nil && refusable && errors.Is(err, extauthz.ErrAmbiguousRequest):
			case err != nil:
				t.Fatalf("%+v refused (%v); %+v selects %q", req, err, plain, want.Name)
			case got != want:
				t.Fatalf("%+v selects %q; %+v selects %q", req, got.Name, plain, want.Name)
			}
			if err == nil {
				c, _ := canonicalPath(req.Path)
				checkCanonical(t, req.Path, c)
			}
		}
	})
}
