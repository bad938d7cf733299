package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/config"
	"github.com/tokentailor/tokentailor/extauthz/credential"
	"github.com/tokentailor/tokentailor/extauthz/dpop"
	"github.com/tokentailor/tokentailor/extauthz/metrics"
	"github.com/tokentailor/tokentailor/extauthz/mint"
	"github.com/tokentailor/tokentailor/extauthz/policy"
	"github.com/tokentailor/tokentailor/extauthz/response"
	"github.com/tokentailor/tokentailor/extauthz/txntoken"
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
	wallClock := env.Now == nil
	if wallClock {
		env.Now = time.Now
	}
	if env.KeySets == nil {
		env.KeySets = NewKeySets(context.Background())
	}
	p := &Pipeline{
		Config: cfg,
		Response: &response.Builder{Realm: cfg.Mint.Realm, InternalHeaders: internalHeaders(cfg), CredentialHeader: cfg.Credential.Header,
			Encode: env.EncodeAnswer},
		Now:       env.Now,
		wallClock: wallClock,
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
	dv, err := buildDPoP(cfg, env.DPoPReplay, env.Shared, env.Now)
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
	if p.RevocationPush, err = buildRevocationPush(cfg, is.keySets, env); err != nil {
		return nil, err
	}
	return p, nil
}

// internalHeaders lists the internal token header of every route, once
// each, and always the Txn-Token header: only tokentailor may hand an
// upstream a Txn-Token, so one a client sent is removed on every route that
// does not set it, whether or not a route of this config issues them.
func internalHeaders(cfg *config.Config) []string {
	hs := []string{txntoken.HeaderName}
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
		src, err := st.source(m)
		if err != nil {
			errs = append(errs, fmt.Errorf("routes[%d].upstream.mode: %w", i, err))
			continue
		}
		rt.source = src
		rt.withRequest = m == extauthz.ModeTxnToken
		// A Txn-Token is made per request, and a forwarded token is the
		// client's own, which a cached principal does not keep: neither
		// answer is worth keeping (AllowFor).
		rt.keepAnswer = m != extauthz.ModeTxnToken && m != extauthz.ModeForward
		rt.warm = newWarmLane(pr, rt, st)
	}
	return routes, errors.Join(errs...)
}
