package introspect_test

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/authztest"
	"github.com/tokentailor/tokentailor/extauthz/clientauth"
	"github.com/tokentailor/tokentailor/extauthz/introspect"
	"github.com/tokentailor/tokentailor/extauthz/metrics"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Unix(1_800_000_000, 0)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// issuerKeys serves the double's public keys, as jwks.Set would.
type issuerKeys struct{ is *authztest.Issuer }

func (k issuerKeys) Key(_ context.Context, kid, alg string) (crypto.PublicKey, error) {
	key, ok := k.is.Key(alg)
	if !ok || key.Kid != kid {
		return nil, extauthz.ErrUnknownKey
	}
	return key.Public, nil
}

type fixture struct {
	is    *authztest.Issuer
	x     *authztest.Introspection
	clk   *clock
	logs  *bytes.Buffer
	intro *introspect.Introspector
}

const (
	clientID = "tokentailor"
	secret   = "s3cret"
)

func setup(t *testing.T, mod func(*introspect.Options)) *fixture {
	t.Helper()
	clk := newClock()
	is := authztest.New(t, authztest.WithNow(clk.Now))
	x := is.Introspection(t, authztest.WithClientSecret(clientID, secret))
	auth, err := clientauth.New(clientauth.Options{
		ClientID: clientID, Method: clientauth.MethodClientSecretBasic, Secret: secret,
	})
	if err != nil {
		t.Fatal(err)
	}
	logs := &bytes.Buffer{}
	opts := withSettings(introspect.Options{
		Issuer:      is.URL(),
		Endpoint:    is.Endpoint(authztest.PathIntrospect),
		Auth:        auth,
		Client:      is.Client(),
		MaxCacheTTL: time.Minute,
		NegativeTTL: 10 * time.Second,
		Keys:        issuerKeys{is},
		Now:         clk.Now,
		Logger:      slog.New(slog.NewJSONHandler(&lockedWriter{w: logs}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if mod != nil {
		mod(&opts)
	}
	intro, err := introspect.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{is: is, x: x, clk: clk, logs: logs, intro: intro}
}

// testMaxTokenBytes is the fixtures' token size bound.
const testMaxTokenBytes = 16 << 10

// withSettings fills the settings config would give (New has no defaults of
// its own) where o leaves them zero.
func withSettings(o introspect.Options) introspect.Options {
	if o.Client == nil {
		o.Client = &http.Client{}
	}
	if len(o.ScopeClaims) == 0 {
		o.ScopeClaims = []string{"scope"}
	}
	if len(o.SubjectClaims) == 0 {
		o.SubjectClaims = []string{"sub"}
	}
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Second
	}
	if o.MaxCacheTTL == 0 {
		o.MaxCacheTTL = time.Minute
	}
	if o.NegativeTTL == 0 {
		o.NegativeTTL = 5 * time.Second
	}
	if o.CacheEntries == 0 {
		o.CacheEntries = 1000
	}
	if o.MaxInFlight == 0 {
		o.MaxInFlight = 16
	}
	if o.MaxTokenBytes == 0 {
		o.MaxTokenBytes = testMaxTokenBytes
	}
	return o
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func cred(raw string) extauthz.Credential {
	return extauthz.Credential{Raw: raw, Kind: extauthz.KindOpaque, Header: "authorization"}
}

func TestAuthenticateAnswers(t *testing.T) {
	now := newClock().Now()
	exp := now.Add(10 * time.Minute)
	tests := []struct {
		name    string
		opts    func(*introspect.Options)
		answer  map[string]any // nil: token unknown to the server
		want    *extauthz.Principal
		wantErr error
	}{
		{
			name: "active with every member",
			answer: map[string]any{
				"scope": "read write", "client_id": "app", "sub": "alice", "aud": []any{"api", "other"},
				"exp": exp.Unix(), "iat": now.Unix() - 60, "nbf": now.Unix() - 60, "token_type": "Bearer", "tenant": "t1",
			},
			want: &extauthz.Principal{
				Subject: "alice", ClientID: "app", Audience: []string{"api", "other"}, Scopes: []string{"read", "write"},
				ExpiresAt: exp, IssuedAt: now.Add(-time.Minute),
			},
		},
		{
			name:   "scopes from several claims, string and array",
			opts:   func(o *introspect.Options) { o.ScopeClaims = []string{"scope", "scp"} },
			answer: map[string]any{"sub": "svc", "scope": "a b", "scp": []any{"b", "c"}, "exp": exp.Unix()},
			want:   &extauthz.Principal{Subject: "svc", Scopes: []string{"a", "b", "c"}, ExpiresAt: exp},
		},
		{
			name:   "bound to a certificate: the principal says it may be bound",
			answer: map[string]any{"sub": "svc", "exp": exp.Unix(), "cnf": map[string]any{"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}},
			want:   &extauthz.Principal{Subject: "svc", ExpiresAt: exp},
		},
		{
			name:   "no exp: vouched for as long as cached",
			answer: map[string]any{"sub": "svc"},
			want:   &extauthz.Principal{Subject: "svc", ExpiresAt: now.Add(time.Minute), ExpiryUnknown: true},
		},
		{
			name:   "audience accepted",
			opts:   func(o *introspect.Options) { o.Audiences = []string{"x", "api"} },
			answer: map[string]any{"sub": "svc", "aud": "api", "exp": exp.Unix()},
			want:   &extauthz.Principal{Subject: "svc", Audience: []string{"api"}, ExpiresAt: exp},
		},
		{name: "unknown token", wantErr: extauthz.ErrTokenInactive},
		{name: "inactive", answer: map[string]any{"active": false, "sub": "alice"}, wantErr: extauthz.ErrTokenInactive},
		{name: "expired", answer: map[string]any{"exp": now.Unix() - 1}, wantErr: extauthz.ErrTokenExpired},
		{name: "expires now", answer: map[string]any{"exp": now.Unix()}, wantErr: extauthz.ErrTokenExpired},
		{name: "not yet valid", answer: map[string]any{"sub": "svc", "exp": exp.Unix(), "nbf": now.Unix() + 30}, wantErr: extauthz.ErrTokenNotYetValid},
		{
			name: "nbf within leeway", opts: func(o *introspect.Options) { o.Leeway = time.Minute },
			answer: map[string]any{"sub": "svc", "exp": exp.Unix(), "nbf": now.Unix() + 30},
			want:   &extauthz.Principal{Subject: "svc", ExpiresAt: exp},
		},
		{
			name: "wrong audience", opts: func(o *introspect.Options) { o.Audiences = []string{"api"} },
			answer: map[string]any{"aud": []any{"other"}, "exp": exp.Unix()}, wantErr: extauthz.ErrWrongAudience,
		},
		{
			name: "no audience when one is required", opts: func(o *introspect.Options) { o.Audiences = []string{"api"} },
			answer: map[string]any{"exp": exp.Unix()}, wantErr: extauthz.ErrWrongAudience,
		},
		{
			name: "server-checked audience: zitadel's answer without aud or sub, subject from username",
			opts: func(o *introspect.Options) {
				o.Audiences, o.AudienceByServer, o.SubjectClaims = []string{"api"}, true, []string{"sub", "username", "client_id"}
			},
			answer: map[string]any{"scope": "profile orders:read", "exp": exp.Unix(), "username": "svc-opaque", "preferred_username": "svc-opaque"},
			want:   &extauthz.Principal{Subject: "svc-opaque", Scopes: []string{"profile", "orders:read"}, ExpiresAt: exp},
		},
		{
			name:   "server-checked audience still refuses an aud that is present and wrong",
			opts:   func(o *introspect.Options) { o.Audiences, o.AudienceByServer = []string{"api"}, true },
			answer: map[string]any{"sub": "svc", "aud": "other", "exp": exp.Unix()}, wantErr: extauthz.ErrWrongAudience,
		},
		{
			name:   "server-checked audience accepts an aud that is present and right",
			opts:   func(o *introspect.Options) { o.Audiences, o.AudienceByServer = []string{"api"}, true },
			answer: map[string]any{"sub": "svc", "aud": []any{"api"}, "exp": exp.Unix()},
			want:   &extauthz.Principal{Subject: "svc", Audience: []string{"api"}, ExpiresAt: exp},
		},
		{
			name: "subject claims in order: sub wins", opts: func(o *introspect.Options) { o.SubjectClaims = []string{"sub", "client_id"} },
			answer: map[string]any{"sub": "alice", "client_id": "app", "exp": exp.Unix()},
			want:   &extauthz.Principal{Subject: "alice", ClientID: "app", ExpiresAt: exp},
		},
		{
			name: "subject claims: empty sub falls through to client_id", opts: func(o *introspect.Options) { o.SubjectClaims = []string{"sub", "client_id"} },
			answer: map[string]any{"sub": "", "client_id": "app", "exp": exp.Unix()},
			want:   &extauthz.Principal{Subject: "app", ClientID: "app", ExpiresAt: exp},
		},
		{name: "no sub is refused by default", answer: map[string]any{"client_id": "app", "exp": exp.Unix()}, wantErr: extauthz.ErrInvalidToken},
		{
			name: "none of the subject claims is refused", opts: func(o *introspect.Options) { o.SubjectClaims = []string{"sub", "username"} },
			answer: map[string]any{"username": 7, "exp": exp.Unix()}, wantErr: extauthz.ErrInvalidToken,
		},
		{name: "other issuer", answer: map[string]any{"iss": "https://evil.example", "exp": exp.Unix()}, wantErr: extauthz.ErrUnknownIssuer},
		{name: "refresh token", answer: map[string]any{"token_type": "refresh_token", "exp": exp.Unix()}, wantErr: extauthz.ErrInvalidToken},
		{name: "hydra refresh token", answer: map[string]any{"token_use": "refresh_token", "exp": exp.Unix()}, wantErr: extauthz.ErrInvalidToken},
		{name: "DPoP-bound token", answer: map[string]any{"token_type": "DPoP", "exp": exp.Unix()}, wantErr: extauthz.ErrInvalidToken},
		{name: "active as a string", answer: map[string]any{"active": "true", "sub": "alice", "exp": exp.Unix()}, wantErr: extauthz.ErrTokenInactive},
		{name: "active as a number", answer: map[string]any{"active": 1, "sub": "alice", "exp": exp.Unix()}, wantErr: extauthz.ErrTokenInactive},
		{name: "active null", answer: map[string]any{"active": nil, "sub": "alice", "exp": exp.Unix()}, wantErr: extauthz.ErrTokenInactive},
		{name: "active an object", answer: map[string]any{"active": map[string]any{"value": true}, "exp": exp.Unix()}, wantErr: extauthz.ErrTokenInactive},
		{name: "inactive with members of the wrong type", answer: map[string]any{"active": "yes", "exp": "soon", "scope": 7}, wantErr: extauthz.ErrTokenInactive},
		{name: "exp as a string", answer: map[string]any{"exp": "soon"}, wantErr: extauthz.ErrIssuerUnavailable},
		{name: "scope as a number", answer: map[string]any{"scope": 7, "exp": exp.Unix()}, wantErr: extauthz.ErrIssuerUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := setup(t, tt.opts)
			const token = "opaque-token-1"
			if tt.answer != nil {
				f.x.Register(token, tt.answer)
			}
			p, err := f.intro.Authenticate(context.Background(), cred(token))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Authenticate() error = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if p != nil {
					t.Error("principal returned with an error")
				}
				return
			}
			want := *tt.want
			want.Issuer = f.is.URL()
			want.Credential = cred(token)
			want.Fresh = true // introspected by this call
			_, bound := tt.answer["cnf"]
			want.Unbound = !bound
			got := *p
			got.Claims = nil
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("principal (-want +got):\n%s", diff)
			}
			again, err := f.intro.Authenticate(context.Background(), cred(token))
			if err != nil || again.Fresh {
				t.Errorf("from the cache: %v, Fresh %v; want no error, not fresh", err, again.Fresh)
			}
			for k := range tt.answer {
				if _, ok := p.Claims[k]; !ok {
					t.Errorf("claim %q missing from %v", k, p.Claims)
				}
			}
		})
	}
}

func TestRequestSent(t *testing.T) {
	f := setup(t, nil)
	f.x.Register("tok", map[string]any{"sub": "svc", "exp": f.clk.Now().Add(time.Hour).Unix()})
	if _, err := f.intro.Authenticate(context.Background(), cred("tok")); err != nil {
		t.Fatal(err)
	}
	forms, headers := f.x.Forms(), f.x.Headers()
	if len(forms) != 1 {
		t.Fatalf("%d calls, want 1", len(forms))
	}
	if forms[0].Get("token") != "tok" || forms[0].Get("token_type_hint") != "access_token" || forms[0].Has("client_secret") {
		t.Errorf("form = %v", forms[0])
	}
	if got := headers[0].Get("Accept"); got != "application/json" {
		t.Errorf("Accept = %q", got)
	}
	if _, _, ok := (&http.Request{Header: headers[0]}).BasicAuth(); !ok {
		t.Error("no client_secret_basic credentials sent")
	}
}

func TestUnavailable(t *testing.T) {
	tests := []struct {
		name   string
		break_ func(f *fixture)
	}{
		{name: "server down (503)", break_: func(f *fixture) { f.is.SetDown(true) }},
		{name: "500", break_: func(f *fixture) { f.x.FailWith(http.StatusInternalServerError) }},
		{name: "our client refused (401)", break_: func(f *fixture) { f.x.FailWith(http.StatusUnauthorized) }},
		{name: "not JSON", break_: func(f *fixture) { f.x.RespondRaw("text/html", []byte("<html>login</html>")) }},
		{name: "JSON syntax error", break_: func(f *fixture) { f.x.RespondRaw("application/json", []byte(`{"active":true,`)) }},
		{name: "JSON array", break_: func(f *fixture) { f.x.RespondRaw("application/json", []byte(`[{"active":true}]`)) }},
		{name: "JSON null", break_: func(f *fixture) { f.x.RespondRaw("application/json", []byte(`null`)) }},
		{name: "trailing data", break_: func(f *fixture) { f.x.RespondRaw("application/json", []byte(`{"active":true} {}`)) }},
		{name: "too large", break_: func(f *fixture) {
			f.x.RespondRaw("application/json", []byte(`{"active":true,"pad":"`+strings.Repeat("x", 70<<10)+`"}`))
		}},
		{name: "slower than the timeout", break_: func(f *fixture) { f.x.SetDelay(time.Minute) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := setup(t, func(o *introspect.Options) { o.Timeout = 200 * time.Millisecond })
			const token = "tok-unavailable"
			f.x.Register(token, map[string]any{"sub": "svc", "exp": f.clk.Now().Add(time.Hour).Unix()})
			tt.break_(f)
			_, err := f.intro.Authenticate(context.Background(), cred(token))
			if !errors.Is(err, extauthz.ErrIssuerUnavailable) {
				t.Fatalf("Authenticate() error = %v, want ErrIssuerUnavailable", err)
			}
			if strings.Contains(err.Error(), token) || strings.Contains(f.logs.String(), token) {
				t.Error("token leaked into the error or the logs")
			}
			if !strings.Contains(f.logs.String(), extauthz.ShortTokenHash(token)) {
				t.Errorf("failure not logged with the token's short hash: %s", f.logs)
			}
			// Not cached: once the server recovers, the token passes.
			f.is.SetDown(false)
			f.x.FailWith(0)
			f.x.RespondRaw("", nil)
			f.x.SetDelay(0)
			if _, err := f.intro.Authenticate(context.Background(), cred(token)); err != nil {
				t.Fatalf("after recovery: %v", err)
			}
		})
	}
}

// TestActiveNotTrue: an answer whose "active" is anything but the JSON true
// means an inactive token (RFC 7662 §2.2), in plain and signed (RFC 9701)
// answers alike: 401 invalid_token, cached as a refusal, never 503.
func TestActiveNotTrue(t *testing.T) {
	tests := []struct {
		name   string
		signed bool
		answer string // the JSON answer, or the token_introspection claim when signed
	}{
		{name: "string true", answer: `{"active":"true","sub":"alice","scope":"admin"}`},
		{name: "number 1", answer: `{"active":1,"sub":"alice"}`},
		{name: "null", answer: `{"active":null,"sub":"alice"}`},
		{name: "missing", answer: `{"sub":"alice","scope":"admin"}`},
		{name: "empty object", answer: `{}`},
		{name: "signed, string true", signed: true, answer: `{"active":"true","sub":"alice"}`},
		{name: "signed, missing", signed: true, answer: `{"sub":"alice"}`},
		{name: "signed, array", signed: true, answer: `{"active":[true],"sub":"alice"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := setup(t, func(o *introspect.Options) {
				if tt.signed {
					o.JWTResponse = true
					o.Auth = authOf(t, "")
				}
			})
			const token = "tok-active-not-true"
			if tt.signed {
				var claim map[string]any
				if err := json.Unmarshal([]byte(tt.answer), &claim); err != nil {
					t.Fatal(err)
				}
				f.x.RespondRaw(introspect.MediaTypeJWT, []byte(f.is.Sign(t, jwt.MapClaims{
					"aud": clientID, "token_introspection": claim,
				}, authztest.WithTyp(introspect.TypJWT))))
			} else {
				f.x.RespondRaw("application/json", []byte(tt.answer))
			}
			for range 2 {
				if _, err := f.intro.Authenticate(context.Background(), cred(token)); !errors.Is(err, extauthz.ErrTokenInactive) {
					t.Fatalf("Authenticate() error = %v, want ErrTokenInactive", err)
				}
			}
			if n := f.x.Calls(); n != 1 {
				t.Errorf("%d calls, want 1 (the refusal cached)", n)
			}
		})
	}
}

func TestUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL + "/introspect"
	srv.Close()
	auth, _ := clientauth.New(clientauth.Options{Method: clientauth.MethodNone, ClientID: clientID})
	intro, err := introspect.New(withSettings(introspect.Options{Issuer: "https://as.example", Endpoint: url, Auth: auth}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := intro.Authenticate(context.Background(), cred("x")); !errors.Is(err, extauthz.ErrIssuerUnavailable) {
		t.Fatalf("error = %v, want ErrIssuerUnavailable", err)
	}
}

func TestCredentialChecks(t *testing.T) {
	f := setup(t, nil)
	tests := []struct {
		name    string
		raw     string
		wantErr error
	}{
		{name: "empty", raw: "", wantErr: extauthz.ErrNoCredential},
		{name: "too long", raw: strings.Repeat("a", testMaxTokenBytes+1), wantErr: extauthz.ErrMalformedCredential},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := f.intro.Authenticate(context.Background(), cred(tt.raw)); !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if f.x.Calls() != 0 {
				t.Error("a bad credential reached the issuer")
			}
		})
	}
}

// step is one request of a cache scenario: advance the clock, optionally
// change the server, authenticate, and check the outcome and call count.
type step struct {
	advance   time.Duration
	server    func(f *fixture)
	wantErr   error
	wantCalls int
}

func runSteps(t *testing.T, f *fixture, token string, steps []step) {
	t.Helper()
	for n, s := range steps {
		f.clk.Advance(s.advance)
		if s.server != nil {
			s.server(f)
		}
		_, err := f.intro.Authenticate(context.Background(), cred(token))
		if !errors.Is(err, s.wantErr) {
			t.Fatalf("step %d: error = %v, want %v", n, err, s.wantErr)
		}
		if got := f.x.Calls(); got != s.wantCalls {
			t.Fatalf("step %d: %d calls, want %d", n, got, s.wantCalls)
		}
	}
}

func TestCache(t *testing.T) {
	const token = "tok-cache"
	tests := []struct {
		name     string
		register func(f *fixture)
		steps    []step
	}{
		{
			name: "active answer capped by MaxCacheTTL; a revoked token passes until the cap",
			register: func(f *fixture) {
				f.x.Register(token, map[string]any{"sub": "svc", "exp": f.clk.Now().Add(time.Hour).Unix()})
			},
			steps: []step{
				{wantCalls: 1},
				{advance: 30 * time.Second, server: func(f *fixture) { f.x.Revoke(token) }, wantCalls: 1},
				{advance: 29 * time.Second, wantCalls: 1},
				{advance: time.Second, wantErr: extauthz.ErrTokenInactive, wantCalls: 2},
			},
		},
		{
			name: "active answer expires at exp",
			register: func(f *fixture) {
				f.x.Register(token, map[string]any{"sub": "svc", "exp": f.clk.Now().Add(20 * time.Second).Unix()})
			},
			steps: []step{
				{wantCalls: 1},
				{advance: 19 * time.Second, wantCalls: 1},
				{advance: time.Second, wantErr: extauthz.ErrTokenExpired, wantCalls: 2},
				{advance: time.Second, wantErr: extauthz.ErrTokenExpired, wantCalls: 2},
			},
		},
		{
			name:     "negative cache",
			register: func(*fixture) {},
			steps: []step{
				{wantErr: extauthz.ErrTokenInactive, wantCalls: 1},
				{advance: 9 * time.Second, wantErr: extauthz.ErrTokenInactive, wantCalls: 1},
				{advance: time.Second, server: func(f *fixture) {
					f.x.Register(token, map[string]any{"sub": "svc", "exp": f.clk.Now().Add(time.Hour).Unix()})
				}, wantCalls: 2},
			},
		},
		{
			name: "fail closed once the cached answer is gone",
			register: func(f *fixture) {
				f.x.Register(token, map[string]any{"sub": "svc", "exp": f.clk.Now().Add(time.Hour).Unix()})
			},
			steps: []step{
				{wantCalls: 1},
				{advance: 50 * time.Second, server: func(f *fixture) { f.is.SetDown(true) }, wantCalls: 1},
				{advance: 10 * time.Second, wantErr: extauthz.ErrIssuerUnavailable, wantCalls: 2},
				{wantErr: extauthz.ErrIssuerUnavailable, wantCalls: 3},
				{server: func(f *fixture) { f.is.SetDown(false) }, wantCalls: 4},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := setup(t, nil)
			tt.register(f)
			runSteps(t, f, token, tt.steps)
		})
	}
}

func TestCachedPrincipalIsACopy(t *testing.T) {
	f := setup(t, nil)
	f.x.Register("tok", map[string]any{"sub": "svc", "scope": "a", "exp": f.clk.Now().Add(time.Hour).Unix()})
	p1, err := f.intro.Authenticate(context.Background(), cred("tok"))
	if err != nil {
		t.Fatal(err)
	}
	p1.Scopes[0] = "admin"
	p1.Claims["scope"] = "admin"
	p2, err := f.intro.Authenticate(context.Background(), cred("tok"))
	if err != nil {
		t.Fatal(err)
	}
	if p2.Scopes[0] != "a" || p2.Claims["scope"] != "a" {
		t.Errorf("changing one principal changed the cache: %v %v", p2.Scopes, p2.Claims["scope"])
	}
}

func TestConcurrentIdenticalChecksMakeOneCall(t *testing.T) {
	f := setup(t, nil)
	f.x.Register("tok", map[string]any{"sub": "svc", "exp": f.clk.Now().Add(time.Hour).Unix()})
	release := f.x.Hold()
	const n = 50
	var wg sync.WaitGroup
	var started atomic.Int32
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			started.Add(1)
			_, err := f.intro.Authenticate(context.Background(), cred("tok"))
			errs <- err
		})
	}
	waitFor(t, func() bool { return started.Load() == n && f.x.Calls() >= 1 })
	release()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := f.x.Calls(); got != 1 {
		t.Fatalf("%d introspection calls for %d identical checks, want 1", got, n)
	}
}

func TestConcurrencyLimit(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := setup(t, func(o *introspect.Options) {
		o.MaxInFlight = 2
		o.Timeout = time.Minute
		o.Metrics = metrics.New(reg)
	})
	for _, tok := range []string{"a", "b", "c"} {
		f.x.Register(tok, map[string]any{"sub": "svc", "exp": f.clk.Now().Add(time.Hour).Unix()})
	}
	release := f.x.Hold()
	defer release()
	var wg sync.WaitGroup
	for _, tok := range []string{"a", "b"} {
		wg.Go(func() {
			if _, err := f.intro.Authenticate(context.Background(), cred(tok)); err != nil {
				t.Errorf("held call %s: %v", tok, err)
			}
		})
	}
	waitFor(t, func() bool { return f.x.Calls() == 2 })

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := f.intro.Authenticate(ctx, cred("c"))
	if !errors.Is(err, extauthz.ErrIssuerUnavailable) {
		t.Fatalf("third call error = %v, want ErrIssuerUnavailable", err)
	}
	if got := f.x.Calls(); got != 2 {
		t.Fatalf("%d calls while the limit is 2", got)
	}
	// The refused check leaves no call queued for a slot: its wait ends with
	// its context, long before Timeout, and is counted as an error.
	waitFor(t, func() bool { return issuerErrors(t, reg) == 1 })
	release()
	wg.Wait()
	if got := f.x.Calls(); got != 2 {
		t.Fatalf("%d calls after release, want 2", got)
	}
	if _, err := f.intro.Authenticate(context.Background(), cred("c")); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestSignedAnswers(t *testing.T) {
	signed := func(claims jwt.MapClaims, opts ...authztest.SignOption) func(t *testing.T, f *fixture) {
		return func(t *testing.T, f *fixture) {
			f.x.RespondRaw(introspect.MediaTypeJWT, []byte(f.is.Sign(t, claims, opts...)))
		}
	}
	active := map[string]any{"active": true}
	tests := []struct {
		name    string
		server  func(t *testing.T, f *fixture)
		want    string // expected subject when no error
		wantErr error
	}{
		{name: "valid", want: "alice"},
		{name: "inactive", server: func(t *testing.T, f *fixture) { f.x.Revoke("tok") }, wantErr: extauthz.ErrTokenInactive},
		{name: "ES256 answer", server: func(t *testing.T, f *fixture) { f.x.SetSignAlg("ES256") }, want: "alice"},
		{name: "typ with application/ prefix", server: signed(jwt.MapClaims{
			"aud": clientID, "token_introspection": map[string]any{"active": true, "sub": "bob"},
		}, authztest.WithTyp("application/token-introspection+jwt")), want: "bob"},
		{name: "aud is another client", server: signed(jwt.MapClaims{
			"aud": "someone-else", "token_introspection": active,
		}, authztest.WithTyp(introspect.TypJWT)), wantErr: extauthz.ErrIssuerUnavailable},
		{name: "plain JSON instead", server: func(t *testing.T, f *fixture) {
			f.x.RespondRaw("application/json", []byte(`{"active":true,"sub":"alice"}`))
		}, wantErr: extauthz.ErrIssuerUnavailable},
		{name: "wrong typ", server: signed(jwt.MapClaims{
			"aud": clientID, "token_introspection": active,
		}, authztest.WithTyp("JWT")), wantErr: extauthz.ErrIssuerUnavailable},
		{name: "bad signature", server: signed(jwt.MapClaims{
			"aud": clientID, "token_introspection": active,
		}, authztest.WithTyp(introspect.TypJWT), authztest.Broken(authztest.BreakSignature)), wantErr: extauthz.ErrIssuerUnavailable},
		{name: "alg none", server: signed(jwt.MapClaims{
			"aud": clientID, "token_introspection": active,
		}, authztest.WithTyp(introspect.TypJWT), authztest.Broken(authztest.BreakAlgNone)), wantErr: extauthz.ErrIssuerUnavailable},
		{name: "unknown kid", server: signed(jwt.MapClaims{
			"aud": clientID, "token_introspection": active,
		}, authztest.WithTyp(introspect.TypJWT), authztest.WithKid("nope")), wantErr: extauthz.ErrIssuerUnavailable},
		{name: "other issuer", server: signed(jwt.MapClaims{
			"iss": "https://evil.example", "aud": clientID, "token_introspection": active,
		}, authztest.WithTyp(introspect.TypJWT)), wantErr: extauthz.ErrIssuerUnavailable},
		{name: "no token_introspection claim", server: signed(jwt.MapClaims{
			"aud": clientID, "active": true,
		}, authztest.WithTyp(introspect.TypJWT)), wantErr: extauthz.ErrIssuerUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := setup(t, func(o *introspect.Options) { o.JWTResponse = true; o.Auth = authOf(t, "") })
			f.x.Register("tok", map[string]any{"sub": "alice", "exp": f.clk.Now().Add(time.Hour).Unix()})
			if tt.server != nil {
				tt.server(t, f)
			}
			p, err := f.intro.Authenticate(context.Background(), cred("tok"))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if err == nil && p.Subject != tt.want {
				t.Errorf("subject = %q, want %q", p.Subject, tt.want)
			}
			if got := f.x.Headers()[0].Get("Accept"); got != introspect.MediaTypeJWT {
				t.Errorf("Accept = %q", got)
			}
		})
	}
}

func TestNewValidates(t *testing.T) {
	auth := authOf(t, "")
	tests := []struct {
		name string
		opts introspect.Options
	}{
		{name: "no issuer", opts: introspect.Options{Endpoint: "https://as/introspect", Auth: auth}},
		{name: "no auth", opts: introspect.Options{Issuer: "https://as", Endpoint: "https://as/introspect"}},
		{name: "bad endpoint", opts: introspect.Options{Issuer: "https://as", Endpoint: "as/introspect", Auth: auth}},
		{name: "jwt answers without keys", opts: introspect.Options{Issuer: "https://as", Endpoint: "https://as/i", Auth: auth, JWTResponse: true}},
		{name: "no settings", opts: introspect.Options{Issuer: "https://as", Endpoint: "https://as/i", Auth: auth}},
		{name: "zero timeout", opts: zeroed(func(o *introspect.Options) { o.Timeout = 0 })},
		{name: "zero negative ttl", opts: zeroed(func(o *introspect.Options) { o.NegativeTTL = 0 })},
		{name: "zero in flight", opts: zeroed(func(o *introspect.Options) { o.MaxInFlight = 0 })},
		{name: "zero cache", opts: zeroed(func(o *introspect.Options) { o.CacheEntries = 0 })},
		{name: "zero token bytes", opts: zeroed(func(o *introspect.Options) { o.MaxTokenBytes = 0 })},
		{name: "no scope claims", opts: zeroed(func(o *introspect.Options) { o.ScopeClaims = []string{} })},
		{name: "negative leeway", opts: zeroed(func(o *introspect.Options) { o.Leeway = -time.Second })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := introspect.New(tt.opts); err == nil {
				t.Fatal("New() accepted invalid options")
			}
		})
	}
}

// zeroed returns complete options with one setting spoiled by spoil.
func zeroed(spoil func(*introspect.Options)) introspect.Options {
	auth, _ := clientauth.New(clientauth.Options{Method: clientauth.MethodNone, ClientID: clientID})
	o := withSettings(introspect.Options{Issuer: "https://as", Endpoint: "https://as/i", Auth: auth})
	spoil(&o)
	if o.ScopeClaims != nil && len(o.ScopeClaims) == 0 {
		o.ScopeClaims = nil
	}
	return o
}

// authOf authenticates as id (default: the fixture's client) with the
// fixture's secret, using client_secret_post.
func authOf(t *testing.T, id string) clientauth.Method {
	t.Helper()
	if id == "" {
		id = clientID
	}
	m, err := clientauth.New(clientauth.Options{
		Method: clientauth.MethodClientSecretPost, ClientID: id, Secret: secret,
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// issuerErrors returns tokentailor_issuer_requests_total{endpoint="introspection",result="error"}.
func issuerErrors(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != "tokentailor_issuer_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["endpoint"] == "introspection" && labels["result"] == "error" {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}
