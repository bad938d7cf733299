package discovery

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/authztest"
)

func TestFetchIssuer(t *testing.T) {
	is := authztest.New(t)
	md, err := FetchIssuer(context.Background(), is.Client(), is.URL(), "")
	if err != nil {
		t.Fatal(err)
	}
	want := Metadata{
		Issuer:                is.URL(),
		JWKSURI:               is.Endpoint(authztest.PathJWKS),
		IntrospectionEndpoint: is.Endpoint(authztest.PathIntrospect),
		TokenEndpoint:         is.Endpoint(authztest.PathToken),
	}
	if md.Issuer != want.Issuer || md.JWKSURI != want.JWKSURI ||
		md.IntrospectionEndpoint != want.IntrospectionEndpoint || md.TokenEndpoint != want.TokenEndpoint {
		t.Fatalf("got %+v, want %+v", md, want)
	}
	if is.Calls(authztest.PathOpenIDConfiguration) != 1 {
		t.Fatalf("OIDC discovery called %d times", is.Calls(authztest.PathOpenIDConfiguration))
	}
}

func TestFetchIssuerFallsBackToRFC8414(t *testing.T) {
	// A server with a path in its issuer that only publishes RFC 8414 metadata.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/oauth-authorization-server/tenant1" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(`{"issuer":"http://` + r.Host + `/tenant1","jwks_uri":"http://` + r.Host + `/tenant1/jwks.json"}`))
	}))
	defer srv.Close()
	issuer := srv.URL + "/tenant1"
	md, err := FetchIssuer(context.Background(), srv.Client(), issuer, "")
	if err != nil {
		t.Fatal(err)
	}
	if md.Issuer != issuer || md.JWKSURI != issuer+"/jwks.json" {
		t.Fatalf("got %+v", md)
	}
}

func TestFetchErrors(t *testing.T) {
	huge := `{"issuer":"x","pad":"` + strings.Repeat("a", MaxBytes) + `"}`
	tests := []struct {
		name    string
		handler http.HandlerFunc
		wantErr []error
	}{
		{name: "404", handler: func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) },
			wantErr: []error{extauthz.ErrIssuerUnavailable}},
		{name: "not json", handler: func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("<html>")) },
			wantErr: []error{extauthz.ErrIssuerUnavailable, ErrInvalidMetadata}},
		{name: "too large", handler: func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte(huge)) },
			wantErr: []error{extauthz.ErrIssuerUnavailable, ErrInvalidMetadata}},
		{name: "no issuer", handler: func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte(`{"jwks_uri":"https://a/b"}`)) },
			wantErr: []error{extauthz.ErrIssuerUnavailable, ErrInvalidMetadata}},
		{name: "relative jwks_uri", handler: func(w http.ResponseWriter, _ *http.Request) {
			w.Write([]byte(`{"issuer":"x","jwks_uri":"/jwks"}`))
		}, wantErr: []error{extauthz.ErrIssuerUnavailable, ErrInvalidMetadata}},
		{name: "hangs past deadline", handler: func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() },
			wantErr: []error{extauthz.ErrIssuerUnavailable, context.DeadlineExceeded}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			_, err := Fetch(ctx, srv.Client(), srv.URL)
			for _, want := range tc.wantErr {
				if !errors.Is(err, want) {
					t.Errorf("err = %v, want %v", err, want)
				}
			}
		})
	}
}

func TestFetchIssuerMismatch(t *testing.T) {
	is := authztest.New(t, authztest.WithMetadataIssuer("https://attacker.example"))
	_, err := FetchIssuer(context.Background(), is.Client(), is.URL(), is.Endpoint(authztest.PathOpenIDConfiguration))
	if !errors.Is(err, ErrIssuerMismatch) || !errors.Is(err, extauthz.ErrIssuerUnavailable) {
		t.Fatalf("err = %v, want ErrIssuerMismatch", err)
	}
}

func TestFetchIssuerDown(t *testing.T) {
	is := authztest.New(t)
	is.SetDown(true)
	_, err := FetchIssuer(context.Background(), is.Client(), is.URL(), "")
	if !errors.Is(err, extauthz.ErrIssuerUnavailable) {
		t.Fatalf("err = %v", err)
	}
}

func TestOAuthURL(t *testing.T) {
	tests := []struct {
		issuer, want string
	}{
		{issuer: "https://as.example.com", want: "https://as.example.com/.well-known/oauth-authorization-server"},
		{issuer: "https://as.example.com/", want: "https://as.example.com/.well-known/oauth-authorization-server"},
		{issuer: "https://as.example.com/t/1", want: "https://as.example.com/.well-known/oauth-authorization-server/t/1"},
	}
	for _, tc := range tests {
		got, err := OAuthURL(tc.issuer)
		if err != nil || got != tc.want {
			t.Errorf("OAuthURL(%q) = %q, %v; want %q", tc.issuer, got, err, tc.want)
		}
	}
	if _, err := OAuthURL("not a url"); !errors.Is(err, ErrInvalidMetadata) {
		t.Errorf("relative issuer: err = %v", err)
	}
}

func TestParseFixture(t *testing.T) {
	data, err := os.ReadFile("testdata/metadata.json")
	if err != nil {
		t.Fatal(err)
	}
	md, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if md.Issuer != "https://as.example.com" || len(md.TokenEndpointAuthMethods) != 2 || len(md.GrantTypes) != 2 {
		t.Fatalf("got %+v", md)
	}
}

func FuzzParse(f *testing.F) {
	if data, err := os.ReadFile("testdata/metadata.json"); err == nil {
		f.Add(data)
	}
	f.Add([]byte(`{"issuer":"x","jwks_uri":"javascript:alert(1)"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		md, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidMetadata) {
				t.Fatalf("error does not wrap ErrInvalidMetadata: %v", err)
			}
			return
		}
		if md.Issuer == "" {
			t.Fatal("accepted metadata without issuer")
		}
	})
}
