package txntoken

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/mint"
)

// Defaults and bounds of MinterOptions.
const (
	// DefaultTTL is a Txn-Token's lifetime when none is configured: one
	// call chain's worth ("minutes or less", draft §6).
	DefaultTTL = time.Minute
	// MaxTTL is the longest lifetime accepted in config.
	MaxTTL = 10 * time.Minute
	// maxRequestID bounds a request id kept as txn.
	maxRequestID = 128
)

// MinterOptions configures a Minter.
type MinterOptions struct {
	// TrustDomain is the aud of every Txn-Token (required).
	TrustDomain string
	// Issuer, when set, is the iss claim.
	Issuer string
	// Key signs the tokens; its ID is the kid header (required).
	Key *mint.Key
	// TTL is the lifetime; default DefaultTTL, at most MaxTTL.
	TTL time.Duration
	// Workload is req_wl when the input names none (required).
	Workload string
	// Context is tctx: configured immutable context; nil for none.
	Context map[string]any
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Minter issues Txn-Tokens. It is safe for concurrent use.
type Minter struct {
	opts   MinterOptions
	method jwt.SigningMethod
	now    func() time.Time
}

// NewMinter validates opts and returns a Minter.
func NewMinter(opts MinterOptions) (*Minter, error) {
	switch {
	case opts.TrustDomain == "":
		return nil, errors.New("txntoken: trust domain is required")
	case opts.Key == nil:
		return nil, errors.New("txntoken: signing key is required")
	case opts.Workload == "":
		return nil, errors.New("txntoken: workload name is required")
	case opts.TTL < 0 || opts.TTL > MaxTTL:
		return nil, fmt.Errorf("txntoken: ttl must be positive and at most %s", MaxTTL)
	}
	if opts.TTL == 0 {
		opts.TTL = DefaultTTL
	}
	m := jwt.GetSigningMethod(opts.Key.Alg)
	if m == nil {
		return nil, fmt.Errorf("txntoken: key algorithm %q unknown", opts.Key.Alg)
	}
	opts.Context = maps.Clone(opts.Context)
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	return &Minter{opts: opts, method: m, now: now}, nil
}

// Input is what a Txn-Token is made from: a validated access token and the
// request it came with.
type Input struct {
	// Subject is the access token's sub (required).
	Subject string
	// Scopes are the route's scopes ∩ the token's: the Txn-Token's scope.
	Scopes []string
	// NotAfter is the access token's exp; the Txn-Token never outlives it.
	// Zero means unknown (then only TTL bounds it).
	NotAfter time.Time
	// RequestID, when well-formed (1–128 visible ASCII characters), is kept
	// as txn; otherwise txn is a random UUID.
	RequestID string
	// Workload is req_wl, e.g. the caller's SPIFFE ID; "" means the configured one.
	Workload string
	// ClientIP is rctx.req_ip; "" omits it.
	ClientIP string
	// AuthMethod is rctx.authn, how the access token was presented ("bearer",
	// "dpop", "mtls"); "" omits it.
	AuthMethod string
}

// Mint issues a Txn-Token for in. Errors: ErrNoScope (403) when in has no
// scope, ErrOutlives when the access token has expired, ErrInvalid for an
// input without subject, extauthz.ErrInternal when signing fails.
func (m *Minter) Mint(_ context.Context, in Input) (extauthz.Token, error) {
	if in.Subject == "" {
		return extauthz.Token{}, fmt.Errorf("%w: no subject", ErrMissingClaim)
	}
	if len(in.Scopes) == 0 {
		return extauthz.Token{}, ErrNoScope
	}
	txn := in.RequestID
	if !validRequestID(txn) {
		txn = newUUID()
	}
	rctx := map[string]any{}
	if in.ClientIP != "" {
		rctx["req_ip"] = in.ClientIP
	}
	if in.AuthMethod != "" {
		rctx["authn"] = in.AuthMethod
	}
	wl := in.Workload
	if wl == "" {
		wl = m.opts.Workload
	}
	return m.sign(txn, in.Subject, in.Scopes, wl, nil, m.opts.Context, rctx, in.NotAfter)
}

// Narrow replaces a verified Txn-Token with one whose scope is t's scope ∩
// scopes (never wider), keeping txn, sub, tctx and rctx, with req_wl the
// replacing workload ("" means the configured one) and t's requester
// appended to req_wl_chain. Its exp is never later than t's. Errors:
// ErrOutlives when t has expired, ErrNoScope when nothing is left.
func (m *Minter) Narrow(_ context.Context, t *Token, scopes []string, workload string) (extauthz.Token, error) {
	if t == nil {
		return extauthz.Token{}, fmt.Errorf("%w: narrowing without a token", extauthz.ErrInternal)
	}
	if !m.now().Before(t.ExpiresAt) {
		return extauthz.Token{}, ErrOutlives
	}
	kept := narrow(t.Scopes, scopes)
	if len(kept) == 0 {
		return extauthz.Token{}, fmt.Errorf("%w: %w", ErrNoScope, &extauthz.ScopeError{Required: scopes})
	}
	if workload == "" {
		workload = m.opts.Workload
	}
	chain := append(slices.Clone(t.Chain), t.Workload)
	return m.sign(t.Txn, t.Subject, kept, workload, chain, t.TransactionContext, t.RequestContext, t.ExpiresAt)
}

func (m *Minter) sign(txn, sub string, scopes []string, wl string, chain []string, tctx, rctx map[string]any, notAfter time.Time) (extauthz.Token, error) {
	now := m.now().Truncate(time.Second)
	exp := now.Add(m.opts.TTL)
	if !notAfter.IsZero() && notAfter.Before(exp) {
		exp = notAfter.Truncate(time.Second)
	}
	if !exp.After(now) {
		return extauthz.Token{}, ErrOutlives
	}
	c := jwt.MapClaims{
		"iat":    now.Unix(),
		"exp":    exp.Unix(),
		"aud":    m.opts.TrustDomain,
		"txn":    txn,
		"sub":    sub,
		"scope":  strings.Join(scopes, " "),
		"req_wl": wl,
	}
	if m.opts.Issuer != "" {
		c["iss"] = m.opts.Issuer
	}
	if len(tctx) > 0 {
		c["tctx"] = tctx
	}
	if len(rctx) > 0 {
		c["rctx"] = rctx
	}
	if len(chain) > 0 {
		c[ChainClaim] = chain
	}
	tok := jwt.NewWithClaims(m.method, c)
	tok.Header["typ"] = Type
	tok.Header["kid"] = m.opts.Key.ID
	s, err := tok.SignedString(m.opts.Key.Signer())
	if err != nil {
		return extauthz.Token{}, fmt.Errorf("%w: signing a Txn-Token: %v", extauthz.ErrInternal, err)
	}
	return extauthz.Token{Value: s, ExpiresAt: exp}, nil
}

// validRequestID accepts 1–128 visible ASCII characters, no quote or
// backslash, so a client-chosen id cannot smuggle anything into logs.
func validRequestID(s string) bool {
	if s == "" || len(s) > maxRequestID {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
