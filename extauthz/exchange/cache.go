package exchange

import (
	"context"
	"time"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/sharedcache"
)

type entry struct {
	tok     extauthz.Token
	renewAt time.Time
}

// store caches tok locally until renewFraction of its remaining life has
// passed.
func (e *Exchanger) store(key string, tok extauthz.Token, now time.Time) {
	renew := time.Duration(float64(tok.ExpiresAt.Sub(now)) * renewFraction)
	e.cache.Set(key, entry{tok: tok, renewAt: now.Add(renew)}, renew)
}

// fromShared looks key up in the shared cache and stores a token it finds
// locally. Redis unavailable, a miss, an unreadable value and a token past
// its renewal point are all a miss.
func (e *Exchanger) fromShared(ctx context.Context, key string) (extauthz.Token, bool) {
	if e.opts.Shared == nil {
		return extauthz.Token{}, false
	}
	b, ok, err := e.opts.Shared.Get(ctx, sharedcache.KindExchange, e.opts.Issuer, key)
	if err != nil || !ok {
		return extauthz.Token{}, false
	}
	tok, err := sharedcache.DecodeToken(b)
	if err != nil {
		e.log.WarnContext(ctx, "shared cache: ignoring an unreadable exchanged token", "issuer", e.opts.Issuer)
		return extauthz.Token{}, false
	}
	now := e.now()
	if !now.Before(tok.ExpiresAt) {
		return extauthz.Token{}, false
	}
	e.store(key, tok, now)
	return tok, true
}
