package response

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/google/go-cmp/cmp"
	rpccode "google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/tokentailor/tokentailor/extauthz"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// sentinels lists every deny sentinel of extauthz/errors.go by name.
// TestEverySentinelHasARow fails when errors.go declares one not listed here,
// so a new sentinel cannot ship without a table row.
var sentinels = map[string]error{
	"ErrNoCredential":        extauthz.ErrNoCredential,
	"ErrMalformedCredential": extauthz.ErrMalformedCredential,
	"ErrInvalidToken":        extauthz.ErrInvalidToken,
	"ErrTokenExpired":        extauthz.ErrTokenExpired,
	"ErrTokenNotYetValid":    extauthz.ErrTokenNotYetValid,
	"ErrUnknownIssuer":       extauthz.ErrUnknownIssuer,
	"ErrWrongAudience":       extauthz.ErrWrongAudience,
	"ErrUnknownKey":          extauthz.ErrUnknownKey,
	"ErrTokenInactive":       extauthz.ErrTokenInactive,
	"ErrExpiresTooSoon":      extauthz.ErrExpiresTooSoon,
	"ErrInsufficientScope":   extauthz.ErrInsufficientScope,
	"ErrClaimMismatch":       extauthz.ErrClaimMismatch,
	"ErrNoRoute":             extauthz.ErrNoRoute,
	"ErrAmbiguousRequest":    extauthz.ErrAmbiguousRequest,
	"ErrRequestTooLarge":     extauthz.ErrRequestTooLarge,
	"ErrExchangeRefused":     extauthz.ErrExchangeRefused,
	"ErrNoEmbeddedToken":     extauthz.ErrNoEmbeddedToken,
	"ErrKeysUnavailable":     extauthz.ErrKeysUnavailable,
	"ErrIssuerUnavailable":   extauthz.ErrIssuerUnavailable,
	"ErrInternal":            extauthz.ErrInternal,
}

func TestEverySentinelHasARow(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, filepath.Join("..", "errors.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	declared := 0
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.VAR {
			continue
		}
		for _, spec := range gd.Specs {
			for _, name := range spec.(*ast.ValueSpec).Names {
				if !strings.HasPrefix(name.Name, "Err") {
					continue
				}
				declared++
				if _, ok := sentinels[name.Name]; !ok {
					t.Errorf("extauthz.%s has no row in the response table (add it to rows and to this test's list)", name.Name)
				}
			}
		}
	}
	if declared != len(sentinels) {
		t.Errorf("errors.go declares %d sentinels, the test lists %d", declared, len(sentinels))
	}
	for name, err := range sentinels {
		n := 0
		for _, r := range rows {
			if r.err == err {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%s has %d rows, want exactly 1", name, n)
		}
	}
	if len(rows) != len(sentinels) {
		t.Errorf("table has %d rows for %d sentinels", len(rows), len(sentinels))
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		wantStatus int
		wantReason string
		wantCode   string
		wantChal   string
	}{
		{name: "no credential", err: extauthz.ErrNoCredential, wantStatus: 401, wantReason: "credential_missing",
			wantChal: "Bearer"},
		{name: "malformed", err: extauthz.ErrMalformedCredential, wantStatus: 401, wantReason: "credential_malformed",
			wantCode: "invalid_token", wantChal: `Bearer error="invalid_token", error_description="the authorization header is malformed"`},
		{name: "invalid", err: extauthz.ErrInvalidToken, wantStatus: 401, wantReason: "token_invalid", wantCode: "invalid_token",
			wantChal: `Bearer error="invalid_token", error_description="the access token is invalid"`},
		{name: "expired", err: extauthz.ErrTokenExpired, wantStatus: 401, wantReason: "token_expired", wantCode: "invalid_token",
			wantChal: `Bearer error="invalid_token", error_description="the access token expired"`},
		{name: "not yet valid", err: extauthz.ErrTokenNotYetValid, wantStatus: 401, wantReason: "token_not_yet_valid", wantCode: "invalid_token",
			wantChal: `Bearer error="invalid_token", error_description="the access token is not yet valid"`},
		{name: "unknown issuer", err: extauthz.ErrUnknownIssuer, wantStatus: 401, wantReason: "issuer_unknown", wantCode: "invalid_token",
			wantChal: `Bearer error="invalid_token", error_description="the access token is not accepted here"`},
		{name: "wrong audience", err: extauthz.ErrWrongAudience, wantStatus: 401, wantReason: "audience_mismatch", wantCode: "invalid_token",
			wantChal: `Bearer error="invalid_token", error_description="the access token is not accepted here"`},
		{name: "unknown key", err: extauthz.ErrUnknownKey, wantStatus: 401, wantReason: "key_unknown", wantCode: "invalid_token",
			wantChal: `Bearer error="invalid_token", error_description="the access token is invalid"`},
		{name: "inactive", err: extauthz.ErrTokenInactive, wantStatus: 401, wantReason: "token_inactive", wantCode: "invalid_token",
			wantChal: `Bearer error="invalid_token", error_description="the access token is not active"`},
		{name: "expires too soon", err: extauthz.ErrExpiresTooSoon, wantStatus: 401, wantReason: "token_expires_too_soon", wantCode: "invalid_token",
			wantChal: `Bearer error="invalid_token", error_description="the access token expires too soon"`},
		{name: "bare insufficient scope", err: extauthz.ErrInsufficientScope, wantStatus: 403, wantReason: "scope_insufficient", wantCode: "insufficient_scope",
			wantChal: `Bearer error="insufficient_scope", error_description="the access token lacks a required scope"`},
		{name: "scope error names scopes", err: &extauthz.ScopeError{Required: []string{"orders:read", "orders:write"}},
			wantStatus: 403, wantReason: "scope_insufficient", wantCode: "insufficient_scope",
			wantChal: `Bearer error="insufficient_scope", error_description="the access token lacks a required scope", scope="orders:read orders:write"`},
		{name: "scope error drops unquotable scopes", err: fmt.Errorf("policy: %w", &extauthz.ScopeError{Required: []string{`a"b`, "ok", "", "c d"}}),
			wantStatus: 403, wantReason: "scope_insufficient", wantCode: "insufficient_scope",
			wantChal: `Bearer error="insufficient_scope", error_description="the access token lacks a required scope", scope="ok"`},
		{name: "claim mismatch", err: extauthz.ErrClaimMismatch, wantStatus: 403, wantReason: "claim_mismatch", wantCode: "insufficient_scope",
			wantChal: `Bearer error="insufficient_scope", error_description="the access token does not grant access to this resource"`},
		{name: "no route", err: extauthz.ErrNoRoute, wantStatus: 403, wantReason: "route_unknown"},
		{name: "ambiguous request", err: extauthz.ErrAmbiguousRequest, wantStatus: 400, wantReason: "request_ambiguous"},
		{name: "request too large", err: extauthz.ErrRequestTooLarge, wantStatus: 431, wantReason: "request_too_large"},
		{name: "exchange refused", err: extauthz.ErrExchangeRefused, wantStatus: 403, wantReason: "exchange_refused", wantCode: "insufficient_scope",
			wantChal: `Bearer error="insufficient_scope", error_description="the access token does not grant access to this resource"`},
		{name: "no embedded token", err: extauthz.ErrNoEmbeddedToken, wantStatus: 403, wantReason: "embedded_token_missing", wantCode: "insufficient_scope",
			wantChal: `Bearer error="insufficient_scope", error_description="the access token does not grant access to this resource"`},
		{name: "keys unavailable", err: extauthz.ErrKeysUnavailable, wantStatus: 503, wantReason: "keys_unavailable"},
		{name: "issuer unavailable", err: extauthz.ErrIssuerUnavailable, wantStatus: 503, wantReason: "issuer_unavailable"},
		{name: "internal", err: extauthz.ErrInternal, wantStatus: 503, wantReason: "internal"},
		{name: "unknown error fails closed", err: errors.New("boom"), wantStatus: 503, wantReason: "internal"},
		{name: "nil error fails closed", err: nil, wantStatus: 503, wantReason: "internal"},
		{name: "wrapped twice", err: fmt.Errorf("check: %w", fmt.Errorf("jwtverify: %w: exp 5s ago", extauthz.ErrTokenExpired)),
			wantStatus: 401, wantReason: "token_expired", wantCode: "invalid_token",
			wantChal: `Bearer error="invalid_token", error_description="the access token expired"`},
		{name: "unavailable keys win over the token's fault", err: fmt.Errorf("%w: %w", extauthz.ErrUnknownKey, extauthz.ErrKeysUnavailable),
			wantStatus: 503, wantReason: "keys_unavailable"},
		{name: "joined errors", err: errors.Join(errors.New("x"), extauthz.ErrNoRoute), wantStatus: 403, wantReason: "route_unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Classify(tt.err)
			if got.Status != tt.wantStatus || got.Reason != tt.wantReason || got.Code != tt.wantCode || got.Challenge != tt.wantChal {
				t.Errorf("Classify() = %+v, want status %d reason %q code %q challenge %q",
					got, tt.wantStatus, tt.wantReason, tt.wantCode, tt.wantChal)
			}
			if got.Description == "" {
				t.Errorf("Classify() has no description")
			}
		})
	}
}

// TestTableTexts checks what the table promises RFC 6750 and operators:
// labels are stable snake_case and unique, descriptions stay in the
// error_description charset, 401s always challenge, 503s never blame the token.
func TestTableTexts(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range rows {
		if seen[r.reason] {
			t.Errorf("reason %q used twice", r.reason)
		}
		seen[r.reason] = true
		for _, c := range r.reason {
			if (c < 'a' || c > 'z') && c != '_' {
				t.Errorf("reason %q is not snake_case", r.reason)
				break
			}
		}
		for i := 0; i < len(r.desc); i++ {
			if c := r.desc[i]; c < 0x20 || c == '"' || c == '\\' || c > 0x7e {
				t.Errorf("description %q has %q, outside RFC 6750 error_description", r.desc, c)
			}
		}
		switch r.status {
		case 401:
			if !r.challenge {
				t.Errorf("%s: 401 without a challenge", r.reason)
			}
		case 503:
			if r.challenge || r.code != "" {
				t.Errorf("%s: 503 must not carry an error code blaming the token", r.reason)
			}
		}
	}
	if got := Reasons(); len(got) != len(rows) || got[len(got)-1] != "internal" {
		t.Errorf("Reasons() = %v", got)
	}
}

func TestChallengeRealm(t *testing.T) {
	tests := []struct {
		name  string
		realm string
		err   error
		want  string
	}{
		{name: "missing credential has no error code", realm: "api", err: extauthz.ErrNoCredential, want: `Bearer realm="api"`},
		{name: "no realm", realm: "", err: extauthz.ErrNoCredential, want: `Bearer`},
		{name: "realm escaped", realm: `a"b\c` + "\r\n", err: extauthz.ErrTokenExpired,
			want: `Bearer realm="a\"b\\c", error="invalid_token", error_description="the access token expired"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := deny(NewBuilder(tt.realm), tt.err)
			if got := headerValue(resp.GetDeniedResponse().GetHeaders(), "www-authenticate"); got != tt.want {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tt.want)
			}
		})
	}
}

func headerValue(hs []*corev3.HeaderValueOption, key string) string {
	for _, h := range hs {
		if h.GetHeader().GetKey() == key {
			return h.GetHeader().GetValue()
		}
	}
	return ""
}

// goldenCase is one response compared with testdata/<name>.golden.
type goldenCase struct {
	name string
	resp func(b *Builder) *authv3.CheckResponse
}

func goldenCases() []goldenCase {
	cases := []goldenCase{}
	for _, r := range rows {
		err := r.err
		cases = append(cases, goldenCase{name: "deny_" + r.reason, resp: func(b *Builder) *authv3.CheckResponse { return deny(b, err) }})
	}
	exp := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	bearer := extauthz.Credential{Raw: "client-token", Kind: extauthz.KindOpaque, Header: "authorization"}
	return append(cases,
		goldenCase{name: "deny_scope_error", resp: func(b *Builder) *authv3.CheckResponse {
			return deny(b, fmt.Errorf("policy: %w", &extauthz.ScopeError{Required: []string{"orders:read", "orders:write"}}))
		}},
		goldenCase{name: "deny_unclassified", resp: func(b *Builder) *authv3.CheckResponse { return deny(b, errors.New("boom")) }},
		goldenCase{name: "allow_mint_same_header", resp: func(b *Builder) *authv3.CheckResponse {
			g := &extauthz.Grant{Route: "orders", Mode: extauthz.ModeMint, Header: "authorization", Prefix: "Bearer ", StripCredential: true}
			return b.Allow(g, extauthz.Token{Value: "eyJ.internal.sig", ExpiresAt: exp}, bearer, nil)
		}},
		goldenCase{name: "allow_mint_custom_header_strip", resp: func(b *Builder) *authv3.CheckResponse {
			g := &extauthz.Grant{Route: "orders", Mode: extauthz.ModeMint, Header: "x-internal-token", StripCredential: true}
			return b.Allow(g, extauthz.Token{Value: "eyJ.internal.sig", ExpiresAt: exp}, bearer, nil)
		}},
		goldenCase{name: "allow_forward_keep_credential", resp: func(b *Builder) *authv3.CheckResponse {
			g := &extauthz.Grant{Route: "legacy", Mode: extauthz.ModeForward, Header: "x-forwarded-token", Prefix: "Bearer "}
			return b.Allow(g, extauthz.Token{Value: "eyJ.client.sig", ExpiresAt: exp}, bearer, nil)
		}},
		goldenCase{name: "allow_no_token", resp: func(b *Builder) *authv3.CheckResponse {
			g := &extauthz.Grant{Route: "plain", Mode: extauthz.ModeNone, Header: "x-internal-token", StripCredential: true}
			return b.Allow(g, extauthz.Token{}, bearer, nil)
		}},
		goldenCase{name: "allow_public", resp: func(b *Builder) *authv3.CheckResponse {
			return b.AllowPublic(&extauthz.Grant{Route: "public", StripCredential: true})
		}},
	)
}

func TestGolden(t *testing.T) {
	b := &Builder{Realm: "tokentailor", InternalHeaders: []string{"x-internal-token"}, CredentialHeader: "authorization"}
	for _, tc := range goldenCases() {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.resp(b)
			path := filepath.Join("testdata", tc.name+".golden")
			if *update {
				out, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(got)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, append(out, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./extauthz/response -update)", err)
			}
			want := &authv3.CheckResponse{}
			if err := protojson.Unmarshal(data, want); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
				t.Errorf("%s mismatch (-want +got):\n%s", path, diff)
			}
		})
	}
}

// TestDenyShape checks every denial against what Envoy needs: a non-OK
// google.rpc code matching the HTTP status, a DeniedHttpResponse (never an
// error_response, which Envoy treats as a failure), JSON body, no-store, and
// every header overwriting in every Envoy release.
func TestDenyShape(t *testing.T) {
	b := NewBuilder("r")
	wantCode := map[int]rpccode.Code{400: rpccode.Code_INVALID_ARGUMENT, 401: rpccode.Code_UNAUTHENTICATED, 403: rpccode.Code_PERMISSION_DENIED, 431: rpccode.Code_RESOURCE_EXHAUSTED, 503: rpccode.Code_UNAVAILABLE}
	for name, sentinel := range sentinels {
		t.Run(name, func(t *testing.T) {
			o := Classify(sentinel)
			resp, class := b.Deny(fmt.Errorf("wrapped: %w", sentinel))
			if class != o {
				t.Errorf("Deny classified %+v, Classify says %+v", class, o)
			}
			if got := rpccode.Code(resp.GetStatus().GetCode()); got != wantCode[o.Status] {
				t.Errorf("status code %v, want %v", got, wantCode[o.Status])
			}
			d := resp.GetDeniedResponse()
			if d == nil || resp.GetOkResponse() != nil || resp.GetErrorResponse() != nil {
				t.Fatalf("not a DeniedHttpResponse: %v", resp)
			}
			if int(d.GetStatus().GetCode()) != o.Status {
				t.Errorf("HTTP status %d, want %d", d.GetStatus().GetCode(), o.Status)
			}
			if got := headerValue(d.GetHeaders(), "content-type"); got != "application/json" {
				t.Errorf("content-type %q", got)
			}
			if got := headerValue(d.GetHeaders(), "cache-control"); got != "no-store" {
				t.Errorf("cache-control %q", got)
			}
			if (headerValue(d.GetHeaders(), "www-authenticate") != "") != (o.Challenge != "") {
				t.Errorf("www-authenticate presence does not match challenge %q", o.Challenge)
			}
			for _, h := range d.GetHeaders() {
				assertOverwrites(t, h)
			}
			var body struct {
				Error       string `json:"error"`
				Description string `json:"error_description"`
			}
			if err := json.Unmarshal([]byte(d.GetBody()), &body); err != nil || body.Error == "" || body.Description != o.Description {
				t.Errorf("body %q: %+v, %v", d.GetBody(), body, err)
			}
		})
	}
}

func assertOverwrites(t *testing.T, h *corev3.HeaderValueOption) {
	t.Helper()
	if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD || h.GetAppend() == nil || h.GetAppend().GetValue() {
		t.Errorf("header %q: append=%v append_action=%v, want false / OVERWRITE_IF_EXISTS_OR_ADD",
			h.GetHeader().GetKey(), h.GetAppend(), h.GetAppendAction())
	}
}

// envoyApply reproduces Envoy's ext_authz onComplete for an OK answer on a
// multi-valued header map: header mutations first (append=false or
// OVERWRITE_IF_EXISTS_OR_ADD: setCopy, replacing every value), then
// headers_to_remove (source/extensions/filters/http/ext_authz/ext_authz.cc).
func envoyApply(t *testing.T, headers map[string][]string, resp *authv3.CheckResponse) {
	t.Helper()
	ok := resp.GetOkResponse()
	if resp.GetStatus().GetCode() != 0 || ok == nil {
		t.Fatalf("not an OK response: %v", resp)
	}
	for _, h := range ok.GetHeaders() {
		assertOverwrites(t, h)
		k := strings.ToLower(h.GetHeader().GetKey())
		headers[k] = []string{h.GetHeader().GetValue()}
	}
	for _, k := range ok.GetHeadersToRemove() {
		delete(headers, strings.ToLower(k))
	}
}

func TestInvariant3_ClientInternalHeaderNeverReachesUpstream(t *testing.T) {
	b := NewBuilder("r")
	cred := extauthz.Credential{Raw: "client", Kind: extauthz.KindOpaque, Header: "authorization"}
	tests := []struct {
		name      string
		resp      *authv3.CheckResponse
		wantToken map[string]string // header → the single value upstream sees; "" = absent
	}{
		{
			name: "same header as the credential",
			resp: b.Allow(&extauthz.Grant{Header: "authorization", Prefix: "Bearer ", StripCredential: true},
				extauthz.Token{Value: "minted"}, cred, nil),
			wantToken: map[string]string{"authorization": "Bearer minted", "x-internal-token": "forged-internal"},
		},
		{
			name: "custom header, credential stripped",
			resp: b.Allow(&extauthz.Grant{Header: "x-internal-token", StripCredential: true},
				extauthz.Token{Value: "minted"}, cred, nil),
			wantToken: map[string]string{"x-internal-token": "minted", "authorization": ""},
		},
		{
			name: "custom header in another case, credential kept",
			resp: b.Allow(&extauthz.Grant{Header: "X-Internal-Token"},
				extauthz.Token{Value: "minted"}, cred, nil),
			wantToken: map[string]string{"x-internal-token": "minted", "authorization": "Bearer client,Bearer second"},
		},
		{
			name: "no token to set",
			resp: b.Allow(&extauthz.Grant{Header: "x-internal-token", Mode: extauthz.ModeNone},
				extauthz.Token{}, cred, nil),
			wantToken: map[string]string{"x-internal-token": ""},
		},
		{
			name:      "public route",
			resp:      (&Builder{Realm: "r", InternalHeaders: []string{"x-internal-token"}}).AllowPublic(&extauthz.Grant{}),
			wantToken: map[string]string{"x-internal-token": ""},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The client sends forged values, twice, under both names.
			headers := map[string][]string{
				"authorization":    {"Bearer client", "Bearer second"},
				"x-internal-token": {"forged-internal", "forged-again"},
			}
			if tt.name == "same header as the credential" {
				headers["x-internal-token"] = []string{"forged-internal"}
			}
			envoyApply(t, headers, tt.resp)
			for k, want := range tt.wantToken {
				got := strings.Join(headers[k], ",")
				if got != want {
					t.Errorf("upstream %s = %q, want %q", k, got, want)
				}
			}
		})
	}
}

func TestAllowFailsClosed(t *testing.T) {
	b := NewBuilder("r")
	tests := []struct {
		name string
		g    *extauthz.Grant
		tok  extauthz.Token
	}{
		{name: "nil grant", g: nil, tok: extauthz.Token{Value: "t"}},
		{name: "token without header", g: &extauthz.Grant{}, tok: extauthz.Token{Value: "t"}},
		{name: "CRLF in token", g: &extauthz.Grant{Header: "authorization"}, tok: extauthz.Token{Value: "t\r\nx-admin: 1"}},
		{name: "NUL in prefix", g: &extauthz.Grant{Header: "authorization", Prefix: "Bearer\x00"}, tok: extauthz.Token{Value: "t"}},
		{name: "token not UTF-8", g: &extauthz.Grant{Header: "authorization", Mode: extauthz.ModeForward}, tok: extauthz.Token{Value: "t\xff"}},
		{name: "prefix not UTF-8", g: &extauthz.Grant{Header: "authorization", Prefix: "B\xc3 "}, tok: extauthz.Token{Value: "t"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := b.Allow(tt.g, tt.tok, extauthz.Credential{}, nil)
			if resp.GetStatus().GetCode() == 0 || resp.GetDeniedResponse().GetStatus().GetCode() != 503 {
				t.Errorf("Allow() = %v, want a 503 denial", resp)
			}
		})
	}
}

// TestZeroBuilder checks that a Builder literal works without NewBuilder.
func TestZeroBuilder(t *testing.T) {
	b := &Builder{Realm: "lit"}
	if got := headerValue(deny(b, extauthz.ErrNoCredential).GetDeniedResponse().GetHeaders(), "www-authenticate"); got != `Bearer realm="lit"` {
		t.Errorf("challenge %q", got)
	}
}

// TestSharedPartsConcurrently marshals responses that share their static parts
// from many goroutines; run with -race.
func TestSharedPartsConcurrently(t *testing.T) {
	b := &Builder{Realm: "r"}
	g := &extauthz.Grant{Header: "authorization", Prefix: "Bearer "}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 50 {
				var resp *authv3.CheckResponse
				if (i+j)%2 == 0 {
					resp = deny(b, extauthz.ErrTokenExpired)
				} else {
					resp = b.Allow(g, extauthz.Token{Value: "t"}, extauthz.Credential{}, nil)
				}
				if _, err := proto.Marshal(resp); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestHotPathAllocations(t *testing.T) {
	b := NewBuilder("r")
	g := &extauthz.Grant{Header: "x-internal-token", Prefix: "Bearer ", StripCredential: true}
	tok := extauthz.Token{Value: "eyJ.internal.sig"}
	cred := extauthz.Credential{Raw: "c", Header: "authorization"}
	tests := []struct {
		name string
		fn   func()
		max  float64
	}{
		// One block for all messages, one for prefix+token.
		{name: "Allow", fn: func() { _ = b.Allow(g, tok, cred, nil) }, max: 2},
		{name: "AllowPublic", fn: func() { _ = b.AllowPublic(g) }, max: 1},
		{name: "Deny", fn: func() { _ = deny(b, extauthz.ErrTokenExpired) }, max: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := testing.AllocsPerRun(100, tt.fn); got > tt.max {
				t.Errorf("%v allocs, want ≤ %v", got, tt.max)
			}
		})
	}
}

func BenchmarkAllow(b *testing.B) {
	bld := NewBuilder("r")
	g := &extauthz.Grant{Header: "authorization", Prefix: "Bearer ", StripCredential: true}
	tok := extauthz.Token{Value: "eyJ.internal.sig"}
	cred := extauthz.Credential{Raw: "c", Header: "authorization"}
	b.ReportAllocs()
	for b.Loop() {
		_ = bld.Allow(g, tok, cred, nil)
	}
}

// deny returns b's denial response for err, for tests that look only at the
// response (TestDenyShape checks the classification that comes with it).
func deny(b *Builder, err error) *authv3.CheckResponse {
	resp, _ := b.Deny(err)
	return resp
}

func BenchmarkDeny(b *testing.B) {
	bld := NewBuilder("r")
	err := fmt.Errorf("jwtverify: %w", extauthz.ErrTokenExpired)
	b.ReportAllocs()
	for b.Loop() {
		_ = deny(bld, err)
	}
}

// TestOtherRoutesInternalHeadersAreRemoved checks invariant 3 across routes:
// a header the client sends under another route's internal token name is
// removed in the response as built, never patched in afterwards.
func TestOtherRoutesInternalHeadersAreRemoved(t *testing.T) {
	b := &Builder{Realm: "r", InternalHeaders: []string{"x-internal-token", "x-legacy-token"}, CredentialHeader: "authorization"}
	cred := extauthz.Credential{Raw: "client", Kind: extauthz.KindOpaque, Header: "authorization"}
	tests := []struct {
		name       string
		grant      *extauthz.Grant
		public     bool
		sent       map[string]string
		wantRemove []string
	}{
		{
			name:       "nothing spoofed",
			grant:      &extauthz.Grant{Header: "x-internal-token", StripCredential: true},
			sent:       map[string]string{"authorization": "Bearer client"},
			wantRemove: []string{"authorization"},
		},
		{
			name:       "another route's header spoofed",
			grant:      &extauthz.Grant{Header: "x-internal-token", StripCredential: true},
			sent:       map[string]string{"authorization": "Bearer client", "x-legacy-token": "forged", "x-internal-token": "forged"},
			wantRemove: []string{"authorization", "x-legacy-token"},
		},
		{
			name:       "credential kept, other header spoofed",
			grant:      &extauthz.Grant{Header: "x-legacy-token"},
			sent:       map[string]string{"authorization": "Bearer client", "x-internal-token": "forged"},
			wantRemove: []string{"x-internal-token"},
		},
		{
			name:       "public route strips every internal header",
			grant:      &extauthz.Grant{},
			public:     true,
			wantRemove: []string{"x-internal-token", "x-legacy-token"},
		},
		{
			name:       "public route stripping the credential",
			grant:      &extauthz.Grant{StripCredential: true},
			public:     true,
			wantRemove: []string{"x-internal-token", "x-legacy-token", "authorization"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var resp *authv3.CheckResponse
			if tt.public {
				resp = b.AllowPublic(tt.grant)
			} else {
				resp = b.Allow(tt.grant, extauthz.Token{Value: "minted"}, cred, tt.sent)
			}
			if diff := cmp.Diff(tt.wantRemove, resp.GetOkResponse().GetHeadersToRemove()); diff != "" {
				t.Errorf("headers_to_remove (-want +got):\n%s", diff)
			}
		})
	}
}
