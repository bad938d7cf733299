package main

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"mime"
	"net/http"
	"net/url"
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
