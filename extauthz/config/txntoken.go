package config

import (
	"time"
)

// Values of Route.Accept.
const (
	// AcceptAccessToken: the route takes an OAuth access token from the
	// credential header (credential.header), the default.
	AcceptAccessToken = "access_token"
	// AcceptTxnToken: the route takes a Txn-Token from the Txn-Token header
	// (draft-ietf-oauth-transaction-tokens §"Txn-Token" HTTP Header), as a
	// service inside the trust domain is called by another.
	AcceptTxnToken = "txn_token"
)

// TxnTokenHeader is the header a Txn-Token travels in, lower case.
const TxnTokenHeader = "txn-token"

// DefaultTxnTokenLeeway is the clock skew allowed on an incoming Txn-Token's
// exp and iat.
const DefaultTxnTokenLeeway = 5 * time.Second

// TxnToken configures Transaction Tokens (draft-ietf-oauth-transaction-tokens):
// those tokentailor issues (upstream mode txn_token) and those it accepts
// (routes with accept: txn_token).
type TxnToken struct {
	// TrustDomain is the aud of every Txn-Token issued and accepted
	// (required with mode txn_token or accept txn_token).
	TrustDomain string `json:"trust_domain"`
	// Workload is req_wl, the requesting workload, unless the caller's
	// certificate names a SPIFFE ID (required with mode txn_token unless
	// txn_token_service is set: the TTS then names the workload).
	Workload string `json:"workload"`
	// TTL is a Txn-Token's lifetime, never beyond the incoming token (default 1m, at most 10m).
	TTL Duration `json:"ttl"`
	// Context is tctx: immutable context claims every Txn-Token carries
	// (with txn_token_service: sent to the TTS in request_details.tctx).
	Context map[string]any `json:"context"`
	// RequestIDHeader names a request header whose value (1–128 visible
	// ASCII characters) becomes txn, e.g. x-request-id (Envoy sets it); ""
	// means a random UUID per token.
	RequestIDHeader string `json:"request_id_header"`
	// JWKSURL is the JWKS of Txn-Tokens signed elsewhere: the external
	// TTS's, or another tokentailor's. Incoming Txn-Tokens verify with
	// tokentailor's own mint.keys and with these; "" means own keys only.
	// Required with txn_token_service (its answers are verified before use).
	JWKSURL string `json:"jwks_url"`
	// Leeway is the clock skew allowed on an incoming Txn-Token's exp and
	// iat (default 5s).
	Leeway Duration `json:"leeway"`
}

// TxnTokenService is an external Transaction Token Service (TTS): upstream
// mode txn_token asks it (RFC 8693, draft §Txn-Token Request) instead of
// minting, and a route that accepts a Txn-Token asks it for the narrowed
// replacement.
type TxnTokenService struct {
	// TokenEndpoint is the TTS's RFC 8693 token endpoint (required).
	TokenEndpoint string `json:"token_endpoint"`
	// Client is how tokentailor authenticates to the TTS (required: the
	// draft makes the request mutually authenticated).
	Client Client `json:"client"`
	// HTTPTimeout bounds each call to the TTS (default 2s).
	HTTPTimeout Duration `json:"http_timeout"`
}

// applyTxnTokenDefaults fills the txn_token block's new fields.
func (c *Config) applyTxnTokenDefaults() {
	t := &c.TxnToken
	setDuration(&t.Leeway, DefaultTxnTokenLeeway)
	if s := c.TxnTokenService; s != nil {
		setDuration(&s.HTTPTimeout, DefaultHTTPTimeout)
		(&Issuer{Client: &s.Client}).defaults()
	}
}

// acceptDefaults is run on a route before its upstream's defaults: a route
// that takes a Txn-Token passes one on in the same header by default.
func (r *Route) acceptDefaults() {
	setDefault(&r.Accept, AcceptAccessToken)
	if r.Accept == AcceptTxnToken {
		setDefault(&r.Upstream.Header, TxnTokenHeader)
	}
}

// validateTxnToken checks the txn_token block's keys and service.
func (c *Config) validateTxnToken(p *problems) {
	t := &c.TxnToken
	checkURL(p, "txn_token.jwks_url", t.JWKSURL)
	checkHeaderName(p, "txn_token.request_id_header", t.RequestIDHeader)
	if d := t.Leeway.Duration; d < 0 || d > time.Minute {
		p.add("txn_token.leeway", "must be between 0 and 1m")
	}
	s := c.TxnTokenService
	if s == nil {
		return
	}
	if s.TokenEndpoint == "" {
		p.add("txn_token_service.token_endpoint", "required")
	}
	checkURL(p, "txn_token_service.token_endpoint", s.TokenEndpoint)
	if t.JWKSURL == "" {
		p.add("txn_token.jwks_url", "required with txn_token_service: the TTS's Txn-Tokens are verified before use")
	}
	if t.TrustDomain == "" {
		p.add("txn_token.trust_domain", "required with txn_token_service: it is the request's audience")
	}
	if s.HTTPTimeout.Duration <= 0 {
		p.add("txn_token_service.http_timeout", "must be positive")
	}
	(&Issuer{Client: &s.Client}).validateClient(p, "txn_token_service")
}

// validateRouteAccept checks what a route that takes a Txn-Token needs.
func (c *Config) validateRouteAccept(f string, r *Route, add func(field, format string, args ...any)) {
	switch r.Accept {
	case AcceptAccessToken:
		return
	case AcceptTxnToken:
	default:
		add(f+".accept", "%q: want access_token or txn_token", r.Accept)
		return
	}
	if r.Public {
		add(f+".accept", "a public route takes no credential")
		return
	}
	if c.TxnToken.TrustDomain == "" {
		add(f+".accept", "txn_token needs txn_token.trust_domain: a Txn-Token is accepted only for its trust domain")
	}
	if len(c.Mint.Keys) == 0 && c.TxnToken.JWKSURL == "" {
		add(f+".accept", "txn_token needs keys to verify Txn-Tokens: mint.keys (tokentailor's own) or txn_token.jwks_url")
	}
	if m := r.Upstream.Mode; m != "forward" && m != "txn_token" {
		add(f+".upstream.mode", "%q: a route that accepts a Txn-Token passes it on (forward) or narrows it (txn_token); a Txn-Token is not an access token to mint or exchange from", m)
	}
	if r.SenderConstraint != "off" && r.SenderConstraint != "" {
		add(f+".sender_constraint", "must be off with accept txn_token: a Txn-Token is not sender-constrained")
	}
	if len(r.Issuers) > 0 {
		add(f+".issuers", "not with accept txn_token: Txn-Tokens are verified with txn_token's keys, not an issuer's")
	}
}
