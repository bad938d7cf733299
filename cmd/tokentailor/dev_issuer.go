package main

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/cache"
	"github.com/tokentailor/tokentailor/extauthz/mint"
)

// The dev authorization server is written here rather than reused from
// extauthz/authztest: that double is built for tests (every constructor takes
// a testing.TB and fails through it, it records every form and header it
// receives without bound, client secrets included, it listens only on a random
// httptest port, and it generates RSA and P-521 keys on start). Dev mode needs
// the opposite: a fixed loopback address, bounded state, no secrets kept, and
// clear errors instead of test failures.

// Paths of the dev authorization server, below its issuer URL.
const (
	devPathOIDC       = "/.well-known/openid-configuration"
	devPathOAuth      = "/.well-known/oauth-authorization-server"
	devPathJWKS       = "/jwks.json"
	devPathIntrospect = "/introspect"
	devPathToken      = "/token"
	devPathIssue      = "/dev/tokens" // for `tokentailor dev token`
)

// RFC 8693 identifiers.
const (
	grantTokenExchange      = "urn:ietf:params:oauth:grant-type:token-exchange"
	tokenTypeAccessToken    = "urn:ietf:params:oauth:token-type:access_token"
	tokenTypeJWT            = "urn:ietf:params:oauth:token-type:jwt"
	devOpaquePrefix         = "dev_at_"
	devMaxBody              = 64 << 10
	devMaxOpaqueTokens      = 10000
	devExchangeTTL          = 5 * time.Minute
	devClientCredentialsTTL = 5 * time.Minute
)

// devAuthServer is dev mode's built-in authorization server: OIDC and RFC
// 8414 discovery, a JWKS, RFC 7662 introspection of the tokens it issued, an
// RFC 8693 token endpoint (token exchange for exchangeAudiences, and the
// client credentials grant), and devPathIssue, where `tokentailor dev token`
// gets tokens with chosen scopes, claims, audience and lifetime.
type devAuthServer struct {
	url          string // issuer identifier, e.g. http://127.0.0.1:9092
	key          *mint.Key
	jwks         []byte
	clientID     string // tokentailor's client (introspection, exchange)
	clientSecret string
	issueSecret  string // bearer secret of devPathIssue, shared through the state file
	// exchangeAudiences are the audiences token exchange issues tokens for.
	exchangeAudiences []string
	// opaque maps TokenHash(token) to the claims it stands for; bounded.
	opaque *cache.Cache[map[string]any]
	now    func() time.Time
}

// newDevAuthServer makes a server with a fresh Ed25519 key and fresh secrets.
func newDevAuthServer(url, clientID string, exchangeAudiences []string) (*devAuthServer, error) {
	key, err := mint.GenerateKey(mint.AlgEdDSA)
	if err != nil {
		return nil, err
	}
	jwks, err := json.Marshal(map[string]any{"keys": []json.RawMessage{key.JWK()}})
	if err != nil {
		return nil, err
	}
	clientSecret, err := randomString(32)
	if err != nil {
		return nil, err
	}
	issueSecret, err := randomString(32)
	if err != nil {
		return nil, err
	}
	return &devAuthServer{
		url: url, key: key, jwks: jwks, clientID: clientID, clientSecret: clientSecret, issueSecret: issueSecret,
		exchangeAudiences: exchangeAudiences, opaque: cache.New[map[string]any]("dev_opaque", devMaxOpaqueTokens, nil),
		now: time.Now,
	}, nil
}

func randomString(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// Handler serves every endpoint of the server.
func (d *devAuthServer) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+devPathOIDC, d.serveMetadata)
	mux.HandleFunc("GET "+devPathOAuth, d.serveMetadata)
	mux.HandleFunc("GET "+devPathJWKS, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(d.jwks)
	})
	mux.HandleFunc("POST "+devPathIntrospect, d.serveIntrospect)
	mux.HandleFunc("POST "+devPathToken, d.serveToken)
	mux.HandleFunc("POST "+devPathIssue, d.serveIssue)
	return mux
}

func (d *devAuthServer) serveMetadata(w http.ResponseWriter, _ *http.Request) {
	writeJSONStatus(w, http.StatusOK, map[string]any{
		"issuer":                                d.url,
		"jwks_uri":                              d.url + devPathJWKS,
		"introspection_endpoint":                d.url + devPathIntrospect,
		"token_endpoint":                        d.url + devPathToken,
		"grant_types_supported":                 []string{grantTokenExchange, "client_credentials"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
		"introspection_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
		"id_token_signing_alg_values_supported":         []string{"EdDSA"},
		"response_types_supported":                      []string{"token"},
		"subject_types_supported":                       []string{"public"},
	})
}

// oauthFail answers an OAuth error (RFC 6749 §5.2) with a description that
// never holds a token.
func oauthFail(w http.ResponseWriter, status int, code, description string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="tokentailor-dev"`)
	}
	writeJSONStatus(w, status, map[string]string{"error": code, "error_description": description})
}

func writeJSONStatus(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// clientForm reads a client's form-encoded POST, bounded, and authenticates
// the client (client_secret_basic or client_secret_post). It returns
// ok=false when it has already answered.
func (d *devAuthServer) clientForm(w http.ResponseWriter, r *http.Request) (form url.Values, ok bool) {
	r.Body = http.MaxBytesReader(w, r.Body, devMaxBody)
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
		oauthFail(w, http.StatusBadRequest, "invalid_request", "want a form (application/x-www-form-urlencoded)")
		return nil, false
	}
	if err := r.ParseForm(); err != nil {
		oauthFail(w, http.StatusBadRequest, "invalid_request", "unreadable form")
		return nil, false
	}
	id, secret, basic := r.BasicAuth()
	if !basic {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	} else if r.PostForm.Has("client_secret") {
		oauthFail(w, http.StatusBadRequest, "invalid_request", "more than one client authentication method")
		return nil, false
	}
	// RFC 6749 §2.3.1: Basic credentials are form-urlencoded first.
	if basic {
		id, secret = formUnescape(id), formUnescape(secret)
	}
	if subtle.ConstantTimeCompare([]byte(id), []byte(d.clientID)) != 1 ||
		subtle.ConstantTimeCompare([]byte(secret), []byte(d.clientSecret)) != 1 {
		oauthFail(w, http.StatusUnauthorized, "invalid_client", "client authentication failed")
		return nil, false
	}
	return r.PostForm, true
}

func formUnescape(s string) string {
	u, err := url.QueryUnescape(s)
	if err != nil {
		return s
	}
	return u
}

// lookup returns the claims of an active token this server issued: an opaque
// token from the store, or a JWT it signed, verified. ok is false for
// anything else (unknown, expired, forged, malformed).
func (d *devAuthServer) lookup(token string) (claims map[string]any, ok bool) {
	now := d.now()
	if strings.HasPrefix(token, devOpaquePrefix) {
		c, found := d.opaque.Get(extauthz.TokenHash(token))
		if !found {
			return nil, false
		}
		if exp, ok := numericDate(c["exp"]); !ok || !now.Before(exp) {
			return nil, false
		}
		return maps.Clone(c), true
	}
	mc := jwt.MapClaims{}
	parsed, err := jwt.NewParser(
		jwt.WithValidMethods([]string{"EdDSA"}), jwt.WithIssuer(d.url), jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(d.now),
	).ParseWithClaims(token, mc, func(*jwt.Token) (any, error) { return d.key.Public(), nil })
	if err != nil || parsed.Header["typ"] != "at+jwt" {
		return nil, false
	}
	return mc, true
}

// numericDate reads a JSON number of seconds since the epoch.
func numericDate(v any) (time.Time, bool) {
	switch n := v.(type) {
	case float64:
		return time.Unix(int64(n), 0), true
	case int64:
		return time.Unix(n, 0), true
	case json.Number:
		i, err := n.Int64()
		return time.Unix(i, 0), err == nil
	}
	return time.Time{}, false
}

// serveIntrospect is RFC 7662 introspection for tokentailor's client.
func (d *devAuthServer) serveIntrospect(w http.ResponseWriter, r *http.Request) {
	form, ok := d.clientForm(w, r)
	if !ok {
		return
	}
	token := form.Get("token")
	if token == "" {
		oauthFail(w, http.StatusBadRequest, "invalid_request", "token is required")
		return
	}
	claims, active := d.lookup(token)
	if !active {
		writeJSONStatus(w, http.StatusOK, map[string]any{"active": false})
		return
	}
	claims["active"] = true
	claims["token_type"] = "Bearer"
	writeJSONStatus(w, http.StatusOK, claims)
}

// serveToken is the token endpoint: RFC 8693 token exchange and the client
// credentials grant, for tokentailor's client.
func (d *devAuthServer) serveToken(w http.ResponseWriter, r *http.Request) {
	form, ok := d.clientForm(w, r)
	if !ok {
		return
	}
	switch form.Get("grant_type") {
	case grantTokenExchange:
		d.exchange(w, form)
	case "client_credentials":
		now := d.now()
		tok, err := d.signJWT(jwt.MapClaims{
			"iss": d.url, "sub": d.clientID, "client_id": d.clientID, "iat": now.Unix(),
			"exp": now.Add(devClientCredentialsTTL).Unix(), "jti": mustRandom(),
		})
		if err != nil {
			oauthFail(w, http.StatusInternalServerError, "server_error", "signing failed")
			return
		}
		writeJSONStatus(w, http.StatusOK, map[string]any{
			"access_token": tok, "token_type": "Bearer", "expires_in": int64(devClientCredentialsTTL / time.Second),
		})
	default:
		oauthFail(w, http.StatusBadRequest, "unsupported_grant_type", "token exchange and client_credentials only")
	}
}

// exchange issues, for one of exchangeAudiences, a short-lived JWT that
// carries the subject token's sub and client_id, the requested scopes it
// holds, and an act claim naming tokentailor (RFC 8693 §4.1). Its exp is
// never later than the subject token's.
func (d *devAuthServer) exchange(w http.ResponseWriter, form url.Values) {
	subjectType := form.Get("subject_token_type")
	if form.Get("subject_token") == "" || subjectType == "" {
		oauthFail(w, http.StatusBadRequest, "invalid_request", "subject_token and subject_token_type are required")
		return
	}
	if subjectType != tokenTypeAccessToken && subjectType != tokenTypeJWT {
		oauthFail(w, http.StatusBadRequest, "invalid_request", "subject_token_type must be access_token or jwt")
		return
	}
	if (form.Get("actor_token") == "") != (form.Get("actor_token_type") == "") {
		oauthFail(w, http.StatusBadRequest, "invalid_request", "actor_token and actor_token_type go together")
		return
	}
	requested := form.Get("requested_token_type")
	if requested != "" && requested != tokenTypeAccessToken && requested != tokenTypeJWT {
		oauthFail(w, http.StatusBadRequest, "invalid_request", "requested_token_type must be access_token or jwt")
		return
	}
	targets := append(slices.Clone(form["audience"]), form["resource"]...)
	if len(targets) != 1 || !slices.Contains(d.exchangeAudiences, targets[0]) {
		oauthFail(w, http.StatusBadRequest, "invalid_target",
			fmt.Sprintf("ask for exactly one audience of %s", strings.Join(d.exchangeAudiences, ", ")))
		return
	}
	subject, ok := d.lookup(form.Get("subject_token"))
	if !ok {
		oauthFail(w, http.StatusBadRequest, "invalid_request", "subject_token is invalid, expired or not issued here")
		return
	}
	if at := form.Get("actor_token"); at != "" {
		if _, ok := d.lookup(at); !ok {
			oauthFail(w, http.StatusBadRequest, "invalid_request", "actor_token is invalid, expired or not issued here")
			return
		}
	}
	held := strings.Fields(stringClaim(subject, "scope"))
	scopes := held
	if req := strings.Fields(form.Get("scope")); len(req) > 0 {
		scopes = slices.DeleteFunc(req, func(s string) bool { return !slices.Contains(held, s) })
		if len(scopes) == 0 {
			oauthFail(w, http.StatusBadRequest, "invalid_scope", "the subject token holds none of the requested scopes")
			return
		}
	}
	now := d.now()
	exp := now.Add(devExchangeTTL)
	if subjectExp, ok := numericDate(subject["exp"]); ok && subjectExp.Before(exp) {
		exp = subjectExp
	}
	if !now.Before(exp) {
		oauthFail(w, http.StatusBadRequest, "invalid_request", "subject_token is expired")
		return
	}
	act := map[string]any{"sub": d.clientID}
	if prior, ok := subject["act"].(map[string]any); ok {
		act["act"] = prior // RFC 8693 §4.1: the chain of earlier actors, nested
	}
	claims := jwt.MapClaims{
		"iss": d.url, "sub": subject["sub"], "aud": targets[0], "iat": now.Unix(), "exp": exp.Unix(),
		"jti": mustRandom(), "act": act,
	}
	if cid, ok := subject["client_id"]; ok {
		claims["client_id"] = cid
	}
	if len(scopes) > 0 {
		claims["scope"] = strings.Join(scopes, " ")
	}
	tok, err := d.signJWT(claims)
	if err != nil {
		oauthFail(w, http.StatusInternalServerError, "server_error", "signing failed")
		return
	}
	issued := tokenTypeAccessToken
	if requested == tokenTypeJWT {
		issued = tokenTypeJWT
	}
	answer := map[string]any{
		"access_token": tok, "issued_token_type": issued, "token_type": "Bearer",
		"expires_in": int64(exp.Sub(now) / time.Second),
	}
	if len(scopes) > 0 {
		answer["scope"] = claims["scope"]
	}
	writeJSONStatus(w, http.StatusOK, answer)
}

func stringClaim(c map[string]any, name string) string {
	s, _ := c[name].(string)
	return s
}

func mustRandom() string {
	s, err := randomString(16)
	if err != nil {
		// crypto/rand does not fail on supported platforms (Go 1.24+ crashes
		// the program instead); a time-based id still keeps jti unique.
		return fmt.Sprintf("t%x", time.Now().UnixNano())
	}
	return s
}

func (d *devAuthServer) signJWT(claims jwt.MapClaims) (string, error) {
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	t.Header["typ"] = "at+jwt"
	t.Header["kid"] = d.key.ID
	return t.SignedString(d.key.Signer())
}

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
