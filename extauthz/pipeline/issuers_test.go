package pipeline

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/authztest"
	"github.com/tokentailor/tokentailor/extauthz/config"
)

// issuerAuthn authenticates every credential as a principal of issuer.
type issuerAuthn struct{ issuer string }

func (a issuerAuthn) Authenticate(context.Context, extauthz.Credential) (*extauthz.Principal, error) {
	return &extauthz.Principal{Issuer: a.issuer, Subject: "s"}, nil
}

// TestRouteIssuers compiles routes' authenticators from the issuers they
// accept: which issuer introspects which opaque token, which JWT issuers
// pass, and which issuer sets cannot be told apart.
func TestRouteIssuers(t *testing.T) {
	intro := func(iss, prefix string) introspecting {
		return introspecting{issuer: iss, prefix: prefix, authn: issuerAuthn{iss}}
	}
	tests := []struct {
		name    string
		st      stages
		accepts []string
		kind    extauthz.CredentialKind
		token   string
		wantIss string // the issuer that authenticated; "" with wantErr
		wantErr error  // from authenticate
		wantBad bool   // authenticators refuses the route
	}{
		{name: "one introspector, any prefix", st: stages{introspectors: []introspecting{intro("A", "")}},
			kind: extauthz.KindOpaque, token: "xyz", wantIss: "A"},
		{name: "two by prefix: b", st: stages{introspectors: []introspecting{intro("A", "a_"), intro("B", "ory_at_")}},
			kind: extauthz.KindOpaque, token: "ory_at_1", wantIss: "B"},
		{name: "two by prefix: a", st: stages{introspectors: []introspecting{intro("A", "a_"), intro("B", "ory_at_")}},
			kind: extauthz.KindOpaque, token: "a_1", wantIss: "A"},
		{name: "two by prefix: neither", st: stages{introspectors: []introspecting{intro("A", "a_"), intro("B", "ory_at_")}},
			kind: extauthz.KindOpaque, token: "zz", wantErr: extauthz.ErrUnknownIssuer},
		{name: "two, one without prefix", st: stages{introspectors: []introspecting{intro("A", ""), intro("B", "ory_at_")}},
			wantBad: true},
		{name: "two, overlapping prefixes", st: stages{introspectors: []introspecting{intro("A", "ory_"), intro("B", "ory_at_")}},
			wantBad: true},
		{name: "two without prefix, route narrows to one", st: stages{introspectors: []introspecting{intro("A", ""), intro("B", "")}},
			accepts: []string{"B"}, kind: extauthz.KindOpaque, token: "a_1", wantIss: "B"},
		{name: "route accepts no introspector", st: stages{introspectors: []introspecting{intro("A", "")}},
			accepts: []string{"C"}, kind: extauthz.KindOpaque, token: "x", wantErr: extauthz.ErrInvalidToken},
		{name: "JWT of an accepted issuer", st: stages{jwt: issuerAuthn{"A"}, jwtIssuers: []string{"A", "B"}},
			accepts: []string{"A"}, kind: extauthz.KindJWT, token: "j", wantIss: "A"},
		{name: "JWT of an issuer the route does not accept", st: stages{jwt: issuerAuthn{"B"}, jwtIssuers: []string{"A", "B"}},
			accepts: []string{"A"}, kind: extauthz.KindJWT, token: "j", wantErr: extauthz.ErrUnknownIssuer},
		{name: "JWT, route accepts all", st: stages{jwt: issuerAuthn{"B"}, jwtIssuers: []string{"A", "B"}},
			kind: extauthz.KindJWT, token: "j", wantIss: "B"},
		{name: "JWT, route accepts only an introspecting issuer", st: stages{jwt: issuerAuthn{"A"}, jwtIssuers: []string{"A"}, introspectors: []introspecting{intro("B", "")}},
			accepts: []string{"B"}, kind: extauthz.KindJWT, token: "j", wantErr: extauthz.ErrInvalidToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			jwtA, opaqueA, err := tt.st.authenticators(tt.accepts)
			if tt.wantBad {
				if !errors.Is(err, ErrAmbiguousIntrospection) {
					t.Fatalf("error %v, want ErrAmbiguousIntrospection", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			rt := route{jwt: jwtA, opaque: opaqueA}
			p, err := rt.authenticate(context.Background(), extauthz.Credential{Raw: tt.token, Kind: tt.kind})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			if err == nil && p.Issuer != tt.wantIss {
				t.Errorf("authenticated by %q, want %q", p.Issuer, tt.wantIss)
			}
		})
	}
}

// TestDecideWithTwoIntrospectingIssuers builds a pipeline over two
// authorization-server doubles and checks Decide sends each opaque token to
// its own issuer only.
func TestDecideWithTwoIntrospectingIssuers(t *testing.T) {
	t.Setenv("TT_SECRET", "s3cret")
	a, b := authztest.New(t), authztest.New(t)
	introA := a.Introspection(t, authztest.WithClientSecret("tt", "s3cret"))
	introB := b.Introspection(t, authztest.WithClientSecret("tt", "s3cret"))
	exp := time.Now().Add(time.Hour).Unix()
	introA.Register("a_1", map[string]any{"sub": "alice", "aud": "api", "exp": exp})
	introB.Register("ory_at_1", map[string]any{"sub": "bob", "aud": "api", "exp": exp})
	introB.Register("a_1", map[string]any{"sub": "mallory", "aud": "api", "exp": exp})
	yaml := strings.NewReplacer("A_URL", a.URL(), "B_URL", b.URL()).Replace(`
listen: {grpc: 127.0.0.1:0}
issuers:
  - issuer: A_URL
    jwks_url: A_URL/jwks.json
    audiences: [api]
    introspection: {endpoint: A_URL/introspect, token_shape: {prefix: a_, alphabet: base64url}}
    client: {id: tt, secret: {env: TT_SECRET}}
  - issuer: B_URL
    audiences: [api]
    introspection: {endpoint: B_URL/introspect, token_shape: {prefix: ory_at_, alphabet: base64url}}
    client: {id: tt, secret: {env: TT_SECRET}}
routes:
  - name: any
    require: {}
    upstream: {mode: forward}
  - name: b
    require: {}
    issuers: [B_URL]
    upstream: {mode: forward}
`)
	cfg, err := config.Parse([]byte(yaml), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ks := NewKeySets(context.Background())
	defer ks.Close()
	p, err := Build(context.Background(), cfg, Env{KeySets: ks})
	if err != nil {
		t.Fatal(err)
	}
	jwtA := a.Sign(t, jwt.MapClaims{"iss": a.URL(), "sub": "alice", "aud": "api", "exp": exp})
	tests := []struct {
		name, route, token string
		wantSub            string // "" for a 401 invalid_token
	}{
		{name: "a_ to A", route: "any", token: "a_1", wantSub: "alice"},
		{name: "ory_at_ to B", route: "any", token: "ory_at_1", wantSub: "bob"},
		{name: "a_ refused on B's route", route: "b", token: "a_1"},
		{name: "JWT of A refused on B's route", route: "b", token: jwtA},
		{name: "JWT of A on any", route: "any", token: jwtA, wantSub: "alice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			deadline := time.Now().Add(5 * time.Second)
			for p.Ready() != nil && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			r := &extauthz.Request{Method: "GET", Path: "/", RawPath: "/", Host: "h",
				Headers:           map[string]string{"authorization": "Bearer " + tt.token},
				ContextExtensions: map[string]string{"route": tt.route}}
			out := p.Decide(context.Background(), r)
			if tt.wantSub == "" {
				if out.Denial.Status != 401 || out.Denial.Code != "invalid_token" {
					t.Fatalf("denial %+v (%v), want 401 invalid_token", out.Denial, out.Err)
				}
				return
			}
			if out.Err != nil || out.Subject != tt.wantSub {
				t.Errorf("subject %q, error %v; want %q", out.Subject, out.Err, tt.wantSub)
			}
		})
	}
	if n := introB.Forms(); len(n) != 1 || n[0].Get("token") != "ory_at_1" {
		t.Errorf("B received %d introspection calls (%v), want only ory_at_1's", len(n), n)
	}
	if n := introA.Calls(); n != 1 {
		t.Errorf("A received %d introspection calls, want 1", n)
	}
}
