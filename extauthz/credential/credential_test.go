package credential

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tokentailor/tokentailor/extauthz"
)

const (
	jws = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"
	jwe = "eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIn0..aXY.Y3Q.dGFn"
)

func req(headers map[string]string, counts map[string]int) *extauthz.Request {
	return &extauthz.Request{Headers: headers, HeaderCount: counts}
}

func TestExtract(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		req     *extauthz.Request
		want    extauthz.Credential
		wantErr error
	}{
		{
			name: "no header",
			req:  req(map[string]string{"x-other": "Bearer abc"}, nil),
			want: extauthz.Credential{Kind: extauthz.KindNone},
		},
		{
			name: "nil headers",
			req:  &extauthz.Request{},
			want: extauthz.Credential{Kind: extauthz.KindNone},
		},
		{
			name: "bearer jws",
			req:  req(map[string]string{"authorization": "Bearer " + jws}, nil),
			want: extauthz.Credential{Raw: jws, Kind: extauthz.KindJWT, Header: "authorization", Scheme: "Bearer"},
		},
		{
			name: "lower-case scheme (RFC 7235 §2.1)",
			req:  req(map[string]string{"authorization": "bearer " + jws}, nil),
			want: extauthz.Credential{Raw: jws, Kind: extauthz.KindJWT, Header: "authorization", Scheme: "Bearer"},
		},
		{
			name: "upper-case scheme and several spaces",
			req:  req(map[string]string{"authorization": "BEARER   tok"}, nil),
			want: extauthz.Credential{Raw: "tok", Kind: extauthz.KindOpaque, Header: "authorization", Scheme: "Bearer"},
		},
		{
			name: "jwe is opaque: introspected",
			req:  req(map[string]string{"authorization": "Bearer " + jwe}, nil),
			want: extauthz.Credential{Raw: jwe, Kind: extauthz.KindOpaque, Header: "authorization", Scheme: "Bearer"},
		},
		{
			name: "opaque with b64token punctuation and padding",
			req:  req(map[string]string{"authorization": "Bearer ory_at_a-b.c~d+e/f=="}, nil),
			want: extauthz.Credential{Raw: "ory_at_a-b.c~d+e/f==", Kind: extauthz.KindOpaque, Header: "authorization", Scheme: "Bearer"},
		},
		{
			name: "custom header without scheme takes the whole value",
			opts: Options{Header: "X-Api-Token"},
			req:  req(map[string]string{"x-api-token": jws}, nil),
			want: extauthz.Credential{Raw: jws, Kind: extauthz.KindJWT, Header: "x-api-token"},
		},
		{
			name: "custom header with scheme",
			opts: Options{Header: "x-auth", Scheme: "Token"},
			req:  req(map[string]string{"x-auth": "token abc"}, nil),
			want: extauthz.Credential{Raw: "abc", Kind: extauthz.KindOpaque, Header: "x-auth", Scheme: "Token"},
		},
		{
			name: "explicit authorization header keeps the Bearer default",
			opts: Options{Header: "Authorization"},
			req:  req(map[string]string{"authorization": "Bearer abc"}, nil),
			want: extauthz.Credential{Raw: "abc", Kind: extauthz.KindOpaque, Header: "authorization", Scheme: "Bearer"},
		},
		{
			name: "DPoP scheme where DPoP is accepted (RFC 9449 §7.1)",
			opts: Options{DPoP: true},
			req:  req(map[string]string{"authorization": "dpop abc"}, nil),
			want: extauthz.Credential{Raw: "abc", Kind: extauthz.KindOpaque, Header: "authorization", Scheme: "DPoP"},
		},
		{
			name: "Bearer still accepted where DPoP is",
			opts: Options{DPoP: true},
			req:  req(map[string]string{"authorization": "Bearer abc"}, nil),
			want: extauthz.Credential{Raw: "abc", Kind: extauthz.KindOpaque, Header: "authorization", Scheme: "Bearer"},
		},
		{
			name:    "DPoP scheme where DPoP is not accepted",
			req:     req(map[string]string{"authorization": "DPoP abc"}, nil),
			wantErr: extauthz.ErrMalformedCredential,
		},
		{
			name:    "two values joined by envoy",
			req:     req(map[string]string{"authorization": "Bearer a,Bearer b"}, nil),
			wantErr: extauthz.ErrMalformedCredential,
		},
		{
			name:    "two raw values counted",
			req:     req(map[string]string{"authorization": "Bearer a"}, map[string]int{"authorization": 2}),
			wantErr: extauthz.ErrMalformedCredential,
		},
		{
			name:    "wrong scheme",
			req:     req(map[string]string{"authorization": "Basic dXNlcjpwYXNz"}, nil),
			wantErr: extauthz.ErrMalformedCredential,
		},
		{
			name:    "scheme without separator",
			req:     req(map[string]string{"authorization": "Bearerabc"}, nil),
			wantErr: extauthz.ErrMalformedCredential,
		},
		{
			name:    "scheme only",
			req:     req(map[string]string{"authorization": "Bearer"}, nil),
			wantErr: extauthz.ErrMalformedCredential,
		},
		{
			name:    "scheme and spaces only",
			req:     req(map[string]string{"authorization": "Bearer   "}, nil),
			wantErr: extauthz.ErrMalformedCredential,
		},
		{
			name:    "empty header",
			req:     req(map[string]string{"authorization": ""}, nil),
			wantErr: extauthz.ErrMalformedCredential,
		},
		{
			name:    "empty custom header",
			opts:    Options{Header: "x-api-token"},
			req:     req(map[string]string{"x-api-token": ""}, nil),
			wantErr: extauthz.ErrMalformedCredential,
		},
		{
			name:    "tab separator",
			req:     req(map[string]string{"authorization": "Bearer\tabc"}, nil),
			wantErr: extauthz.ErrMalformedCredential,
		},
		{
			name:    "space inside token",
			req:     req(map[string]string{"authorization": "Bearer abc def"}, nil),
			wantErr: extauthz.ErrMalformedCredential,
		},
		{
			name:    "quote in token",
			req:     req(map[string]string{"authorization": `Bearer abc"def`}, nil),
			wantErr: extauthz.ErrMalformedCredential,
		},
		{
			name:    "padding in the middle",
			req:     req(map[string]string{"authorization": "Bearer ab=c"}, nil),
			wantErr: extauthz.ErrMalformedCredential,
		},
		{
			name:    "padding only",
			req:     req(map[string]string{"authorization": "Bearer =="}, nil),
			wantErr: extauthz.ErrMalformedCredential,
		},
		{
			name:    "non-ascii",
			req:     req(map[string]string{"authorization": "Bearer tökén"}, nil),
			wantErr: extauthz.ErrMalformedCredential,
		},
		{
			name:    "over the default limit",
			req:     req(map[string]string{"authorization": "Bearer " + strings.Repeat("a", 8192)}, nil),
			wantErr: extauthz.ErrMalformedCredential,
		},
		{
			name: "exactly at a custom limit",
			opts: Options{MaxBytes: 10},
			req:  req(map[string]string{"authorization": "Bearer abc"}, nil),
			want: extauthz.Credential{Raw: "abc", Kind: extauthz.KindOpaque, Header: "authorization", Scheme: "Bearer"},
		},
		{
			name:    "one byte over a custom limit",
			opts:    Options{MaxBytes: 10},
			req:     req(map[string]string{"authorization": "Bearer abcd"}, nil),
			wantErr: extauthz.ErrMalformedCredential,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := New(filled(tt.opts))
			if err != nil {
				t.Fatal(err)
			}
			got, err := o.Extract(tt.req)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Extract() error = %v, want %v", err, tt.wantErr)
			}
			if tt.want.Raw != "" {
				tt.want.CachedTokenHash = extauthz.TokenHash(tt.want.Raw) // hashed once, at extraction
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Extract() mismatch (-want +got):\n%s", diff)
			}
			if err != nil {
				// Tokens long enough not to occur in the message by chance.
				if raw := tt.req.Headers["authorization"]; len(raw) > len("Bearer ")+8 && strings.Contains(err.Error(), raw[len("Bearer "):]) {
					t.Errorf("error %q quotes the credential", err)
				}
			}
		})
	}
}

// filled gives o the values config gives an empty credential block: the
// authorization header, its Bearer scheme and 8192 bytes.
func filled(o Options) Options {
	if o.Header == "" {
		o.Header = "authorization"
	}
	if o.Scheme == "" && strings.EqualFold(o.Header, "authorization") {
		o.Scheme = "Bearer"
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = 8192
	}
	return o
}

func TestNewRefusesMissingSettings(t *testing.T) {
	tests := []struct {
		name string
		opts Options
	}{
		{name: "no header", opts: Options{MaxBytes: 10}},
		{name: "header with a colon", opts: Options{Header: "a:b", MaxBytes: 10}},
		{name: "no size bound", opts: Options{Header: "authorization"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.opts); err == nil {
				t.Fatal("New accepted incomplete options")
			}
		})
	}
}

// seg base64url-encodes s without padding, as a JOSE segment.
func seg(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func TestKind(t *testing.T) {
	zitadel, err := os.ReadFile(filepath.Join("testdata", "zitadel-access-token.jwe"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		token string
		want  extauthz.CredentialKind
	}{
		{name: "jws", token: jws, want: extauthz.KindJWT},
		{name: "jwe with enc and empty key segment is opaque", token: jwe, want: extauthz.KindOpaque},
		{name: "zitadel's encrypted access token is opaque", token: strings.TrimSpace(string(zitadel)), want: extauthz.KindOpaque},
		{name: "five parts without enc stay a (malformed) jwt", token: seg(`{"alg":"RS256"}`) + ".a.b.c.d", want: extauthz.KindJWT},
		{name: "five parts with empty enc stay a jwt", token: seg(`{"alg":"dir","enc":""}`) + ".a.b.c.d", want: extauthz.KindJWT},
		{name: "five parts with enc not a string stay a jwt", token: seg(`{"alg":"dir","enc":1}`) + ".a.b.c.d", want: extauthz.KindJWT},
		{name: "five parts with undecodable header stay a jwt", token: "eyJhbGciOi.a.b.c.d", want: extauthz.KindJWT},
		{name: "five parts with a header that is not json stay a jwt", token: "eyJ" + seg("nope") + ".a.b.c.d", want: extauthz.KindJWT},
		{name: "five parts with an oversized header stay a jwt", token: seg(`{"enc":"A256GCM","x":"`+strings.Repeat("a", 4096)+`"}`) + ".a.b.c.d", want: extauthz.KindJWT},
		{name: "member names are case-sensitive", token: seg(`{"alg":"dir","ENC":"A256GCM"}`) + ".a.b.c.d", want: extauthz.KindJWT},
		{name: "jws whose header says enc stays a jwt", token: seg(`{"alg":"ES256","enc":"A256GCM"}`) + ".eyJzdWIiOiJhIn0.c2ln", want: extauthz.KindJWT},
		{name: "unsigned jws goes to the verifier", token: "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.", want: extauthz.KindJWT},
		{name: "two segments", token: "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0", want: extauthz.KindOpaque},
		{name: "four segments", token: "eyJh.b.c.d", want: extauthz.KindOpaque},
		{name: "six segments", token: "eyJh.b.c.d.e.f", want: extauthz.KindOpaque},
		{name: "dots but no json header", token: "abc.def.ghi", want: extauthz.KindOpaque},
		{name: "opaque", token: "ory_at_abc", want: extauthz.KindOpaque},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Kind(tt.token); got != tt.want {
				t.Errorf("Kind(%q) = %v, want %v", tt.token, got, tt.want)
			}
		})
	}
}

// FuzzKind checks the routing rule on arbitrary tokens: a JWS-shaped token
// (eyJ, two dots) always goes to the JWT verifier, and a token with eyJ and
// four dots goes to introspection only when its header decodes to a JSON
// object with a non-empty string "enc".
func FuzzKind(f *testing.F) {
	for _, seed := range []string{
		jws, jwe, "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.", "eyJhbGciOi.a.b.c.d", "ory_at_abc",
		seg(`{"alg":"RS256"}`) + ".a.b.c.d", seg(`{"enc":1}`) + ".a.b.c.d", seg(`{"enc":"x"}`) + "....",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, token string) {
		got := Kind(token)
		if got != extauthz.KindJWT && got != extauthz.KindOpaque {
			t.Fatalf("Kind(%q) = %v", token, got)
		}
		if !strings.HasPrefix(token, "eyJ") {
			if got != extauthz.KindOpaque {
				t.Fatalf("Kind(%q) = %v without a JSON header", token, got)
			}
			return
		}
		switch strings.Count(token, ".") {
		case 2:
			if got != extauthz.KindJWT {
				t.Fatalf("JWS-shaped %q went to introspection", token)
			}
		case 4:
			head, _, _ := strings.Cut(token, ".")
			raw, err := base64.RawURLEncoding.DecodeString(head)
			var h map[string]any
			enc := ""
			if err == nil && len(head) <= maxJWEHeader && json.Unmarshal(raw, &h) == nil {
				enc, _ = h["enc"].(string)
			}
			if (got == extauthz.KindOpaque) != (enc != "") {
				t.Fatalf("Kind(%q) = %v, header enc %q", token, got, enc)
			}
		}
	})
}

func TestExtractDoesNotAllocate(t *testing.T) {
	r := req(map[string]string{"authorization": "Bearer " + jws}, nil)
	o := filled(Options{})
	// One allocation: the token's hex SHA-256, computed here once per Check.
	if allocs := testing.AllocsPerRun(100, func() { _, _ = o.Extract(r) }); allocs > 1 {
		t.Errorf("Extract: %v allocs, want at most 1", allocs)
	}
}

// FuzzExtract feeds arbitrary header values; whatever comes in, Extract must
// either refuse it with ErrMalformedCredential or return a token that is a
// substring of the header made only of b64token characters.
func FuzzExtract(f *testing.F) {
	for _, seed := range []string{
		"Bearer " + jws, "bearer " + jwe, "Bearer a,Bearer b", "Basic dXNlcjpwYXNz", "Bearer",
		"Bearer ", "Bearer  x==", "Bearer a=b", "", "Bearer \x00", "Bearer tökén",
	} {
		f.Add(seed, "", 0)
	}
	f.Add(jws, "x-api-token", 64)
	f.Fuzz(func(t *testing.T, value, header string, maxBytes int) {
		o, err := New(filled(Options{Header: header, MaxBytes: maxBytes}))
		if err != nil {
			return // config refuses such settings before they reach Extract
		}
		name := o.Header
		r := req(map[string]string{strings.ToLower(name): value}, nil)
		got, err := o.Extract(r)
		if err != nil {
			if !errors.Is(err, extauthz.ErrMalformedCredential) {
				t.Fatalf("Extract() error %v does not wrap ErrMalformedCredential", err)
			}
			if got != (extauthz.Credential{}) {
				t.Fatalf("Extract() returned %+v with an error", got)
			}
			return
		}
		if got.Kind == extauthz.KindNone {
			t.Fatalf("present header gave KindNone")
		}
		if got.Raw == "" || !strings.HasSuffix(value, got.Raw) || !isB64Token(got.Raw) {
			t.Fatalf("token %q from value %q", got.Raw, value)
		}
		if strings.ContainsAny(got.Raw, ", \t") {
			t.Fatalf("token %q holds a separator", got.Raw)
		}
		// Remembered, the same header gives the same credential back.
		o.Remember(got)
		again, err := o.Extract(r)
		want := got
		want.HashRemembered = len(got.Raw) <= maxRememberedToken
		if want.HashRemembered {
			if again.Memo == nil {
				t.Fatalf("remembered token without its memo")
			}
			want.Memo = again.Memo
		}
		if err != nil || again != want {
			t.Fatalf("after Remember: %+v, %v; want %+v", again, err, want)
		}
	})
}
