package authztest

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

func getJSON(t *testing.T, is *Issuer, url string) (int, map[string]any) {
	t.Helper()
	resp, err := is.Client().Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode, m
}

func TestMetadataAndJWKS(t *testing.T) {
	is := New(t)
	code, md := getJSON(t, is, is.Endpoint(PathOpenIDConfiguration))
	if code != http.StatusOK || md["issuer"] != is.URL() || md["jwks_uri"] != is.URL()+PathJWKS ||
		md["introspection_endpoint"] != is.URL()+PathIntrospect || md["token_endpoint"] != is.URL()+PathToken {
		t.Fatalf("metadata = %d %v", code, md)
	}
	if code, _ := getJSON(t, is, is.Endpoint(PathOAuthMetadata)); code != http.StatusOK {
		t.Fatalf("RFC 8414 metadata status %d", code)
	}
	_, set := getJSON(t, is, is.Endpoint(PathJWKS))
	if keys := set["keys"].([]any); len(keys) != len(kinds) {
		t.Fatalf("published %d keys, want %d", len(keys), len(kinds))
	}
	if got := is.Calls(PathJWKS); got != 1 {
		t.Fatalf("Calls(jwks) = %d, want 1", got)
	}
}

func TestPathPrefixAndMetadataIssuer(t *testing.T) {
	is := New(t, WithPathPrefix("/tenant"), WithMetadataIssuer("https://elsewhere.example"))
	if !strings.HasSuffix(is.URL(), "/tenant") {
		t.Fatalf("URL() = %q", is.URL())
	}
	_, md := getJSON(t, is, is.Endpoint(PathOAuthMetadata))
	if md["issuer"] != "https://elsewhere.example" {
		t.Fatalf("issuer = %v", md["issuer"])
	}
}

func TestSetDown(t *testing.T) {
	is := New(t)
	is.SetDown(true)
	if code, _ := getJSON(t, is, is.Endpoint(PathJWKS)); code != http.StatusServiceUnavailable {
		t.Fatalf("down: status %d", code)
	}
	is.SetDown(false)
	if code, _ := getJSON(t, is, is.Endpoint(PathJWKS)); code != http.StatusOK {
		t.Fatalf("up: status %d", code)
	}
	if got := is.Calls(PathJWKS); got != 2 {
		t.Fatalf("Calls = %d, want 2", got)
	}
}

func TestHandleRegistersCountedEndpoint(t *testing.T) {
	is := New(t)
	is.Handle("POST "+PathIntrospect, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusTeapot)
	}))
	resp, err := is.Client().Post(is.Endpoint(PathIntrospect), "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTeapot || is.Calls(PathIntrospect) != 1 {
		t.Fatalf("status %d calls %d", resp.StatusCode, is.Calls(PathIntrospect))
	}
}

func TestSignVerifiesForEveryAlg(t *testing.T) {
	is := New(t)
	for _, alg := range Algorithms {
		t.Run(alg, func(t *testing.T) {
			raw := is.Sign(t, jwt.MapClaims{"sub": "alice"}, WithAlg(alg))
			k, _ := is.Key(alg)
			tok, err := jwt.Parse(raw, func(tok *jwt.Token) (any, error) {
				if tok.Header["kid"] != k.Kid || tok.Header["typ"] != "at+jwt" {
					t.Errorf("header = %v", tok.Header)
				}
				return k.Public, nil
			}, jwt.WithValidMethods([]string{alg}), jwt.WithIssuer(is.URL()), jwt.WithExpirationRequired())
			if err != nil || !tok.Valid {
				t.Fatalf("verify: %v", err)
			}
		})
	}
}

func TestRotate(t *testing.T) {
	is := New(t)
	before, _ := is.Key("ES256")
	is.Rotate(true)
	after, _ := is.Key("ES256")
	if before.Kid == after.Kid {
		t.Fatal("kid unchanged by Rotate")
	}
	if n := len(is.JWKS()["keys"].([]any)); n != 2*len(kinds) {
		t.Fatalf("keepOld: %d keys", n)
	}
	is.Rotate(false)
	if n := len(is.JWKS()["keys"].([]any)); n != len(kinds) {
		t.Fatalf("dropOld: %d keys", n)
	}
}

func TestBrokenTokens(t *testing.T) {
	is := New(t)
	tests := []struct {
		name     string
		brk      Breakage
		segments int
	}{
		{name: "signature", brk: BreakSignature, segments: 3},
		{name: "none", brk: BreakAlgNone, segments: 3},
		{name: "header base64", brk: BreakHeaderBase64, segments: 3},
		{name: "claims base64", brk: BreakClaimsBase64, segments: 3},
		{name: "header json", brk: BreakHeaderJSON, segments: 3},
		{name: "jwe", brk: BreakJWE, segments: 5},
		{name: "segments", brk: BreakSegments, segments: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw := is.Sign(t, jwt.MapClaims{"sub": "x"}, Broken(tc.brk))
			if n := strings.Count(raw, ".") + 1; n != tc.segments {
				t.Fatalf("segments = %d, want %d", n, tc.segments)
			}
			k, _ := is.Key("RS256")
			if _, err := jwt.Parse(raw, func(*jwt.Token) (any, error) { return k.Public, nil }); err == nil {
				t.Fatal("broken token verified")
			}
		})
	}
}
