package mint

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
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

var _ extauthz.TokenSource = (*Minter)(nil)

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
// tenth of its lifetime left. Errors wrap extauthz.ErrTokenExpired (the
// incoming token has expired, or leaves no whole second of lifetime),
// extauthz.ErrInvalidToken (it has no exp) or extauthz.ErrInternal (a broken
// grant or a signing failure).
func (m *Minter) Token(ctx context.Context, p *extauthz.Principal, g *extauthz.Grant) (extauthz.Token, error) {
	if p == nil || g == nil {
		return extauthz.Token{}, fmt.Errorf("%w: mint: nil principal or grant", extauthz.ErrInternal)
	}
	now := m.now()
	if p.ExpiresAt.IsZero() {
		return extauthz.Token{}, fmt.Errorf("%w: mint: incoming token has no expiry", extauthz.ErrInvalidToken)
	}
	if !now.Before(p.ExpiresAt) {
		return extauthz.Token{}, fmt.Errorf("%w: mint: incoming token expired", extauthz.ErrTokenExpired)
	}

	// Without the raw token there is nothing safe to key the cache on.
	var key string
	if p.Credential.Raw != "" {
		var arr [512]byte
		kb := appendCacheKey(arr[:0], p, g)
		// The lookup reads the key in place; only a miss, which stores it,
		// copies it into a string of its own.
		if c, ok := m.cache.Lookup(ctx, unsafe.String(unsafe.SliceData(kb), len(kb))); ok && now.Before(c.renewAt) && now.Before(c.tok.ExpiresAt) {
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
		tok, err := m.mint(now, p, g)
		if err != nil {
			return extauthz.Token{}, err
		}
		// renewAt, checked against the injected clock on every hit, is what
		// counts; the entry's own TTL (on go-cache's wall clock) only frees
		// the memory about when it stops being usable.
		renewAt := now.Add(tok.ExpiresAt.Sub(now) * renewNum / renewDen)
		m.cache.Set(key, cachedToken{tok: tok, renewAt: renewAt}, renewAt.Sub(now))
		return tok, nil
	})
	return v.(extauthz.Token), err
}

// mint signs a new token. now is the minting time.
func (m *Minter) mint(now time.Time, p *extauthz.Principal, g *extauthz.Grant) (extauthz.Token, error) {
	if g.TTL <= 0 {
		return extauthz.Token{}, fmt.Errorf("%w: mint: route %q has no token TTL", extauthz.ErrInternal, g.Route)
	}
	if g.Audience == "" {
		return extauthz.Token{}, fmt.Errorf("%w: mint: route %q has no audience", extauthz.ErrInternal, g.Route)
	}
	// NumericDates are whole seconds; rounding both down keeps exp at or
	// before the incoming exp and iat/nbf at or before now.
	iat := now.Unix()
	exp := now.Add(g.TTL).Unix()
	if in := p.ExpiresAt.Unix(); in < exp {
		exp = in
	}
	expAt := time.Unix(exp, 0)
	if !now.Before(expAt) {
		return extauthz.Token{}, fmt.Errorf("%w: mint: incoming token leaves no lifetime", extauthz.ErrTokenExpired)
	}

	var jti [16]byte
	_, _ = rand.Read(jti[:]) // crypto/rand.Read never fails (Go ≥ 1.24)

	c := make([]byte, 0, 512)
	c = append(c, `{"iss":`...)
	c = appendJSONString(c, m.issuer)
	sub := p.Subject
	if sub == "" {
		sub = p.ClientID // RFC 9068 §2.2: client-credentials tokens name the client
	}
	if sub != "" {
		c = append(c, `,"sub":`...)
		c = appendJSONString(c, sub)
	}
	c = append(c, `,"aud":`...)
	c = appendJSONString(c, g.Audience)
	c = appendScope(c, g.Scopes)
	if p.ClientID != "" {
		c = append(c, `,"client_id":`...)
		c = appendJSONString(c, p.ClientID)
	}
	c = append(c, `,"iat":`...)
	c = strconv.AppendInt(c, iat, 10)
	c = append(c, `,"nbf":`...)
	c = strconv.AppendInt(c, iat, 10)
	c = append(c, `,"exp":`...)
	c = strconv.AppendInt(c, exp, 10)
	c = append(c, `,"jti":"`...)
	c = b64.AppendEncode(c, jti[:])
	c = append(c, '"')
	c, err := appendAct(c, p)
	if err != nil {
		return extauthz.Token{}, err
	}
	if c, err = appendExtra(c, g.Claims); err != nil {
		return extauthz.Token{}, err
	}
	c = append(c, '}')

	prefixed, err := m.signing.sign(g.Prefix, c)
	if err != nil {
		return extauthz.Token{}, fmt.Errorf("%w: mint: %w", extauthz.ErrInternal, err)
	}
	return extauthz.Token{Value: prefixed[len(g.Prefix):], ExpiresAt: expAt, Prefixed: prefixed}, nil
}

// appendScope writes ,"scope":"a b" unless no scope is usable. A scope that
// is empty or holds a space or a quote (not a scope-token, RFC 6749 §3.3) is
// dropped: it would read as other scopes downstream.
func appendScope(c []byte, scopes []string) []byte {
	first := true
	for _, s := range scopes {
		if s == "" || strings.ContainsAny(s, " \"\\") {
			continue
		}
		if first {
			c = append(c, `,"scope":"`...)
			first = false
		} else {
			c = append(c, ' ')
		}
		c = appendJSONStringBody(c, s)
	}
	if !first {
		c = append(c, '"')
	}
	return c
}

// appendAct writes the RFC 8693 act claim: the client as actor, nesting any
// act the incoming token carried.
func appendAct(c []byte, p *extauthz.Principal) ([]byte, error) {
	prior, _ := p.Claims["act"].(map[string]any)
	if p.ClientID == "" && prior == nil {
		return c, nil
	}
	c = append(c, `,"act":`...)
	if p.ClientID == "" {
		return appendJSONValue(c, prior)
	}
	c = append(c, `{"sub":`...)
	c = appendJSONString(c, p.ClientID)
	if p.Issuer != "" {
		c = append(c, `,"iss":`...)
		c = appendJSONString(c, p.Issuer)
	}
	if prior != nil {
		var err error
		c = append(c, `,"act":`...)
		if c, err = appendJSONValue(c, prior); err != nil {
			return c, fmt.Errorf("%w: mint: act: %w", extauthz.ErrInternal, err)
		}
	}
	return append(c, '}'), nil
}

// appendExtra writes the grant's claims in name order, skipping reserved ones.
func appendExtra(c []byte, claims map[string]any) ([]byte, error) {
	if len(claims) == 0 {
		return c, nil
	}
	names := sortedNames(make([]string, 0, 16), claims)
	for _, name := range names {
		if extauthz.IsReservedClaim(name) {
			continue
		}
		c = append(c, ',')
		c = appendJSONString(c, name)
		c = append(c, ':')
		var err error
		if c, err = appendJSONValue(c, claims[name]); err != nil {
			return c, fmt.Errorf("%w: mint: claim %q: %w", extauthz.ErrInternal, name, err)
		}
	}
	return c, nil
}

func sortedNames(dst []string, m map[string]any) []string {
	for k := range m {
		dst = append(dst, k)
	}
	slices.Sort(dst)
	return dst
}

// sign returns prefix followed by the compact JWS of claims under the key's
// precomputed header: the header value that carries the token upstream, of
// which the token is the tail.
func (k *Key) sign(prefix string, claims []byte) (string, error) {
	// One allocation, sized for the whole value, which becomes the string.
	n := len(prefix) + len(k.header) + b64.EncodedLen(len(claims))
	buf := make([]byte, 0, n+1+b64.EncodedLen(k.sigLen))
	buf = append(buf, prefix...)
	buf = append(buf, k.header...)
	buf = b64.AppendEncode(buf, claims)
	input := buf[len(prefix):] // the JWS signing input: header '.' payload
	var sig []byte
	var err error
	switch k.hash {
	case 0: // Ed25519 signs the message itself
		sig, err = k.signer.Sign(nil, input, crypto.Hash(0))
	default:
		digest := sha256.Sum256(input)
		sig, err = k.signer.Sign(rand.Reader, digest[:], k.hash)
		if err == nil && k.Alg == AlgES256 {
			sig, err = ecdsaDERToRaw(sig, 32)
		}
	}
	if err != nil {
		return "", fmt.Errorf("sign %s: %w", k.Alg, err)
	}
	buf = append(buf, '.')
	buf = b64.AppendEncode(buf, sig)
	// buf is never written again: the token string shares its bytes.
	return unsafe.String(unsafe.SliceData(buf), len(buf)), nil
}

var errBadECDSASignature = errors.New("malformed ECDSA signature")

// ecdsaDERToRaw turns an ASN.1 ECDSA signature, SEQUENCE { r INTEGER, s
// INTEGER }, into JWS form (RFC 7518 §3.4): r and s as fixed-width
// big-endian, concatenated.
func ecdsaDERToRaw(der []byte, size int) ([]byte, error) {
	bad := errBadECDSASignature
	if len(der) < 2 || der[0] != 0x30 || der[1]&0x80 != 0 || int(der[1]) != len(der)-2 {
		return nil, bad
	}
	rest := der[2:]
	out := make([]byte, 2*size)
	for i := range 2 {
		if len(rest) < 2 || rest[0] != 0x02 || rest[1]&0x80 != 0 || int(rest[1]) > len(rest)-2 {
			return nil, bad
		}
		v := rest[2 : 2+int(rest[1])]
		rest = rest[2+int(rest[1]):]
		for len(v) > 0 && v[0] == 0 {
			v = v[1:]
		}
		if len(v) > size {
			return nil, bad
		}
		copy(out[(i+1)*size-len(v):(i+1)*size], v)
	}
	if len(rest) != 0 {
		return nil, bad
	}
	return out, nil
}

// appendCacheKey appends the minted-token cache key to b: everything that
// shapes a minted token, namely the incoming token's hash (which fixes the
// principal), the principal's fields that Token reads (in case an
// introspection answer changed), and the grant. Fields are length-prefixed
// so that no two inputs share an encoding.
func appendCacheKey(b []byte, p *extauthz.Principal, g *extauthz.Grant) []byte {
	if g.Key != "" {
		return appendRouteCacheKey(b, p, g)
	}
	b = append(b, 1)                             // key format version
	b = appendField(b, p.Credential.TokenHash()) // the token's SHA-256, computed once per Check
	b = appendField(b, p.Issuer)
	b = appendField(b, p.Subject)
	b = appendField(b, p.ClientID)
	b = binary.BigEndian.AppendUint64(b, uint64(p.ExpiresAt.UnixNano()))
	b = appendField(b, g.Route)
	b = appendField(b, g.Audience)
	b = binary.BigEndian.AppendUint64(b, uint64(g.TTL))
	b = binary.BigEndian.AppendUint32(b, uint32(len(g.Scopes)))
	for _, s := range g.Scopes {
		b = appendField(b, s)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(g.Claims)))
	if len(g.Claims) > 0 {
		for _, name := range sortedNames(make([]string, 0, 16), g.Claims) {
			b = appendField(b, name)
			at := len(b)
			b = append(b, 0, 0, 0, 0)
			var err error
			if b, err = appendJSONValue(b, g.Claims[name]); err != nil {
				b = append(b[:at+4], 0xff) // unencodable: minting will fail anyway
			}
			binary.BigEndian.PutUint32(b[at:], uint32(len(b)-at-4))
		}
	}
	// The key is the encoding itself: it holds the token's hash, never the
	// token, and hashing it again would only cost time on the warm path.
	return b
}

// appendRouteCacheKey is appendCacheKey for a grant the policy compiled
// (g.Key set): the route's part is g.Key, encoded once when the route was
// built, so per request only the principal's identity, the granted scopes and
// the copied claims' values are appended, in the route's order (g.Copied):
// no sorting of claim names, and a string claim, the usual kind, is appended
// as it is. Format version 2 keeps these keys apart from appendCacheKey's own.
func appendRouteCacheKey(b []byte, p *extauthz.Principal, g *extauthz.Grant) []byte {
	b = append(b, 2) // key format version
	b = appendField(b, p.Credential.TokenHash())
	b = appendField(b, p.Issuer)
	b = appendField(b, p.Subject)
	b = appendField(b, p.ClientID)
	b = binary.BigEndian.AppendUint64(b, uint64(p.ExpiresAt.UnixNano()))
	b = appendField(b, g.Key)
	b = binary.BigEndian.AppendUint32(b, uint32(len(g.Scopes)))
	for _, s := range g.Scopes {
		b = appendField(b, s)
	}
	// The count guards the contract that Claims holds only the route's fixed
	// claims (in g.Key) and those of Copied.
	b = binary.BigEndian.AppendUint32(b, uint32(len(g.Claims)))
	for _, name := range g.Copied {
		switch v, ok := g.Claims[name]; {
		case !ok:
			b = append(b, 0)
		case isString(v):
			b = appendField(append(b, 's'), v.(string))
		default:
			b = append(b, 'j')
			at := len(b)
			b = append(b, 0, 0, 0, 0)
			var err error
			if b, err = appendJSONValue(b, v); err != nil {
				b = append(b[:at+4], 0xff) // unencodable: minting will fail anyway
			}
			binary.BigEndian.PutUint32(b[at:], uint32(len(b)-at-4))
		}
	}
	return b
}

func isString(v any) bool { _, ok := v.(string); return ok }

func appendField(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}
