package config

import (
	"fmt"
	"slices"
)

// modeRule is what one upstream mode needs and which upstream fields it
// allows. modeRules is the one statement of these rules: validation reads
// it, and the pipeline builds a route's token source only from a config it
// passed (a source it cannot build is an internal error there, not a rule).
type modeRule struct {
	// mintKeys: a route in this mode needs mint.keys (and so mint.issuer).
	mintKeys bool
	// needs reports what the route (at field uf) or the rest of the config
	// lacks for this mode.
	needs func(c *Config, p *problems, uf string, u *Upstream)
	// embeddedIssuers, exchange and claims allow upstream.embedded_issuers,
	// upstream.exchange and upstream.copy_claims/claims.
	embeddedIssuers, exchange, claims bool
}

// modeRules maps each upstream mode to its rule.
func modeRules() map[string]modeRule {
	return map[string]modeRule{
		"mint":      {mintKeys: true, needs: needsMint, claims: true},
		"forward":   {needs: func(*Config, *problems, string, *Upstream) {}},
		"exchange":  {needs: needsExchange, exchange: true},
		"embedded":  {needs: needsEmbedded, embeddedIssuers: true},
		"txn_token": {needs: needsTxnToken},
	}
}

// Modes lists the upstream modes a route may name, sorted.
func Modes() []string {
	rules := modeRules()
	out := make([]string, 0, len(rules))
	for m := range rules {
		out = append(out, m)
	}
	slices.Sort(out)
	return out
}

// validateMode checks what the route's mode needs and that it sets no field
// of another mode.
func (c *Config) validateMode(p *problems, uf string, u *Upstream) {
	rule, ok := modeRules()[u.Mode]
	if !ok {
		p.add(uf+".mode", "%q is not mint, forward, exchange, embedded or txn_token", u.Mode)
	} else {
		rule.needs(c, p, uf, u)
	}
	if len(u.EmbeddedIssuers) > 0 && !rule.embeddedIssuers {
		p.add(uf+".embedded_issuers", "only for mode embedded")
	}
	if u.Exchange != nil && !rule.exchange {
		p.add(uf+".exchange", "only for mode exchange")
	}
	if !rule.claims && (len(u.CopyClaims) > 0 || len(u.Claims) > 0) {
		p.add(uf, "copy_claims and claims only apply to mode mint")
	}
}

// needsMintKeys reports whether some route's mode signs with mint.keys.
func (c *Config) needsMintKeys() bool {
	rules := modeRules()
	for _, r := range c.Routes {
		if !r.Public && rules[r.Upstream.Mode].mintKeys {
			return true
		}
	}
	return false
}

func needsMint(_ *Config, p *problems, uf string, u *Upstream) {
	if u.Audience == "" {
		p.add(uf+".audience", "required for mode mint: least privilege starts with a narrow audience")
	}
}

func needsExchange(c *Config, p *problems, uf string, u *Upstream) {
	if u.Audience == "" && u.Exchange.Resource == "" {
		p.add(uf+".audience", "required for mode exchange (or set exchange.resource)")
	}
	if u.Exchange.Issuer != "" && !c.hasIssuer(u.Exchange.Issuer) {
		p.add(uf+".exchange.issuer", "%q names no configured issuer", u.Exchange.Issuer)
	}
	if !slices.ContainsFunc(c.Issuers, func(is Issuer) bool { return is.exchanges() }) {
		p.add(uf+".mode", "exchange needs an issuer with a client and a token endpoint (token_endpoint or discovery)")
	}
	for _, t := range []struct{ name, v string }{
		{"subject_token_type", u.Exchange.SubjectTokenType}, {"requested_token_type", u.Exchange.RequestedTokenType},
	} {
		if !isTokenTypeURI(t.v) {
			p.add(uf+".exchange."+t.name, "%q is not a token type URI (e.g. urn:ietf:params:oauth:token-type:access_token)", t.v)
		}
	}
}

func needsEmbedded(c *Config, p *problems, uf string, u *Upstream) {
	if u.Audience == "" {
		p.add(uf+".audience", "required for mode embedded: it picks the embedded token")
	}
	for j, iss := range u.EmbeddedIssuers {
		if !c.hasIssuer(iss) {
			p.add(fmt.Sprintf("%s.embedded_issuers[%d]", uf, j), "%q names no configured issuer", iss)
		}
	}
	if !slices.ContainsFunc(c.Issuers, func(is Issuer) bool { return is.verifiesJWTs() }) {
		p.add(uf+".mode", "embedded needs an issuer that verifies JWTs (jwks_url, discovery or hmac_secret)")
	}
}

func needsTxnToken(c *Config, p *problems, uf string, u *Upstream) {
	if c.TxnToken.TrustDomain == "" || (c.TxnToken.Workload == "" && c.TxnTokenService == nil) {
		p.add(uf+".mode", "txn_token needs txn_token.trust_domain and txn_token.workload (or txn_token_service)")
	} else if c.TxnTokenService == nil && len(c.Mint.Keys) == 0 {
		p.add(uf+".mode", "txn_token with txn_token.workload needs mint.keys to sign with (or txn_token_service)")
	}
	if len(u.Scopes) == 0 {
		p.add(uf+".scopes", "required for mode txn_token: a Txn-Token's scope is its purpose")
	}
}

// verifiesJWTs reports whether the issuer has keys to verify JWTs with.
func (is *Issuer) verifiesJWTs() bool {
	return is.JWKSURL != "" || is.Discovery || is.HMACSecret != nil
}

// exchanges reports whether tokentailor can exchange tokens at the issuer
// (RFC 8693): it has a client and a token endpoint, set or discovered.
func (is *Issuer) exchanges() bool {
	return is.Client != nil && (is.TokenEndpoint != "" || is.Discovery)
}
