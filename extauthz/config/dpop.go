package config

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// DPoP defaults (RFC 9449; see extauthz/dpop for why these values).
const (
	// DefaultDPoPMaxAge bounds how old a proof's iat may be.
	DefaultDPoPMaxAge = 60 * time.Second
	// DefaultDPoPLeeway bounds how far in the future iat may be.
	DefaultDPoPLeeway = 5 * time.Second
	// DefaultDPoPReplayEntries bounds the replay cache.
	DefaultDPoPReplayEntries = 100_000
	// DefaultDPoPNonceLifetime is how long a server nonce is accepted.
	DefaultDPoPNonceLifetime = 5 * time.Minute
	// DefaultDPoPSharedReplayDown: a proof the shared replay cache cannot
	// record is refused (RFC 9449 §11.1; see extauthz/sharedcache Replay).
	DefaultDPoPSharedReplayDown = DPoPSharedReplayRefuse
)

// The values of dpop.shared_replay_down.
const (
	// DPoPSharedReplayRefuse: Redis down ⇒ DPoP proofs are refused (503).
	DPoPSharedReplayRefuse = "refuse"
	// DPoPSharedReplayLocal: Redis down ⇒ each replica's own replay cache decides.
	DPoPSharedReplayLocal = "local"
)

// DefaultTxnTokenTTL is a Txn-Token's lifetime when none is configured.
const DefaultTxnTokenTTL = time.Minute

// MaxTxnTokenTTL bounds txn_token.ttl: Txn-Tokens are short-lived (draft §6).
const MaxTxnTokenTTL = 10 * time.Minute

// DefaultDPoPAlgorithms are the proof algorithms accepted when none are named.
var DefaultDPoPAlgorithms = []string{"ES256", "ES384", "ES512", "EdDSA", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}

func (c *Config) applyDPoPDefaults() {
	emptySecret(&c.DPoP.NonceSecret)
	if !c.TxnToken.TTL.IsSet() {
		c.TxnToken.TTL.Duration = DefaultTxnTokenTTL
	}
	c.TxnToken.RequestIDHeader = strings.ToLower(c.TxnToken.RequestIDHeader)
	d := &c.DPoP
	if d.Algorithms == nil {
		d.Algorithms = slices.Clone(DefaultDPoPAlgorithms)
	}
	if !d.MaxAge.IsSet() {
		d.MaxAge.Duration = DefaultDPoPMaxAge
	}
	if !d.Leeway.IsSet() {
		d.Leeway.Duration = DefaultDPoPLeeway
	}
	if d.ReplayEntries == 0 {
		d.ReplayEntries = DefaultDPoPReplayEntries
	}
	if !d.NonceLifetime.IsSet() {
		d.NonceLifetime.Duration = DefaultDPoPNonceLifetime
	}
	if d.SharedReplayDown == "" {
		d.SharedReplayDown = DefaultDPoPSharedReplayDown
	}
	for i := range c.Routes {
		if c.Routes[i].SenderConstraint == "" {
			c.Routes[i].SenderConstraint = "off"
		}
	}
}

// validateDPoP checks the dpop and txn_token blocks.
func (c *Config) validateDPoP(p *problems) {
	bad := p.add
	if t := c.TxnToken.TTL.Duration; t <= 0 || t > MaxTxnTokenTTL {
		bad("txn_token.ttl", "must be positive and at most %s", MaxTxnTokenTTL)
	}
	d := &c.DPoP
	if len(d.Algorithms) == 0 {
		bad("dpop.algorithms", "must name at least one algorithm")
	}
	for i, a := range d.Algorithms {
		if !slices.Contains(DefaultDPoPAlgorithms, a) {
			bad(fmt.Sprintf("dpop.algorithms[%d]", i), "%q is not an asymmetric JWS algorithm", a)
		}
	}
	if d.MaxAge.Duration <= 0 || d.MaxAge.Duration > time.Hour {
		bad("dpop.max_age", "must be positive and at most 1h: a proof is a one-time, fresh signature, and its replay mark lives as long")
	}
	if d.Leeway.Duration < 0 {
		bad("dpop.leeway", "must not be negative")
	}
	if d.ReplayEntries < 0 {
		bad("dpop.replay_entries", "must be positive")
	}
	if d.NonceLifetime.Duration <= 0 {
		bad("dpop.nonce_lifetime", "must be positive")
	}
	if d.NonceSecret != nil {
		d.NonceSecret.validate(p, "dpop.nonce_secret")
	}
	if d.SharedReplayDown != DPoPSharedReplayRefuse && d.SharedReplayDown != DPoPSharedReplayLocal {
		bad("dpop.shared_replay_down", "%q is not %s or %s", d.SharedReplayDown, DPoPSharedReplayRefuse, DPoPSharedReplayLocal)
	}
}

// UsesDPoP reports whether any route checks DPoP proofs.
func (c *Config) UsesDPoP() bool {
	for _, r := range c.Routes {
		if r.SenderConstraint == "optional" || r.SenderConstraint == "required" {
			return true
		}
	}
	return false
}
