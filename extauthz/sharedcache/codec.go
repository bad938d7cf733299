package sharedcache

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/tokentailor/tokentailor/extauthz"
)

// MaxValueBytes bounds a value read from Redis before it is decoded.
const MaxValueBytes = 64 << 10

// IntrospectionEntry is a shared introspection answer: a principal, or the
// refusal an answer led to.
type IntrospectionEntry struct {
	// Principal is the active token's principal, without its Credential;
	// nil when refused.
	Principal *extauthz.Principal
	// NotBefore is the answer's nbf, zero when absent.
	NotBefore time.Time
	// Refusal is why the token was refused (ErrTokenInactive,
	// ErrTokenExpired, ErrWrongAudience, ErrUnknownIssuer, ErrInvalidToken);
	// nil when active. Any other error cannot be shared.
	Refusal error
}

// refusals are the shareable refusals and their wire codes.
var refusals = []struct {
	code string
	err  error
}{
	{"inactive", extauthz.ErrTokenInactive},
	{"expired", extauthz.ErrTokenExpired},
	{"not_yet_valid", extauthz.ErrTokenNotYetValid},
	{"wrong_audience", extauthz.ErrWrongAudience},
	{"unknown_issuer", extauthz.ErrUnknownIssuer},
	{"invalid_token", extauthz.ErrInvalidToken},
}

// ErrNotShareable is returned for an entry whose refusal has no wire code.
var ErrNotShareable = errors.New("shared cache: entry cannot be shared")

// wireVersion is the first field of every value; a reader refuses others.
const wireVersion = 1

type wireIntrospection struct {
	V             int            `json:"v"`
	Refusal       string         `json:"r,omitempty"`
	Issuer        string         `json:"iss,omitempty"`
	Subject       string         `json:"sub,omitempty"`
	ClientID      string         `json:"cid,omitempty"`
	Audience      []string       `json:"aud,omitempty"`
	Scopes        []string       `json:"scp,omitempty"`
	Claims        map[string]any `json:"cl,omitempty"`
	ExpiresAt     int64          `json:"exp,omitempty"` // Unix ms
	ExpiryUnknown bool           `json:"expu,omitempty"`
	IssuedAt      int64          `json:"iat,omitempty"` // Unix ms
	NotBefore     int64          `json:"nbf,omitempty"` // Unix ms
}

// EncodeIntrospection encodes e for Set(KindIntrospection, …). The
// principal's Credential is never encoded.
func EncodeIntrospection(e IntrospectionEntry) ([]byte, error) {
	w := wireIntrospection{V: wireVersion}
	if e.Refusal != nil {
		for _, r := range refusals {
			if errors.Is(e.Refusal, r.err) {
				w.Refusal = r.code
				break
			}
		}
		if w.Refusal == "" {
			return nil, fmt.Errorf("%w: refusal %v", ErrNotShareable, e.Refusal)
		}
		return json.Marshal(w)
	}
	p := e.Principal
	if p == nil || p.ExpiresAt.IsZero() {
		return nil, fmt.Errorf("%w: no principal or no expiry", ErrNotShareable)
	}
	w.Issuer, w.Subject, w.ClientID = p.Issuer, p.Subject, p.ClientID
	w.Audience, w.Scopes, w.Claims = p.Audience, p.Scopes, p.Claims
	w.ExpiresAt, w.ExpiryUnknown = p.ExpiresAt.UnixMilli(), p.ExpiryUnknown
	w.IssuedAt, w.NotBefore = unixMilli(p.IssuedAt), unixMilli(e.NotBefore)
	b, err := json.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotShareable, err)
	}
	return b, nil
}

// DecodeIntrospection reads a value written by EncodeIntrospection. A
// refusal comes back as an error wrapping its extauthz sentinel.
func DecodeIntrospection(b []byte) (IntrospectionEntry, error) {
	if len(b) > MaxValueBytes {
		return IntrospectionEntry{}, fmt.Errorf("%w: %d bytes", ErrMalformedValue, len(b))
	}
	var w wireIntrospection
	if err := json.Unmarshal(b, &w); err != nil {
		return IntrospectionEntry{}, fmt.Errorf("%w: %w", ErrMalformedValue, err)
	}
	if w.V != wireVersion {
		return IntrospectionEntry{}, fmt.Errorf("%w: version %d", ErrMalformedValue, w.V)
	}
	if w.Refusal != "" {
		for _, r := range refusals {
			if r.code == w.Refusal {
				return IntrospectionEntry{Refusal: fmt.Errorf("%w (shared cache)", r.err)}, nil
			}
		}
		return IntrospectionEntry{}, fmt.Errorf("%w: unknown refusal", ErrMalformedValue)
	}
	if w.ExpiresAt <= 0 {
		return IntrospectionEntry{}, fmt.Errorf("%w: no expiry", ErrMalformedValue)
	}
	return IntrospectionEntry{
		Principal: &extauthz.Principal{
			Issuer:        w.Issuer,
			Subject:       w.Subject,
			ClientID:      w.ClientID,
			Audience:      w.Audience,
			Scopes:        w.Scopes,
			Claims:        w.Claims,
			Unbound:       extauthz.Unconfirmed(w.Claims),
			ExpiresAt:     time.UnixMilli(w.ExpiresAt),
			ExpiryUnknown: w.ExpiryUnknown,
			IssuedAt:      fromUnixMilli(w.IssuedAt),
		},
		NotBefore: fromUnixMilli(w.NotBefore),
	}, nil
}

type wireToken struct {
	V         int    `json:"v"`
	Value     string `json:"t"`
	ExpiresAt int64  `json:"exp"` // Unix ms
}

// EncodeToken encodes an exchanged token for Set(KindExchange, …); it must
// have an expiry.
func EncodeToken(t extauthz.Token) ([]byte, error) {
	if t.Value == "" || t.ExpiresAt.IsZero() {
		return nil, fmt.Errorf("%w: token without value or expiry", ErrNotShareable)
	}
	return json.Marshal(wireToken{V: wireVersion, Value: t.Value, ExpiresAt: t.ExpiresAt.UnixMilli()})
}

// DecodeToken reads a value written by EncodeToken.
func DecodeToken(b []byte) (extauthz.Token, error) {
	if len(b) > MaxValueBytes {
		return extauthz.Token{}, fmt.Errorf("%w: %d bytes", ErrMalformedValue, len(b))
	}
	var w wireToken
	if err := json.Unmarshal(b, &w); err != nil {
		return extauthz.Token{}, fmt.Errorf("%w: %w", ErrMalformedValue, err)
	}
	if w.V != wireVersion || w.Value == "" || w.ExpiresAt <= 0 {
		return extauthz.Token{}, fmt.Errorf("%w: version, token or expiry missing", ErrMalformedValue)
	}
	return extauthz.Token{Value: w.Value, ExpiresAt: time.UnixMilli(w.ExpiresAt)}, nil
}

func unixMilli(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromUnixMilli(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}
