// Package authztest is an authorization-server double for tests: an
// httptest server that publishes OIDC / RFC 8414 metadata and a JWKS, signs
// tokens with keys of every kind tokentailor accepts, counts the requests it
// gets per path, and can be told to fail or to rotate its keys.
//
// Other files of this package add endpoints (introspection, token exchange)
// through Issuer.Handle; every handler registered that way is counted and
// honours SetDown like the built-in ones.
package authztest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Paths served by an Issuer. The introspection and token paths are advertised
// in the metadata; the files that implement them register them with Handle.
const (
	PathOpenIDConfiguration = "/.well-known/openid-configuration"
	PathOAuthMetadata       = "/.well-known/oauth-authorization-server"
	PathJWKS                = "/jwks.json"
	PathIntrospect          = "/introspect"
	PathToken               = "/token"
)

// Algorithms lists every signing algorithm the double can sign with a key of
// its own (HS* needs WithHMACKey).
var Algorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// Key is one signing key of the double.
type Key struct {
	// Kid is the key id published in the JWKS and put in token headers.
	Kid string
	// Kind is "RSA", "P-256", "P-384", "P-521" or "Ed25519".
	Kind string
	// Private signs tokens.
	Private crypto.Signer
	// Public is Private's public half.
	Public crypto.PublicKey
}

// keyMaterial is one generation of private keys, one per kind.
type keyMaterial map[string]crypto.Signer

var kinds = []string{"RSA", "P-256", "P-384", "P-521", "Ed25519"}

// keyPool hands out key generations, generating each once per process:
// RSA key generation takes tens of milliseconds, and every test of the
// project starts an Issuer.
type keyPool struct {
	mu   sync.Mutex
	gens []keyMaterial
}

var pool keyPool // process-wide on purpose: keys are reused across tests.

func (p *keyPool) generation(i int) keyMaterial {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.gens) <= i {
		p.gens = append(p.gens, generate())
	}
	return p.gens[i]
}

func generate() keyMaterial {
	m := keyMaterial{}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(fmt.Sprintf("authztest: rsa key: %v", err))
	}
	m["RSA"] = rk
	for name, c := range map[string]elliptic.Curve{"P-256": elliptic.P256(), "P-384": elliptic.P384(), "P-521": elliptic.P521()} {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			panic(fmt.Sprintf("authztest: ec key: %v", err))
		}
		m[name] = k
	}
	_, ek, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(fmt.Sprintf("authztest: ed25519 key: %v", err))
	}
	m["Ed25519"] = ek
	return m
}

// kindFor returns the key kind that signs alg.
func kindFor(alg string) (string, bool) {
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		return "RSA", true
	case "ES256":
		return "P-256", true
	case "ES384":
		return "P-384", true
	case "ES512":
		return "P-521", true
	case "EdDSA":
		return "Ed25519", true
	}
	return "", false
}

// Option configures an Issuer.
type Option func(*Issuer)

// WithNow sets the clock used for default iat/exp claims.
func WithNow(now func() time.Time) Option { return func(is *Issuer) { is.now = now } }

// WithMetadataIssuer makes the metadata advertise issuer instead of the
// server's own URL, to test the RFC 8414 §3.3 issuer check.
func WithMetadataIssuer(issuer string) Option {
	return func(is *Issuer) { is.metadataIssuer = issuer }
}

// WithPathPrefix makes the issuer identifier URL()+prefix (e.g. "/tenant1"),
// as multi-tenant servers do. Well-known paths stay at the host root for the
// RFC 8414 variant and below the prefix for the OIDC variant.
func WithPathPrefix(prefix string) Option { return func(is *Issuer) { is.prefix = prefix } }

// Issuer is a running authorization-server double.
type Issuer struct {
	srv            *httptest.Server
	mux            *http.ServeMux
	now            func() time.Time
	metadataIssuer string
	prefix         string

	down  atomic.Bool
	calls sync.Map // path → *atomic.Int64

	mu      sync.RWMutex
	gen     int
	oldGen  int  // generation still published after a rotation, when keepOld
	keepOld bool // publish oldGen as well
	extra   []map[string]any
	jwksRaw []byte // when non-nil, served verbatim instead of the keys
}

// New starts an Issuer on 127.0.0.1; it is closed when the test ends.
func New(t testing.TB, opts ...Option) *Issuer {
	t.Helper()
	is := &Issuer{mux: http.NewServeMux(), now: time.Now}
	for _, o := range opts {
		o(is)
	}
	is.srv = httptest.NewServer(http.HandlerFunc(is.serve))
	t.Cleanup(is.srv.Close)
	meta := http.HandlerFunc(is.serveMetadata)
	is.mux.Handle("GET "+is.prefix+PathOpenIDConfiguration, meta)
	is.mux.Handle("GET "+PathOAuthMetadata+is.prefix, meta)
	is.mux.Handle("GET "+is.prefix+PathJWKS, http.HandlerFunc(is.serveJWKS))
	return is
}

// URL returns the issuer identifier: the server's base URL plus any prefix.
func (is *Issuer) URL() string { return is.srv.URL + is.prefix }

// Endpoint returns the absolute URL of one of the issuer's paths (PathJWKS…).
func (is *Issuer) Endpoint(path string) string {
	if path == PathOAuthMetadata {
		return is.srv.URL + PathOAuthMetadata + is.prefix
	}
	return is.URL() + path
}

// Client returns an HTTP client that reaches the server.
func (is *Issuer) Client() *http.Client { return is.srv.Client() }

// Handle registers h for pattern (net/http.ServeMux syntax, paths relative to
// the server root). Requests to it are counted and fail while SetDown(true).
func (is *Issuer) Handle(pattern string, h http.Handler) { is.mux.Handle(pattern, h) }

// SetDown makes every endpoint answer 503 while down is true.
func (is *Issuer) SetDown(down bool) { is.down.Store(down) }

// Calls returns how many requests reached path (counted even while down).
func (is *Issuer) Calls(path string) int {
	if c, ok := is.calls.Load(path); ok {
		return int(c.(*atomic.Int64).Load())
	}
	return 0
}

func (is *Issuer) serve(w http.ResponseWriter, r *http.Request) {
	c, _ := is.calls.LoadOrStore(r.URL.Path, new(atomic.Int64))
	c.(*atomic.Int64).Add(1)
	if is.down.Load() {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	is.mux.ServeHTTP(w, r)
}

// Metadata returns the document served at the well-known paths.
func (is *Issuer) Metadata() map[string]any {
	iss := is.URL()
	if is.metadataIssuer != "" {
		iss = is.metadataIssuer
	}
	return map[string]any{
		"issuer":                                iss,
		"jwks_uri":                              is.Endpoint(PathJWKS),
		"introspection_endpoint":                is.Endpoint(PathIntrospect),
		"token_endpoint":                        is.Endpoint(PathToken),
		"id_token_signing_alg_values_supported": Algorithms,
		"grant_types_supported":                 []string{"client_credentials", "urn:ietf:params:oauth:grant-type:token-exchange"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post", "private_key_jwt"},
	}
}

func (is *Issuer) serveMetadata(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, is.Metadata())
}

func (is *Issuer) serveJWKS(w http.ResponseWriter, _ *http.Request) {
	is.mu.RLock()
	raw := is.jwksRaw
	is.mu.RUnlock()
	if raw != nil {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(raw)
		return
	}
	writeJSON(w, is.JWKS())
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// Rotate switches signing to a fresh generation of keys with new kids. With
// keepOld, the previous generation stays published (as during a real
// rotation); without, it disappears from the JWKS at once.
func (is *Issuer) Rotate(keepOld bool) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.oldGen, is.keepOld = is.gen, keepOld
	is.gen++
}

// AddJWK publishes an extra raw JWK (e.g. a weak or malformed key) next to
// the double's own keys.
func (is *Issuer) AddJWK(jwk map[string]any) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.extra = append(is.extra, jwk)
}

// SetJWKS makes the JWKS endpoint serve raw verbatim; nil restores the keys.
func (is *Issuer) SetJWKS(raw []byte) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.jwksRaw = raw
}

// Key returns the current key that signs alg, or false for an alg the double
// has no key for.
func (is *Issuer) Key(alg string) (Key, bool) {
	kind, ok := kindFor(alg)
	if !ok {
		return Key{}, false
	}
	is.mu.RLock()
	gen := is.gen
	is.mu.RUnlock()
	return keyOf(gen, kind), true
}

func keyOf(gen int, kind string) Key {
	priv := pool.generation(gen)[kind]
	return Key{Kid: fmt.Sprintf("%s-%d", strings.ToLower(kind), gen), Kind: kind, Private: priv, Public: priv.Public()}
}

// PublicKeyPEM returns the PKIX PEM of the current key for alg: the secret an
// attacker uses to forge an HS256 token against a confused verifier.
func (is *Issuer) PublicKeyPEM(alg string) []byte {
	k, ok := is.Key(alg)
	if !ok {
		return nil
	}
	der, err := x509.MarshalPKIXPublicKey(k.Public)
	if err != nil {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// JWKS returns the key set currently published.
func (is *Issuer) JWKS() map[string]any {
	is.mu.RLock()
	gens := []int{is.gen}
	if is.keepOld && is.oldGen != is.gen {
		gens = append(gens, is.oldGen)
	}
	extra := append([]map[string]any(nil), is.extra...)
	is.mu.RUnlock()
	var keys []any
	for _, g := range gens {
		for _, kind := range kinds {
			keys = append(keys, PublicJWK(keyOf(g, kind)))
		}
	}
	for _, e := range extra {
		keys = append(keys, e)
	}
	return map[string]any{"keys": keys}
}

// PublicJWK returns the public JWK of k with use "sig". RSA keys carry no
// alg member so they verify RS* and PS* alike; the others name theirs.
func PublicJWK(k Key) map[string]any {
	b64 := base64.RawURLEncoding.EncodeToString
	m := map[string]any{"kid": k.Kid, "use": "sig"}
	switch pub := k.Public.(type) {
	case *rsa.PublicKey:
		m["kty"] = "RSA"
		m["n"] = b64(pub.N.Bytes())
		m["e"] = b64(big.NewInt(int64(pub.E)).Bytes())
	case *ecdsa.PublicKey:
		raw, err := pub.Bytes()
		if err != nil {
			panic(err)
		}
		size := (pub.Curve.Params().BitSize + 7) / 8
		m["kty"], m["crv"] = "EC", pub.Curve.Params().Name
		m["x"], m["y"] = b64(raw[1:1+size]), b64(raw[1+size:])
		m["alg"] = map[string]string{"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}[pub.Curve.Params().Name]
	case ed25519.PublicKey:
		m["kty"], m["crv"], m["x"], m["alg"] = "OKP", "Ed25519", b64(pub), "EdDSA"
	}
	return m
}
