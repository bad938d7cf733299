package introspect_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/authztest"
	"github.com/tokentailor/tokentailor/extauthz/discovery"
	"github.com/tokentailor/tokentailor/extauthz/introspect"
)

// TestEndpointFromResolver: with the endpoint taken from a
// discovery.Resolver, an issuer down at start gives 503 for its tokens (no
// error at New, so start-up goes on), and introspection works as soon as
// the metadata can be fetched.
func TestEndpointFromResolver(t *testing.T) {
	var r *discovery.Resolver
	f := setup(t, func(o *introspect.Options) {
		o.Endpoint = ""
		o.EndpointFunc = func(ctx context.Context) (string, error) { return r.IntrospectionEndpoint(ctx) }
	})
	r = discovery.NewResolver(discovery.ResolverOptions{Issuer: f.is.URL(), Client: f.is.Client(), Now: f.clk.Now})
	f.x.Register("tok", map[string]any{"sub": "svc", "exp": f.clk.Now().Add(time.Hour).Unix()})
	f.is.SetDown(true)
	if _, err := f.intro.Authenticate(context.Background(), cred("tok")); !errors.Is(err, extauthz.ErrIssuerUnavailable) {
		t.Fatalf("issuer down: err = %v, want ErrIssuerUnavailable", err)
	}
	if f.x.Calls() != 0 {
		t.Fatal("introspection called without a known endpoint")
	}
	f.is.SetDown(false)
	f.clk.Advance(discovery.DefaultMinRetryBackoff)
	p, err := f.intro.Authenticate(context.Background(), cred("tok"))
	if err != nil {
		t.Fatalf("issuer back: %v", err)
	}
	if p.Issuer != f.is.URL() || f.x.Calls() != 1 || f.is.Calls(authztest.PathOpenIDConfiguration) != 2 {
		t.Fatalf("principal %+v, introspection calls %d, discovery calls %d", p, f.x.Calls(), f.is.Calls(authztest.PathOpenIDConfiguration))
	}
}

func TestEndpointAndEndpointFuncAreExclusive(t *testing.T) {
	_, err := introspect.New(introspect.Options{
		Issuer: "https://as", Endpoint: "https://as/introspect", Auth: authOf(t, ""),
		EndpointFunc: func(context.Context) (string, error) { return "https://as/introspect", nil },
	})
	if err == nil {
		t.Fatal("New accepted both Endpoint and EndpointFunc")
	}
	if _, err := introspect.New(introspect.Options{
		Issuer: "https://as", Auth: authOf(t, ""),
		EndpointFunc: func(context.Context) (string, error) { return "https://as/introspect", nil },
	}); err != nil {
		t.Fatalf("EndpointFunc alone: %v", err)
	}
}
