package introspect_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokentailor/tokentailor/extauthz/authztest"
	"github.com/tokentailor/tokentailor/extauthz/clientauth"
	"github.com/tokentailor/tokentailor/extauthz/discovery"
	"github.com/tokentailor/tokentailor/extauthz/introspect"
	"github.com/tokentailor/tokentailor/extauthz/jwks"
)

// TestDiscoveredSignedIntrospection wires the pieces as the server does: the
// endpoint found through discovery, private_key_jwt client authentication,
// RFC 9701 answers verified with the issuer's jwks.Set, across a key rotation.
func TestDiscoveredSignedIntrospection(t *testing.T) {
	ctx := context.Background()
	is := authztest.New(t)
	x := is.Introspection(t)
	md, err := discovery.FetchIssuer(ctx, is.Client(), is.URL(), "")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := jwks.New(jwks.Options{Issuer: is.URL(), URL: md.JWKSURI, Client: &http.Client{Transport: is.Client().Transport, Timeout: 5 * time.Second}, MinRefetchInterval: time.Nanosecond, RefreshInterval: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := keys.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	auth, err := clientauth.New(clientauth.Options{Method: clientauth.MethodPrivateKeyJWT, ClientID: "tokentailor", KeyFile: "testdata/client-key.pem"})
	if err != nil {
		t.Fatal(err)
	}
	intro, err := introspect.New(withSettings(introspect.Options{
		Issuer: is.URL(), Endpoint: md.IntrospectionEndpoint, Auth: auth, Client: is.Client(),
		JWTResponse: true, Keys: keys, Audiences: []string{"api"},
	}))
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour).Unix()
	x.Register("first", map[string]any{"sub": "alice", "aud": "api", "exp": exp})
	x.Register("second", map[string]any{"sub": "bob", "aud": "api", "exp": exp})

	p, err := intro.Authenticate(ctx, cred("first"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Subject != "alice" {
		t.Errorf("subject = %q", p.Subject)
	}
	var c jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(x.Forms()[0].Get("client_assertion"), &c); err != nil {
		t.Fatalf("client assertion: %v", err)
	}
	if c.Issuer != "tokentailor" || len(c.Audience) != 1 || c.Audience[0] != md.IntrospectionEndpoint {
		t.Errorf("assertion iss %q aud %v", c.Issuer, c.Audience)
	}

	is.Rotate(false) // answers are now signed with a kid the set has not seen
	p, err = intro.Authenticate(ctx, cred("second"))
	if err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if p.Subject != "bob" {
		t.Errorf("subject = %q", p.Subject)
	}
}
