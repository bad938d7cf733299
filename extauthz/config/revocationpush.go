package config

import (
	"fmt"
	"time"
)

// RevocationPush lets an issuer push token revocations to tokentailor as
// Security Event Tokens (RFC 8417) delivered over HTTP (RFC 8935), at
// RevocationPushPath on the admin listener. Off unless configured.
type RevocationPush struct {
	// Audience lists the aud values a SET must carry one of: how the
	// transmitter names this receiver (e.g. its SSF stream audience). Required.
	Audience StringList `json:"audience"`
	// SETIssuer is the SET's iss (default: the issuer's issuer).
	SETIssuer string `json:"set_issuer"`
	// MaxAge bounds how old a SET's iat may be, and how long its jti is
	// remembered against duplicates (default 5m).
	MaxAge Duration `json:"max_age"`
}

// RevocationPushPath is where the admin listener receives pushed SETs.
const RevocationPushPath = "/revocations/push"

// DefaultRevocationPushMaxAge is revocation_push.max_age's default.
const DefaultRevocationPushMaxAge = 5 * time.Minute

// MaxRevocationPushMaxAge bounds revocation_push.max_age.
const MaxRevocationPushMaxAge = time.Hour

func (r *RevocationPush) applyDefaults(issuer string) {
	if r.SETIssuer == "" {
		r.SETIssuer = issuer
	}
	defaultDuration(&r.MaxAge, DefaultRevocationPushMaxAge)
}

// UsesRevocationPush reports whether any issuer pushes revocations.
func (c *Config) UsesRevocationPush() bool {
	for _, is := range c.Issuers {
		if is.RevocationPush != nil {
			return true
		}
	}
	return false
}

// validateRevocationPush checks issuer i's revocation_push block: pushed
// revocations drop introspected answers on every replica, so they need the
// issuer's keys (to verify the SET), introspection and the shared cache.
func (c *Config) validateRevocationPush(p *problems, i int) {
	is := &c.Issuers[i]
	r := is.RevocationPush
	if r == nil {
		return
	}
	f := fmt.Sprintf("issuers[%d].revocation_push", i)
	if len(r.Audience) == 0 {
		p.add(f+".audience", "required: the aud value(s) the transmitter puts in its SETs for this receiver")
	}
	if is.JWKSURL == "" && !is.Discovery {
		p.add(f, "needs the issuer's keys (jwks_url or discovery) to verify SETs")
	}
	if is.Introspection == nil {
		p.add(f, "revokes introspected tokens: the issuer needs introspection")
	}
	if c.SharedCache == nil {
		p.add(f, "needs shared_cache: a pushed revocation reaches every replica through it")
	}
	if d := r.MaxAge.Duration; d <= 0 || d > MaxRevocationPushMaxAge {
		p.add(f+".max_age", "must be positive and at most %s", MaxRevocationPushMaxAge)
	}
}
