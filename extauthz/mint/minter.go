package mint

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
	"unsafe"

	"golang.org/x/sync/singleflight"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/cache"
	"github.com/tokentailor/tokentailor/extauthz/metrics"
)

// CacheName is the cache's metric label.
const CacheName = "mint"

// renewNum/renewDen: a cached token is reused during the first 9/10 of its
// lifetime and re-minted in the last tenth.
const (
	renewNum = 9
	renewDen = 10
)

// Options configure a Minter.
type Options struct {
	// Issuer is the iss of minted tokens: tokentailor's own identity. Required.
	Issuer string
	// Keys are all keys published in the JWKS; at least one.
	Keys []*Key
	// SigningKeyID picks the key that signs; "" means Keys[0].
	SigningKeyID string
	// CacheEntries bounds the minted-token cache; required (config gives it).
	CacheEntries int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Metrics counts cache hits and misses under the label "mint"; may be nil.
	Metrics *metrics.Metrics
}

// Minter signs internal tokens and caches them. It is safe for concurrent
// use. A configuration reload builds a new Minter and swaps it in.
type Minter struct {
	opts    Options
	issuer  string
	signing *Key
	jwks    []byte
	cache   *cache.Cache[cachedToken]
	now     func() time.Time
	flight  singleflight.Group
}

type cachedToken struct {
	tok     extauthz.Token
	renewAt time.Time
}

// usableAt reports whether c may be handed out at now: before its renewal
// and its expiry (usableUntil).
func (c *cachedToken) usableAt(now time.Time) bool { return now.Before(c.usableUntil()) }

// usableUntil returns the instant from which c is no longer handed out:
// its renewal, or its expiry if earlier.
func (c *cachedToken) usableUntil() time.Time {
	if c.tok.ExpiresAt.Before(c.renewAt) {
		return c.tok.ExpiresAt
	}
	return c.renewAt
}

var _ extauthz.TokenSource = (*Minter)(nil)

// Kept returns the token m keeps for p under the grant g (the one Token
// hands out again without signing) and the instant from which Token stops
// handing it out (usableUntil); ok is false when
// m keeps none for them.
func (m *Minter) Kept(p *extauthz.Principal, g *extauthz.Grant) (tok extauthz.Token, until time.Time, ok bool) {
	v, ok := p.KeptWith(g, extauthz.MemoToken, m)
	if !ok {
		return extauthz.Token{}, time.Time{}, false
	}
	c := v.(*cachedToken)
	return c.tok, c.usableUntil(), true
}

// NoteHit counts a hit of the minted-token cache and notes it in ctx's
// lookups, for a Check that found the token kept elsewhere (see
// jwtverify.Verifier.NoteHit).
func (m *Minter) NoteHit(ctx context.Context) { m.cache.NoteHit(ctx) }

// New checks opts and builds a Minter with its JWKS precomputed.
func New(opts Options) (*Minter, error) {
	if opts.Issuer == "" {
		return nil, errors.New("mint: issuer is required")
	}
	if len(opts.Keys) == 0 {
		return nil, fmt.Errorf("mint: %w: no signing key", ErrBadKey)
	}
	if opts.CacheEntries <= 0 {
		return nil, fmt.Errorf("mint: cache entries %d must be positive", opts.CacheEntries)
	}
	seen := make(map[string]bool, len(opts.Keys))
	jwks := []byte(`{"keys":[`)
	for i, k := range opts.Keys {
		if k == nil || k.signer == nil {
			return nil, fmt.Errorf("mint: %w: key %d is not loaded", ErrBadKey, i)
		}
		if seen[k.ID] {
			return nil, fmt.Errorf("mint: %w: two keys with kid %q", ErrBadKey, k.ID)
		}
		seen[k.ID] = true
		if i > 0 {
			jwks = append(jwks, ',')
		}
		jwks = append(jwks, k.jwk...)
	}
	jwks = append(jwks, "]}"...)

	m := &Minter{opts: opts, issuer: opts.Issuer, jwks: jwks, now: opts.Now, signing: opts.Keys[0]}
	if opts.SigningKeyID != "" {
		i := slices.IndexFunc(opts.Keys, func(k *Key) bool { return k.ID == opts.SigningKeyID })
		if i < 0 {
			return nil, fmt.Errorf("mint: %w: signing key %q is not among the keys", ErrBadKey, opts.SigningKeyID)
		}
		m.signing = opts.Keys[i]
	}
	if m.now == nil {
		m.now = time.Now
	}
	n := opts.CacheEntries
	m.cache = cache.New[cachedToken](CacheName, n, opts.Metrics)
	return m, nil
}

// Options returns the options the Minter was built with.
func (m *Minter) Options() Options { return m.opts }

// JWKS returns the JSON Web Key Set {"keys":[...]} of every key, the signing
// one and those only published, each with kid, alg and use "sig". Serve it at
// /.well-known/jwks.json as application/jwk-set+json.
func (m *Minter) JWKS() []byte { return slices.Clone(m.jwks) }

// SigningKey returns the key new tokens are signed with, for other token
// kinds tokentailor signs under the same published JWKS (Txn-Tokens).
func (m *Minter) SigningKey() *Key { return m.signing }

// SigningKeyID returns the kid of the key that signs new tokens.
func (m *Minter) SigningKeyID() string { return m.signing.ID }

// Token returns an internal token for p under grant g, from the cache when one
// minted earlier for the same incoming token and grant still has more than a
// tenth of its lifetime left; a cached principal's Memo keeps that entry
// beside its grant, so that its next Check finds it without a lookup. A
// token minted for a fresh principal (Principal.Fresh: seen for the first
// time) is not cached. Errors wrap extauthz.ErrTokenExpired (the incoming
// token has expired, or leaves no whole second of lifetime),
// extauthz.ErrInvalidToken (it has no exp) or extauthz.ErrInternal (a broken
// grant or a signing failure).
func (m *Minter) Token(ctx context.Context, p *extauthz.Principal, g *extauthz.Grant) (extauthz.Token, error) {
	if p == nil || g == nil {
		return extauthz.Token{}, fmt.Errorf("%w: mint: nil principal or grant", extauthz.ErrInternal)
	}
	now := p.Credential.PresentedAt // the Check's one clock reading
	if now.IsZero() {
		now = m.now()
	}
	if p.ExpiresAt.IsZero() {
		return extauthz.Token{}, fmt.Errorf("%w: mint: incoming token has no expiry", extauthz.ErrInvalidToken)
	}
	if !now.Before(p.ExpiresAt) {
		return extauthz.Token{}, fmt.Errorf("%w: mint: incoming token expired", extauthz.ErrTokenExpired)
	}

	// Without the raw token there is nothing safe to key the cache on.
	var key string
	if p.Credential.Raw != "" {
		// A cached principal's Memo keeps the token this Minter last gave
		// it under g (the grant its Memo keeps): the cache's entry, found
		// without building its key.
		if v, ok := p.KeptWith(g, extauthz.MemoToken, m); ok {
			if c := v.(*cachedToken); c.usableAt(now) {
				m.cache.NoteHit(ctx)
				return c.tok, nil
			}
		}
		var arr [512]byte
		kb := appendCacheKey(arr[:0], p, g)
		// The lookup reads the key in place; only a miss, which stores it,
		// copies it into a string of its own.
		if c, ok := m.cache.Lookup(ctx, unsafe.String(unsafe.SliceData(kb), len(kb))); ok && c.usableAt(now) {
			kept := c
			p.KeepWith(g, extauthz.MemoToken, m, &kept)
			return c.tok, nil
		}
		key = string(kb)
	}
	if err := ctx.Err(); err != nil {
		return extauthz.Token{}, fmt.Errorf("%w: mint: %w", extauthz.ErrInternal, err)
	}
	if key == "" {
		return m.mint(now, p, g)
	}
	// Concurrent requests with the same fresh token (a browser fanning out)
	// share one signature instead of each paying for their own.
	v, err, _ := m.flight.Do(key, func() (any, error) {
		// A flight that ended between this request's miss and this call
		// may have cached its token already: take it rather than sign a
		// second one.
		if c, ok := m.cache.Peek(key); ok && c.usableAt(now) {
			kept := c
			p.KeepWith(g, extauthz.MemoToken, m, &kept)
			return c.tok, nil
		}
		tok, err := m.mint(now, p, g)
		if err != nil {
			return extauthz.Token{}, err
		}
		// renewAt, checked against the injected clock on every hit, is what
		// counts; the entry's own TTL (on go-cache's wall clock) only frees
		// the memory about when it stops being usable.
		// A fresh principal's token is not kept: the incoming token may
		// never come back (a cold Check), and if it does, its principal
		// comes from the validation cache and the next token is kept. The
		// flight still spares a fan-out of the new token all but one
		// signature.
		if !p.Fresh {
			renewAt := now.Add(tok.ExpiresAt.Sub(now) * renewNum / renewDen)
			c := cachedToken{tok: tok, renewAt: renewAt}
			m.cache.Set(key, c, renewAt.Sub(now))
			p.KeepWith(g, extauthz.MemoToken, m, &c)
		}
		return tok, nil
	})
	return v.(extauthz.Token), err
}
