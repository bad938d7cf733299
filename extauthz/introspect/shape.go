package introspect

import (
	"errors"
	"fmt"
	"strings"

	"github.com/tokentailor/tokentailor/extauthz"
)

// Alphabets a token's body may be written in (Shape.Alphabet).
const (
	// AlphabetBase64URL is A–Z a–z 0–9 - _ (RFC 4648 §5, no padding): Ory
	// Hydra's, Keycloak's and most random opaque tokens.
	AlphabetBase64URL = "base64url"
	// AlphabetBase64 is A–Z a–z 0–9 + / and the = padding (RFC 4648 §4).
	AlphabetBase64 = "base64"
	// AlphabetHex is 0–9 a–f A–F.
	AlphabetHex = "hex"
	// AlphabetAlnum is A–Z a–z 0–9.
	AlphabetAlnum = "alnum"
)

// MaxShapeSegments bounds Shape.Segments.
const MaxShapeSegments = 16

// ErrShape is returned by NewShapeMatcher for a Shape that cannot be matched.
var ErrShape = errors.New("invalid token shape")

// Shape says what every opaque token of an issuer looks like, so that a
// string that cannot be one of its tokens is refused without a call:
//
//	Prefix + segment ( "." segment ){Segments-1}
//
// where each segment is a non-empty run of Alphabet, and the whole token is
// MinLength to MaxLength bytes long. Ory Hydra's access tokens, for example,
// are "ory_at_" + base64url(32 random bytes) + "." + base64url(HMAC), 94
// bytes with Hydra's default entropy: {Prefix: "ory_at_", Alphabet:
// "base64url", Segments: 2, MinLength: 94, MaxLength: 94}.
type Shape struct {
	// Prefix starts every token, e.g. "ory_at_"; may be empty.
	Prefix string
	// Alphabet is AlphabetBase64URL, AlphabetBase64, AlphabetHex or AlphabetAlnum.
	Alphabet string
	// Segments is the number of "."-separated segments after the prefix;
	// 0 means 1 (no "." at all).
	Segments int
	// MinLength and MaxLength bound the token's length in bytes, prefix
	// included; 0 means no bound.
	MinLength, MaxLength int
}

// ShapeMatcher is a compiled Shape. It is safe for concurrent use.
type ShapeMatcher struct {
	prefix   string
	allowed  [256]bool
	segments int
	min, max int
}

// NewShapeMatcher checks s and compiles it. Errors wrap ErrShape.
func NewShapeMatcher(s Shape) (*ShapeMatcher, error) {
	m := &ShapeMatcher{prefix: s.Prefix, segments: s.Segments, min: s.MinLength, max: s.MaxLength}
	if m.segments == 0 {
		m.segments = 1
	}
	if m.segments < 0 || m.segments > MaxShapeSegments {
		return nil, fmt.Errorf("%w: segments must be 1 to %d", ErrShape, MaxShapeSegments)
	}
	var chars string
	const upper, lower, digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz", "0123456789"
	switch s.Alphabet {
	case AlphabetBase64URL:
		chars = upper + lower + digits + "-_"
	case AlphabetBase64:
		chars = upper + lower + digits + "+/="
	case AlphabetHex:
		chars = digits + "abcdefABCDEF"
	case AlphabetAlnum:
		chars = upper + lower + digits
	default:
		return nil, fmt.Errorf("%w: alphabet %q is not one of %s, %s, %s, %s", ErrShape, s.Alphabet,
			AlphabetBase64URL, AlphabetBase64, AlphabetHex, AlphabetAlnum)
	}
	for i := range len(chars) {
		m.allowed[chars[i]] = true
	}
	for i := range len(s.Prefix) {
		if c := s.Prefix[i]; c <= 0x20 || c >= 0x7f {
			return nil, fmt.Errorf("%w: prefix must be printable ASCII without spaces", ErrShape)
		}
	}
	least := len(s.Prefix) + 2*m.segments - 1 // one byte per segment and the dots
	switch {
	case m.min < 0 || m.max < 0:
		return nil, fmt.Errorf("%w: lengths must not be negative", ErrShape)
	case m.max > 0 && m.max < max(m.min, least):
		return nil, fmt.Errorf("%w: max length %d is below the min length or the %d bytes the prefix and segments need", ErrShape, m.max, least)
	}
	return m, nil
}

// Match returns nil when tok has the shape, else an error wrapping
// extauthz.ErrInvalidToken that says what is wrong but never holds tok.
func (m *ShapeMatcher) Match(tok string) error {
	if m.min > 0 && len(tok) < m.min || m.max > 0 && len(tok) > m.max {
		return fmt.Errorf("%w: token length is not the issuer's", extauthz.ErrInvalidToken)
	}
	body, ok := strings.CutPrefix(tok, m.prefix)
	if !ok {
		return fmt.Errorf("%w: token prefix is not the issuer's", extauthz.ErrInvalidToken)
	}
	segments, run := 1, 0
	for i := range len(body) {
		c := body[i]
		switch {
		case m.allowed[c]:
			run++
			continue
		case c != '.':
			return fmt.Errorf("%w: token has a character outside the issuer's alphabet", extauthz.ErrInvalidToken)
		case run == 0 || segments == m.segments:
			return fmt.Errorf("%w: token segments are not the issuer's", extauthz.ErrInvalidToken)
		}
		segments, run = segments+1, 0
	}
	if run == 0 || segments != m.segments {
		return fmt.Errorf("%w: token segments are not the issuer's", extauthz.ErrInvalidToken)
	}
	return nil
}
