package introspect

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// ErrMalformedAnswer is wrapped by every error of ParseAnswer: the
// authorization server's answer is not a usable RFC 7662 response.
// Authenticate wraps it in extauthz.ErrIssuerUnavailable (see the package doc).
var ErrMalformedAnswer = errors.New("malformed introspection answer")

// Answer is a parsed RFC 7662 §2.2 introspection response.
type Answer struct {
	// Active is true only when the answer's "active" member is the JSON
	// true. RFC 7662 §2.2 makes "active" a boolean and every member of an
	// inactive answer meaningless, so anything else (false, "true", 1,
	// null, no member) describes a token that is not active, never a
	// malformed answer: the token is refused (401), not the server (503).
	Active bool
	// Scopes are the scopes found under the configured scope claims.
	Scopes []string
	// ClientID is "client_id".
	ClientID string
	// Subject is "sub".
	Subject string
	// Issuer is "iss".
	Issuer string
	// Audience is "aud", a string or an array of strings.
	Audience []string
	// TokenType is "token_type" (RFC 7662), e.g. "Bearer".
	TokenType string
	// TokenUse is "token_use" (Ory Hydra), e.g. "access_token".
	TokenUse string
	// ExpiresAt, IssuedAt and NotBefore are "exp", "iat" and "nbf"; zero when absent.
	ExpiresAt, IssuedAt, NotBefore time.Time
	// Claims holds every member of the answer.
	Claims map[string]any
}

// maxNumericDate bounds exp/iat/nbf (year ~36812): beyond it a float64 no
// longer converts to time safely.
const maxNumericDate = 1 << 40

// ParseAnswer parses a JSON introspection answer. scopeClaims names the
// members holding scopes, each a space-separated string or an array of
// strings. A body that is not one JSON object is an error. In an active
// answer, a member of the wrong type is an error, never silently ignored; an
// answer whose "active" is not the JSON true is inactive (see Answer.Active).
func ParseAnswer(body []byte, scopeClaims []string) (*Answer, error) {
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("%w: not a JSON object: %s", ErrMalformedAnswer, jsonErrorKind(err))
	}
	return answerFromMap(m, scopeClaims)
}

// jsonErrorKind describes a JSON error without quoting the input.
func jsonErrorKind(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("syntax error at offset %d", syn.Offset)
	case errors.As(err, &typ):
		return "value is " + typ.Value
	default:
		return "unexpected end of input"
	}
}

func answerFromMap(m map[string]any, scopeClaims []string) (*Answer, error) {
	if m == nil {
		return nil, fmt.Errorf("%w: not a JSON object", ErrMalformedAnswer)
	}
	a := &Answer{Claims: m}
	// Only the JSON true is active; any other value, or none, is not
	// (RFC 7662 §2.2), and nothing else of an inactive answer is to be
	// relied on.
	if active, _ := m["active"].(bool); !active {
		return a, nil
	}
	a.Active = true
	var err error
	for _, f := range []struct {
		name string
		dst  *string
	}{
		{"client_id", &a.ClientID}, {"sub", &a.Subject}, {"iss", &a.Issuer},
		{"token_type", &a.TokenType}, {"token_use", &a.TokenUse},
	} {
		if *f.dst, err = optString(m, f.name); err != nil {
			return nil, err
		}
	}
	for _, f := range []struct {
		name string
		dst  *time.Time
	}{
		{"exp", &a.ExpiresAt}, {"iat", &a.IssuedAt}, {"nbf", &a.NotBefore},
	} {
		if *f.dst, err = optTime(m, f.name); err != nil {
			return nil, err
		}
	}
	if a.Audience, err = optStrings(m, "aud"); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, name := range scopeClaims {
		scopes, err := optStrings(m, name)
		if err != nil {
			return nil, err
		}
		for _, s := range scopes {
			for _, f := range strings.Fields(s) {
				if !seen[f] {
					seen[f] = true
					a.Scopes = append(a.Scopes, f)
				}
			}
		}
	}
	return a, nil
}

func optString(m map[string]any, name string) (string, error) {
	v, ok := m[name]
	if !ok || v == nil {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("%w: %q is not a string", ErrMalformedAnswer, name)
	}
	return s, nil
}

// optStrings reads a member that is a string or an array of strings.
func optStrings(m map[string]any, name string) ([]string, error) {
	v, ok := m[name]
	if !ok || v == nil {
		return nil, nil
	}
	switch v := v.(type) {
	case string:
		if v == "" {
			return nil, nil
		}
		return []string{v}, nil
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("%w: %q holds a non-string", ErrMalformedAnswer, name)
			}
			out = append(out, s)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("%w: %q is neither a string nor an array", ErrMalformedAnswer, name)
	}
}

func optTime(m map[string]any, name string) (time.Time, error) {
	v, ok := m[name]
	if !ok || v == nil {
		return time.Time{}, nil
	}
	f, ok := v.(float64)
	if !ok || math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return time.Time{}, fmt.Errorf("%w: %q is not a NumericDate", ErrMalformedAnswer, name)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), nil
}
