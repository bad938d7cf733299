package pipeline

import (
	"fmt"

	"github.com/tokentailor/tokentailor/extauthz/config"
	"github.com/tokentailor/tokentailor/extauthz/dpop"
	"github.com/tokentailor/tokentailor/extauthz/secevent"
	"github.com/tokentailor/tokentailor/extauthz/sharedcache"
)

// pushedJTIEntries bounds the local memory of pushed SETs' jti.
const pushedJTIEntries = 10_000

// buildRevocationPush makes the receiver of revocations pushed as SETs by
// the issuers with revocation_push; nil when none has it, or when no shared
// cache is at hand (explain, tests): revocations spread through it.
func buildRevocationPush(cfg *config.Config, keySets []usedKeySet, env Env) (*secevent.Receiver, error) {
	if !cfg.UsesRevocationPush() || env.Shared == nil {
		return nil, nil
	}
	var ts []secevent.Transmitter
	for i := range cfg.Issuers {
		is := &cfg.Issuers[i]
		rp := is.RevocationPush
		if rp == nil {
			continue
		}
		var keys secevent.Keys
		for _, ks := range keySets {
			if ks.opts.Issuer == is.Issuer {
				keys = ks.set
			}
		}
		if keys == nil || is.Introspection == nil {
			return nil, fmt.Errorf("issuers[%d].revocation_push: the issuer has no keys or no introspection", i)
		}
		ts = append(ts, secevent.Transmitter{
			SETIssuer: rp.SETIssuer, TokenIssuer: is.Issuer, Audience: rp.Audience, Algorithms: is.Algorithms,
			Keys: keys, MaxAge: rp.MaxAge.Duration, Leeway: is.ClockSkew.Duration, RevokeFor: is.Introspection.MaxCacheTTL.Duration,
		})
	}
	r, err := secevent.New(secevent.Options{
		Transmitters: ts,
		Revoker:      env.Shared,
		// Duplicates are skipped on every replica; Redis down, on this one.
		Seen:   &sharedcache.Replay{Cache: env.Shared, Local: dpop.NewMemoryReplay(pushedJTIEntries, env.Now), FallBackLocal: true},
		Now:    env.Now,
		Logger: env.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("revocation_push: %w", err)
	}
	return r, nil
}
