package exchange_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/authztest"
	"github.com/tokentailor/tokentailor/extauthz/clientauth"
	"github.com/tokentailor/tokentailor/extauthz/exchange"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

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

const (
	clientID = "tokentailor"
	secret   = "s3cret"
)

type fixture struct {
	t   *testing.T
	is  *authztest.Issuer
	x   *authztest.Exchange
	clk *clock
	ex  *exchange.Exchanger
}

func setup(t *testing.T, mod func(*exchange.Options)) *fixture {
	t.Helper()
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	is := authztest.New(t, authztest.WithNow(clk.Now))
	x := is.Exchange(t, authztest.WithClientSecret(clientID, secret))
	auth, err := clientauth.New(clientauth.Options{
		ClientID: clientID, SecretEnv: "S", LookupEnv: func(string) (string, bool) { return secret, true },
	})
	if err != nil {
		t.Fatal(err)
	}
	opts := exchange.Options{
		Issuer: is.URL(), TokenEndpoint: is.Endpoint(authztest.PathToken), Auth: auth,
		Client: is.Client(), Now: clk.Now,
	}
	if mod != nil {
		mod(&opts)
	}
	ex, err := exchange.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, is: is, x: x, clk: clk, ex: ex}
}

func principal(f *fixture, kind extauthz.CredentialKind, raw string, life time.Duration) *extauthz.Principal {
	return &extauthz.Principal{
		Issuer: f.is.URL(), Subject: "alice", ExpiresAt: f.clk.Now().Add(life),
		Credential: extauthz.Credential{Raw: raw, Kind: kind, Header: "authorization"},
	}
}

func grant(route string, spec *extauthz.ExchangeSpec) *extauthz.Grant {
	return &extauthz.Grant{
		Route: route, Mode: extauthz.ModeExchange, Audience: "https://orders.example",
		Scopes: []string{"orders:read", "orders:write"}, Header: "authorization", Prefix: "Bearer ", Exchange: spec,
	}
}

func TestRequestForm(t *testing.T) {
	tests := []struct {
		name  string
		opts  func(*exchange.Options)
		kind  extauthz.CredentialKind
		grant *extauthz.Grant
		want  url.Values
	}{
		{
			name: "opaque credential, defaults", kind: extauthz.KindOpaque, grant: grant("orders", nil),
			want: url.Values{
				"grant_type":           {"urn:ietf:params:oauth:grant-type:token-exchange"},
				"subject_token":        {"incoming"},
				"subject_token_type":   {"urn:ietf:params:oauth:token-type:access_token"},
				"audience":             {"https://orders.example"},
				"scope":                {"orders:read orders:write"},
				"requested_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
			},
		},
		{
			name: "JWT credential, resource, requested jwt, actor", kind: extauthz.KindJWT,
			opts: func(o *exchange.Options) {
				o.ActorToken = func(context.Context) (string, error) { return "actor-tok", nil }
			},
			grant: grant("orders", &extauthz.ExchangeSpec{
				Resource: "https://orders.example/api", RequestedTokenType: exchange.TokenTypeJWT, Actor: true,
			}),
			want: url.Values{
				"grant_type":           {"urn:ietf:params:oauth:grant-type:token-exchange"},
				"subject_token":        {"incoming"},
				"subject_token_type":   {"urn:ietf:params:oauth:token-type:access_token"},
				"audience":             {"https://orders.example"},
				"resource":             {"https://orders.example/api"},
				"scope":                {"orders:read orders:write"},
				"requested_token_type": {"urn:ietf:params:oauth:token-type:jwt"},
				"actor_token":          {"actor-tok"},
				"actor_token_type":     {"urn:ietf:params:oauth:token-type:access_token"},
			},
		},
		{
			name: "JWT credential is an access token by default, no audience or scope", kind: extauthz.KindJWT,
			grant: &extauthz.Grant{Route: "r", Mode: extauthz.ModeExchange},
			want: url.Values{
				"grant_type":           {"urn:ietf:params:oauth:grant-type:token-exchange"},
				"subject_token":        {"incoming"},
				"subject_token_type":   {"urn:ietf:params:oauth:token-type:access_token"},
				"requested_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
			},
		},
		{
			name: "route sets both token types", kind: extauthz.KindJWT,
			grant: grant("orders", &extauthz.ExchangeSpec{
				SubjectTokenType: exchange.TokenTypeJWT, RequestedTokenType: "urn:ietf:params:oauth:token-type:id_token",
			}),
			want: url.Values{
				"grant_type":           {"urn:ietf:params:oauth:grant-type:token-exchange"},
				"subject_token":        {"incoming"},
				"subject_token_type":   {"urn:ietf:params:oauth:token-type:jwt"},
				"audience":             {"https://orders.example"},
				"scope":                {"orders:read orders:write"},
				"requested_token_type": {"urn:ietf:params:oauth:token-type:id_token"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := setup(t, tt.opts)
			if _, err := f.ex.Token(context.Background(), principal(f, tt.kind, "incoming", time.Hour), tt.grant); err != nil {
				t.Fatal(err)
			}
			forms := f.x.Forms()
			if len(forms) != 1 {
				t.Fatalf("%d calls, want 1", len(forms))
			}
			if diff := cmp.Diff(tt.want, forms[0]); diff != "" {
				t.Errorf("form (-want +got):\n%s", diff)
			}
			h := f.x.Headers()[0]
			if id, pw, ok := (&http.Request{Header: h}).BasicAuth(); !ok || id != clientID || pw != secret {
				t.Error("client_secret_basic credentials missing")
			}
			if ct := h.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
				t.Errorf("Content-Type = %q", ct)
			}
		})
	}
}

func TestLifetime(t *testing.T) {
	start := time.Unix(1_800_000_000, 0)
	tests := []struct {
		name      string
		server    func(f *fixture)
		incoming  time.Duration
		wantExp   time.Time
		wantValue string
	}{
		{name: "expires_in shorter than the incoming token", server: func(f *fixture) { f.x.SetExpiresIn(60) },
			incoming: time.Hour, wantExp: start.Add(time.Minute)},
		{name: "capped at the incoming token's exp", server: func(f *fixture) { f.x.SetExpiresIn(3600) },
			incoming: 10 * time.Minute, wantExp: start.Add(10 * time.Minute)},
		{name: "no expires_in: the issued JWT's exp", server: func(f *fixture) { f.x.SetExpiresIn(0) },
			incoming: time.Hour, wantExp: start.Add(authztest.DefaultTTL)},
		{name: "no expires_in, opaque issued token: the incoming exp", server: func(f *fixture) {
			f.x.SetIssue(func(url.Values) map[string]any {
				return map[string]any{"access_token": "opaque-out", "issued_token_type": exchange.TokenTypeAccessToken, "token_type": "Bearer"}
			})
		}, incoming: 7 * time.Minute, wantExp: start.Add(7 * time.Minute), wantValue: "opaque-out"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := setup(t, nil)
			tt.server(f)
			tok, err := f.ex.Token(context.Background(), principal(f, extauthz.KindOpaque, "in", tt.incoming), grant("r", nil))
			if err != nil {
				t.Fatal(err)
			}
			if !tok.ExpiresAt.Equal(tt.wantExp) {
				t.Errorf("ExpiresAt = %v, want %v", tok.ExpiresAt, tt.wantExp)
			}
			if tt.wantValue != "" && tok.Value != tt.wantValue {
				t.Errorf("Value = %q", tok.Value)
			}
			if tt.wantValue == "" {
				var c jwt.MapClaims
				if _, _, err := jwt.NewParser().ParseUnverified(tok.Value, &c); err != nil {
					t.Fatalf("issued token: %v", err)
				}
				if c["aud"].([]any)[0] != "https://orders.example" {
					t.Errorf("issued token aud = %v", c["aud"])
				}
			}
		})
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name    string
		opts    func(*exchange.Options)
		server  func(f *fixture)
		spec    *extauthz.ExchangeSpec
		life    time.Duration
		wantErr error
		noCall  bool
	}{
		{name: "invalid_target", server: func(f *fixture) { f.x.RefuseWith("invalid_target") }, wantErr: extauthz.ErrExchangeRefused},
		{name: "invalid_scope", server: func(f *fixture) { f.x.RefuseWith("invalid_scope") }, wantErr: extauthz.ErrExchangeRefused},
		{name: "invalid_grant", server: func(f *fixture) { f.x.RefuseWith("invalid_grant") }, wantErr: extauthz.ErrExchangeRefused},
		{name: "unauthorized_client", server: func(f *fixture) { f.x.RefuseWith("unauthorized_client") }, wantErr: extauthz.ErrExchangeRefused},
		{name: "our credentials rejected", opts: func(o *exchange.Options) {
			o.Auth, _ = clientauth.New(clientauth.Options{ClientID: clientID, SecretEnv: "S", LookupEnv: func(string) (string, bool) { return "wrong", true }})
		}, wantErr: extauthz.ErrIssuerUnavailable},
		{name: "500", server: func(f *fixture) { f.x.FailWith(http.StatusInternalServerError) }, wantErr: extauthz.ErrIssuerUnavailable},
		{name: "400 without an OAuth error", server: func(f *fixture) { f.x.FailWith(http.StatusBadRequest) }, wantErr: extauthz.ErrIssuerUnavailable},
		{name: "down", server: func(f *fixture) { f.is.SetDown(true) }, wantErr: extauthz.ErrIssuerUnavailable},
		{name: "not JSON", server: func(f *fixture) { f.x.RespondRaw("text/html", []byte("<html>")) }, wantErr: extauthz.ErrIssuerUnavailable},
		{name: "no access_token", server: func(f *fixture) {
			f.x.RespondRaw("application/json", []byte(`{"token_type":"Bearer","issued_token_type":"urn:ietf:params:oauth:token-type:access_token"}`))
		}, wantErr: extauthz.ErrIssuerUnavailable},
		{name: "too large", server: func(f *fixture) {
			f.x.RespondRaw("application/json", []byte(`{"access_token":"`+strings.Repeat("a", 70<<10)+`","token_type":"Bearer"}`))
		}, wantErr: extauthz.ErrIssuerUnavailable},
		{name: "DPoP-bound token issued", server: func(f *fixture) {
			f.x.RespondRaw("application/json", []byte(`{"access_token":"x","token_type":"DPoP"}`))
		}, wantErr: extauthz.ErrExchangeRefused},
		{name: "JWT requested, opaque issued", spec: &extauthz.ExchangeSpec{RequestedTokenType: exchange.TokenTypeJWT}, server: func(f *fixture) {
			f.x.RespondRaw("application/json", []byte(`{"access_token":"opaque","token_type":"Bearer","issued_token_type":"urn:ietf:params:oauth:token-type:access_token"}`))
		}, wantErr: extauthz.ErrExchangeRefused},
		{name: "issued token already expired", server: func(f *fixture) {
			f.x.SetExpiresIn(0)
			f.x.SetIssue(func(url.Values) map[string]any {
				return map[string]any{"access_token": f.is.Sign(f.t, jwt.MapClaims{"exp": f.clk.Now().Unix() - 1}), "token_type": "Bearer"}
			})
		}, wantErr: extauthz.ErrExchangeRefused},
		{name: "incoming token expired", life: -time.Second, wantErr: extauthz.ErrTokenExpired, noCall: true},
		{name: "actor wanted, the server refuses tokentailor's client credentials", spec: &extauthz.ExchangeSpec{Actor: true}, wantErr: extauthz.ErrIssuerUnavailable},
		{name: "actor token unavailable", spec: &extauthz.ExchangeSpec{Actor: true}, opts: func(o *exchange.Options) {
			o.ActorToken = func(context.Context) (string, error) { return "", errors.New("no") }
		}, wantErr: extauthz.ErrIssuerUnavailable, noCall: true},
		{name: "route names another issuer", spec: &extauthz.ExchangeSpec{Issuer: "https://other.example"}, wantErr: extauthz.ErrInternal, noCall: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := setup(t, tt.opts)
			if tt.server != nil {
				tt.server(f)
			}
			life := tt.life
			if life == 0 {
				life = time.Hour
			}
			_, err := f.ex.Token(context.Background(), principal(f, extauthz.KindOpaque, "in-token", life), grant("r", tt.spec))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "in-token") {
				t.Error("error quotes the token")
			}
			if tt.noCall && f.x.Calls() != 0 {
				t.Errorf("%d calls, want none", f.x.Calls())
			}
		})
	}
}

func TestCache(t *testing.T) {
	f := setup(t, nil)
	f.x.SetExpiresIn(100)
	ctx := context.Background()
	pa := principal(f, extauthz.KindOpaque, "token-a", time.Hour)
	pb := principal(f, extauthz.KindOpaque, "token-b", time.Hour)
	steps := []struct {
		name      string
		advance   time.Duration
		p         *extauthz.Principal
		g         *extauthz.Grant
		wantCalls int
	}{
		{name: "first", p: pa, g: grant("orders", nil), wantCalls: 1},
		{name: "same token and route", p: pa, g: grant("orders", nil), wantCalls: 1},
		{name: "other route", p: pa, g: grant("billing", nil), wantCalls: 2},
		{name: "other token", p: pb, g: grant("orders", nil), wantCalls: 3},
		{name: "89% of the life passed", advance: 89 * time.Second, p: pa, g: grant("orders", nil), wantCalls: 3},
		{name: "90% passed: renewed", advance: time.Second, p: pa, g: grant("orders", nil), wantCalls: 4},
	}
	for _, s := range steps {
		f.clk.Advance(s.advance)
		if _, err := f.ex.Token(ctx, s.p, s.g); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got := f.x.Calls(); got != s.wantCalls {
			t.Fatalf("%s: %d calls, want %d", s.name, got, s.wantCalls)
		}
	}
}

func TestConcurrentExchangesMakeOneCall(t *testing.T) {
	f := setup(t, nil)
	release := f.x.Hold()
	p := principal(f, extauthz.KindOpaque, "tok", time.Hour)
	const n = 30
	var wg sync.WaitGroup
	var started atomic.Int32
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			started.Add(1)
			_, err := f.ex.Token(context.Background(), p, grant("orders", nil))
			errs <- err
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	for started.Load() != n || f.x.Calls() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("calls never started")
		}
		time.Sleep(time.Millisecond)
	}
	release()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := f.x.Calls(); got != 1 {
		t.Fatalf("%d exchange calls for %d identical requests, want 1", got, n)
	}
}

func TestNewValidates(t *testing.T) {
	auth, _ := clientauth.New(clientauth.Options{Method: clientauth.MethodNone, ClientID: "c"})
	tests := []struct {
		name string
		opts exchange.Options
	}{
		{name: "no issuer", opts: exchange.Options{TokenEndpoint: "https://as/token", Auth: auth}},
		{name: "no auth", opts: exchange.Options{Issuer: "https://as", TokenEndpoint: "https://as/token"}},
		{name: "bad endpoint", opts: exchange.Options{Issuer: "https://as", TokenEndpoint: "/token", Auth: auth}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := exchange.New(tt.opts); err == nil {
				t.Fatal("New() accepted invalid options")
			}
		})
	}
}

// Without Options.ActorToken, the actor token is tokentailor's own access
// token from the client credentials grant, fetched once and reused.
func TestDefaultActorTokenFromClientCredentials(t *testing.T) {
	f := setup(t, nil)
	f.x.AllowClientCredentials()
	f.x.SetExpiresIn(600)
	g := grant("orders", &extauthz.ExchangeSpec{Actor: true})
	for i, raw := range []string{"incoming-1", "incoming-2"} {
		if _, err := f.ex.Token(context.Background(), principal(f, extauthz.KindOpaque, raw, time.Hour), g); err != nil {
			t.Fatalf("exchange %d: %v", i, err)
		}
	}
	forms := f.x.Forms()
	var cc, exchanges int
	var actor string
	for _, form := range forms {
		switch form.Get("grant_type") {
		case "client_credentials":
			cc++
		case authztest.GrantTypeTokenExchange:
			exchanges++
			if actor != "" && form.Get("actor_token") != actor {
				t.Fatal("actor token not reused")
			}
			actor = form.Get("actor_token")
		}
	}
	if cc != 1 || exchanges != 2 || actor == "" {
		t.Fatalf("client credentials calls %d, exchanges %d, actor %q", cc, exchanges, actor)
	}
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(actor, claims); err != nil || claims["sub"] != "client:"+clientID {
		t.Fatalf("actor token claims %v, %v", claims, err)
	}
}

// TestRefusalIsLogged checks that a refused exchange logs the server's error
// and error_description, bounded and cleaned, and never the subject token,
// even when the server echoes it.
func TestRefusalIsLogged(t *testing.T) {
	const subject = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzdmMifQ.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"
	tests := []struct {
		name     string
		body     string
		wantErr  error
		wantLog  []string
		notInLog []string
	}{
		{
			name:    "zitadel's answer to a JWT sent as urn:...:jwt",
			body:    `{"error":"invalid_request","error_description":"subject_token is invalid"}`,
			wantErr: extauthz.ErrExchangeRefused,
			wantLog: []string{`HTTP 400 invalid_request: \"subject_token is invalid\"`},
		},
		{
			name:     "echoed token, control characters and length are cut",
			body:     `{"error":"invalid_grant","error_description":"token ` + subject + ` is bad\n\u0007` + strings.Repeat("x", 600) + `"}`,
			wantErr:  extauthz.ErrExchangeRefused,
			wantLog:  []string{`invalid_grant: \"token [token] is bad??xxx`, `…`},
			notInLog: []string{subject, "c2lnbmF0dXJl", "eyJzdWIiOiJzdmMifQ", strings.Repeat("x", 250)},
		},
		{
			name:    "a description that is not a string is left out",
			body:    `{"error":"invalid_target","error_description":{"a":1}}`,
			wantErr: extauthz.ErrExchangeRefused,
			wantLog: []string{`HTTP 400 invalid_target"`},
		},
		{
			name:    "invalid_client keeps its description too",
			body:    `{"error":"invalid_client","error_description":"wrong client id or secret"}`,
			wantErr: extauthz.ErrIssuerUnavailable,
			wantLog: []string{`invalid_client: \"wrong client id or secret\"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusBadRequest)
				_, _ = w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			auth, err := clientauth.New(clientauth.Options{ClientID: clientID, SecretEnv: "S", LookupEnv: func(string) (string, bool) { return secret, true }})
			if err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			ex, err := exchange.New(exchange.Options{
				Issuer: srv.URL, TokenEndpoint: srv.URL + "/token", Auth: auth, Client: srv.Client(),
				Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
			})
			if err != nil {
				t.Fatal(err)
			}
			p := &extauthz.Principal{
				Subject: "svc", ExpiresAt: time.Now().Add(time.Hour),
				Credential: extauthz.Credential{Raw: subject, Kind: extauthz.KindJWT, Header: "authorization"},
			}
			_, err = ex.Token(context.Background(), p, grant("r", nil))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			got := logs.String()
			for _, w := range tt.wantLog {
				if !strings.Contains(got, w) {
					t.Errorf("log lacks %s:\n%s", w, got)
				}
			}
			for _, w := range append(tt.notInLog, subject) {
				if strings.Contains(got, w) || strings.Contains(err.Error(), w) {
					t.Errorf("log or error holds %.20s…", w)
				}
			}
		})
	}
}
