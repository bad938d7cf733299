package exchange

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/tokentailor/tokentailor/extauthz/clientauth"
	"github.com/tokentailor/tokentailor/extauthz/metrics"
	"github.com/tokentailor/tokentailor/extauthz/sharedcache"
)

// RFC 8693 identifiers.
const (
	GrantType            = "urn:ietf:params:oauth:grant-type:token-exchange"
	TokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token"
	TokenTypeJWT         = "urn:ietf:params:oauth:token-type:jwt"
)

// Options configures an Exchanger. Issuer, Auth, one of TokenEndpoint and
// TokenEndpointFunc, Client, Timeout and CacheEntries are required: the
// values come already defaulted from config, and New refuses zero values
// rather than invent its own.
type Options struct {
	// Issuer names the issuer whose token endpoint this is; routes whose
	// ExchangeSpec.Issuer names another are refused. Also the metric label.
	Issuer string
	// TokenEndpoint is the token endpoint URL.
	TokenEndpoint string
	// TokenEndpointFunc, instead of TokenEndpoint, gives the endpoint at each
	// call, e.g. a discovery.Resolver's TokenEndpoint, so that an issuer whose
	// metadata cannot be fetched at start delays its own exchanges (503) and
	// nothing else. Its errors should wrap extauthz.ErrIssuerUnavailable.
	TokenEndpointFunc func(ctx context.Context) (string, error)
	// Auth authenticates tokentailor to the endpoint.
	Auth clientauth.Method
	// ActorToken returns tokentailor's own token, sent as actor_token for
	// routes with ExchangeSpec.Actor. Nil means an access token for
	// tokentailor's own client from the client credentials grant at
	// TokenEndpoint, cached until the last tenth of its life.
	ActorToken func(ctx context.Context) (string, error)
	// ActorTokenType is the actor_token_type; default TokenTypeAccessToken.
	ActorTokenType string
	// Client makes the calls.
	Client *http.Client
	// Timeout bounds one call.
	Timeout time.Duration
	// CacheEntries bounds the cache.
	CacheEntries int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Metrics counts calls and cache lookups; may be nil.
	Metrics *metrics.Metrics
	// Logger receives failures, never tokens; nil discards.
	Logger *slog.Logger
	// Shared, when set, is the cache shared by the replicas: looked up on a
	// local miss before the token endpoint is called, and told every token
	// obtained. nil: off.
	Shared *sharedcache.Cache
}

// validate refuses options a caller forgot to fill.
func (o *Options) validate() error {
	u, err := url.Parse(o.TokenEndpoint)
	switch {
	case o.Issuer == "":
		return errors.New("Issuer is required")
	case o.Auth == nil:
		return errors.New("Auth is required")
	case o.TokenEndpointFunc != nil && o.TokenEndpoint != "":
		return errors.New("TokenEndpoint and TokenEndpointFunc are exclusive")
	case o.TokenEndpointFunc == nil && (err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == ""):
		return fmt.Errorf("TokenEndpoint %q is not an http(s) URL", o.TokenEndpoint)
	case o.Client == nil:
		return errors.New("Client is required")
	case o.Timeout <= 0:
		return errors.New("Timeout must be positive")
	case o.CacheEntries <= 0:
		return errors.New("CacheEntries must be positive")
	}
	return nil
}

// Options returns the options the Exchanger was built with.
func (e *Exchanger) Options() Options { return e.opts }
