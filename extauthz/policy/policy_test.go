package policy

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/config"
)

const testConfig = `
listen: {grpc: "127.0.0.1:9191"}
mint: {issuer: https://tt.internal, keys: [{file: k.pem}]}
issuers: [{issuer: https://idp.test, jwks_url: https://idp.test/jwks, audiences: [api], token_endpoint: https://idp.test/token, client: {id: c, secret: {env: X}}}]
routes:
  - name: exact
    require: {}
    match: {path: /exact, methods: [GET]}
    upstream: {audience: a}
  - name: orders
    match: {path_prefix: /orders, hosts: [shop.example.com, "*.shop.test"]}
    require:
      scopes: [orders:read]
      claims: {tenant: [acme, beta], verified: "true"}
    min_lifetime: 60s
    upstream:
      audience: orders-api
      scopes: [orders:read, orders:write, admin]
      copy_claims: {email: user_email, tenant: ""}
      claims: {env: prod}
      ttl: 2m
  - name: docs
    public: true
    match: {path_prefix: /docs/}
  - name: catchall
    require: {}
    upstream: {audience: c}
`

func engine(t *testing.T, extra string) *Engine {
	t.Helper()
	cfg, err := config.Parse([]byte(testConfig+extra), "")
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestSelect(t *testing.T) {
	e := engine(t, "")
	withDefault := engine(t, "default_route: catchall\n")
	tests := []struct {
		name    string
		e       *Engine
		req     extauthz.Request
		want    string
		wantErr error
	}{
		{name: "context extension wins", e: e, req: extauthz.Request{Method: "GET", Path: "/exact", ContextExtensions: map[string]string{"route": "docs"}}, want: "docs"},
		{name: "unknown context extension denies", e: withDefault, req: extauthz.Request{Path: "/", ContextExtensions: map[string]string{"route": "typo"}}, wantErr: extauthz.ErrNoRoute},
		{name: "exact path and method", e: e, req: extauthz.Request{Method: "GET", Path: "/exact"}, want: "exact"},
		{name: "exact path wrong method", e: e, req: extauthz.Request{Method: "POST", Path: "/exact"}, wantErr: extauthz.ErrNoRoute},
		{name: "exact path longer", e: e, req: extauthz.Request{Method: "GET", Path: "/exact/1"}, wantErr: extauthz.ErrNoRoute},
		{name: "prefix itself", e: e, req: extauthz.Request{Method: "GET", Host: "shop.example.com", Path: "/orders"}, want: "orders"},
		{name: "prefix child, host with port", e: e, req: extauthz.Request{Method: "GET", Host: "shop.example.com:8443", Path: "/orders/7"}, want: "orders"},
		{name: "prefix is segment bound", e: e, req: extauthz.Request{Method: "GET", Host: "shop.example.com", Path: "/ordersx"}, wantErr: extauthz.ErrNoRoute},
		{name: "wildcard host", e: e, req: extauthz.Request{Method: "GET", Host: "eu.shop.test", Path: "/orders"}, want: "orders"},
		{name: "wildcard needs a label", e: e, req: extauthz.Request{Method: "GET", Host: ".shop.test", Path: "/orders"}, wantErr: extauthz.ErrAmbiguousRequest},
		{name: "other host", e: e, req: extauthz.Request{Method: "GET", Host: "evil.example.com", Path: "/orders"}, wantErr: extauthz.ErrNoRoute},
		{name: "prefix with slash", e: e, req: extauthz.Request{Method: "GET", Path: "/docs/x"}, want: "docs"},
		{name: "no match uses default", e: withDefault, req: extauthz.Request{Method: "GET", Path: "/else"}, want: "catchall"},
		{name: "dot segments refused", e: withDefault, req: extauthz.Request{Method: "GET", Path: "/docs/../admin"}, wantErr: extauthz.ErrAmbiguousRequest},
		{name: "encoded slash refused", e: withDefault, req: extauthz.Request{Method: "GET", Path: "/docs%2F..%2Fadmin"}, wantErr: extauthz.ErrAmbiguousRequest},
		{name: "dot segment with params refused", e: withDefault, req: extauthz.Request{Method: "GET", Path: "/docs/..;/admin"}, wantErr: extauthz.ErrAmbiguousRequest},
		{name: "dot segment with named params refused", e: withDefault, req: extauthz.Request{Method: "GET", Path: "/docs/..;x=1/admin"}, wantErr: extauthz.ErrAmbiguousRequest},
		{name: "encoded unreserved refused", e: withDefault, req: extauthz.Request{Method: "GET", Path: "/%6frders"}, wantErr: extauthz.ErrAmbiguousRequest},
		{name: "encoded dot refused", e: withDefault, req: extauthz.Request{Method: "GET", Path: "/docs/%2e%2E/admin"}, wantErr: extauthz.ErrAmbiguousRequest},
		{name: "broken escape refused", e: withDefault, req: extauthz.Request{Method: "GET", Path: "/docs/%zz"}, wantErr: extauthz.ErrAmbiguousRequest},
		{name: "encoded space allowed", e: e, req: extauthz.Request{Method: "GET", Path: "/docs/a%20b"}, want: "docs"},
		{name: "params on a normal segment allowed", e: e, req: extauthz.Request{Method: "GET", Path: "/docs/x;v=1"}, want: "docs"},
		{name: "double slash refused", e: withDefault, req: extauthz.Request{Method: "GET", Path: "//docs/x"}, wantErr: extauthz.ErrAmbiguousRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt, err := tt.e.Select(&tt.req)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
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

func TestAuthorize(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	orders := engine(t, "").Route("orders")
	base := func() *extauthz.Principal {
		return &extauthz.Principal{
			Subject: "u1", Scopes: []string{"orders:read", "orders:write", "profile"},
			Claims:    map[string]any{"tenant": "acme", "verified": true, "email": "u@x", "ssn": "secret"},
			ExpiresAt: now.Add(10 * time.Minute),
		}
	}
	tests := []struct {
		name       string
		edit       func(*extauthz.Principal)
		wantErr    error
		wantScopes []string
		wantClaims map[string]any
	}{
		{name: "allowed", edit: func(*extauthz.Principal) {},
			wantScopes: []string{"orders:read", "orders:write"},
			wantClaims: map[string]any{"user_email": "u@x", "tenant": "acme", "env": "prod"}},
		{name: "only read scope passes on", edit: func(p *extauthz.Principal) { p.Scopes = []string{"orders:read"} },
			wantScopes: []string{"orders:read"}, wantClaims: map[string]any{"user_email": "u@x", "tenant": "acme", "env": "prod"}},
		{name: "missing scope", edit: func(p *extauthz.Principal) { p.Scopes = []string{"orders:write"} }, wantErr: extauthz.ErrInsufficientScope},
		{name: "claim in array", edit: func(p *extauthz.Principal) { p.Claims["tenant"] = []any{"x", "beta"}; delete(p.Claims, "email") },
			wantScopes: []string{"orders:read", "orders:write"}, wantClaims: map[string]any{"tenant": []any{"x", "beta"}, "env": "prod"}},
		{name: "claim wrong value", edit: func(p *extauthz.Principal) { p.Claims["tenant"] = "other" }, wantErr: extauthz.ErrClaimMismatch},
		{name: "claim missing", edit: func(p *extauthz.Principal) { delete(p.Claims, "verified") }, wantErr: extauthz.ErrClaimMismatch},
		{name: "claim object never matches", edit: func(p *extauthz.Principal) { p.Claims["tenant"] = map[string]any{"acme": true} }, wantErr: extauthz.ErrClaimMismatch},
		{name: "expires too soon", edit: func(p *extauthz.Principal) { p.ExpiresAt = now.Add(59 * time.Second) }, wantErr: extauthz.ErrExpiresTooSoon},
		// An introspection answer without exp: ExpiresAt is only the cache
		// horizon, so min_lifetime does not refuse it.
		{name: "expiry unknown is not judged", edit: func(p *extauthz.Principal) {
			p.ExpiresAt, p.ExpiryUnknown = now.Add(30*time.Second), true
		}, wantScopes: []string{"orders:read", "orders:write"}, wantClaims: map[string]any{"user_email": "u@x", "tenant": "acme", "env": "prod"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := base()
			tt.edit(p)
			g, err := orders.Authorize(p, now)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(g.Scopes, tt.wantScopes) {
				t.Errorf("scopes = %v, want %v", g.Scopes, tt.wantScopes)
			}
			if len(g.Claims) != len(tt.wantClaims) {
				t.Errorf("claims = %v, want %v", g.Claims, tt.wantClaims)
			}
			if _, leaked := g.Claims["ssn"]; leaked {
				t.Error("a claim outside the allowlist was copied")
			}
			if g.Audience != "orders-api" || g.TTL != 2*time.Minute || g.Mode != extauthz.ModeMint {
				t.Errorf("grant = %+v", g)
			}
		})
	}
}

// TestAuthorizeMemo: a principal with a Memo gets back the grant its route
// kept (unless it is fresh: no cache keeps it), and every check still runs
// on each call.
func TestAuthorizeMemo(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	e := engine(t, "")
	orders, catchall := e.Route("orders"), e.Route("catchall")
	p := &extauthz.Principal{
		Subject: "u1", Scopes: []string{"orders:read"},
		Claims:    map[string]any{"tenant": "acme", "verified": true, "email": "u@x"},
		ExpiresAt: now.Add(10 * time.Minute),
		Memo:      new(extauthz.Memo),
		Fresh:     true,
	}
	// A fresh principal's grant is not kept (no cache keeps that principal);
	// a cached one's is, and the next Authorize gets that one.
	once, err := orders.Authorize(p, now)
	if err != nil {
		t.Fatal(err)
	}
	copyOf := *p // a cache hit hands out a copy sharing the Memo
	copyOf.Fresh = false
	first, err := orders.Authorize(&copyOf, now)
	if err != nil || first == once {
		t.Fatalf("second Authorize = %p, %v; want a grant of its own, the fresh one's was not kept", first, err)
	}
	again, err := orders.Authorize(&copyOf, now)
	if err != nil || again != first {
		t.Fatalf("third Authorize = %p, %v; want the kept grant %p", again, err, first)
	}
	other, err := catchall.Authorize(&copyOf, now)
	if err != nil || other == first || other.Audience != "c" {
		t.Fatalf("another route got %+v, %v; want its own grant", other, err)
	}
	// Checks are not memoized: nine minutes later the route's min_lifetime
	// refuses, and another principal's scopes are judged on their own.
	if _, err := orders.Authorize(&copyOf, now.Add(9*time.Minute+30*time.Second)); !errors.Is(err, extauthz.ErrExpiresTooSoon) {
		t.Fatalf("near expiry: err = %v, want ErrExpiresTooSoon", err)
	}
	lacking := copyOf
	lacking.Scopes = nil
	if _, err := orders.Authorize(&lacking, now); !errors.Is(err, extauthz.ErrInsufficientScope) {
		t.Fatalf("without the scope: err = %v, want ErrInsufficientScope", err)
	}
	// A copy handed other scopes or claims (none is, but the Memo must not
	// rely on it) gets a grant derived from what it holds.
	if _, err := orders.Authorize(&copyOf, now); err != nil {
		t.Fatal(err)
	}
	fewer := copyOf
	fewer.Scopes = []string{"orders:read"}
	if g, err := orders.Authorize(&fewer, now); err != nil || g == first {
		t.Fatalf("a copy with other scopes got the kept grant (%v)", err)
	}
	otherClaims := copyOf
	otherClaims.Claims = map[string]any{"tenant": "beta", "verified": true}
	g, err := orders.Authorize(&otherClaims, now)
	if err != nil || g.Claims["tenant"] != "beta" || g.Claims["user_email"] != nil {
		t.Fatalf("a copy with other claims got %v, %v; want its own claims", g.Claims, err)
	}
}

func TestInsufficientScopeNamesTheScopes(t *testing.T) {
	_, err := engine(t, "").Route("orders").Authorize(&extauthz.Principal{}, time.Now())
	var se *extauthz.ScopeError
	if !errors.As(err, &se) || !slices.Equal(se.Required, []string{"orders:read"}) {
		t.Fatalf("err = %v", err)
	}
}

// Invariant 2 (scopes part): the upstream's scopes are a subset of the
// incoming scopes ∩ the route's scopes, whatever the incoming scopes are.
func TestInvariantScopesAreSubsetOfIncomingAndRoute(t *testing.T) {
	rt := engine(t, "").Route("orders")
	now := time.Unix(1_800_000_000, 0)
	all := []string{"orders:read", "orders:write", "admin", "profile", "x"}
	for mask := 0; mask < 1<<len(all); mask++ {
		var in []string
		for i, s := range all {
			if mask&(1<<i) != 0 {
				in = append(in, s)
			}
		}
		p := &extauthz.Principal{Scopes: in, Claims: map[string]any{"tenant": "acme", "verified": "true"}, ExpiresAt: now.Add(time.Hour)}
		g, err := rt.Authorize(p, now)
		if err != nil {
			continue
		}
		for _, s := range g.Scopes {
			if !slices.Contains(in, s) || !slices.Contains(rt.grant.Scopes, s) {
				t.Fatalf("incoming %v: scope %q passed on", in, s)
			}
		}
	}
	if !slices.Equal(rt.grant.Scopes, []string{"orders:read", "orders:write", "admin"}) {
		t.Fatalf("the route's scopes were modified: %v", rt.grant.Scopes)
	}
}

// TestExchangeTypesReachTheGrant checks that both RFC 8693 token types of a
// route, defaulted or set, arrive in its grant.
func TestExchangeTypesReachTheGrant(t *testing.T) {
	const accessToken = "urn:ietf:params:oauth:token-type:access_token"
	tests := []struct {
		name          string
		exchange      string
		wantSubject   string
		wantRequested string
	}{
		{name: "defaults", exchange: "", wantSubject: accessToken, wantRequested: accessToken},
		{
			name:          "set",
			exchange:      ", exchange: {subject_token_type: 'urn:ietf:params:oauth:token-type:jwt', requested_token_type: 'urn:x:custom'}",
			wantSubject:   "urn:ietf:params:oauth:token-type:jwt",
			wantRequested: "urn:x:custom",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := engine(t, "  - name: x\n    require: {}\n    match: {path_prefix: /x}\n    upstream: {mode: exchange, audience: b"+tt.exchange+"}\n").Route("x")
			g, err := r.Authorize(&extauthz.Principal{Subject: "u1", ExpiresAt: time.Now().Add(time.Hour)}, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if g.Exchange == nil || g.Exchange.SubjectTokenType != tt.wantSubject || g.Exchange.RequestedTokenType != tt.wantRequested {
				t.Fatalf("grant exchange = %+v, want subject %q, requested %q", g.Exchange, tt.wantSubject, tt.wantRequested)
			}
		})
	}
}

// The route key compiled into each grant changes with everything of the
// route that shapes a minted token, and with nothing else.
func TestGrantKey(t *testing.T) {
	key := func(t *testing.T, old, repl string) string {
		t.Helper()
		cfg, err := config.Parse([]byte(strings.Replace(testConfig, old, repl, 1)), "")
		if err != nil {
			t.Fatal(err)
		}
		e, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return e.routes[1].Grant().Key // "orders", under whatever name
	}
	ref := key(t, "", "")
	tests := []struct {
		name      string
		old, repl string
		wantSame  bool
	}{
		{name: "same config", wantSame: true},
		{name: "other match rule", old: "path_prefix: /orders,", repl: "path_prefix: /orderz,", wantSame: true},
		{name: "other requirement", old: "min_lifetime: 60s", repl: "min_lifetime: 90s", wantSame: true},
		{name: "other route name", old: "name: orders", repl: "name: orders2"},
		{name: "other audience", old: "audience: orders-api", repl: "audience: orders-api2"},
		{name: "other ttl", old: "ttl: 2m", repl: "ttl: 3m"},
		{name: "other fixed claim", old: "claims: {env: prod}", repl: "claims: {env: dev}"},
		{name: "fixed claim of other type", old: "claims: {env: prod}", repl: "claims: {env: [prod]}"},
		{name: "claim copied under other name", old: "email: user_email", repl: "email: mail"},
		{name: "other claim copied", old: "email: user_email", repl: "phone: user_email"},
		{name: "other prefix", old: "ttl: 2m", repl: "ttl: 2m\n      prefix: \"Token \""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := key(t, tt.old, tt.repl)
			if got == "" {
				t.Fatal("no route key compiled")
			}
			if same := got == ref; same != tt.wantSame {
				t.Fatalf("same key = %v, want %v", same, tt.wantSame)
			}
		})
	}
	if got, want := engine(t, "").Route("orders").Grant().Copied, []string{"user_email", "tenant"}; !slices.Equal(got, want) {
		t.Errorf("Copied = %q, want %q (in the order of the claims copied from)", got, want)
	}
}
