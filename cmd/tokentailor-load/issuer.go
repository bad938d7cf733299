package main

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
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Fixed names shared by the issuer double and the config the bench writes.
const (
	benchAudience = "api.example.com"
	benchScope    = "orders:read"
	benchClientID = "tokentailor"
	benchSecret   = "bench-client-secret"
	opaquePrefix  = "opq-"
)

// issuer is the authorization-server double the bench serves on 127.0.0.1:
// it signs access tokens (RS256, ES256, EdDSA), publishes their keys and
// answers RFC 7662 introspection for opaque tokens. It counts the calls it
// gets so a run can show that warm scenarios stay off the network.
type issuer struct {
	url   string
	rsa   *rsa.PrivateKey
	ec    *ecdsa.PrivateKey
	ed    ed25519.PrivateKey
	jwks  []byte
	ln    net.Listener
	srv   *http.Server
	now   func() time.Time
	calls atomic.Int64 // introspection calls
	// delay is how long each introspection answer takes (a slow issuer).
	delay time.Duration
	// strict answers active only for tokens from issueOpaque; otherwise
	// any token with opaquePrefix is active.
	strict bool
	issued sync.Map // token → struct{}
}

// newIssuer generates fresh keys. It does not listen yet: see start.
func newIssuer(now func() time.Time) (*issuer, error) {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	_, dk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	b64 := base64.RawURLEncoding.EncodeToString
	ecPub, err := ek.PublicKey.ECDH()
	if err != nil {
		return nil, err
	}
	raw := ecPub.Bytes() // 0x04 || X || Y
	jwks, err := json.Marshal(map[string]any{"keys": []map[string]string{
		{"kty": "RSA", "kid": "rsa-1", "alg": "RS256", "use": "sig",
			"n": b64(rk.N.Bytes()), "e": b64(big.NewInt(int64(rk.E)).Bytes())},
		{"kty": "EC", "kid": "ec-1", "alg": "ES256", "use": "sig", "crv": "P-256",
			"x": b64(raw[1:33]), "y": b64(raw[33:])},
		{"kty": "OKP", "kid": "ed-1", "alg": "EdDSA", "use": "sig", "crv": "Ed25519",
			"x": b64(dk.Public().(ed25519.PublicKey))},
	}})
	if err != nil {
		return nil, err
	}
	return &issuer{rsa: rk, ec: ek, ed: dk, jwks: jwks, now: now}, nil
}

// start serves the issuer on 127.0.0.1 on a free port.
func (is *issuer) start() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	is.ln = ln
	is.url = "http://" + ln.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /jwks.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(is.jwks)
	})
	mux.HandleFunc("POST /introspect", is.introspect)
	is.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = is.srv.Serve(ln) }()
	return nil
}

// stop closes the listener.
func (is *issuer) stop() {
	if is.srv != nil {
		_ = is.srv.Close()
	}
}

// introspect answers active for tokens that start with opaquePrefix, as long
// as tokentailor authenticates with the bench client's secret.
func (is *issuer) introspect(w http.ResponseWriter, r *http.Request) {
	is.calls.Add(1)
	if id, secret, ok := r.BasicAuth(); !ok || id != benchClientID || secret != benchSecret {
		http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
		return
	}
	if is.delay > 0 {
		select {
		case <-time.After(is.delay):
		case <-r.Context().Done():
			return
		}
	}
	tok := r.PostForm.Get("token")
	ans := map[string]any{"active": false}
	_, issued := is.issued.Load(tok)
	if rest, ok := strings.CutPrefix(tok, opaquePrefix); ok && rest != "" && (issued || !is.strict) {
		now := is.now()
		ans = map[string]any{
			"active": true, "iss": is.url, "sub": "user-" + rest[:min(len(rest), 8)],
			"aud": benchAudience, "scope": benchScope, "client_id": "load-client",
			"token_type": "Bearer", "email": "user@example.com", "tenant": "acme",
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(ans)
}

// sign returns an access token for subject sub signed with alg (RS256,
// ES256 or EdDSA), valid for an hour.
func (is *issuer) sign(alg, sub string) (string, error) {
	var (
		method jwt.SigningMethod
		key    crypto.Signer
		kid    string
	)
	switch alg {
	case "RS256":
		method, key, kid = jwt.SigningMethodRS256, is.rsa, "rsa-1"
	case "ES256":
		method, key, kid = jwt.SigningMethodES256, is.ec, "ec-1"
	case "EdDSA":
		method, key, kid = jwt.SigningMethodEdDSA, is.ed, "ed-1"
	default:
		return "", fmt.Errorf("unsupported algorithm %q", alg)
	}
	now := is.now()
	t := jwt.NewWithClaims(method, jwt.MapClaims{
		"iss": is.url, "sub": sub, "aud": benchAudience, "scope": benchScope,
		"client_id": "load-client", "email": sub + "@example.com", "tenant": "acme",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "jti": sub,
	})
	t.Header["typ"] = "at+jwt"
	t.Header["kid"] = kid
	return t.SignedString(key)
}

// opaqueLen is the length of the tokens issueOpaque makes.
const opaqueLen = len(opaquePrefix) + 43

// issueOpaque returns a fresh opaque token of opaqueLen bytes,
// opaquePrefix + base64url(32 random bytes), and remembers it as issued.
func (is *issuer) issueOpaque() string {
	tok := randomToken(opaquePrefix)
	is.issued.Store(tok, struct{}{})
	return tok
}

// randomToken returns prefix + base64url(32 random bytes).
func randomToken(prefix string) string {
	var b [32]byte
	_, _ = io.ReadFull(rand.Reader, b[:])
	return prefix + base64.RawURLEncoding.EncodeToString(b[:])
}

// opaque returns a fresh opaque token the double will call active.
func opaque(seq int) string {
	var b [12]byte
	_, _ = io.ReadFull(rand.Reader, b[:])
	return fmt.Sprintf("%s%d-%s", opaquePrefix, seq, base64.RawURLEncoding.EncodeToString(b[:]))
}

// publicPEM returns the PEM (PKIX) of the public key that verifies tokens
// signed with alg.
func (is *issuer) publicPEM(alg string) ([]byte, error) {
	var pub crypto.PublicKey
	switch alg {
	case "RS256":
		pub = is.rsa.Public()
	case "ES256":
		pub = is.ec.Public()
	case "EdDSA":
		pub = is.ed.Public()
	default:
		return nil, fmt.Errorf("unsupported algorithm %q", alg)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}
