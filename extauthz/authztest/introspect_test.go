package authztest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

func post(t *testing.T, is *Issuer, path string, form url.Values, header http.Header) (int, string, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, is.Endpoint(path), strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := is.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), body
}

func basic(id, secret string) http.Header {
	r := &http.Request{Header: http.Header{}}
	r.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	return r.Header
}

func TestIntrospectionEndpoint(t *testing.T) {
	tests := []struct {
		name       string
		setup      func(x *Introspection)
		form       url.Values
		header     http.Header
		wantStatus int
		wantActive bool
		wantSub    string
	}{
		{name: "registered token, basic auth", setup: func(x *Introspection) { x.Register("t", map[string]any{"sub": "alice"}) },
			form: url.Values{"token": {"t"}}, header: basic("c l", "p:w"), wantStatus: 200, wantActive: true, wantSub: "alice"},
		{name: "registered token, post auth", setup: func(x *Introspection) { x.Register("t", nil) },
			form: url.Values{"token": {"t"}, "client_id": {"c l"}, "client_secret": {"p:w"}}, wantStatus: 200, wantActive: true},
		{name: "unknown token", form: url.Values{"token": {"nope"}}, header: basic("c l", "p:w"), wantStatus: 200},
		{name: "revoked token", setup: func(x *Introspection) { x.Register("t", nil); x.Revoke("t") },
			form: url.Values{"token": {"t"}}, header: basic("c l", "p:w"), wantStatus: 200},
		{name: "wrong secret", form: url.Values{"token": {"t"}}, header: basic("c l", "nope"), wantStatus: 401},
		{name: "no client", form: url.Values{"token": {"t"}}, wantStatus: 401},
		{name: "no token", form: url.Values{}, header: basic("c l", "p:w"), wantStatus: 400},
		{name: "forced 502", setup: func(x *Introspection) { x.FailWith(502) },
			form: url.Values{"token": {"t"}}, header: basic("c l", "p:w"), wantStatus: 502},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := New(t)
			x := is.Introspection(t, WithClientSecret("c l", "p:w"))
			if tt.setup != nil {
				tt.setup(x)
			}
			status, _, body := post(t, is, PathIntrospect, tt.form, tt.header)
			if status != tt.wantStatus {
				t.Fatalf("status = %d, want %d (%s)", status, tt.wantStatus, body)
			}
			if x.Calls() != 1 || len(x.Forms()) != 1 {
				t.Errorf("calls %d, forms %d", x.Calls(), len(x.Forms()))
			}
			if status != 200 {
				return
			}
			var a map[string]any
			if err := json.Unmarshal(body, &a); err != nil {
				t.Fatal(err)
			}
			if a["active"] != tt.wantActive || (tt.wantSub != "" && a["sub"] != tt.wantSub) {
				t.Errorf("answer = %v", a)
			}
			if tt.wantActive && a["iss"] != is.URL() {
				t.Errorf("iss = %v", a["iss"])
			}
		})
	}
}

func TestIntrospectionSignedAnswer(t *testing.T) {
	is := New(t)
	x := is.Introspection(t)
	x.Register("t", map[string]any{"sub": "alice"})
	status, ct, body := post(t, is, PathIntrospect, url.Values{"token": {"t"}, "client_id": {"rs"}},
		http.Header{"Accept": {MediaTypeIntrospectionJWT}})
	if status != 200 || ct != MediaTypeIntrospectionJWT {
		t.Fatalf("status %d, type %q", status, ct)
	}
	k, _ := is.Key("RS256")
	claims := jwt.MapClaims{}
	tok, err := jwt.ParseWithClaims(string(body), claims, func(*jwt.Token) (any, error) { return k.Public, nil },
		jwt.WithIssuer(is.URL()), jwt.WithAudience("rs"), jwt.WithValidMethods([]string{"RS256"}))
	if err != nil {
		t.Fatal(err)
	}
	if tok.Header["typ"] != "token-introspection+jwt" {
		t.Errorf("typ = %v", tok.Header["typ"])
	}
	ti, _ := claims["token_introspection"].(map[string]any)
	if ti["active"] != true || ti["sub"] != "alice" {
		t.Errorf("token_introspection = %v", ti)
	}
}

func TestHoldAndRespondRaw(t *testing.T) {
	is := New(t)
	x := is.Introspection(t)
	release := x.Hold()
	done := make(chan int)
	go func() {
		status, _, _ := post(t, is, PathIntrospect, url.Values{"token": {"t"}}, nil)
		done <- status
	}()
	select {
	case <-done:
		t.Fatal("held request answered before release")
	default:
	}
	release()
	if got := <-done; got != 200 {
		t.Fatalf("status = %d", got)
	}
	x.RespondRaw("text/plain", []byte("oops"))
	if _, ct, body := post(t, is, PathIntrospect, url.Values{"token": {"t"}}, nil); ct != "text/plain" || string(body) != "oops" {
		t.Errorf("raw answer %q %q", ct, body)
	}
}
