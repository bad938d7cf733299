package authztest

import (
	"encoding/json"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// MediaTypeIntrospectionJWT is the RFC 9701 media type of signed answers.
const MediaTypeIntrospectionJWT = "application/token-introspection+jwt"

// endpoint holds the knobs shared by the introspection and token endpoints:
// required client credentials, forced failures, delays, and the forms received.
type endpoint struct {
	t          testing.TB
	mu         sync.Mutex
	clientID   string // expected client; "" accepts any caller
	secret     string
	status     int // forced status; 0 answers normally
	rawType    string
	rawBody    []byte // forced answer body when non-nil
	delay      time.Duration
	gate       chan struct{} // when non-nil, requests wait for it to close
	forms      []url.Values
	headers    []http.Header
	lastClient string
}

// EndpointOption configures an introspection or token endpoint.
type EndpointOption func(*endpoint)

// WithClientSecret makes the endpoint require client id and secret, sent
// with client_secret_basic (form-urlencoded, RFC 6749 §2.3.1) or
// client_secret_post; other callers get 401 invalid_client.
func WithClientSecret(id, secret string) EndpointOption {
	return func(e *endpoint) { e.clientID, e.secret = id, secret }
}

// FailWith makes the endpoint answer status with an empty JSON body; 0
// restores normal answers.
func (e *endpoint) FailWith(status int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.status = status
}

// RespondRaw makes the endpoint answer 200 with body as contentType, for
// malformed answers; a nil body restores normal answers.
func (e *endpoint) RespondRaw(contentType string, body []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.rawType, e.rawBody = contentType, body
}

// SetDelay delays every answer by d (the request's context still cancels it).
func (e *endpoint) SetDelay(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.delay = d
}

// Hold makes requests wait until the returned release is called (or their
// context ends): a deterministic way to have calls in flight at once.
// release may be called more than once.
func (e *endpoint) Hold() (release func()) {
	gate := make(chan struct{})
	e.mu.Lock()
	e.gate = gate
	e.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			e.mu.Lock()
			if e.gate == gate {
				e.gate = nil
			}
			e.mu.Unlock()
			close(gate)
		})
	}
}

// Forms returns the forms received so far, in order.
func (e *endpoint) Forms() []url.Values {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]url.Values, len(e.forms))
	for i, f := range e.forms {
		out[i] = maps.Clone(f)
	}
	return out
}

// Headers returns the request headers received so far, in order.
func (e *endpoint) Headers() []http.Header {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]http.Header, len(e.headers))
	for i, h := range e.headers {
		out[i] = h.Clone()
	}
	return out
}

// begin records the request, applies delay/hold/forced answers and checks
// the client. It returns the form and the authenticated client id, or
// ok=false when it has already answered.
func (e *endpoint) begin(w http.ResponseWriter, r *http.Request) (form url.Values, client string, ok bool) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err := r.ParseForm(); err != nil || mt != "application/x-www-form-urlencoded" {
		oauthError(w, http.StatusBadRequest, "invalid_request")
		return nil, "", false
	}
	form = r.PostForm
	client = clientOf(r, form)
	e.mu.Lock()
	e.forms = append(e.forms, maps.Clone(form))
	e.headers = append(e.headers, r.Header.Clone())
	e.lastClient = client
	status, rawType, rawBody, delay, gate := e.status, e.rawType, e.rawBody, e.delay, e.gate
	wantID, wantSecret := e.clientID, e.secret
	e.mu.Unlock()

	if gate != nil {
		select {
		case <-gate:
		case <-r.Context().Done():
			return nil, "", false
		}
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return nil, "", false
		}
	}
	if status != 0 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte("{}"))
		return nil, "", false
	}
	if wantID != "" && !clientAuthenticated(r, form, wantID, wantSecret) {
		oauthError(w, http.StatusUnauthorized, "invalid_client")
		return nil, "", false
	}
	if rawBody != nil {
		w.Header().Set("Content-Type", rawType)
		_, _ = w.Write(rawBody)
		return nil, "", false
	}
	return form, client, true
}

// clientOf returns the client id a request claims, from Basic auth, the form
// or a client assertion's iss (not verified).
func clientOf(r *http.Request, form url.Values) string {
	if id, _, ok := r.BasicAuth(); ok {
		if u, err := url.QueryUnescape(id); err == nil {
			return u
		}
	}
	if id := form.Get("client_id"); id != "" {
		return id
	}
	if a := form.Get("client_assertion"); a != "" {
		var c jwt.RegisteredClaims
		if _, _, err := jwt.NewParser().ParseUnverified(a, &c); err == nil {
			return c.Issuer
		}
	}
	return ""
}

func clientAuthenticated(r *http.Request, form url.Values, id, secret string) bool {
	if u, p, ok := r.BasicAuth(); ok {
		uu, err1 := url.QueryUnescape(u)
		pp, err2 := url.QueryUnescape(p)
		return err1 == nil && err2 == nil && uu == id && pp == secret && !form.Has("client_secret")
	}
	return form.Get("client_id") == id && form.Get("client_secret") == secret
}

func oauthError(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code})
}

// Introspection is the double's RFC 7662 endpoint. Tokens it does not know
// are inactive. A request that accepts MediaTypeIntrospectionJWT gets an
// RFC 9701 answer signed with the issuer's current RS256 key.
type Introspection struct {
	endpoint
	is      *Issuer
	mu      sync.Mutex
	answers map[string]map[string]any
	signAlg string
}

// Introspection registers the introspection endpoint at PathIntrospect and
// returns it. Call it once per Issuer.
func (is *Issuer) Introspection(t testing.TB, opts ...EndpointOption) *Introspection {
	t.Helper()
	x := &Introspection{is: is, answers: map[string]map[string]any{}, signAlg: "RS256"}
	x.endpoint.t = t
	for _, o := range opts {
		o(&x.endpoint)
	}
	is.Handle("POST "+is.prefix+PathIntrospect, http.HandlerFunc(x.serve))
	return x
}

// Register makes token active with answer as its introspection answer;
// "active": true is added when answer lacks "active", and "iss" (the
// issuer's URL) when it lacks "iss". answer is copied.
func (x *Introspection) Register(token string, answer map[string]any) {
	a := maps.Clone(answer)
	if a == nil {
		a = map[string]any{}
	}
	if _, ok := a["active"]; !ok {
		a["active"] = true
	}
	if _, ok := a["iss"]; !ok {
		a["iss"] = x.is.URL()
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.answers[token] = a
}

// Revoke forgets token: it is inactive from now on.
func (x *Introspection) Revoke(token string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.answers, token)
}

// SetSignAlg sets the algorithm of RFC 9701 answers (default RS256).
func (x *Introspection) SetSignAlg(alg string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.signAlg = alg
}

// Calls returns how many requests reached the endpoint.
func (x *Introspection) Calls() int { return x.is.Calls(x.is.prefix + PathIntrospect) }

func (x *Introspection) serve(w http.ResponseWriter, r *http.Request) {
	form, client, ok := x.begin(w, r)
	if !ok {
		return
	}
	token := form.Get("token")
	if token == "" {
		oauthError(w, http.StatusBadRequest, "invalid_request")
		return
	}
	x.mu.Lock()
	answer, known := x.answers[token]
	alg := x.signAlg
	x.mu.Unlock()
	if !known {
		answer = map[string]any{"active": false}
	}
	w.Header().Set("Cache-Control", "no-store")
	if !strings.Contains(r.Header.Get("Accept"), MediaTypeIntrospectionJWT) {
		writeJSON(w, answer)
		return
	}
	signed := x.is.Sign(x.endpoint.t, jwt.MapClaims{
		"aud":                 client,
		"token_introspection": answer,
	}, WithAlg(alg), WithTyp("token-introspection+jwt"))
	w.Header().Set("Content-Type", MediaTypeIntrospectionJWT)
	_, _ = w.Write([]byte(signed))
}
