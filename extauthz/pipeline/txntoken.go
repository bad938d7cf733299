package pipeline

import (
	"fmt"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/config"
	"github.com/tokentailor/tokentailor/extauthz/credential"
	"github.com/tokentailor/tokentailor/extauthz/exchange"
	"github.com/tokentailor/tokentailor/extauthz/jwks"
	"github.com/tokentailor/tokentailor/extauthz/mint"
	"github.com/tokentailor/tokentailor/extauthz/txntoken"
)

// txnServiceLabel names the external Txn-Token Service in metrics and logs.
const txnServiceLabel = "txn_token_service"

// txnStages is what the txn_token block provides: the token source of
// upstream mode txn_token, the authenticator of routes that accept a
// Txn-Token, and the TTS's key set (for readiness).
type txnStages struct {
	source  extauthz.TokenSource
	authn   extauthz.Authenticator
	keySet  *usedKeySet
	maxSize int
}

// buildTxnToken builds the Txn-Token stages of cfg.TxnToken: a minter on the
// minter's signing key, or the external TTS (txn_token_service) through an
// RFC 8693 client; a verifier on tokentailor's own keys and txn_token's
// JWKS. Nothing is built without a trust domain.
func buildTxnToken(cfg *config.Config, env Env, m *mint.Minter) (txnStages, error) {
	t := &cfg.TxnToken
	out := txnStages{maxSize: cfg.Credential.MaxBytes}
	if t.TrustDomain == "" {
		return out, nil
	}
	var keys txntoken.Keys
	if m != nil {
		keys = append(keys, txntoken.KeysOf(m.Options().Keys...))
	}
	if t.JWKSURL != "" {
		o := jwks.Options{
			Issuer: txnServiceLabel, URL: t.JWKSURL,
			RefreshInterval: config.DefaultJWKSRefresh, MinRefetchInterval: config.DefaultJWKSMinRefetch,
			Client: issuerClient(&config.Issuer{HTTPTimeout: txnHTTPTimeout(cfg)}, env), Now: env.Now, Logger: env.Logger, Metrics: env.Metrics,
		}
		set, err := env.KeySets.Get(o)
		if err != nil {
			return out, fmt.Errorf("txn_token.jwks_url: %w", err)
		}
		out.keySet = &usedKeySet{set: set, opts: o}
		keys = append(keys, set)
	}
	var v *txntoken.Verifier
	if len(keys) > 0 {
		var err error
		if v, err = txntoken.NewVerifier(txntoken.VerifierOptions{
			TrustDomain: t.TrustDomain, Keys: keys, Leeway: t.Leeway.Duration, MaxBytes: cfg.Credential.MaxBytes, Now: env.Now,
		}); err != nil {
			return out, fmt.Errorf("txn_token: %w", err)
		}
		out.authn = &txntoken.Authenticator{Verifier: v}
	}
	src := &txntoken.Source{RequestIDHeader: t.RequestIDHeader, Context: t.Context}
	if cfg.TxnTokenService != nil {
		svc, err := txnService(cfg, env, v)
		if err != nil {
			return out, err
		}
		src.Service = svc
		out.source = src
		return out, nil
	}
	if m == nil || t.Workload == "" {
		return out, nil
	}
	tm, err := txntoken.NewMinter(txntoken.MinterOptions{
		TrustDomain: t.TrustDomain, Issuer: cfg.Mint.Issuer, Key: m.SigningKey(),
		TTL: t.TTL.Duration, Workload: t.Workload, Context: t.Context, Now: env.Now,
	})
	if err != nil {
		return out, fmt.Errorf("txn_token: %w", err)
	}
	src.Minter = tm
	out.source = src
	return out, nil
}

// txnService is the external TTS client: extauthz/exchange's Exchanger (its
// client authentication, timeout, body bound and error mapping) used
// without its cache, since every Txn-Token is one transaction's.
func txnService(cfg *config.Config, env Env, v *txntoken.Verifier) (*txntoken.Service, error) {
	t := &cfg.TxnToken
	s := cfg.TxnTokenService
	is := &config.Issuer{Issuer: txnServiceLabel, Client: &s.Client, HTTPTimeout: s.HTTPTimeout}
	auth, err := clientAuth(cfg, is, env)
	if err != nil {
		return nil, fmt.Errorf("txn_token_service.client: %w", err)
	}
	ex, err := exchange.New(exchange.Options{
		Issuer: txnServiceLabel, TokenEndpoint: s.TokenEndpoint, Auth: auth, Client: issuerClient(is, env),
		Timeout: s.HTTPTimeout.Duration, CacheEntries: 1, Now: env.Now, Metrics: env.Metrics, Logger: env.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("txn_token_service: %w", err)
	}
	if v == nil {
		return nil, fmt.Errorf("txn_token_service: needs txn_token.jwks_url to verify the TTS's Txn-Tokens")
	}
	svc, err := txntoken.NewService(t.TrustDomain, ex, v)
	if err != nil {
		return nil, fmt.Errorf("txn_token_service: %w", err)
	}
	return svc, nil
}

// txnHTTPTimeout bounds a call for txn_token's JWKS: the TTS's timeout when
// one is configured, else the issuers' default.
func txnHTTPTimeout(cfg *config.Config) config.Duration {
	if cfg.TxnTokenService != nil {
		return cfg.TxnTokenService.HTTPTimeout
	}
	return config.Duration{Duration: config.DefaultHTTPTimeout}
}

// acceptTxnToken makes rt take its credential from the Txn-Token header
// and verify it as a Txn-Token (route accept: txn_token). Any other
// credential kind on such a route is refused (no opaque authenticator).
func (t *txnStages) acceptTxnToken(rt *route, c *config.Route) error {
	if c == nil || c.Accept != config.AcceptTxnToken {
		return nil
	}
	if t.authn == nil {
		return fmt.Errorf("accept: txn_token needs txn_token.trust_domain and keys (mint.keys or txn_token.jwks_url)")
	}
	opts, err := credential.New(credential.Options{Header: txntoken.HeaderName, MaxBytes: t.maxSize})
	if err != nil {
		return fmt.Errorf("accept: %w", err)
	}
	rt.credential = &opts
	rt.jwt, rt.opaque = t.authn, nil
	return nil
}
