package config

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestExamplesLoad(t *testing.T) {
	files, err := filepath.Glob("../../docs/examples/*.yaml")
	if err != nil || len(files) < 2 {
		t.Fatalf("examples not found: %v %v", files, err)
	}
	for _, f := range files {
		c, err := Load(f)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if len(c.Routes) == 0 {
			t.Errorf("%s: no routes", f)
		}
	}
}

const minimal = `
listen: {grpc: "127.0.0.1:9191"}
mint:
  issuer: https://tt.internal
  keys: [{file: key.pem}]
issuers:
  - issuer: https://idp.test
    jwks_url: https://idp.test/jwks
    audiences: [api]
routes:
  - name: r
    require: {}
    upstream: {audience: api}
`

func TestDefaults(t *testing.T) {
	c, err := Parse([]byte(minimal), "/etc/tt")
	if err != nil {
		t.Fatal(err)
	}
	r := c.Routes[0]
	if r.Upstream.Mode != "mint" || r.Upstream.TTL.Duration != DefaultTTL || r.Upstream.Header != "authorization" ||
		*r.Upstream.Prefix != "Bearer " || !*r.Upstream.StripCredential {
		t.Errorf("route defaults wrong: %+v", r.Upstream)
	}
	is := c.Issuers[0]
	if is.ClockSkew.Duration != DefaultClockSkew || len(is.Algorithms) != len(DefaultAlgorithms) || is.ScopeClaims[0] != "scope" {
		t.Errorf("issuer defaults wrong: %+v", is)
	}
	if *c.Credential.Scheme != "Bearer" || c.Credential.Header != "authorization" || c.RouteKey != "route" {
		t.Errorf("credential defaults wrong: %+v", c.Credential)
	}
	if c.Listen.HTTP != "" || c.Listen.HTTPSocket != "" || !slices.Equal(c.Listen.HTTPTrustedProxies, DefaultHTTPTrustedProxies) {
		t.Errorf("HTTP listener defaults wrong: %+v", c.Listen)
	}
	if got := c.Path("key.pem"); got != "/etc/tt/key.pem" {
		t.Errorf("Path = %q", got)
	}
	if got := c.Files(); len(got) != 1 || got[0] != "/etc/tt/key.pem" {
		t.Errorf("Files = %v", got)
	}
}

// TestRuntimeLimit: the memory limit each memory_limit value asks for.
func TestRuntimeLimit(t *testing.T) {
	tests := []struct {
		limit      string
		maxEntries int
		want       int64
	}{
		{"", 10000, 32<<20 + 2560*10000},
		{"auto", 10000, 32<<20 + 2560*10000},
		{"AUTO", 1000, 32<<20 + 2560*1000},
		{"off", 10000, math.MaxInt64},
		{"96Mi", 10000, 96 << 20},
		{"128M", 10000, 128_000_000},
		{"134217728", 10000, 1 << 27},
	}
	for _, tc := range tests {
		got, err := Runtime{MemoryLimit: tc.limit}.Limit(tc.maxEntries)
		if err != nil || got != tc.want {
			t.Errorf("Limit(%q, %d) = %d, %v; want %d", tc.limit, tc.maxEntries, got, err, tc.want)
		}
	}
	c, err := Parse([]byte(minimal), "/etc/tt")
	if err != nil {
		t.Fatal(err)
	}
	if c.Runtime.GCPercent != DefaultGCPercent || c.Runtime.MemoryLimit != "auto" {
		t.Errorf("runtime defaults: %+v", c.Runtime)
	}
}

func TestValidateNamesTheField(t *testing.T) {
	tests := []struct {
		name string
		edit func(string) string
		want string // the field and problem that must be named
	}{
		{"unknown field", func(s string) string { return s + "bogus: 1\n" }, `unknown field "bogus"`},
		{"typo in nested field", func(s string) string {
			return strings.Replace(s, "upstream: {audience: api}", "upstream: {audiance: api}", 1)
		}, `unknown field "audiance"`},
		{"bad duration", func(s string) string {
			return strings.Replace(s, "{audience: api}", "{audience: api, ttl: soon}", 1)
		}, `invalid duration "soon"`},
		{"negative ttl", func(s string) string {
			return strings.Replace(s, "{audience: api}", "{audience: api, ttl: -1s}", 1)
		}, "routes[0].upstream.ttl: must be positive"},
		{"alg none", func(s string) string {
			return strings.Replace(s, "jwks_url: https://idp.test/jwks", "jwks_url: https://idp.test/jwks\n    algorithms: [none]", 1)
		}, "issuers[0].algorithms[0]: \"none\" is never accepted"},
		{"hs without secret", func(s string) string {
			return strings.Replace(s, "jwks_url: https://idp.test/jwks", "jwks_url: https://idp.test/jwks\n    algorithms: [HS256]", 1)
		}, "issuers[0].algorithms: HS* algorithms need hmac_secret"},
		{"no listener", func(s string) string { return strings.Replace(s, `listen: {grpc: "127.0.0.1:9191"}`, "", 1) }, "listen: set grpc"},
		{"bad http address", func(s string) string {
			return strings.Replace(s, `listen: {grpc: "127.0.0.1:9191"}`, `listen: {grpc: "127.0.0.1:9191", http: "9192"}`, 1)
		}, `listen.http: "9192" is not host:port`},
		{"relative http socket", func(s string) string {
			return strings.Replace(s, `listen: {grpc: "127.0.0.1:9191"}`, `listen: {grpc: "127.0.0.1:9191", http_socket: run/http.sock}`, 1)
		}, "listen.http_socket: must be an absolute path"},
		{"bad trusted proxy", func(s string) string {
			return strings.Replace(s, `listen: {grpc: "127.0.0.1:9191"}`, `listen: {grpc: "127.0.0.1:9191", http_trusted_proxies: [10.0.0.0/8, proxy.local]}`, 1)
		}, `listen.http_trusted_proxies[1]: "proxy.local" is not a CIDR`},
		{"header name with a space", func(s string) string {
			return strings.Replace(s, "{audience: api}", `{audience: api, header: "x token"}`, 1)
		}, `routes[0].upstream.header: "x token" is not a header name`},
		{"header name not ASCII", func(s string) string {
			return strings.Replace(s, "{audience: api}", `{audience: api, header: "x-tökén"}`, 1)
		}, `routes[0].upstream.header: "x-tökén" is not a header name`},
		{"credential header with a colon", func(s string) string { return s + "credential: {header: \"x:auth\"}\n" },
			`credential.header: "x:auth" is not a header name`},
		{"bad mode", func(s string) string { return strings.Replace(s, "{audience: api}", "{audience: api, mode: magic}", 1) }, `routes[0].upstream.mode: "magic" is not`},
		{"mint without audience", func(s string) string { return strings.Replace(s, "{audience: api}", "{}", 1) }, "routes[0].upstream.audience: required for mode mint"},
		{"registered claim", func(s string) string {
			return strings.Replace(s, "{audience: api}", "{audience: api, claims: {exp: 1}}", 1)
		}, "routes[0].upstream.claims.exp: cannot overwrite the claim"},
		{"copy onto registered claim", func(s string) string {
			return strings.Replace(s, "{audience: api}", "{audience: api, copy_claims: {email: sub}}", 1)
		}, "routes[0].upstream.copy_claims.email: cannot overwrite"},
		{"duplicate route", func(s string) string { return s + "  - name: r\n    require: {}\n    upstream: {audience: b}\n" }, `routes[1].name: duplicate route name "r"`},
		// Issue 11: a file cut after "require:" parsed as "nothing required".
		{"require cut off", func(s string) string { return strings.Replace(s, "    require: {}\n", "    require:\n", 1) }, "routes[0].require: missing or null"},
		{"require null", func(s string) string { return strings.Replace(s, "    require: {}\n", "    require: null\n", 1) }, "routes[0].require: missing or null"},
		{"require missing", func(s string) string { return strings.Replace(s, "    require: {}\n", "", 1) }, "routes[0].require: missing or null"},
		{"file cut after require", func(s string) string { return s + "  - name: admin\n    upstream: {audience: admin}\n    require:" }, "routes[1].require: missing or null"},
		{"require typo", func(s string) string {
			return strings.Replace(s, "    require: {}\n", "    require: {scope: [a]}\n", 1)
		}, `unknown field "scope"`},
		{"embedded issuers unknown", func(s string) string {
			return strings.Replace(s, "{audience: api}", "{audience: api, mode: embedded, embedded_issuers: [https://nope.test]}", 1)
		}, `routes[0].upstream.embedded_issuers[0]: "https://nope.test" names no configured issuer`},
		{"embedded issuers in mint", func(s string) string {
			return strings.Replace(s, "{audience: api}", "{audience: api, embedded_issuers: [https://idp.test]}", 1)
		}, "routes[0].upstream.embedded_issuers: only for mode embedded"},
		{"drain negative", func(s string) string {
			return strings.Replace(s, `listen: {grpc: "127.0.0.1:9191"}`, `listen: {grpc: "127.0.0.1:9191", drain: -1s}`, 1)
		}, "listen.drain: must not be negative"},
		{"max request bytes too small", func(s string) string {
			return strings.Replace(s, `listen: {grpc: "127.0.0.1:9191"}`, `listen: {grpc: "127.0.0.1:9191", max_request_bytes: 100}`, 1)
		}, "listen.max_request_bytes: 100 is not between"},
		{"dangling default", func(s string) string { return s + "default_route: nope\n" }, `default_route: "nope" names no route`},
		{"issuer without keys", func(s string) string { return strings.Replace(s, "    jwks_url: https://idp.test/jwks\n", "", 1) }, "issuers[0]: needs jwks_url"},
		{"jwks url not http", func(s string) string { return strings.Replace(s, "https://idp.test/jwks", "file:///etc/passwd", 1) }, "issuers[0].jwks_url"},
		{"public with scopes", func(s string) string { return s + "  - name: p\n    public: true\n    require: {scopes: [a]}\n" }, "routes[1].require: a public route cannot require"},
		{"path and prefix", func(s string) string {
			return strings.Replace(s, "  - name: r\n", "  - name: r\n    match: {path: /a, path_prefix: /b}\n", 1)
		}, "routes[0].match: set path or path_prefix, not both"},
		{"bad host", func(s string) string {
			return strings.Replace(s, "  - name: r\n", "  - name: r\n    match: {hosts: [\"a*b\"]}\n", 1)
		}, "routes[0].match.hosts[0]"},
		{"mint without keys", func(s string) string { return strings.Replace(s, "  keys: [{file: key.pem}]\n", "", 1) }, "mint.keys: at least one"},
		{"client secret twice", func(s string) string {
			return strings.Replace(s, "jwks_url: https://idp.test/jwks", "jwks_url: https://idp.test/jwks\n    introspection: {endpoint: https://idp.test/i}\n    client: {id: c, secret: {file: a, env: B}}", 1)
		}, "issuers[0].client.secret: set exactly one of file or env"},
		{"introspection without client", func(s string) string {
			return strings.Replace(s, "jwks_url: https://idp.test/jwks", "jwks_url: https://idp.test/jwks\n    introspection: {endpoint: https://idp.test/i}", 1)
		}, "issuers[0].client: required for introspection"},
		{"zero max_cache_ttl", func(s string) string {
			return strings.Replace(s, "jwks_url: https://idp.test/jwks", "jwks_url: https://idp.test/jwks\n    introspection: {endpoint: https://idp.test/i, max_cache_ttl: 0s}\n    client: {id: c, secret: {env: X}}", 1)
		}, "issuers[0].introspection.max_cache_ttl: must be positive"},
		{"unknown introspection audience", func(s string) string {
			return strings.Replace(s, "jwks_url: https://idp.test/jwks", "jwks_url: https://idp.test/jwks\n    introspection: {endpoint: https://idp.test/i, audience: trust}\n    client: {id: c, secret: {env: X}}", 1)
		}, `issuers[0].introspection.audience: "trust" is not claim or server`},
		{"empty subject claim", func(s string) string {
			return strings.Replace(s, "jwks_url: https://idp.test/jwks", "jwks_url: https://idp.test/jwks\n    introspection: {endpoint: https://idp.test/i, subject_claims: [sub, \"\"]}\n    client: {id: c, secret: {env: X}}", 1)
		}, "issuers[0].introspection.subject_claims[1]: must not be empty"},
		{"subject token type not a URI", func(s string) string {
			return strings.Replace(s, "{audience: api}", "{audience: api, mode: exchange, exchange: {subject_token_type: access_token}}", 1)
		}, `routes[0].upstream.exchange.subject_token_type: "access_token" is not a token type URI`},
		{"requested token type not a URI", func(s string) string {
			return strings.Replace(s, "{audience: api}", "{audience: api, mode: exchange, exchange: {requested_token_type: jwt}}", 1)
		}, `routes[0].upstream.exchange.requested_token_type: "jwt" is not a token type URI`},
		{"zero jwks_min_refetch", func(s string) string {
			return strings.Replace(s, "jwks_url: https://idp.test/jwks", "jwks_url: https://idp.test/jwks\n    jwks_min_refetch: 0s", 1)
		}, "issuers[0].jwks_min_refetch: must be positive"},
		{"no audiences", func(s string) string { return strings.Replace(s, "    audiences: [api]\n", "", 1) }, "issuers[0].audiences: required"},
		{"negative gc_percent", func(s string) string { return s + "runtime: {gc_percent: -1}\n" }, "runtime.gc_percent: must be positive"},
		{"memory_limit not a size", func(s string) string { return s + "runtime: {memory_limit: lots}\n" }, `runtime.memory_limit: "lots" is not auto, off or a size`},
		{"memory_limit too small", func(s string) string { return s + "runtime: {memory_limit: 1Mi}\n" }, `runtime.memory_limit: "1Mi": a limit under 16Mi`},
		{"typo with suggestion", func(s string) string { return strings.Replace(s, "audiences: [api]", "audience: [api]", 1) },
			`line 9: issuers[0]: unknown field "audience" (did you mean "audiences"?)`},
		{"string for a list", func(s string) string { return strings.Replace(s, "audiences: [api]", "audiences: api", 1) },
			"line 9: issuers[0].audiences: want a list of strings"},
		{"duration in words", func(s string) string {
			return strings.Replace(s, "{audience: api}", `{audience: api, ttl: "5 minutes"}`, 1)
		}, `line 13: routes[0].upstream.ttl: invalid duration "5 minutes" (e.g. 5m)`},
		{"removed opaque", func(s string) string {
			return strings.Replace(s, "audiences: [api]", "audiences: [api]\n    opaque: true", 1)
		},
			"issuers[0].opaque: was removed: an issuer introspects opaque tokens when it has an introspection block"},
		{"number for a string", func(s string) string { return strings.Replace(s, "  - name: r\n", "  - name: 42\n", 1) },
			`routes[0].name: want a string; quote it: "42"`},
		{"validation error has its line", func(s string) string {
			return strings.Replace(s, "{audience: api}", "{audience: api, ttl: -1s}", 1)
		}, "line 13: routes[0].upstream.ttl: must be positive"},
		{"url with credentials", func(s string) string {
			return strings.Replace(s, "https://idp.test/jwks", "https://u:p@idp.test/jwks", 1)
		}, "must not carry credentials"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.edit(minimal)), "/etc/tt")
			if err == nil {
				t.Fatalf("want error naming %q, got none", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not name %q", err, tt.want)
			}
		})
	}
}

func TestFieldErrorsAreCollected(t *testing.T) {
	bad := strings.Replace(minimal, "{audience: api}", "{mode: magic, ttl: -1s}", 1)
	_, err := Parse([]byte(bad), "")
	var fe FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("want FieldError, got %v", err)
	}
	if n := strings.Count(err.Error(), "\n") + 1; n < 2 {
		t.Fatalf("want every problem reported, got %d: %v", n, err)
	}
}

func TestReadSecret(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "s"), []byte("hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &Config{dir: dir}
	got, err := c.ReadSecret(&Secret{File: "s"})
	if err != nil || string(got) != "hunter2" {
		t.Fatalf("file secret = %q, %v", got, err)
	}
	t.Setenv("TT_TEST_SECRET", "s3")
	got, err = c.ReadSecret(&Secret{Env: "TT_TEST_SECRET"})
	if err != nil || string(got) != "s3" {
		t.Fatalf("env secret = %q, %v", got, err)
	}
	if _, err := c.ReadSecret(&Secret{Env: "TT_TEST_UNSET_X"}); err == nil {
		t.Fatal("unset env must fail")
	}
	if _, err := c.ReadSecret(&Secret{File: "missing"}); err == nil {
		t.Fatal("missing file must fail")
	}
}

// An explicit zero is kept, not replaced by the default.
func TestExplicitZeroDuration(t *testing.T) {
	c, err := Parse([]byte(strings.Replace(minimal, "jwks_url: https://idp.test/jwks", "jwks_url: https://idp.test/jwks\n    clock_skew: 0s", 1)), "")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Issuers[0].ClockSkew; got.Duration != 0 || !got.IsSet() {
		t.Fatalf("clock_skew: 0s became %v", got)
	}
	c, err = Parse([]byte(minimal), "")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Issuers[0].ClockSkew.Duration; got != DefaultClockSkew {
		t.Fatalf("unset clock_skew = %v, want the default", got)
	}
}

func TestDurationAndStringList(t *testing.T) {
	c, err := Parse([]byte(strings.Replace(minimal, "    require: {}\n", "", 1)+"    require: {claims: {tenant: acme, groups: [a, b]}}\n    min_lifetime: 90s\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	r := c.Routes[0]
	if r.MinLifetime.Duration != 90*time.Second {
		t.Errorf("min_lifetime = %v", r.MinLifetime)
	}
	if got := r.Require.Claims["tenant"]; len(got) != 1 || got[0] != "acme" {
		t.Errorf("tenant = %v", got)
	}
	if got := r.Require.Claims["groups"]; len(got) != 2 {
		t.Errorf("groups = %v", got)
	}
}

func TestAllowMissingSub(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want bool
	}{
		{name: "default: sub required", yaml: minimal, want: false},
		{name: "opt-out", yaml: strings.Replace(minimal, "    audiences: [api]\n", "    audiences: [api]\n    allow_missing_sub: true\n", 1), want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml), "/etc/tt")
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Issuers[0].AllowMissingSub; got != tt.want {
				t.Fatalf("allow_missing_sub = %v, want %v", got, tt.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal))
	if b, err := os.ReadFile("../../docs/examples/tokentailor-sidecar.yaml"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("routes: [{name: a, upstream: {mode: forward}}]"))
	f.Add([]byte("{{{"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "/x")
		if err == nil && c == nil {
			t.Fatal("nil config without error")
		}
		if err != nil && c != nil {
			t.Fatal("config returned with error")
		}
	})
}

func TestParseTrustedProxy(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr bool
	}{
		{name: "CIDR", in: "10.1.2.3/8", want: "10.0.0.0/8"},
		{name: "IPv4 address", in: "10.0.0.7", want: "10.0.0.7/32"},
		{name: "IPv6 address", in: "::1", want: "::1/128"},
		{name: "host name", in: "proxy.local", wantErr: true},
		{name: "empty", in: "", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseTrustedProxy(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if err == nil && got.String() != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

// TestWarnsAboutReadableKeyFiles: key and secret files that other users may
// read load, with a warning naming the field and the fix.
func TestWarnsAboutReadableKeyFiles(t *testing.T) {
	tests := []struct {
		name string
		mode os.FileMode
		want string
	}{
		{name: "private", mode: 0o600, want: ""},
		{name: "readable by others", mode: 0o644, want: "mint.keys[0].file: key.pem is accessible to other users (mode 0644); restrict it with chmod 600"},
		{name: "group writable", mode: 0o620, want: "mode 0620"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "key.pem"), []byte("x"), tt.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(filepath.Join(dir, "key.pem"), tt.mode); err != nil {
				t.Fatal(err)
			}
			c, err := Parse([]byte(minimal), dir)
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join(c.Warnings(), "\n")
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Errorf("Warnings() = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestIssue12Defaults checks the defaults that let tokentailor work with
// servers such as zitadel: access_token on both sides of an exchange, the
// answer's aud and sub by default for introspection, and the values a file
// sets arriving unchanged.
func TestIssue12Defaults(t *testing.T) {
	tests := []struct {
		name         string
		issuerExtra  string
		upstream     string
		wantAudience string
		wantSubject  []string
		wantSubType  string
		wantReqType  string
	}{
		{
			name:         "defaults",
			issuerExtra:  "introspection: {endpoint: https://idp.test/i}\n    token_endpoint: https://idp.test/token",
			upstream:     "{audience: api, mode: exchange}",
			wantAudience: AudienceClaim, wantSubject: []string{"sub"},
			wantSubType: "urn:ietf:params:oauth:token-type:access_token", wantReqType: "urn:ietf:params:oauth:token-type:access_token",
		},
		{
			name:         "set in the file",
			issuerExtra:  "introspection: {endpoint: https://idp.test/i, audience: server, subject_claims: [sub, username, client_id]}\n    token_endpoint: https://idp.test/token",
			upstream:     "{audience: api, mode: exchange, exchange: {subject_token_type: 'urn:ietf:params:oauth:token-type:jwt', requested_token_type: 'urn:ietf:params:oauth:token-type:id_token'}}",
			wantAudience: AudienceServer, wantSubject: []string{"sub", "username", "client_id"},
			wantSubType: "urn:ietf:params:oauth:token-type:jwt", wantReqType: "urn:ietf:params:oauth:token-type:id_token",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := strings.Replace(minimal, "jwks_url: https://idp.test/jwks", "jwks_url: https://idp.test/jwks\n    "+tt.issuerExtra+"\n    client: {id: c, secret: {env: X}}", 1)
			src = strings.Replace(src, "upstream: {audience: api}", "upstream: "+tt.upstream, 1)
			c, err := Parse([]byte(src), "/etc/tt")
			if err != nil {
				t.Fatal(err)
			}
			in := c.Issuers[0].Introspection
			if in.Audience != tt.wantAudience || strings.Join(in.SubjectClaims, ",") != strings.Join(tt.wantSubject, ",") {
				t.Errorf("introspection = audience %q, subject_claims %v; want %q, %v", in.Audience, in.SubjectClaims, tt.wantAudience, tt.wantSubject)
			}
			x := c.Routes[0].Upstream.Exchange
			if x.SubjectTokenType != tt.wantSubType || x.RequestedTokenType != tt.wantReqType {
				t.Errorf("exchange types = %q, %q; want %q, %q", x.SubjectTokenType, x.RequestedTokenType, tt.wantSubType, tt.wantReqType)
			}
		})
	}
}

// The HTTP authorization listener alone is enough: nginx or Caddy need no gRPC.
func TestHTTPListenerAlone(t *testing.T) {
	for _, listen := range []string{`{http: "127.0.0.1:9192"}`, `{http_socket: /run/tt/http.sock}`} {
		in := strings.Replace(minimal, `listen: {grpc: "127.0.0.1:9191"}`, "listen: "+listen, 1)
		if in == minimal {
			t.Fatal("minimal config changed shape")
		}
		if _, err := Parse([]byte(in), "/etc/tt"); err != nil {
			t.Errorf("listen %s: %v", listen, err)
		}
	}
}

// TestEmptySecretBlockIsNoSecret: {file: "", env: ""}, as the reference
// config shows it, means no secret at all.
func TestEmptySecretBlockIsNoSecret(t *testing.T) {
	c, err := Parse([]byte(strings.Replace(minimal, "audiences: [api]", "audiences: [api]\n    hmac_secret: {file: \"\", env: \"\"}", 1)), "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Issuers[0].HMACSecret != nil {
		t.Errorf("hmac_secret = %+v, want none", c.Issuers[0].HMACSecret)
	}
}

// TestJWKSMinRefetchIsSeconds: "a newly published key is accepted within a
// few seconds of its first use" holds only while the on-demand refetch
// interval is a few seconds.
func TestJWKSMinRefetchIsSeconds(t *testing.T) {
	if DefaultJWKSMinRefetch > 5*time.Second {
		t.Fatalf("DefaultJWKSMinRefetch = %v, want at most 5s", DefaultJWKSMinRefetch)
	}
}
