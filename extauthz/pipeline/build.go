package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/clientauth"
	"github.com/tokentailor/tokentailor/extauthz/config"
	"github.com/tokentailor/tokentailor/extauthz/credential"
	"github.com/tokentailor/tokentailor/extauthz/discovery"
	"github.com/tokentailor/tokentailor/extauthz/dpop"
	"github.com/tokentailor/tokentailor/extauthz/exchange"
	"github.com/tokentailor/tokentailor/extauthz/introspect"
	"github.com/tokentailor/tokentailor/extauthz/jwks"
	"github.com/tokentailor/tokentailor/extauthz/jwtverify"
	"github.com/tokentailor/tokentailor/extauthz/metrics"
	"github.com/tokentailor/tokentailor/extauthz/mint"
	"github.com/tokentailor/tokentailor/extauthz/policy"
	"github.com/tokentailor/tokentailor/extauthz/response"
	"github.com/tokentailor/tokentailor/extauthz/upstream"
)

// Build builds a pipeline from cfg: loads keys and secrets, sets up the
// issuers (key sets and the discovery metadata endpoints come from, both
// fetched in the background on KeySets' contexts; clients toward issuers),
// the minter, and compiles every route to its own stages. It makes no call
// to an issuer: one that is down at start makes the pipeline not ready
// (Ready), never a failed build.
func Build(ctx context.Context, cfg *config.Config, env Env) (_ *Pipeline, err error) {
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
		Response: &response.Builder{Realm: cfg.Mint.Realm, InternalHeaders: internalHeaders(cfg), CredentialHeader: cfg.Credential.Header},
		Now:      env.Now,
	}
	defer func() {
		if err != nil {
			p.Close() // a half-built pipeline stops listening to revocations
		}
	}()
	if p.Credential, err = credential.New(credential.Options{
		Header: cfg.Credential.Header, Scheme: *cfg.Credential.Scheme, MaxBytes: cfg.Credential.MaxBytes,
	}); err != nil {
		return nil, fmt.Errorf("credential: %w", err)
	}
	if p.Policy, err = policy.New(cfg); err != nil {
		return nil, err
	}
	if p.Minter, err = buildMinter(cfg, env); err != nil {
		return nil, err
	}
	is, err := buildIssuers(cfg, env)
	if err != nil {
		return nil, err
	}
	p.keySets, p.resolvers, p.endpoints, p.closers = is.keySets, is.resolvers, is.endpoints, is.closers
	st := is.stages
	if p.Minter != nil {
		st.mint = p.Minter
	}
	if st.txnIn, err = buildTxnToken(cfg, env, p.Minter); err != nil {
		return nil, err
	}
	if st.txn = st.txnIn.source; st.txnIn.keySet != nil {
		p.keySets = append(p.keySets, *st.txnIn.keySet)
	}
	dv, err := buildDPoP(cfg, env.DPoPReplay, env.Now)
	if err != nil {
		return nil, err
	}
	if dv != nil {
		p.Credential.DPoP = true
		p.Response.DPoP = dv
		p.Response.ConsumedHeaders = []string{dpopHeader}
	}
	if p.routes, err = compileRoutes(cfg, p.Policy, &st, dv, env.Metrics); err != nil {
		return nil, err
	}
	return p, nil
}

// internalHeaders lists the internal token header of every route, once each.
func internalHeaders(cfg *config.Config) []string {
	var hs []string
	for _, r := range cfg.Routes {
		if !slices.Contains(hs, r.Upstream.Header) {
			hs = append(hs, r.Upstream.Header)
		}
	}
	return hs
}

// buildMinter loads the signing keys of cfg.Mint; nil when there are none.
// env.Minter, when set, is used instead (dev mode).
func buildMinter(cfg *config.Config, env Env) (*mint.Minter, error) {
	if env.Minter != nil || len(cfg.Mint.Keys) == 0 {
		return env.Minter, nil
	}
	keys := make([]*mint.Key, 0, len(cfg.Mint.Keys))
	for i, k := range cfg.Mint.Keys {
		key, err := mint.LoadKey(cfg.Path(k.File), k.Kid)
		if err != nil {
			return nil, fmt.Errorf("mint.keys[%d]: %w", i, err)
		}
		keys = append(keys, key)
	}
	m, err := mint.New(mint.Options{
		Issuer: cfg.Mint.Issuer, Keys: keys, SigningKeyID: cfg.Mint.SigningKey,
		CacheEntries: cfg.Cache.MaxEntries, Now: env.Now, Metrics: env.Metrics,
	})
	if err != nil {
		return nil, fmt.Errorf("mint: %w", err)
	}
	return m, nil
}

// compileRoutes gives every route of cfg its stages. A route whose mode the
// stages cannot serve fails the build, all such routes named at once.
// Each route's decision counters are resolved here, once (nil metrics: none).
func compileRoutes(cfg *config.Config, pol *policy.Engine, st *stages, dv *dpop.Verifier, m *metrics.Metrics) (map[*policy.Route]*route, error) {
	routes := make(map[*policy.Route]*route, len(cfg.Routes))
	var errs []error
	for i, pr := range pol.Routes() {
		rt := &route{decisions: m.Route(pr.Name)}
		c := cfg.Route(pr.Name)
		if !pr.Public {
			var accepts []string
			if c != nil {
				accepts = c.Issuers
			}
			var err error
			if rt.jwt, rt.opaque, err = st.authenticators(accepts); err != nil {
				errs = append(errs, fmt.Errorf("routes[%d].issuers: %w", i, err))
			}
			if err := st.txnIn.acceptTxnToken(rt, c); err != nil {
				errs = append(errs, fmt.Errorf("routes[%d].%w", i, err))
			}
		}
		if c != nil {
			mode, err := dpop.ParseMode(c.SenderConstraint)
			if err != nil {
				errs = append(errs, fmt.Errorf("routes[%d]: %w", i, err))
			}
			rt.binding = binding{mode: mode, origin: c.DPoPOrigin}
			if mode != dpop.ModeOff {
				rt.binding.dpop = dv
			}
		}
		routes[pr] = rt
		if pr.Public {
			continue
		}
		m := pr.Grant().Mode
		src, why := st.source(m)
		if src == nil {
			errs = append(errs, fmt.Errorf("routes[%d].upstream.mode: %s %s", i, m, why))
			continue
		}
		rt.source = src
		rt.withRequest = m == extauthz.ModeTxnToken
	}
	return routes, errors.Join(errs...)
}

// issuers is what the configured issuers provide to routes.
type issuers struct {
	stages
	keySets   []usedKeySet
	resolvers []usedResolver
	endpoints []metadataEndpoint
	closers   []func() // introspectors' Close
}

// buildIssuers sets up every issuer: its key set, its part of the JWT
// verifier, its introspector and its token exchanger.
func buildIssuers(cfg *config.Config, env Env) (issuers, error) {
	var out issuers
	var verifierIssuers []jwtverify.Issuer
	exchangers := upstream.Exchange{}
	for i := range cfg.Issuers {
		b, err := buildIssuer(cfg, env, i)
		if err != nil {
			for _, c := range out.closers {
				c()
			}
			return issuers{}, err
		}
		if b.keys != nil {
			out.keySets = append(out.keySets, *b.keys)
		}
		if b.resolver != nil {
			out.resolvers = append(out.resolvers, *b.resolver)
		}
		out.endpoints = append(out.endpoints, b.endpoints...)
		if b.verifier != nil {
			verifierIssuers = append(verifierIssuers, *b.verifier)
			out.jwtIssuers = append(out.jwtIssuers, b.verifier.Issuer)
		}
		if b.introspector != nil {
			x := introspecting{issuer: cfg.Issuers[i].Issuer, authn: b.introspector}
			if sh := cfg.Issuers[i].Introspection.TokenShape; sh != nil {
				x.prefix = sh.Prefix
			}
			out.introspectors = append(out.introspectors, x)
			out.closers = append(out.closers, b.introspector.Close)
		}
		if b.exchanger != nil {
			exchangers[cfg.Issuers[i].Issuer] = b.exchanger
		}
	}
	if len(verifierIssuers) > 0 {
		v, err := jwtverify.New(jwtverify.Options{
			Issuers: verifierIssuers, MaxTokenBytes: cfg.Credential.MaxBytes, CacheEntries: cfg.Cache.MaxEntries,
			Now: env.Now, Metrics: env.Metrics,
		})
		if err != nil {
			for _, c := range out.closers {
				c()
			}
			return issuers{}, fmt.Errorf("issuers: %w", err)
		}
		out.jwt = v
		out.embedded = &upstream.Embedded{Verifier: v}
	}
	if len(exchangers) > 0 {
		out.exchange = exchangers
	}
	return out, nil
}

// builtIssuer is what one issuer contributes; nil fields it does not.
type builtIssuer struct {
	keys         *usedKeySet
	resolver     *usedResolver
	endpoints    []metadataEndpoint
	verifier     *jwtverify.Issuer
	introspector *introspect.Introspector
	exchanger    *exchange.Exchanger
}

// buildIssuer sets up cfg.Issuers[i].
func buildIssuer(cfg *config.Config, env Env, i int) (builtIssuer, error) {
	is := &cfg.Issuers[i]
	field := fmt.Sprintf("issuers[%d]", i)
	var out builtIssuer
	client := issuerClient(is, env)
	needIntrospection := is.Discovery && is.Introspection != nil && is.Introspection.Endpoint == ""
	needToken := is.Discovery && is.TokenEndpoint == "" && is.Client != nil
	var res *discovery.Resolver
	if needIntrospection || needToken {
		// Endpoints come from the issuer's metadata: found in the
		// background and asked for per request, so an issuer down at start
		// makes the pipeline not ready (and its requests 503) instead of
		// failing the build.
		res = env.KeySets.Resolver(discovery.ResolverOptions{
			Issuer: is.Issuer, URL: is.DiscoveryURL, Client: client, Now: env.Now, Logger: env.Logger, Metrics: env.Metrics,
		})
		out.resolver = &usedResolver{r: res, client: client}
		if needIntrospection {
			out.endpoints = append(out.endpoints, metadataEndpoint{field: field + ".introspection.endpoint", get: res.IntrospectionEndpoint})
		}
		if needToken && exchangesWith(cfg, is.Issuer) {
			out.endpoints = append(out.endpoints, metadataEndpoint{field: field + ".token_endpoint", get: res.TokenEndpoint})
		}
	}
	if is.JWKSURL != "" || is.Discovery {
		o := jwks.Options{
			Issuer: is.Issuer, URL: is.JWKSURL, DiscoveryURL: is.DiscoveryURL,
			RefreshInterval: is.JWKSRefresh.Duration, MinRefetchInterval: is.JWKSMinRefetch.Duration,
			Client: client, Now: env.Now, Logger: env.Logger, Metrics: env.Metrics,
		}
		set, err := env.KeySets.Get(o)
		if err != nil {
			return out, fmt.Errorf("%s: %w", field, err)
		}
		out.keys = &usedKeySet{set: set, opts: o}
	}
	var keys *jwks.Set
	if out.keys != nil {
		keys = out.keys.set
	}
	var err error
	if out.verifier, err = verifierIssuer(cfg, is, keys); err != nil {
		return out, fmt.Errorf("%s.hmac_secret: %w", field, err)
	}
	auth, err := clientAuth(cfg, is, env)
	if err != nil {
		if env.ClientCredentialsMissing == nil {
			return out, fmt.Errorf("%s.client: %w", field, err)
		}
		env.ClientCredentialsMissing(field+".client", err)
		auth = unloadedClient{id: is.Client.ID, field: field + ".client"}
	}
	var introspectionEndpoint, tokenEndpoint func(context.Context) (string, error)
	if needIntrospection {
		introspectionEndpoint = res.IntrospectionEndpoint
	}
	if needToken {
		tokenEndpoint = res.TokenEndpoint
	}
	if out.introspector, err = introspector(cfg, is, env, client, auth, introspectionEndpoint, keys, field+".introspection"); err != nil {
		return out, err
	}
	if out.exchanger, err = exchanger(cfg, is, env, client, auth, tokenEndpoint); err != nil {
		if out.introspector != nil {
			out.introspector.Close()
		}
		return out, fmt.Errorf("%s: token exchange: %w", field, err)
	}
	return out, nil
}

// exchangesWith reports whether a route may exchange tokens at issuer: a
// route in mode exchange that names it, or names none (the incoming token's
// issuer).
func exchangesWith(cfg *config.Config, issuer string) bool {
	for _, r := range cfg.Routes {
		u := r.Upstream
		if !r.Public && u.Mode == string(extauthz.ModeExchange) && (u.Exchange == nil || u.Exchange.Issuer == "" || u.Exchange.Issuer == issuer) {
			return true
		}
	}
	return false
}

// issuerClient is the HTTP client toward one issuer: http_timeout bounds
// each of its calls.
func issuerClient(is *config.Issuer, env Env) *http.Client {
	return &http.Client{
		Timeout: is.HTTPTimeout.Duration, Transport: env.Transport,
		// Never follow redirects: a 307/308 would re-send the form (the
		// user's token, client secrets) to wherever it points.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// verifierIssuer is the issuer's part of the JWT verifier, nil when it
// verifies no JWTs: an issuer of opaque tokens only (introspection, no JWKS)
// does not.
func verifierIssuer(cfg *config.Config, is *config.Issuer, keys *jwks.Set) (*jwtverify.Issuer, error) {
	if keys == nil && is.HMACSecret == nil {
		return nil, nil
	}
	vi := &jwtverify.Issuer{
		Issuer: is.Issuer, Audiences: is.Audiences, Algorithms: is.Algorithms,
		ClockSkew: is.ClockSkew.Duration, RequiredType: is.RequiredType, AllowMissingSub: is.AllowMissingSub,
		ScopeClaims: is.ScopeClaims,
	}
	if keys != nil {
		vi.Keys = keys
	}
	if is.HMACSecret != nil {
		var err error
		if vi.HMACSecret, err = cfg.ReadSecret(is.HMACSecret); err != nil {
			return nil, err
		}
	}
	return vi, nil
}

// clientAuth is how tokentailor authenticates to the issuer as a client; nil
// without a client.
func clientAuth(cfg *config.Config, is *config.Issuer, env Env) (clientauth.Method, error) {
	cl := is.Client
	if cl == nil {
		return nil, nil
	}
	o := clientauth.Options{Method: cl.AuthMethod, ClientID: cl.ID, KeyFile: cfg.Path(cl.PrivateKeyFile), Now: env.Now}
	if cl.Secret != nil {
		secret, err := cfg.ReadSecret(cl.Secret)
		if err != nil {
			return nil, fmt.Errorf("secret: %w", err)
		}
		o.Secret = string(secret)
	}
	return clientauth.New(o)
}

// introspector is the issuer's RFC 7662 client; nil without introspection.
// endpointFunc, when set, gives the endpoint per call (from metadata). Its
// errors name field, the issuer's introspection block.
func introspector(cfg *config.Config, is *config.Issuer, env Env, client *http.Client, auth clientauth.Method, endpointFunc func(context.Context) (string, error), keys *jwks.Set, field string) (*introspect.Introspector, error) {
	in := is.Introspection
	if in == nil {
		return nil, nil
	}
	o := introspect.Options{
		Issuer: is.Issuer, Endpoint: in.Endpoint, EndpointFunc: endpointFunc, Auth: auth, Audiences: is.Audiences, ScopeClaims: is.ScopeClaims,
		JWTResponse: in.JWTResponse, Client: client, MaxCacheTTL: in.MaxCacheTTL.Duration, NegativeTTL: in.NegativeTTL.Duration,
		CacheEntries: cfg.Cache.MaxEntries, MaxInFlight: in.MaxInFlight, Now: env.Now, Logger: env.Logger, Metrics: env.Metrics,
		AudienceByServer: in.Audience == config.AudienceServer, SubjectClaims: in.SubjectClaims,
		Timeout: is.HTTPTimeout.Duration, Leeway: is.ClockSkew.Duration, MaxTokenBytes: cfg.Credential.MaxBytes,
		Shared: env.Shared,
	}
	if keys != nil {
		o.Keys = keys
	}
	o.RateLimit, o.RateBurst = in.RateLimit.PerSecond, in.RateLimit.Burst
	if sh := in.TokenShape; sh != nil {
		o.TokenShape = &introspect.Shape{Prefix: sh.Prefix, Alphabet: sh.Alphabet, Segments: sh.Segments, MinLength: sh.MinLength, MaxLength: sh.MaxLength}
	}
	intro, err := introspect.New(o)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	return intro, nil
}

// exchanger is the issuer's RFC 8693 client; nil without a client or a
// token endpoint (configured, or tokenEndpointFunc from metadata).
func exchanger(cfg *config.Config, is *config.Issuer, env Env, client *http.Client, auth clientauth.Method, tokenEndpointFunc func(context.Context) (string, error)) (*exchange.Exchanger, error) {
	if (is.TokenEndpoint == "" && tokenEndpointFunc == nil) || auth == nil {
		return nil, nil
	}
	return exchange.New(exchange.Options{
		Issuer: is.Issuer, TokenEndpoint: is.TokenEndpoint, TokenEndpointFunc: tokenEndpointFunc, Auth: auth, Client: client,
		Timeout: is.HTTPTimeout.Duration, CacheEntries: cfg.Cache.MaxEntries, Now: env.Now, Metrics: env.Metrics, Logger: env.Logger,
		Shared: env.Shared,
	})
}
