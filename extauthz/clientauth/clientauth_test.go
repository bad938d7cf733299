package clientauth

import (
	"context"
	"crypto"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const testSecret = "s3cr:t%+ &x"

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name string
		opts Options
	}{
		{name: "no client id", opts: Options{Method: MethodClientSecretBasic, Secret: testSecret}},
		{name: "no method", opts: Options{ClientID: "c", Secret: testSecret}},
		{name: "unknown method", opts: Options{Method: "tls_client_auth", ClientID: "c"}},
		{name: "basic without secret", opts: Options{Method: MethodClientSecretBasic, ClientID: "c"}},
		{name: "post without secret", opts: Options{Method: MethodClientSecretPost, ClientID: "c"}},
		{name: "no key file", opts: Options{Method: MethodPrivateKeyJWT, ClientID: "c"}},
		{name: "garbage key", opts: Options{Method: MethodPrivateKeyJWT, ClientID: "c", KeyFile: "testdata/garbage.pem"}},
		{name: "short rsa key", opts: Options{Method: MethodPrivateKeyJWT, ClientID: "c", KeyFile: "testdata/rsa-1024.pem"}},
		{name: "hmac alg", opts: Options{Method: MethodPrivateKeyJWT, ClientID: "c", KeyFile: "testdata/rsa-pkcs8.pem", Algorithm: "HS256"}},
		{name: "alg does not fit key", opts: Options{Method: MethodPrivateKeyJWT, ClientID: "c", KeyFile: "testdata/ec-p256.pem", Algorithm: "RS256"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.opts)
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("New() error = %v, want ErrConfig", err)
			}
		})
	}
}

func TestSecretNotInErrorsOrStrings(t *testing.T) {
	m, err := New(Options{Method: MethodClientSecretBasic, ClientID: "c", Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fmt.Sprint(m), fmt.Sprintf("%v", m), fmt.Sprintf("%+v", m), fmt.Sprintf("%#v", m)} {
		if strings.Contains(s, "s3cr") {
			t.Errorf("formatted method %q leaks the secret", s)
		}
	}
}

func apply(t *testing.T, m Method, endpoint string) (*http.Request, url.Values) {
	t.Helper()
	req, err := NewRequest(context.Background(), m, endpoint, url.Values{"token": {"abc"}})
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		t.Fatal(err)
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		t.Fatal(err)
	}
	if got := req.Header.Get("Content-Type"); got != "application/x-www-form-urlencoded" {
		t.Errorf("Content-Type = %q", got)
	}
	if form.Get("token") != "abc" {
		t.Errorf("form lost the caller's members: %v", form)
	}
	return req, form
}

func TestClientSecretBasic(t *testing.T) {
	tests := []struct {
		name     string
		opts     Options
		wantPair string
	}{
		{
			name:     "form-urlencoded",
			opts:     Options{Method: MethodClientSecretBasic, ClientID: "tt client", Secret: testSecret},
			wantPair: "tt+client:s3cr%3At%25%2B+%26x",
		},
		{
			name:     "plain",
			opts:     Options{Method: MethodClientSecretBasic, ClientID: "tt", Secret: "pw"},
			wantPair: "tt:pw",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := New(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			req, form := apply(t, m, "https://as.example/introspect")
			want := "Basic " + base64.StdEncoding.EncodeToString([]byte(tt.wantPair))
			if got := req.Header.Get("Authorization"); got != want {
				t.Errorf("Authorization = %q, want %q", got, want)
			}
			if form.Has("client_secret") || form.Has("client_id") {
				t.Errorf("basic auth put credentials in the form: %v", form)
			}
			// The decoding a server does must give back the originals.
			id, secret, ok := req.BasicAuth()
			if !ok {
				t.Fatal("no basic auth")
			}
			id, _ = url.QueryUnescape(id)
			secret, _ = url.QueryUnescape(secret)
			if id != tt.opts.ClientID || secret != tt.opts.Secret {
				t.Errorf("round trip gave %q/%q", id, secret)
			}
		})
	}
}

func TestClientSecretPost(t *testing.T) {
	m, err := New(Options{Method: MethodClientSecretPost, ClientID: "tt", Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	req, form := apply(t, m, "https://as.example/token")
	if form.Get("client_id") != "tt" || form.Get("client_secret") != testSecret {
		t.Errorf("form = %v", form)
	}
	if req.Header.Get("Authorization") != "" {
		t.Error("client_secret_post also set Authorization")
	}
}

func TestNone(t *testing.T) {
	m, err := New(Options{Method: MethodNone, ClientID: "pub"})
	if err != nil {
		t.Fatal(err)
	}
	_, form := apply(t, m, "https://as.example/token")
	if form.Get("client_id") != "pub" || form.Has("client_secret") {
		t.Errorf("form = %v", form)
	}
}

func TestPrivateKeyJWT(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	tests := []struct {
		name     string
		keyFile  string
		alg      string
		audience string
		wantAlg  string
		wantAud  string
	}{
		{name: "rsa pkcs8 default alg, aud is endpoint", keyFile: "testdata/rsa-pkcs8.pem", wantAlg: "RS256", wantAud: "https://as.example/token"},
		{name: "rsa pkcs1 PS256", keyFile: "testdata/rsa-pkcs1.pem", alg: "PS256", wantAlg: "PS256", wantAud: "https://as.example/token"},
		{name: "ec p256, aud is issuer", keyFile: "testdata/ec-p256.pem", audience: "https://as.example", wantAlg: "ES256", wantAud: "https://as.example"},
		{name: "ed25519", keyFile: "testdata/ed25519.pem", wantAlg: "EdDSA", wantAud: "https://as.example/token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := New(Options{
				Method: MethodPrivateKeyJWT, ClientID: "tt", KeyFile: tt.keyFile, KeyID: "k1",
				Algorithm: tt.alg, Audience: tt.audience, Now: func() time.Time { return now },
			})
			if err != nil {
				t.Fatal(err)
			}
			req, form := apply(t, m, "https://as.example/token?x=1")
			if req.Header.Get("Authorization") != "" {
				t.Error("private_key_jwt set Authorization")
			}
			if form.Get("client_assertion_type") != AssertionType {
				t.Errorf("client_assertion_type = %q", form.Get("client_assertion_type"))
			}
			pub := m.(*privateKeyJWT).key.Public()
			var claims jwt.RegisteredClaims
			tok, err := jwt.ParseWithClaims(form.Get("client_assertion"), &claims,
				func(*jwt.Token) (any, error) { return crypto.PublicKey(pub), nil },
				jwt.WithTimeFunc(func() time.Time { return now }), jwt.WithValidMethods([]string{tt.wantAlg}),
				jwt.WithIssuer("tt"), jwt.WithSubject("tt"), jwt.WithAudience(tt.wantAud), jwt.WithExpirationRequired())
			if err != nil {
				t.Fatalf("assertion does not verify: %v", err)
			}
			if tok.Header["kid"] != "k1" {
				t.Errorf("kid = %v", tok.Header["kid"])
			}
			if claims.ID == "" || !claims.ExpiresAt.Equal(now.Add(time.Minute)) || !claims.IssuedAt.Equal(now) {
				t.Errorf("claims = %+v", claims)
			}
			// A second assertion has a fresh jti (replay protection on the AS side).
			_, form2 := apply(t, m, "https://as.example/token")
			var claims2 jwt.RegisteredClaims
			if _, _, err := jwt.NewParser().ParseUnverified(form2.Get("client_assertion"), &claims2); err != nil {
				t.Fatal(err)
			}
			if claims2.ID == claims.ID {
				t.Error("jti reused")
			}
		})
	}
}
