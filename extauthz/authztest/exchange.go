package authztest

import (
	"net/http"
	"net/url"
	"sync"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokentailor/tokentailor/extauthz"
)

// RFC 8693 identifiers the token endpoint double understands.
const (
	GrantTypeTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	TokenTypeAccessToken   = "urn:ietf:params:oauth:token-type:access_token"
	TokenTypeJWT           = "urn:ietf:params:oauth:token-type:jwt"
)

// Exchange is the double's RFC 8693 token endpoint. By default it answers
// every well-formed exchange with an RS256 JWT access token whose sub is
// "exchanged:" + the subject token's ShortTokenHash, aud the requested audience,
// scope the requested scope, and the lifetime of SetExpiresIn.
type Exchange struct {
	endpoint
	is        *Issuer
	mu        sync.Mutex
	expiresIn int64
	refuse    string
	issue     func(form url.Values) map[string]any
	// clientCredentials also answers the client credentials grant.
	clientCredentials bool
}

// Exchange registers the token endpoint at PathToken and returns it. Call it
// once per Issuer.
func (is *Issuer) Exchange(t testing.TB, opts ...EndpointOption) *Exchange {
	t.Helper()
	x := &Exchange{is: is, expiresIn: 300}
	x.endpoint.t = t
	for _, o := range opts {
		o(&x.endpoint)
	}
	is.Handle("POST "+is.prefix+PathToken, http.HandlerFunc(x.serve))
	return x
}

// SetExpiresIn sets the issued tokens' lifetime in seconds; 0 leaves
// expires_in out of the answer (the token's exp stays DefaultTTL).
func (x *Exchange) SetExpiresIn(seconds int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.expiresIn = seconds
}

// RefuseWith makes the endpoint answer 400 with OAuth error code (e.g.
// "invalid_target"); "" restores normal answers.
func (x *Exchange) RefuseWith(code string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.refuse = code
}

// SetIssue replaces the answer: f gets the form and returns the JSON answer
// to send with 200. nil restores the default.
func (x *Exchange) SetIssue(f func(form url.Values) map[string]any) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.issue = f
}

// Calls returns how many requests reached the endpoint.
func (x *Exchange) Calls() int { return x.is.Calls(x.is.prefix + PathToken) }

// AllowClientCredentials makes the endpoint also answer the client
// credentials grant with a token whose sub is "client:" + the client id.
func (x *Exchange) AllowClientCredentials() {
	x.mu.Lock()
	x.clientCredentials = true
	x.mu.Unlock()
}

func (x *Exchange) serve(w http.ResponseWriter, r *http.Request) {
	form, client, ok := x.begin(w, r)
	if !ok {
		return
	}
	x.mu.Lock()
	refuse, issue, expiresIn := x.refuse, x.issue, x.expiresIn
	x.mu.Unlock()
	switch {
	case form.Get("grant_type") == "client_credentials" && x.clientCredentials:
		// tokentailor's own token (RFC 6749 §4.4), e.g. its actor token.
		claims := jwt.MapClaims{"sub": "client:" + client, "client_id": client}
		if expiresIn > 0 {
			claims["exp"] = x.is.now().Unix() + expiresIn
		}
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, map[string]any{"access_token": x.is.Sign(x.endpoint.t, claims), "token_type": "Bearer", "expires_in": expiresIn})
		return
	case form.Get("grant_type") != GrantTypeTokenExchange:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type")
		return
	case form.Get("subject_token") == "" || form.Get("subject_token_type") == "",
		form.Has("actor_token") != form.Has("actor_token_type"):
		oauthError(w, http.StatusBadRequest, "invalid_request")
		return
	case refuse != "":
		oauthError(w, http.StatusBadRequest, refuse)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	if issue != nil {
		writeJSON(w, issue(form))
		return
	}
	claims := jwt.MapClaims{"sub": "exchanged:" + extauthz.ShortTokenHash(form.Get("subject_token"))}
	if aud := form["audience"]; len(aud) > 0 {
		claims["aud"] = aud
	}
	if s := form.Get("scope"); s != "" {
		claims["scope"] = s
	}
	if expiresIn > 0 {
		claims["exp"] = x.is.now().Unix() + expiresIn
	}
	answer := map[string]any{
		"access_token":      x.is.Sign(x.endpoint.t, claims),
		"issued_token_type": TokenTypeAccessToken,
		"token_type":        "Bearer",
	}
	if rt := form.Get("requested_token_type"); rt == TokenTypeJWT {
		answer["issued_token_type"] = TokenTypeJWT
	}
	if expiresIn > 0 {
		answer["expires_in"] = expiresIn
	}
	if s := form.Get("scope"); s != "" {
		answer["scope"] = s
	}
	writeJSON(w, answer)
}
