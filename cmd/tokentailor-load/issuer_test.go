package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestIssuerSignsVerifiableTokens(t *testing.T) {
	is, err := newIssuer(time.Now)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		alg     string
		wantKid string
		key     any
		wantErr bool
	}{
		{alg: "RS256", wantKid: "rsa-1", key: is.rsa.Public()},
		{alg: "ES256", wantKid: "ec-1", key: is.ec.Public()},
		{alg: "EdDSA", wantKid: "ed-1", key: is.ed.Public()},
		{alg: "HS256", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.alg, func(t *testing.T) {
			raw, err := is.sign(tt.alg, "alice")
			if tt.wantErr {
				if err == nil {
					t.Fatal("unsupported algorithm accepted")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tok, err := jwt.Parse(raw, func(*jwt.Token) (any, error) { return tt.key, nil },
				jwt.WithValidMethods([]string{tt.alg}), jwt.WithAudience(benchAudience))
			if err != nil {
				t.Fatal(err)
			}
			if tok.Header["kid"] != tt.wantKid || tok.Header["typ"] != "at+jwt" {
				t.Errorf("header = %v", tok.Header)
			}
			if c := tok.Claims.(jwt.MapClaims); c["scope"] != benchScope || c["sub"] != "alice" {
				t.Errorf("claims = %v", c)
			}
		})
	}
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(is.jwks, &set); err != nil || len(set.Keys) != 3 {
		t.Fatalf("JWKS %s: %v", is.jwks, err)
	}
}

func TestIssuerIntrospects(t *testing.T) {
	is, err := newIssuer(time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if err := is.start(); err != nil {
		t.Fatal(err)
	}
	defer is.stop()
	tests := []struct {
		name       string
		token      string
		user, pass string
		wantStatus int
		wantActive bool
	}{
		{name: "opaque token is active", token: opaque(1), user: benchClientID, pass: benchSecret, wantStatus: 200, wantActive: true},
		{name: "other token is inactive", token: "eyJ.x.y", user: benchClientID, pass: benchSecret, wantStatus: 200},
		{name: "bare prefix is inactive", token: opaquePrefix, user: benchClientID, pass: benchSecret, wantStatus: 200},
		{name: "wrong secret", token: opaque(2), user: benchClientID, pass: "nope", wantStatus: 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, is.url+"/introspect",
				strings.NewReader(url.Values{"token": {tt.token}}.Encode()))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth(tt.user, tt.pass)
			resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if resp.StatusCode != 200 {
				return
			}
			var ans map[string]any
			if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
				t.Fatal(err)
			}
			if ans["active"] != tt.wantActive {
				t.Errorf("active = %v, want %v", ans["active"], tt.wantActive)
			}
		})
	}
	if is.calls.Load() != int64(len(tests)) {
		t.Errorf("calls = %d, want %d", is.calls.Load(), len(tests))
	}
}

func TestScanTokens(t *testing.T) {
	tests := []struct {
		name, in string
		want     int
	}{
		{name: "blank lines skipped", in: "a\n\n  b  \n", want: 2},
		{name: "empty", in: "", want: 0},
		{name: "crlf", in: "a\r\nb\r\n", want: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := scanTokens(strings.NewReader(tt.in))
			if err != nil || len(got) != tt.want {
				t.Errorf("got %q, %v; want %d tokens", got, err, tt.want)
			}
			for _, tok := range got {
				if strings.TrimSpace(tok) != tok {
					t.Errorf("token %q not trimmed", tok)
				}
			}
		})
	}
}

// The flood's double: strict (only issued tokens are active) and slow.
func TestIssuerStrictAndSlow(t *testing.T) {
	is, err := newIssuer(time.Now)
	if err != nil {
		t.Fatal(err)
	}
	is.strict, is.delay = true, 30*time.Millisecond
	if err := is.start(); err != nil {
		t.Fatal(err)
	}
	defer is.stop()
	issued := is.issueOpaque()
	if len(issued) != opaqueLen || !strings.HasPrefix(issued, opaquePrefix) {
		t.Fatalf("issued token %q: want %d bytes starting %q", issued, opaqueLen, opaquePrefix)
	}
	tests := []struct {
		name       string
		token      string
		wantActive bool
	}{
		{name: "issued token is active", token: issued, wantActive: true},
		{name: "token of the same shape never issued is inactive", token: randomToken(opaquePrefix)},
		{name: "legacy opaque token is inactive when strict", token: opaque(1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, is.url+"/introspect",
				strings.NewReader(url.Values{"token": {tt.token}}.Encode()))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth(benchClientID, benchSecret)
			t0 := time.Now()
			resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if took := time.Since(t0); took < is.delay {
				t.Errorf("answered in %s, want at least %s", took, is.delay)
			}
			var ans map[string]any
			if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
				t.Fatal(err)
			}
			if ans["active"] != tt.wantActive {
				t.Errorf("active = %v, want %v", ans["active"], tt.wantActive)
			}
		})
	}
}
