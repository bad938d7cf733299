package response

import (
	"errors"
	"net/http"
	"strings"

	"github.com/tokentailor/tokentailor/extauthz"
)

// Denial is what a deny reason means for the client and for operators: its
// classification by the table, computed once per denial (Builder.Deny) and
// carried to logs and metrics with the request's outcome.
type Denial struct {
	// Status is the HTTP status sent to the client: 400, 401, 403 or 503.
	Status int
	// Reason is a stable snake_case label for logs and the metric "reason"
	// label, e.g. "token_expired". It never holds request data.
	Reason string
	// Code is the RFC 6750 §3.1 error code ("invalid_token",
	// "insufficient_scope") or "" when none applies: a request without any
	// credential (RFC 6750 §3.1: SHOULD NOT include one), a request no route
	// allows, or a failure of tokentailor or the authorization server, which
	// the token is not to blame for.
	Code string
	// Challenge is the WWW-Authenticate value without a realm, e.g.
	// `Bearer error="invalid_token", error_description="the access token expired"`,
	// or "" when no challenge is sent (403 without a scope problem, 503).
	// Builder adds its realm.
	Challenge string
	// Description is a short, fixed, human-readable explanation safe to show
	// the client: it never holds the token, claims or configuration details.
	Description string
}

// row is one line of the mapping table.
type row struct {
	err error
	// status is the HTTP status.
	status int
	// reason is the stable label.
	reason string
	// code is the RFC 6750 error code, "" for none.
	code string
	// challenge says whether a WWW-Authenticate header is sent.
	challenge bool
	// desc is the client-safe description.
	desc string
}

// rows is THE table: every extauthz deny sentinel and what it becomes.
// Classify takes the first row whose sentinel errors.Is matches, so failures
// that are not the token's fault come first: an error that wraps both
// ErrKeysUnavailable and ErrUnknownKey is a 503, not a 401 blaming the token.
// The last row is the fallback for nil and unknown errors (fail closed).
var rows = [...]row{
	{extauthz.ErrKeysUnavailable, http.StatusServiceUnavailable, "keys_unavailable", "", false,
		"the service is temporarily unavailable"},
	{extauthz.ErrIssuerUnavailable, http.StatusServiceUnavailable, "issuer_unavailable", "", false,
		"the service is temporarily unavailable"},

	{extauthz.ErrNoCredential, http.StatusUnauthorized, "credential_missing", "", true,
		"an access token is required"},
	{extauthz.ErrMalformedCredential, http.StatusUnauthorized, "credential_malformed", "invalid_token", true,
		"the authorization header is malformed"},
	{extauthz.ErrInvalidToken, http.StatusUnauthorized, "token_invalid", "invalid_token", true,
		"the access token is invalid"},
	{extauthz.ErrTokenExpired, http.StatusUnauthorized, "token_expired", "invalid_token", true,
		"the access token expired"},
	{extauthz.ErrTokenNotYetValid, http.StatusUnauthorized, "token_not_yet_valid", "invalid_token", true,
		"the access token is not yet valid"},
	{extauthz.ErrUnknownIssuer, http.StatusUnauthorized, "issuer_unknown", "invalid_token", true,
		"the access token is not accepted here"},
	{extauthz.ErrWrongAudience, http.StatusUnauthorized, "audience_mismatch", "invalid_token", true,
		"the access token is not accepted here"},
	{extauthz.ErrUnknownKey, http.StatusUnauthorized, "key_unknown", "invalid_token", true,
		"the access token is invalid"},
	{extauthz.ErrTokenInactive, http.StatusUnauthorized, "token_inactive", "invalid_token", true,
		"the access token is not active"},
	{extauthz.ErrExpiresTooSoon, http.StatusUnauthorized, "token_expires_too_soon", "invalid_token", true,
		"the access token expires too soon"},

	{extauthz.ErrInsufficientScope, http.StatusForbidden, "scope_insufficient", "insufficient_scope", true,
		"the access token lacks a required scope"},
	{extauthz.ErrClaimMismatch, http.StatusForbidden, "claim_mismatch", "insufficient_scope", true,
		"the access token does not grant access to this resource"},
	{extauthz.ErrExchangeRefused, http.StatusForbidden, "exchange_refused", "insufficient_scope", true,
		"the access token does not grant access to this resource"},
	{extauthz.ErrNoEmbeddedToken, http.StatusForbidden, "embedded_token_missing", "insufficient_scope", true,
		"the access token does not grant access to this resource"},
	{extauthz.ErrNoRoute, http.StatusForbidden, "route_unknown", "", false,
		"no policy allows this request"},
	{extauthz.ErrAmbiguousRequest, http.StatusBadRequest, "request_ambiguous", "", false,
		"the request path, host or method is not in canonical form"},

	// ErrInternal doubles as the fallback and must stay last.
	{extauthz.ErrInternal, http.StatusServiceUnavailable, "internal", "", false,
		"the service is temporarily unavailable"},
}

// internalRow is the index of the fail-closed fallback row.
const internalRow = len(rows) - 1

// denials holds the Denial of each row, computed once.
var denials = func() [len(rows)]Denial {
	var out [len(rows)]Denial
	for i, r := range rows {
		o := Denial{Status: r.status, Reason: r.reason, Code: r.code, Description: r.desc}
		if r.challenge {
			o.Challenge = challenge("", r.code, r.desc, "")
		}
		out[i] = o
	}
	return out
}()

// Classify maps err to its Denial with errors.Is over the table. A nil or
// unknown error is a 503 "internal": tokentailor fails closed and never lets a
// request through because it could not tell what went wrong. For an
// *extauthz.ScopeError the challenge names the required scopes (RFC 6750 §3).
func Classify(err error) Denial {
	i, scopes := classify(err)
	o := denials[i]
	if len(scopes) > 0 {
		o.Challenge = challenge("", o.Code, o.Description, scopeParam(scopes))
	}
	return o
}

// Reasons lists every stable reason label in table order, e.g. to
// pre-register metric series or to document them.
func Reasons() []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r.reason
	}
	return out
}

// classify returns the row index for err and, for a scope error, the scopes
// the route requires.
func classify(err error) (int, []string) {
	if err == nil {
		return internalRow, nil
	}
	for i := range rows {
		if errors.Is(err, rows[i].err) {
			if rows[i].err == extauthz.ErrInsufficientScope {
				var se *extauthz.ScopeError
				if errors.As(err, &se) && se != nil {
					return i, se.Required
				}
			}
			return i, nil
		}
	}
	return internalRow, nil
}

// challenge builds a Bearer challenge (RFC 6750 §3). realm, desc and scope are
// put in quoted-strings; desc values in the table stay inside the
// error_description charset (%x20-21 / %x23-5B / %x5D-7E).
func challenge(realm, code, desc, scope string) string {
	var b strings.Builder
	b.WriteString("Bearer")
	sep := " "
	param := func(name, value string) {
		b.WriteString(sep)
		b.WriteString(name)
		b.WriteString(`="`)
		b.WriteString(value)
		b.WriteByte('"')
		sep = ", "
	}
	if realm != "" {
		param("realm", quote(realm))
	}
	if code != "" {
		param("error", code)
		param("error_description", desc)
		if scope != "" {
			param("scope", scope)
		}
	}
	return b.String()
}

// quote escapes '"' and '\' for a quoted-string (RFC 9110 §5.6.4) and drops
// control characters, which a header value cannot carry.
func quote(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' || c < 0x20 || c == 0x7f {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c == 0x7f:
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// scopeParam joins the scopes that are valid RFC 6749 scope-tokens
// (%x21 / %x23-5B / %x5D-7E) with spaces; others cannot be quoted and are
// left out rather than corrupting the header.
func scopeParam(scopes []string) string {
	var b strings.Builder
	for _, s := range scopes {
		if !isScopeToken(s) {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(s)
	}
	return b.String()
}

func isScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c == '"' || c == '\\' || c > 0x7e {
			return false
		}
	}
	return true
}
