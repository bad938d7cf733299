package exchange_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/clientauth"
	"github.com/tokentailor/tokentailor/extauthz/discovery"
	"github.com/tokentailor/tokentailor/extauthz/exchange"
)

// TestTokenEndpointFromResolver: with the token endpoint taken from a
// discovery.Resolver, an issuer down at start gives 503 for exchanges (no
// error at New, so start-up goes on), and exchange works as soon as the
// metadata can be fetched.
func TestTokenEndpointFromResolver(t *testing.T) {
	var r *discovery.Resolver
	f := setup(t, func(o *exchange.Options) {
		o.TokenEndpoint = ""
		o.TokenEndpointFunc = func(ctx context.Context) (string, error) { return r.TokenEndpoint(ctx) }
	})
	r = discovery.NewResolver(discovery.ResolverOptions{Issuer: f.is.URL(), Client: f.is.Client(), Now: f.clk.Now})
	f.is.SetDown(true)
	_, err := f.ex.Token(context.Background(), principal(f, extauthz.KindOpaque, "in", time.Hour), grant("r", nil))
	if !errors.Is(err, extauthz.ErrIssuerUnavailable) {
		t.Fatalf("issuer down: err = %v, want ErrIssuerUnavailable", err)
	}
	if f.x.Calls() != 0 {
		t.Fatal("token endpoint called without a known endpoint")
	}
	f.is.SetDown(false)
	f.clk.Advance(discovery.DefaultMinRetryBackoff)
	tok, err := f.ex.Token(context.Background(), principal(f, extauthz.KindOpaque, "in", time.Hour), grant("r", nil))
	if err != nil || tok.Value == "" || f.x.Calls() != 1 {
		t.Fatalf("issuer back: token empty %v, err %v, calls %d", tok.Value == "", err, f.x.Calls())
	}
}

func TestTokenEndpointAndFuncAreExclusive(t *testing.T) {
	auth, _ := clientauth.New(clientauth.Options{Method: clientauth.MethodNone, ClientID: "c"})
	endpoint := func(context.Context) (string, error) { return "https://as/token", nil }
	if _, err := exchange.New(exchange.Options{Issuer: "https://as", TokenEndpoint: "https://as/token", TokenEndpointFunc: endpoint, Auth: auth}); err == nil {
		t.Fatal("New accepted both TokenEndpoint and TokenEndpointFunc")
	}
	if _, err := exchange.New(exchange.Options{Issuer: "https://as", TokenEndpointFunc: endpoint, Auth: auth, Client: &http.Client{}, Timeout: time.Second, CacheEntries: 1}); err != nil {
		t.Fatalf("TokenEndpointFunc alone: %v", err)
	}
}
