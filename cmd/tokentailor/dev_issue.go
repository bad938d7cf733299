package main

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/tokentailor/tokentailor/extauthz"
)

// devTokenRequest asks the dev server for a token (`tokentailor dev token`,
// and the sample tokens dev prints).
type devTokenRequest struct {
	// Subject is the token's sub.
	Subject string `json:"sub"`
	// Scopes go into the space-separated scope claim.
	Scopes []string `json:"scopes"`
	// Audiences are the token's aud.
	Audiences []string `json:"aud"`
	// Claims are extra claims; registered and scope claims are refused.
	Claims map[string]any `json:"claims"`
	// TTL is the token's lifetime, as a Go duration ("5m").
	TTL string `json:"ttl"`
	// Opaque asks for an opaque token (introspected) instead of a JWT.
	Opaque bool `json:"opaque"`
}

// ErrBadTokenRequest is a devTokenRequest the dev server refuses.
var ErrBadTokenRequest = errors.New("bad token request")

const devMaxTTL = 24 * time.Hour

// devReservedClaims are set from the request's other fields or by the server.
var devReservedClaims = map[string]string{
	"iss": "", "sub": "-sub", "aud": "-aud", "exp": "-ttl", "nbf": "", "iat": "", "jti": "", "scope": "-scope",
	"scp": "-scope", "active": "", "token_type": "",
}

// validate checks the request and returns its lifetime.
func (q *devTokenRequest) validate() (time.Duration, error) {
	ttl, err := time.ParseDuration(q.TTL)
	if err != nil {
		return 0, fmt.Errorf("%w: ttl %q: want a duration such as 5m or 1h", ErrBadTokenRequest, q.TTL)
	}
	if ttl <= 0 || ttl > devMaxTTL {
		return 0, fmt.Errorf("%w: ttl %s: want more than 0 and at most 24h", ErrBadTokenRequest, ttl)
	}
	if q.Subject == "" || len(q.Subject) > 256 || strings.ContainsFunc(q.Subject, isControlRune) {
		return 0, fmt.Errorf("%w: sub: want 1 to 256 printable characters", ErrBadTokenRequest)
	}
	for _, s := range q.Scopes {
		if !validScopeToken(s) {
			return 0, fmt.Errorf("%w: scope %q: a scope is printable ASCII without spaces, quotes or backslashes (RFC 6749 §3.3)", ErrBadTokenRequest, s)
		}
	}
	if len(q.Audiences) == 0 {
		return 0, fmt.Errorf("%w: aud: at least one audience is required", ErrBadTokenRequest)
	}
	for _, a := range q.Audiences {
		if a == "" || strings.ContainsFunc(a, isControlRune) {
			return 0, fmt.Errorf("%w: aud %q: want a non-empty printable string", ErrBadTokenRequest, a)
		}
	}
	if len(q.Claims) > 32 {
		return 0, fmt.Errorf("%w: at most 32 claims", ErrBadTokenRequest)
	}
	for name := range q.Claims {
		if flag, reserved := devReservedClaims[name]; reserved {
			if flag != "" {
				return 0, fmt.Errorf("%w: claim %q: set it with %s", ErrBadTokenRequest, name, flag)
			}
			return 0, fmt.Errorf("%w: claim %q is set by the dev server", ErrBadTokenRequest, name)
		}
		if name == "" {
			return 0, fmt.Errorf("%w: a claim needs a name", ErrBadTokenRequest)
		}
	}
	return ttl, nil
}

func isControlRune(r rune) bool { return r < 0x20 || r == 0x7f }

// validScopeToken reports whether s is an RFC 6749 §3.3 scope-token.
func validScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// issue makes the token a devTokenRequest asks for: a signed at+jwt, or an
// opaque token remembered (bounded) until it expires.
func (d *devAuthServer) issue(q devTokenRequest) (token string, exp time.Time, err error) {
	ttl, err := q.validate()
	if err != nil {
		return "", time.Time{}, err
	}
	now := d.now()
	exp = now.Add(ttl)
	claims := map[string]any{"email": q.Subject + "@example.com", "tenant": "acme", "client_id": "dev-app"}
	maps.Copy(claims, q.Claims)
	claims["iss"], claims["sub"], claims["iat"], claims["exp"], claims["jti"] = d.url, q.Subject, now.Unix(), exp.Unix(), mustRandom()
	if len(q.Audiences) == 1 {
		claims["aud"] = q.Audiences[0]
	} else {
		claims["aud"] = slices.Clone(q.Audiences)
	}
	if len(q.Scopes) > 0 {
		claims["scope"] = strings.Join(q.Scopes, " ")
	}
	if !q.Opaque {
		token, err = d.signJWT(claims)
		return token, exp, err
	}
	secret, err := randomString(32)
	if err != nil {
		return "", time.Time{}, err
	}
	token = devOpaquePrefix + secret
	// Stored as JSON numbers would come back from a JWT, so lookup reads both alike.
	claims["iat"], claims["exp"] = float64(now.Unix()), float64(exp.Unix())
	d.opaque.Set(extauthz.TokenHash(token), claims, ttl)
	return token, exp, nil
}

// serveIssue answers POST devPathIssue: a devTokenRequest in, a token out.
// The caller proves it read the state file by sending issueSecret.
func (d *devAuthServer) serveIssue(w http.ResponseWriter, r *http.Request) {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(d.issueSecret)) != 1 {
		writeJSONStatus(w, http.StatusUnauthorized, map[string]string{"error": "the dev state file's secret is required"})
		return
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, devMaxBody))
	dec.DisallowUnknownFields()
	var q devTokenRequest
	if err := dec.Decode(&q); err != nil {
		writeJSONStatus(w, http.StatusBadRequest, map[string]string{"error": "unreadable token request: " + err.Error()})
		return
	}
	token, exp, err := d.issue(q)
	if err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, ErrBadTokenRequest) {
			status = http.StatusBadRequest
		}
		writeJSONStatus(w, status, map[string]string{"error": err.Error()})
		return
	}
	writeJSONStatus(w, http.StatusOK, devTokenAnswer{Token: token, ExpiresAt: exp.Unix(), Opaque: q.Opaque})
}

// devTokenAnswer is devPathIssue's answer.
type devTokenAnswer struct {
	// Token is the issued token.
	Token string `json:"token"`
	// ExpiresAt is its exp, in seconds since the epoch.
	ExpiresAt int64 `json:"expires_at"`
	// Opaque tells an opaque token from a JWT.
	Opaque bool `json:"opaque"`
}
