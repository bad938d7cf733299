package authztest

import (
	"encoding/json"
	"net/url"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

func TestExchangeEndpoint(t *testing.T) {
	valid := url.Values{
		"grant_type": {GrantTypeTokenExchange}, "subject_token": {"in"}, "subject_token_type": {TokenTypeAccessToken},
		"audience": {"api"}, "scope": {"a b"},
	}
	with := func(k, v string) url.Values {
		f := url.Values{}
		for kk, vv := range valid {
			f[kk] = vv
		}
		if v == "" {
			f.Del(k)
		} else {
			f.Set(k, v)
		}
		return f
	}
	tests := []struct {
		name       string
		setup      func(x *Exchange)
		form       url.Values
		wantStatus int
		wantError  string
		wantExpIn  float64
	}{
		{name: "exchange", form: valid, wantStatus: 200, wantExpIn: 300},
		{name: "no expires_in", setup: func(x *Exchange) { x.SetExpiresIn(0) }, form: valid, wantStatus: 200},
		{name: "wrong grant", form: with("grant_type", "client_credentials"), wantStatus: 400, wantError: "unsupported_grant_type"},
		{name: "no subject token", form: with("subject_token", ""), wantStatus: 400, wantError: "invalid_request"},
		{name: "actor token without type", form: with("actor_token", "a"), wantStatus: 400, wantError: "invalid_request"},
		{name: "refused", setup: func(x *Exchange) { x.RefuseWith("invalid_target") }, form: valid, wantStatus: 400, wantError: "invalid_target"},
		{name: "forced 503", setup: func(x *Exchange) { x.FailWith(503) }, form: valid, wantStatus: 503},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := New(t)
			x := is.Exchange(t)
			if tt.setup != nil {
				tt.setup(x)
			}
			status, _, body := post(t, is, PathToken, tt.form, nil)
			if status != tt.wantStatus {
				t.Fatalf("status = %d, want %d (%s)", status, tt.wantStatus, body)
			}
			if x.Calls() != 1 {
				t.Errorf("calls = %d", x.Calls())
			}
			var a map[string]any
			if err := json.Unmarshal(body, &a); err != nil {
				t.Fatal(err)
			}
			if tt.wantError != "" || status != 200 {
				if a["error"] != nilIfEmpty(tt.wantError) {
					t.Errorf("error = %v, want %q", a["error"], tt.wantError)
				}
				return
			}
			if a["token_type"] != "Bearer" || a["issued_token_type"] != TokenTypeAccessToken || a["expires_in"] != nilIfZero(tt.wantExpIn) {
				t.Errorf("answer = %v", a)
			}
			claims := jwt.MapClaims{}
			k, _ := is.Key("RS256")
			if _, err := jwt.ParseWithClaims(a["access_token"].(string), claims, func(*jwt.Token) (any, error) { return k.Public, nil }); err != nil {
				t.Fatal(err)
			}
			if claims["scope"] != "a b" || claims["aud"].([]any)[0] != "api" {
				t.Errorf("issued claims = %v", claims)
			}
		})
	}
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nilIfZero(f float64) any {
	if f == 0 {
		return nil
	}
	return f
}
