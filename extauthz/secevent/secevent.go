// Package secevent receives token revocations pushed by an authorization
// server: Security Event Tokens (SETs, RFC 8417) delivered by HTTP POST
// (RFC 8935), signed by a configured transmitter and verified with its
// issuer's JWKS. A token-revoked event for an access token becomes the same
// revocation that an inactive introspection answer causes
// (sharedcache.Cache.Revoke): a shared mark, the shared answer dropped and a
// notice that makes every replica drop its local copy.
//
// What a SET must be, each rule a sentinel of errors.go:
//
//	typ secevent+jwt → alg in the transmitter's allowlist, asymmetric →
//	key from the issuer's JWKS (kid) → signature → iss = the transmitter's
//	→ aud holds a configured audience → iat present, within MaxAge, not
//	ahead beyond the leeway → exp (if present) not passed → jti present →
//	events an object
//
// Events other than token-revoked are acknowledged and ignored (RFC 8417
// §2.2 lets a recipient ignore events it does not understand).
package secevent

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokentailor/tokentailor/extauthz"
)

// EventTokenRevoked is the OAuth Event Types 1.0 event a transmitter sends
// when it revokes a token; its subject names the token.
const EventTokenRevoked = "https://schemas.openid.net/secevent/oauth/event-type/token-revoked"

// MediaType is the Content-Type of a pushed SET (RFC 8417 §7.2, RFC 8935 §2).
const MediaType = "application/secevent+jwt"

// MaxSETBytes bounds a SET before it is parsed.
const MaxSETBytes = 64 << 10

// maxJTIBytes bounds a SET's jti.
const maxJTIBytes = 256

// Keys gives a transmitter's public keys: the issuer's key set (jwks.Set).
type Keys interface {
	Key(ctx context.Context, kid, alg string) (crypto.PublicKey, error)
}

// Revoker spreads a revocation to every replica (sharedcache.Cache).
type Revoker interface {
	Revoke(ctx context.Context, issuer, tokenHash string, until time.Time) error
}

// Seen remembers SET jti values against duplicates (sharedcache.Replay).
type Seen interface {
	Add(ctx context.Context, key [sha256.Size]byte, until time.Time) (seen bool, err error)
}

// Transmitter is an issuer allowed to push SETs.
type Transmitter struct {
	// SETIssuer is the SETs' iss.
	SETIssuer string
	// TokenIssuer is the issuer whose tokens its revocations name: the
	// issuer under which they are revoked.
	TokenIssuer string
	// Audience lists accepted aud values; a SET must carry one.
	Audience []string
	// Algorithms are the accepted signature algorithms; HS* and none are
	// never accepted whatever is listed.
	Algorithms []string
	// Keys are the issuer's keys.
	Keys Keys
	// MaxAge bounds how old iat may be; jti are remembered as long.
	MaxAge time.Duration
	// Leeway bounds how far ahead iat may be.
	Leeway time.Duration
	// RevokeFor is how long a revocation mark lives: the longest an
	// introspection answer of this issuer is cached.
	RevokeFor time.Duration
}

// Options configures a Receiver.
type Options struct {
	// Transmitters are the accepted SET issuers, by distinct SETIssuer.
	Transmitters []Transmitter
	// Revoker receives the revocations. Required.
	Revoker Revoker
	// Seen remembers jti values; nil remembers none (every SET is processed).
	Seen Seen
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger gets one line per SET, never a token; nil discards.
	Logger *slog.Logger
}

// Receiver verifies pushed SETs and applies the revocations they carry.
type Receiver struct {
	opts Options
	by   map[string]*Transmitter
	now  func() time.Time
	log  *slog.Logger
}

// New checks o and returns a Receiver.
func New(o Options) (*Receiver, error) {
	if o.Revoker == nil {
		return nil, errors.New("secevent: Revoker is required")
	}
	r := &Receiver{opts: o, by: map[string]*Transmitter{}, now: o.Now, log: o.Logger}
	if r.now == nil {
		r.now = time.Now
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	for i := range o.Transmitters {
		t := &o.Transmitters[i]
		switch {
		case t.SETIssuer == "" || t.TokenIssuer == "":
			return nil, fmt.Errorf("secevent: transmitter %d: SETIssuer and TokenIssuer are required", i)
		case len(t.Audience) == 0 || t.Keys == nil || t.MaxAge <= 0 || t.RevokeFor <= 0:
			return nil, fmt.Errorf("secevent: transmitter %s: Audience, Keys, MaxAge and RevokeFor are required", t.SETIssuer)
		case r.by[t.SETIssuer] != nil:
			return nil, fmt.Errorf("secevent: two transmitters with iss %s", t.SETIssuer)
		}
		r.by[t.SETIssuer] = t
	}
	return r, nil
}

// Result is what Receive did with a valid SET.
type Result struct {
	// Revoked counts the tokens revoked.
	Revoked int
	// Ignored counts the events not acted upon (unknown types, other tokens).
	Ignored int
	// Duplicate says the SET's jti was seen before. Its revocations were
	// applied again (they are idempotent), so that a delivery that failed
	// half-way is never mistaken for one that succeeded.
	Duplicate bool
}

// claims are a SET's claims (RFC 8417 §2.2).
type claims struct {
	jwt.RegisteredClaims
	Events map[string]json.RawMessage `json:"events"`
}

// Receive verifies raw and applies its events. Errors wrap the sentinels of
// errors.go; none holds a token.
func (r *Receiver) Receive(ctx context.Context, raw string) (Result, error) {
	if len(raw) > MaxSETBytes {
		return Result{}, fmt.Errorf("%w: larger than %d bytes", ErrMalformed, MaxSETBytes)
	}
	var tr *Transmitter
	var c claims
	_, err := jwt.NewParser(jwt.WithoutClaimsValidation(), jwt.WithJSONNumber()).ParseWithClaims(raw, &c, func(tok *jwt.Token) (any, error) {
		return r.key(ctx, tok, &c, &tr)
	})
	if err != nil {
		return Result{}, classify(err)
	}
	now := r.now()
	if err := tr.check(&c, now); err != nil {
		return Result{}, err
	}
	// Apply first, record the jti after: a delivery whose revocation could
	// not be applied (503, the transmitter retries, RFC 8935 §2.4) must not
	// leave its jti behind, or the retry would be taken for a duplicate and
	// the revocation lost. Revocations are idempotent, so a duplicate is
	// simply applied again.
	res, err := r.apply(ctx, tr, c.Events, now)
	if err != nil || r.opts.Seen == nil {
		return res, err
	}
	seen, err := r.opts.Seen.Add(ctx, jtiKey(tr.SETIssuer, c.ID), c.IssuedAt.Add(tr.MaxAge+tr.Leeway))
	if err != nil {
		r.log.WarnContext(ctx, "secevent: jti not recorded", "iss", tr.SETIssuer, "error", err)
	}
	res.Duplicate = seen
	return res, nil
}

// key is the keyfunc: it checks the header and picks the transmitter by the
// (not yet verified) iss, then finds the key.
func (r *Receiver) key(ctx context.Context, tok *jwt.Token, c *claims, tr **Transmitter) (any, error) {
	if typ, _ := tok.Header["typ"].(string); !isSETType(typ) {
		return nil, fmt.Errorf("%w: typ %q", ErrType, clean(typ))
	}
	t := r.by[c.Issuer]
	if t == nil {
		return nil, fmt.Errorf("%w: %q", ErrIssuer, clean(c.Issuer))
	}
	*tr = t
	alg, _ := tok.Header["alg"].(string)
	if strings.HasPrefix(alg, "HS") || alg == "none" || !slices.Contains(t.Algorithms, alg) {
		return nil, fmt.Errorf("%w: alg %q not accepted", ErrKey, clean(alg))
	}
	kid, _ := tok.Header["kid"].(string)
	k, err := t.Keys.Key(ctx, kid, alg)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKey, err)
	}
	return k, nil
}

// isSETType reports whether typ names a SET: "secevent+jwt", in any case,
// with or without "application/" (RFC 8417 §2.3, RFC 7515 §4.1.9).
func isSETType(typ string) bool {
	t := strings.ToLower(typ)
	return strings.TrimPrefix(t, "application/") == "secevent+jwt"
}

// classify maps a golang-jwt error to this package's sentinels.
func classify(err error) error {
	for _, s := range []error{ErrType, ErrIssuer, ErrKey} {
		if errors.Is(err, s) {
			return err
		}
	}
	if errors.Is(err, jwt.ErrTokenSignatureInvalid) {
		return fmt.Errorf("%w: %w", ErrSignature, err)
	}
	return fmt.Errorf("%w: %w", ErrMalformed, err)
}

// check runs the claim rules of the package comment after the signature.
func (t *Transmitter) check(c *claims, now time.Time) error {
	if !slices.ContainsFunc(c.Audience, func(a string) bool { return slices.Contains(t.Audience, a) }) {
		return fmt.Errorf("%w: aud %q", ErrAudience, clean(strings.Join(c.Audience, " ")))
	}
	switch {
	case c.IssuedAt == nil:
		return fmt.Errorf("%w: no iat", ErrMalformed)
	case now.Sub(c.IssuedAt.Time) > t.MaxAge:
		return fmt.Errorf("%w: iat older than %v", ErrStale, t.MaxAge)
	case c.IssuedAt.Sub(now) > t.Leeway:
		return fmt.Errorf("%w: iat in the future", ErrStale)
	case c.ExpiresAt != nil && !now.Before(c.ExpiresAt.Add(t.Leeway)):
		return fmt.Errorf("%w: expired", ErrStale)
	case c.ID == "" || len(c.ID) > maxJTIBytes:
		return fmt.Errorf("%w: jti missing or longer than %d bytes", ErrMalformed, maxJTIBytes)
	case len(c.Events) == 0:
		return fmt.Errorf("%w: no events", ErrMalformed)
	}
	return nil
}

// tokenSubject is the subject of a token-revoked event (OAuth Event Types
// 1.0 §2.1: subject_type oauth_token).
type tokenSubject struct {
	SubjectType        string `json:"subject_type"`
	TokenType          string `json:"token_type"`
	TokenIdentifierAlg string `json:"token_identifier_alg"`
	Token              string `json:"token"`
}

// apply revokes the access tokens that token-revoked events name. A
// malformed token-revoked event refuses the whole SET before anything is
// revoked; a revocation that cannot reach the other replicas is an error
// (the transmitter retries).
func (r *Receiver) apply(ctx context.Context, t *Transmitter, events map[string]json.RawMessage, now time.Time) (Result, error) {
	var res Result
	var hashes []string
	for typ, body := range events {
		if typ != EventTokenRevoked {
			res.Ignored++
			continue
		}
		var e struct {
			Subject *tokenSubject `json:"subject"`
		}
		if err := json.Unmarshal(body, &e); err != nil || e.Subject == nil {
			return Result{}, fmt.Errorf("%w: token-revoked without a subject object", ErrEvent)
		}
		s := e.Subject
		switch {
		case s.SubjectType != "oauth_token" || s.Token == "":
			return Result{}, fmt.Errorf("%w: token-revoked subject is not an oauth_token with a token", ErrEvent)
		case s.TokenIdentifierAlg != "plain" && s.TokenIdentifierAlg != "token_string":
			return Result{}, fmt.Errorf("%w: token_identifier_alg %q not supported (plain, token_string)", ErrEvent, clean(s.TokenIdentifierAlg))
		case s.TokenType != "" && s.TokenType != "access_token":
			res.Ignored++ // refresh tokens never reach tokentailor
			continue
		}
		hashes = append(hashes, extauthz.TokenHash(s.Token))
	}
	for _, h := range hashes {
		if err := r.opts.Revoker.Revoke(ctx, t.TokenIssuer, h, now.Add(t.RevokeFor)); err != nil {
			return res, fmt.Errorf("%w: %w", ErrRevocation, err)
		}
		res.Revoked++
		r.log.InfoContext(ctx, "token revoked by a pushed security event", "issuer", t.TokenIssuer, "token", h[:12])
	}
	return res, nil
}

// jtiKey is the key under which a SET's jti is remembered.
func jtiKey(iss, jti string) [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte("tokentailor/secevent/jti\x00"))
	h.Write([]byte(iss))
	h.Write([]byte{0})
	h.Write([]byte(jti))
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

// clean bounds a value from the SET before it goes into an error: printable
// ASCII only, at most 64 bytes.
func clean(s string) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= 64 {
			b.WriteString("…")
			break
		}
		if r < 0x20 || r > 0x7e {
			r = '?'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Transmitters returns a copy of the configured transmitters (for tests
// that check the config reached the receiver).
func (r *Receiver) Transmitters() []Transmitter {
	return slices.Clone(r.opts.Transmitters)
}
