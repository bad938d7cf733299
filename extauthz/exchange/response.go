package exchange

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
)

// ErrMalformedResponse is wrapped by every error of ParseResponse.
var ErrMalformedResponse = errors.New("malformed token exchange response")

// maxExpiresIn bounds expires_in (about 31 years) so it converts to a
// time.Duration without overflow.
const maxExpiresIn = 1 << 30

// Response is a successful RFC 8693 §2.2.1 answer.
type Response struct {
	// AccessToken is the issued token (whatever its type).
	AccessToken string
	// IssuedTokenType is the URN of the issued token's type; may be empty.
	IssuedTokenType string
	// TokenType is how to use the token, "Bearer" or "N_A".
	TokenType string
	// ExpiresIn is the lifetime in seconds; 0 when absent.
	ExpiresIn int64
	// Scope is the granted scope when the server says it.
	Scope string
}

// ParseResponse parses a 200 answer of the token endpoint. access_token and
// token_type are required; a member of the wrong type is an error.
func ParseResponse(body []byte) (*Response, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil || m == nil {
		return nil, fmt.Errorf("%w: not a JSON object", ErrMalformedResponse)
	}
	r := &Response{}
	for _, f := range []struct {
		name     string
		dst      *string
		required bool
	}{
		{"access_token", &r.AccessToken, true},
		{"token_type", &r.TokenType, true},
		{"issued_token_type", &r.IssuedTokenType, false},
		{"scope", &r.Scope, false},
	} {
		raw, ok := m[f.name]
		if !ok || string(raw) == "null" {
			if f.required {
				return nil, fmt.Errorf("%w: %q is missing", ErrMalformedResponse, f.name)
			}
			continue
		}
		if err := json.Unmarshal(raw, f.dst); err != nil {
			return nil, fmt.Errorf("%w: %q is not a string", ErrMalformedResponse, f.name)
		}
		if f.required && *f.dst == "" {
			return nil, fmt.Errorf("%w: %q is empty", ErrMalformedResponse, f.name)
		}
	}
	if raw, ok := m["expires_in"]; ok && string(raw) != "null" {
		var f float64
		if err := json.Unmarshal(raw, &f); err != nil || math.IsNaN(f) || f < 0 || f > maxExpiresIn {
			return nil, fmt.Errorf("%w: \"expires_in\" is not a number of seconds", ErrMalformedResponse)
		}
		r.ExpiresIn = int64(f)
	}
	return r, nil
}
