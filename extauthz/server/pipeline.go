package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/clientauth"
	"github.com/tokentailor/tokentailor/extauthz/config"
	"github.com/tokentailor/tokentailor/extauthz/credential"
	"github.com/tokentailor/tokentailor/extauthz/discovery"
	"github.com/tokentailor/tokentailor/extauthz/exchange"
	"github.com/tokentailor/tokentailor/extauthz/introspect"
	"github.com/tokentailor/tokentailor/extauthz/jwks"
	"github.com/tokentailor/tokentailor/extauthz/jwtverify"
	"github.com/tokentailor/tokentailor/extauthz/metrics"
	"github.com/tokentailor/tokentailor/extauthz/mint"
	"github.com/tokentailor/tokentailor/extauthz/policy"
	"github.com/tokentailor/tokentailor/extauthz/response"
)

// Pipeline is one immutable generation of the request path, built from one
// config by Build.
type Pipeline struct {
	// Config is the config the pipeline was built from.
	Config *config.Config
	// Credential finds the client's token.
	Credential credential.Options
	// Policy selects and authorizes routes.
	Policy *policy.Engine
	// JWT authenticates JWTs; nil when no issuer has keys.
	JWT extauthz.Authenticator
	// Opaque authenticates opaque tokens by introspection; nil when no issuer does.
	Opaque extauthz.Authenticator
	// Sources produce the upstream token, by mode.
	Sources map[extauthz.Mode]extauthz.TokenSource
	// Minter signs internal tokens and publishes their JWKS; nil when no key is configured.
	Minter *mint.Minter
	// Response builds CheckResponses.
	Response *response.Builder
	// Now is the clock.
	Now func() time.Time

	internalHeaders []string
	keySets         []*jwks.Set
}

// Ready reports whether the pipeline can serve: every issuer's keys were
// fetched at least once.
func (p *Pipeline) Ready() error {
	for _, s := range p.keySets {
		if !s.Ready() {
			return fmt.Errorf("%w: keys of an issuer not fetched yet", errNotReady)
		}
	}
	return nil
}

// JWKS returns the published keys of minted tokens.
func (p *Pipeline) JWKS() []byte {
	if p.Minter == nil {
		return []byte(`{"keys":[]}`)
	}
	return p.Minter.JWKS()
}

// Env is what a Pipeline is built with besides its config.
type Env struct {
	// Logger receives logs; nil discards them.
	Logger *slog.Logger
	// Metrics receives metrics; may be nil.
	Metrics *metrics.Metrics
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// KeySets shares issuer key sets across pipelines so a reload neither
	// refetches nor loses keys; nil makes a private one.
	KeySets *KeySets
	// Transport is the HTTP transport toward issuers; nil means a default one.
	Transport http.RoundTripper
	// Minter, when set, is used instead of keys from the config (dev mode).
	Minter *mint.Minter
}

// Build builds a pipeline from cfg: loads keys and secrets, compiles routes,
// sets up key sets (started in the background on KeySets' context) and the
// clients toward issuers. It fetches discovery metadata where endpoints must
// come from it.
func Build(ctx context.Context, cfg *config.Config, env Env) (*Pipeline, error) {
	if env.Logger == nil {
		env.Logger = slog.New(slog.DiscardHandler)
	}
	if env.Now == nil {
		env.Now = time.Now
	}
	if env.KeySets == nil {
		env.KeySets = NewKeySets(context.Background())
	}
	p := &Pipeline{
		Config:   cfg,
		Sources:  map[extauthz.Mode]extauthz.TokenSource{extauthz.ModeForward: forwardSource{}},
		Response: &response.Builder{Realm: cfg.Mint.Realm},
		Now:      env.Now,
	}
	var err error
	if p.Credential, err = credential.New(credential.Options{
		Header: cfg.Credential.Header, Scheme: *cfg.Credential.Scheme, MaxBytes: cfg.Credential.MaxBytes,
	}); err != nil {
		return nil, fmt.Errorf("credential: %w", err)
	}
	if p.Policy, err = policy.New(cfg); err != nil {
		return nil, err
	}
	for _, r := range cfg.Routes {
		if !slices.Contains(p.internalHeaders, r.Upstream.Header) {
			p.internalHeaders = append(p.internalHeaders, r.Upstream.Header)
		}
	}

	// Signing keys.
	p.Minter = env.Minter
	if p.Minter == nil && len(cfg.Mint.Keys) > 0 {
		keys := make([]*mint.Key, 0, len(cfg.Mint.Keys))
		for i, k := range cfg.Mint.Keys {
			key, err := mint.LoadKey(cfg.Path(k.File), k.Kid)
			if err != nil {
				return nil, fmt.Errorf("mint.keys[%d]: %w", i, err)
			}
			keys = append(keys, key)
		}
		p.Minter, err = mint.New(mint.Options{
			Issuer: cfg.Mint.Issuer, Keys: keys, SigningKeyID: cfg.Mint.SigningKey,
			CacheEntries: cfg.Cache.MaxEntries, Now: env.Now, Metrics: env.Metrics,
		})
		if err != nil {
			return nil, fmt.Errorf("mint: %w", err)
		}
	}
	if p.Minter != nil {
		p.Sources[extauthz.ModeMint] = p.Minter
	}

	// Issuers.
	var verifierIssuers []jwtverify.Issuer
	exchangers := map[string]*exchange.Exchanger{}
	for i := range cfg.Issuers {
		is := &cfg.Issuers[i]
		field := fmt.Sprintf("issuers[%d]", i)
		client := &http.Client{
			Timeout: is.HTTPTimeout.Duration, Transport: env.Transport,
			// Never follow redirects: a 307/308 would re-send the form (the
			// user's token, client secrets) to wherever it points.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		var meta discovery.Metadata
		needMeta := is.Discovery && ((is.Introspection != nil && is.Introspection.Endpoint == "") || (is.TokenEndpoint == "" && is.Client != nil))
		if needMeta {
			mctx, cancel := context.WithTimeout(ctx, is.HTTPTimeout.Duration)
			// The document must name this issuer (RFC 8414 §3.3): endpoints
			// from another realm's metadata would receive users' tokens.
			meta, err = discovery.FetchIssuer(mctx, client, is.Issuer, is.DiscoveryURL)
			cancel()
			env.Metrics.IssuerCall(is.Issuer, "discovery", err)
			if err != nil {
				return nil, fmt.Errorf("%s: discovery: %w", field, err)
			}
		}
		var keys *jwks.Set
		if is.JWKSURL != "" || is.Discovery {
			keys, err = env.KeySets.Get(jwks.Options{
				Issuer: is.Issuer, URL: is.JWKSURL, DiscoveryURL: is.DiscoveryURL,
				RefreshInterval: is.JWKSRefresh.Duration, MinRefetchInterval: is.JWKSMinRefetch.Duration,
				Client: client, Now: env.Now, Logger: env.Logger, Metrics: env.Metrics,
			})
			if err != nil {
				return nil, fmt.Errorf("%s: %w", field, err)
			}
			p.keySets = append(p.keySets, keys)
		}
		// An issuer verifies JWTs when it has keys; an issuer of opaque
		// tokens only (introspection, no JWKS) does not.
		if keys != nil || is.HMACSecret != nil {
			vi := jwtverify.Issuer{
				Issuer: is.Issuer, Audiences: is.Audiences, Algorithms: is.Algorithms,
				ClockSkew: is.ClockSkew.Duration, RequiredType: is.RequiredType, ScopeClaims: is.ScopeClaims,
			}
			if keys != nil {
				vi.Keys = keys
			}
			if is.HMACSecret != nil {
				if vi.HMACSecret, err = cfg.ReadSecret(is.HMACSecret); err != nil {
					return nil, fmt.Errorf("%s.hmac_secret: %w", field, err)
				}
			}
			verifierIssuers = append(verifierIssuers, vi)
		}

		var auth clientauth.Method
		if cl := is.Client; cl != nil {
			o := clientauth.Options{Method: cl.AuthMethod, ClientID: cl.ID, KeyFile: cfg.Path(cl.PrivateKeyFile), Now: env.Now}
			if cl.Secret != nil {
				secret, err := cfg.ReadSecret(cl.Secret)
				if err != nil {
					return nil, fmt.Errorf("%s.client.secret: %w", field, err)
				}
				o.Secret = string(secret)
			}
			if auth, err = clientauth.New(o); err != nil {
				return nil, fmt.Errorf("%s.client: %w", field, err)
			}
		}
		if in := is.Introspection; in != nil {
			endpoint := in.Endpoint
			if endpoint == "" {
				endpoint = meta.IntrospectionEndpoint
			}
			if endpoint == "" {
				return nil, fmt.Errorf("%s.introspection.endpoint: not set and the issuer's metadata has no introspection_endpoint", field)
			}
			o := introspect.Options{
				Issuer: is.Issuer, Endpoint: endpoint, Auth: auth, Audiences: is.Audiences, ScopeClaims: is.ScopeClaims,
				JWTResponse: in.JWTResponse, Client: client, MaxCacheTTL: in.MaxCacheTTL.Duration, NegativeTTL: in.NegativeTTL.Duration,
				CacheEntries: cfg.Cache.MaxEntries, MaxInFlight: in.MaxInFlight, Now: env.Now, Logger: env.Logger, Metrics: env.Metrics,
				Timeout: is.HTTPTimeout.Duration, Leeway: is.ClockSkew.Duration, MaxTokenBytes: cfg.Credential.MaxBytes,
			}
			if keys != nil {
				o.Keys = keys
			}
			intro, err := introspect.New(o)
			if err != nil {
				return nil, fmt.Errorf("%s.introspection: %w", field, err)
			}
			p.Opaque = intro
		}
		tokenEndpoint := is.TokenEndpoint
		if tokenEndpoint == "" {
			tokenEndpoint = meta.TokenEndpoint
		}
		if tokenEndpoint != "" && auth != nil {
			ex, err := exchange.New(exchange.Options{
				Issuer: is.Issuer, TokenEndpoint: tokenEndpoint, Auth: auth, Client: client,
				Timeout: is.HTTPTimeout.Duration, CacheEntries: cfg.Cache.MaxEntries, Now: env.Now, Metrics: env.Metrics, Logger: env.Logger,
			})
			if err != nil {
				return nil, fmt.Errorf("%s: token exchange: %w", field, err)
			}
			exchangers[is.Issuer] = ex
		}
	}
	if len(verifierIssuers) > 0 {
		v, err := jwtverify.New(jwtverify.Options{
			Issuers: verifierIssuers, MaxTokenBytes: cfg.Credential.MaxBytes, CacheEntries: cfg.Cache.MaxEntries,
			Now: env.Now, Metrics: env.Metrics,
		})
		if err != nil {
			return nil, fmt.Errorf("issuers: %w", err)
		}
		p.JWT = v
		p.Sources[extauthz.ModeEmbedded] = &embeddedSource{verifier: v}
	}
	if len(exchangers) > 0 {
		p.Sources[extauthz.ModeExchange] = exchangeRouter(exchangers)
	}
	if err := p.checkModes(); err != nil {
		return nil, err
	}
	return p, nil
}

// checkModes makes sure every route's mode can be served by this pipeline.
func (p *Pipeline) checkModes() error {
	var errs []error
	for i, r := range p.Config.Routes {
		if r.Public {
			continue
		}
		m := extauthz.Mode(r.Upstream.Mode)
		if p.Sources[m] != nil {
			continue
		}
		why := map[extauthz.Mode]string{
			extauthz.ModeMint:     "needs mint.keys",
			extauthz.ModeExchange: "needs an issuer with a client and a token endpoint",
			extauthz.ModeEmbedded: "needs an issuer that verifies JWTs",
		}[m]
		errs = append(errs, fmt.Errorf("routes[%d].upstream.mode: %s %s", i, m, why))
	}
	return errors.Join(errs...)
}

// forwardSource hands the validated incoming token on unchanged.
type forwardSource struct{}

func (forwardSource) Token(_ context.Context, p *extauthz.Principal, _ *extauthz.Grant) (extauthz.Token, error) {
	return extauthz.Token{Value: p.Credential.Raw, ExpiresAt: p.ExpiresAt}, nil
}

// exchangeRouter sends each exchange to the issuer the route names, else to
// the issuer of the incoming token.
type exchangeRouter map[string]*exchange.Exchanger

func (r exchangeRouter) Token(ctx context.Context, p *extauthz.Principal, g *extauthz.Grant) (extauthz.Token, error) {
	iss := p.Issuer
	if g.Exchange != nil && g.Exchange.Issuer != "" {
		iss = g.Exchange.Issuer
	}
	ex := r[iss]
	if ex == nil {
		return extauthz.Token{}, fmt.Errorf("%w: issuer %q has no token endpoint for exchange", extauthz.ErrExchangeRefused, iss)
	}
	return ex.Token(ctx, p, g)
}

// embeddedSource picks the JWT for the route's audience out of a claim of
// the incoming token and verifies it as a token in its own right.
type embeddedSource struct {
	verifier *jwtverify.Verifier
}

func (s *embeddedSource) Token(ctx context.Context, p *extauthz.Principal, g *extauthz.Grant) (extauthz.Token, error) {
	raw, ok := embeddedFor(p.Claims[g.EmbeddedClaim], g.Audience)
	if !ok {
		return extauthz.Token{}, fmt.Errorf("%w %q", extauthz.ErrNoEmbeddedToken, g.Audience)
	}
	inner, err := s.verifier.VerifyForAudience(ctx, raw, []string{g.Audience})
	if err != nil {
		if errors.Is(err, extauthz.ErrKeysUnavailable) || errors.Is(err, extauthz.ErrIssuerUnavailable) {
			return extauthz.Token{}, err // not the token's fault: 503
		}
		// The client's token is valid; what it carries for this route is not: 403.
		return extauthz.Token{}, fmt.Errorf("%w: embedded token for %q: %v", extauthz.ErrNoEmbeddedToken, g.Audience, err)
	}
	for _, sc := range inner.Scopes {
		// Invariant 2: the upstream's scopes are within incoming ∩ route.
		if !slices.Contains(g.Scopes, sc) {
			return extauthz.Token{}, fmt.Errorf("%w: embedded token for %q carries scope %q beyond the route's scopes the client holds", extauthz.ErrNoEmbeddedToken, g.Audience, sc)
		}
	}
	exp := inner.ExpiresAt
	if !p.ExpiresAt.IsZero() && exp.After(p.ExpiresAt) {
		// The embedded token outlives its carrier: refuse it rather than
		// hand the upstream a longer-lived token than the client had.
		return extauthz.Token{}, fmt.Errorf("%w: embedded token outlives the incoming token", extauthz.ErrNoEmbeddedToken)
	}
	return extauthz.Token{Value: raw, ExpiresAt: exp}, nil
}

// embeddedFor finds the token for aud in v: a map from audience to JWT, or a
// list of objects {"aud": …, "token": …}.
func embeddedFor(v any, aud string) (string, bool) {
	switch x := v.(type) {
	case map[string]any:
		s, ok := x[aud].(string)
		return s, ok && s != ""
	case []any:
		for _, e := range x {
			m, ok := e.(map[string]any)
			if !ok {
				continue
			}
			if a, _ := m["aud"].(string); a == aud {
				s, ok := m["token"].(string)
				return s, ok && s != ""
			}
		}
	}
	return "", false
}

// KeySets shares issuer key sets between pipelines, keyed by their settings,
// so that a reload keeps the keys it has.
type KeySets struct {
	ctx  context.Context
	mu   sync.Mutex
	sets map[string]*keySetEntry
}

type keySetEntry struct {
	set    *jwks.Set
	cancel context.CancelFunc
}

// NewKeySets returns a registry whose key sets refresh until ctx ends.
func NewKeySets(ctx context.Context) *KeySets {
	return &KeySets{ctx: ctx, sets: map[string]*keySetEntry{}}
}

func keySetID(o jwks.Options) string {
	b, _ := json.Marshal([]any{o.Issuer, o.URL, o.DiscoveryURL, o.RefreshInterval, o.MinRefetchInterval, o.Client.Timeout})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// Get returns the running set for o, starting one when none runs yet.
func (k *KeySets) Get(o jwks.Options) (*jwks.Set, error) {
	id := keySetID(o)
	k.mu.Lock()
	defer k.mu.Unlock()
	if e := k.sets[id]; e != nil {
		return e.set, nil
	}
	s, err := jwks.New(o)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(k.ctx)
	go s.Run(ctx)
	k.sets[id] = &keySetEntry{set: s, cancel: cancel}
	return s, nil
}

// Keep stops every set not used by p.
func (k *KeySets) Keep(p *Pipeline) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for id, e := range k.sets {
		if !slices.Contains(p.keySets, e.set) {
			e.cancel()
			delete(k.sets, id)
		}
	}
}
