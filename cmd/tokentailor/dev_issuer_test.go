package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// newTestAS starts a dev authorization server on an httptest listener.
func newTestAS(t testing.TB) (*devAuthServer, *httptest.Server) {
	t.Helper()
	as, err := newDevAuthServer("http://unset", devClientID, []string{devExchangeAud})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(as.Handler())
	t.Cleanup(srv.Close)
	as.url = srv.URL
	return as, srv
}

func issueT(t *testing.T, as *devAuthServer, q devTokenRequest) string {
	t.Helper()
	if q.Subject == "" {
		q.Subject = "alice"
	}
	if q.Audiences == nil {
		q.Audiences = []string{devSampleAudience}
	}
	if q.TTL == "" {
		q.TTL = "1h"
	}
	tok, _, err := as.issue(q)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

type clientAuth int

const (
	authBasic clientAuth = iota
	authPost
	authNone
	authWrongSecret
	authBoth
)

// postForm sends form to path with the given client authentication and
// returns the status and the decoded JSON answer.
func postForm(t *testing.T, as *devAuthServer, srv *httptest.Server, path string, form url.Values, auth clientAuth) (int, map[string]any) {
	t.Helper()
	f := url.Values{}
	for k, v := range form {
		f[k] = v
	}
	switch auth {
	case authPost, authBoth:
		f.Set("client_id", devClientID)
		f.Set("client_secret", as.clientSecret)
	}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(f.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	switch auth {
	case authBasic, authBoth:
		req.SetBasicAuth(devClientID, as.clientSecret)
	case authWrongSecret:
		req.SetBasicAuth(devClientID, "nope")
	}
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var a map[string]any
	if err := json.NewDecoder(res.Body).Decode(&a); err != nil {
		t.Fatalf("%s: answer is not JSON: %v", path, err)
	}
	if res.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("%s: Cache-Control %q, want no-store", path, res.Header.Get("Cache-Control"))
	}
	return res.StatusCode, a
}

func TestDevMetadata(t *testing.T) {
	as, srv := newTestAS(t)
	for _, path := range []string{devPathOIDC, devPathOAuth} {
		res, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		var md map[string]any
		err = json.NewDecoder(res.Body).Decode(&md)
		res.Body.Close()
		if err != nil || md["issuer"] != as.url || md["jwks_uri"] != as.url+devPathJWKS ||
			md["introspection_endpoint"] != as.url+devPathIntrospect || md["token_endpoint"] != as.url+devPathToken {
			t.Errorf("%s: %v %v", path, err, md)
		}
	}
}

func TestDevIntrospection(t *testing.T) {
	as, srv := newTestAS(t)
	opaque := issueT(t, as, devTokenRequest{Scopes: []string{"orders:read"}, Opaque: true, Claims: map[string]any{"tenant": "globex"}})
	jwtTok := issueT(t, as, devTokenRequest{Scopes: []string{"orders:read"}})
	shortLived := issueT(t, as, devTokenRequest{Opaque: true, TTL: "10s"})
	other, _ := newTestAS(t)
	foreign := issueT(t, other, devTokenRequest{})
	tests := []struct {
		name       string
		token      string
		auth       clientAuth
		wait       time.Duration
		wantStatus int
		wantActive bool
		wantError  string
	}{
		{name: "opaque, basic auth", token: opaque, wantStatus: 200, wantActive: true},
		{name: "opaque, post auth", token: opaque, auth: authPost, wantStatus: 200, wantActive: true},
		{name: "JWT it signed", token: jwtTok, wantStatus: 200, wantActive: true},
		{name: "JWT of another server", token: foreign, wantStatus: 200},
		{name: "tampered JWT", token: jwtTok[:len(jwtTok)-4] + "AAAA", wantStatus: 200},
		{name: "unknown opaque", token: devOpaquePrefix + "nope", wantStatus: 200},
		{name: "garbage", token: "a.b.c.d.e", wantStatus: 200},
		{name: "no token", token: "", wantStatus: 400, wantError: "invalid_request"},
		{name: "no client", token: opaque, auth: authNone, wantStatus: 401, wantError: "invalid_client"},
		{name: "wrong secret", token: opaque, auth: authWrongSecret, wantStatus: 401, wantError: "invalid_client"},
		{name: "two auth methods", token: opaque, auth: authBoth, wantStatus: 400, wantError: "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, a := postForm(t, as, srv, devPathIntrospect, url.Values{"token": {tt.token}}, tt.auth)
			if status != tt.wantStatus || a["error"] != nilIfEmpty(tt.wantError) {
				t.Fatalf("status %d, answer %v; want %d %q", status, a, tt.wantStatus, tt.wantError)
			}
			if status == 200 && a["active"] != tt.wantActive {
				t.Fatalf("active = %v, want %v", a["active"], tt.wantActive)
			}
			if tt.wantActive && (a["sub"] != "alice" || a["scope"] != "orders:read" || a["aud"] != devSampleAudience || a["iss"] != as.url || a["exp"] == nil || a["token_type"] != "Bearer") {
				t.Errorf("answer = %v", a)
			}
		})
	}
	t.Run("expired opaque", func(t *testing.T) {
		// The clock is moved on a server no request reaches concurrently.
		later := *as
		later.now = func() time.Time { return time.Now().Add(11 * time.Second) }
		if _, active := later.lookup(shortLived); active {
			t.Fatal("an expired opaque token is active")
		}
		if _, active := as.lookup(shortLived); !active {
			t.Fatal("the opaque token is inactive before its exp")
		}
	})
	t.Run("wrong content type", func(t *testing.T) {
		res, err := srv.Client().Post(srv.URL+devPathIntrospect, "application/json", strings.NewReader(`{"token":"x"}`))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 400 {
			t.Fatalf("status %d", res.StatusCode)
		}
	})
	t.Run("oversized body", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+devPathIntrospect, strings.NewReader("token="+strings.Repeat("a", devMaxBody+1)))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(devClientID, as.clientSecret)
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 400 {
			t.Fatalf("status %d", res.StatusCode)
		}
	})
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func TestDevTokenExchange(t *testing.T) {
	as, srv := newTestAS(t)
	subject := issueT(t, as, devTokenRequest{Scopes: []string{"orders:read", "inventory:read"}})
	opaque := issueT(t, as, devTokenRequest{Scopes: []string{"inventory:read"}, Opaque: true})
	shortLived := issueT(t, as, devTokenRequest{Scopes: []string{"inventory:read"}, TTL: "30s"})
	other, _ := newTestAS(t)
	foreign := issueT(t, other, devTokenRequest{Scopes: []string{"inventory:read"}})
	form := func(kv ...string) url.Values {
		f := url.Values{"grant_type": {grantTokenExchange}, "subject_token": {subject}, "subject_token_type": {tokenTypeAccessToken}, "audience": {devExchangeAud}}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "" {
				f.Del(kv[i])
			} else {
				f.Set(kv[i], kv[i+1])
			}
		}
		return f
	}
	tests := []struct {
		name       string
		form       url.Values
		auth       clientAuth
		wantStatus int
		wantError  string
		wantScope  string
		wantMaxTTL time.Duration
		wantType   string
	}{
		{name: "JWT subject", form: form(), wantStatus: 200, wantScope: "orders:read inventory:read", wantMaxTTL: devExchangeTTL, wantType: tokenTypeAccessToken},
		{name: "JWT subject typed jwt, jwt requested", form: form("subject_token_type", tokenTypeJWT, "requested_token_type", tokenTypeJWT), wantStatus: 200, wantScope: "orders:read inventory:read", wantMaxTTL: devExchangeTTL, wantType: tokenTypeJWT},
		{name: "opaque subject", form: form("subject_token", opaque), wantStatus: 200, wantScope: "inventory:read", wantMaxTTL: devExchangeTTL, wantType: tokenTypeAccessToken},
		{name: "scope narrowed to what is held", form: form("scope", "inventory:read admin"), wantStatus: 200, wantScope: "inventory:read", wantMaxTTL: devExchangeTTL, wantType: tokenTypeAccessToken},
		{name: "never outlives the subject", form: form("subject_token", shortLived), wantStatus: 200, wantScope: "inventory:read", wantMaxTTL: 30 * time.Second, wantType: tokenTypeAccessToken},
		{name: "scope not held", form: form("scope", "admin"), wantStatus: 400, wantError: "invalid_scope"},
		{name: "audience not offered", form: form("audience", "orders-api"), wantStatus: 400, wantError: "invalid_target"},
		{name: "no audience", form: form("audience", ""), wantStatus: 400, wantError: "invalid_target"},
		{name: "two audiences", form: func() url.Values { f := form(); f.Add("audience", devExchangeAud); return f }(), wantStatus: 400, wantError: "invalid_target"},
		{name: "subject of another server", form: form("subject_token", foreign), wantStatus: 400, wantError: "invalid_request"},
		{name: "no subject", form: form("subject_token", ""), wantStatus: 400, wantError: "invalid_request"},
		{name: "unknown subject type", form: form("subject_token_type", "urn:x"), wantStatus: 400, wantError: "invalid_request"},
		{name: "unknown requested type", form: form("requested_token_type", "urn:x"), wantStatus: 400, wantError: "invalid_request"},
		{name: "actor token without type", form: form("actor_token", subject), wantStatus: 400, wantError: "invalid_request"},
		{name: "actor token invalid", form: form("actor_token", "x", "actor_token_type", tokenTypeAccessToken), wantStatus: 400, wantError: "invalid_request"},
		{name: "unknown grant", form: form("grant_type", "password"), wantStatus: 400, wantError: "unsupported_grant_type"},
		{name: "no client", form: form(), auth: authNone, wantStatus: 401, wantError: "invalid_client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := time.Now().Truncate(time.Second)
			status, a := postForm(t, as, srv, devPathToken, tt.form, tt.auth)
			if status != tt.wantStatus || a["error"] != nilIfEmpty(tt.wantError) {
				t.Fatalf("status %d, answer %v; want %d %q", status, a, tt.wantStatus, tt.wantError)
			}
			if status != 200 {
				if d, _ := a["error_description"].(string); strings.Contains(d, subject) {
					t.Error("the error names the subject token")
				}
				return
			}
			if a["token_type"] != "Bearer" || a["issued_token_type"] != tt.wantType || a["scope"] != tt.wantScope {
				t.Errorf("answer = %v", a)
			}
			tok, _ := a["access_token"].(string)
			c, ok := as.lookup(tok)
			if !ok {
				t.Fatalf("the issued token does not verify")
			}
			exp, _ := numericDate(c["exp"])
			subjectClaims, _ := as.lookup(tt.form.Get("subject_token"))
			subjectExp, _ := numericDate(subjectClaims["exp"])
			if exp.After(subjectExp) || exp.Sub(before) > tt.wantMaxTTL {
				t.Errorf("exp %v: after the subject's %v or more than %v from now", exp, subjectExp, tt.wantMaxTTL)
			}
			if in, _ := a["expires_in"].(float64); time.Duration(in)*time.Second > tt.wantMaxTTL {
				t.Errorf("expires_in %v", in)
			}
			act, _ := c["act"].(map[string]any)
			if c["aud"] != devExchangeAud || c["sub"] != "alice" || act["sub"] != devClientID || c["scope"] != tt.wantScope {
				t.Errorf("issued claims = %v", c)
			}
		})
	}
	t.Run("client credentials", func(t *testing.T) {
		status, a := postForm(t, as, srv, devPathToken, url.Values{"grant_type": {"client_credentials"}}, authBasic)
		tok, _ := a["access_token"].(string)
		if c, ok := as.lookup(tok); status != 200 || !ok || c["sub"] != devClientID {
			t.Fatalf("status %d, answer %v", status, a)
		}
	})
}

func TestDevIssueEndpoint(t *testing.T) {
	as, srv := newTestAS(t)
	tests := []struct {
		name       string
		secret     string
		body       string
		wantStatus int
		wantErr    string
	}{
		{name: "JWT", secret: as.issueSecret, body: `{"sub":"bob","scopes":["a"],"aud":["api.example.com"],"ttl":"5m"}`, wantStatus: 200},
		{name: "opaque with claims", secret: as.issueSecret, body: `{"sub":"bob","aud":["x","y"],"ttl":"5m","opaque":true,"claims":{"groups":["g"]}}`, wantStatus: 200},
		{name: "no secret", body: `{"sub":"bob","aud":["x"],"ttl":"5m"}`, wantStatus: 401, wantErr: "secret"},
		{name: "wrong secret", secret: "nope", body: `{"sub":"bob","aud":["x"],"ttl":"5m"}`, wantStatus: 401, wantErr: "secret"},
		{name: "unknown field", secret: as.issueSecret, body: `{"sub":"bob","aud":["x"],"ttl":"5m","admin":true}`, wantStatus: 400, wantErr: "unknown field"},
		{name: "not JSON", secret: as.issueSecret, body: `sub=bob`, wantStatus: 400, wantErr: "unreadable"},
		{name: "reserved claim", secret: as.issueSecret, body: `{"sub":"bob","aud":["x"],"ttl":"5m","claims":{"iss":"evil"}}`, wantStatus: 400, wantErr: `is set by the dev server`},
		{name: "no audience", secret: as.issueSecret, body: `{"sub":"bob","ttl":"5m"}`, wantStatus: 400, wantErr: "aud"},
		{name: "ttl too long", secret: as.issueSecret, body: `{"sub":"bob","aud":["x"],"ttl":"25h"}`, wantStatus: 400, wantErr: "at most 24h"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, srv.URL+devPathIssue, strings.NewReader(tt.body))
			if tt.secret != "" {
				req.Header.Set("Authorization", "Bearer "+tt.secret)
			}
			res, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body)
			if res.StatusCode != tt.wantStatus || !strings.Contains(string(b), tt.wantErr) {
				t.Fatalf("status %d %s; want %d %q", res.StatusCode, b, tt.wantStatus, tt.wantErr)
			}
			if res.StatusCode != 200 {
				return
			}
			var ans devTokenAnswer
			if err := json.Unmarshal(b, &ans); err != nil {
				t.Fatal(err)
			}
			if c, ok := as.lookup(ans.Token); !ok || c["sub"] != "bob" {
				t.Fatalf("issued token does not look up: %v", c)
			}
		})
	}
}

// TestDevOpaqueStoreIsBounded: however many tokens dev token asks for, the
// store holds at most devMaxOpaqueTokens.
func TestDevOpaqueStoreIsBounded(t *testing.T) {
	as, _ := newTestAS(t)
	if max := as.opaque.Max(); max < devMaxOpaqueTokens || max > devMaxOpaqueTokens+64 {
		t.Fatalf("store bound %d, want about %d", max, devMaxOpaqueTokens)
	}
	for range as.opaque.Max() + 100 {
		issueT(t, as, devTokenRequest{Opaque: true})
	}
	if n := as.opaque.Len(); n > as.opaque.Max() {
		t.Fatalf("store holds %d tokens, bound %d", n, as.opaque.Max())
	}
}

// FuzzDevAuthServer feeds arbitrary bodies to every POST endpoint: the
// server answers (never panics), never calls a made-up token active, and
// never issues a token without the client's or the state file's secret.
func FuzzDevAuthServer(f *testing.F) {
	f.Add(0, "token=abc", true)
	f.Add(1, "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token=x&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt&audience=inventory-api", true)
	f.Add(2, `{"sub":"a","aud":["b"],"ttl":"1m","claims":{"x":1}}`, true)
	f.Add(2, `{"sub":"a","aud":["b"],"ttl":"-1m"}`, false)
	as, srv := newTestAS(f)
	paths := []string{devPathIntrospect, devPathToken, devPathIssue}
	f.Fuzz(func(t *testing.T, which int, body string, authenticated bool) {
		path := paths[(which%3+3)%3]
		req, _ := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(body))
		if path == devPathIssue {
			req.Header.Set("Content-Type", "application/json")
			if authenticated {
				req.Header.Set("Authorization", "Bearer "+as.issueSecret)
			}
		} else {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if authenticated {
				req.SetBasicAuth(devClientID, as.clientSecret)
			}
		}
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var a map[string]any
		if err := json.NewDecoder(res.Body).Decode(&a); err != nil {
			t.Fatalf("%s: answer is not JSON: %v", path, err)
		}
		switch {
		case res.StatusCode >= 500:
			t.Fatalf("%s: status %d %v", path, res.StatusCode, a)
		case !authenticated && res.StatusCode == 200:
			t.Fatalf("%s: answered 200 without authentication", path)
		case path == devPathIntrospect && a["active"] == true:
			t.Fatalf("a made-up token is active: %q", body)
		}
	})
}
