// Package clientauth authenticates tokentailor as an OAuth client on its
// outbound calls to an authorization server (introspection, token exchange).
//
// Three methods are supported:
//
//   - client_secret_basic (RFC 6749 §2.3.1): HTTP Basic with the client id and
//     secret each form-urlencoded first, as the RFC's Appendix B requires (a
//     secret holding ':' or '%' must survive the trip);
//   - client_secret_post (RFC 6749 §2.3.1): client_id and client_secret in the
//     form body;
//   - private_key_jwt (RFC 7523 §2.2, OIDC Core §9): a short-lived JWT signed
//     with the client's private key, iss = sub = client id, aud = the endpoint
//     (or a configured audience such as the issuer identifier), a random jti.
//
// "none" sends only client_id, for endpoints that need no authentication.
//
// Secrets come already read (config's one secret reader takes them from a
// file or an environment variable, never from the YAML itself); keys are read
// from the file named in Options. Neither is ever logged: a Method prints as
// its name and client id only.
package clientauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokentailor/tokentailor/extauthz/keyfile"
)

// Method names, as in OAuth's token_endpoint_auth_method registry.
const (
	MethodNone              = "none"
	MethodClientSecretBasic = "client_secret_basic"
	MethodClientSecretPost  = "client_secret_post"
	MethodPrivateKeyJWT     = "private_key_jwt"
)

// AssertionType is the client_assertion_type of RFC 7523 §2.2.
const AssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// ErrConfig is wrapped by every error New returns.
var ErrConfig = errors.New("clientauth: bad configuration")

// Method adds the client's credentials to one outbound form POST.
type Method interface {
	// Apply authenticates req, whose body is form (not yet encoded): it may set
	// headers on req and members of form. req.URL is the endpoint.
	Apply(req *http.Request, form url.Values) error
	// ClientID returns the client identifier (the expected aud of RFC 9701
	// introspection answers).
	ClientID() string
	// Name returns the method name, e.g. "client_secret_basic".
	Name() string
}

// Options configures a Method. Only the fields of the chosen Method are used.
type Options struct {
	// Method is one of the Method* constants; required (config defaults it).
	Method string
	// ClientID is tokentailor's client identifier at the authorization server.
	ClientID string
	// Secret is the client secret (client_secret_*), as config.ReadSecret
	// read it.
	Secret string
	// KeyFile names a PEM file holding the private key (private_key_jwt):
	// PKCS#8, PKCS#1 RSA or SEC 1 EC.
	KeyFile string
	// KeyID is the kid put in the assertion's header; optional.
	KeyID string
	// Algorithm is the JWS alg of the assertion; empty picks one from the key
	// (RS256, ES256/ES384/ES512, EdDSA).
	Algorithm string
	// Audience is the assertion's aud; empty means the endpoint URL being
	// called. Set it to the issuer identifier for servers that want that.
	Audience string
	// AssertionTTL is the assertion's lifetime; 0 means one minute.
	AssertionTTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// New builds the Method described by opts, reading its key file once.
// Errors wrap ErrConfig and never contain the secret.
func New(opts Options) (Method, error) {
	if opts.ClientID == "" {
		return nil, fmt.Errorf("%w: client id is required", ErrConfig)
	}
	switch opts.Method {
	case MethodNone:
		return &none{clientID: opts.ClientID}, nil
	case MethodClientSecretBasic, MethodClientSecretPost:
		if opts.Secret == "" {
			return nil, fmt.Errorf("%w: %s needs a client secret", ErrConfig, opts.Method)
		}
		if opts.Method == MethodClientSecretPost {
			return &secretPost{clientID: opts.ClientID, secret: opts.Secret}, nil
		}
		return &secretBasic{clientID: opts.ClientID, secret: opts.Secret}, nil
	case "":
		return nil, fmt.Errorf("%w: no authentication method", ErrConfig)
	case MethodPrivateKeyJWT:
		return newPrivateKeyJWT(opts)
	default:
		return nil, fmt.Errorf("%w: unknown method %q", ErrConfig, opts.Method)
	}
}

// NewRequest builds a POST of form to endpoint, authenticated by m, with a
// form-urlencoded body. Extra headers (Accept) are the caller's to set.
func NewRequest(ctx context.Context, m Method, endpoint string, form url.Values) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, nil)
	if err != nil {
		return nil, err
	}
	if err := m.Apply(req, form); err != nil {
		return nil, err
	}
	body := form.Encode()
	req.Body = io.NopCloser(strings.NewReader(body))
	req.ContentLength = int64(len(body))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil }
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return req, nil
}

// Answer is an authorization server's answer to a form POST.
type Answer struct {
	// Status is the HTTP status code.
	Status int
	// MediaType is the Content-Type without parameters ("" when unparsable).
	MediaType string
	// Body is the answer, at most the limit given to Post.
	Body []byte
}

// ErrTooLarge is returned by Post for an answer over its byte limit.
var ErrTooLarge = errors.New("answer too large")

// Post sends form to endpoint authenticated by m (see NewRequest) with the
// given Accept header, and reads at most maxBytes of the answer. Errors are
// a request that cannot be built or sent, an unreadable body, or ErrTooLarge;
// what the status and media type mean is the caller's to decide.
func Post(ctx context.Context, client *http.Client, m Method, endpoint string, form url.Values, accept string, maxBytes int64) (Answer, error) {
	req, err := NewRequest(ctx, m, endpoint, form)
	if err != nil {
		return Answer{}, fmt.Errorf("building request: %w", err)
	}
	req.Header.Set("Accept", accept)
	resp, err := client.Do(req)
	if err != nil {
		return Answer{}, fmt.Errorf("calling %s: %w", req.URL.Redacted(), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBytes+1))
	if err != nil {
		return Answer{}, fmt.Errorf("reading answer: %w", err)
	}
	if int64(len(body)) > maxBytes {
		return Answer{}, fmt.Errorf("%w: HTTP %d, over %d bytes", ErrTooLarge, resp.StatusCode, maxBytes)
	}
	mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil {
		mt = ""
	}
	return Answer{Status: resp.StatusCode, MediaType: mt, Body: body}, nil
}

type none struct{ clientID string }

func (n *none) Apply(_ *http.Request, form url.Values) error {
	form.Set("client_id", n.clientID)
	return nil
}
func (n *none) ClientID() string { return n.clientID }
func (n *none) Name() string     { return MethodNone }
func (n *none) String() string   { return MethodNone + "(" + n.clientID + ")" }

type secretBasic struct{ clientID, secret string }

// Apply sets Authorization: Basic with id and secret form-urlencoded
// (RFC 6749 §2.3.1 and Appendix B); url.QueryEscape is that encoding.
func (s *secretBasic) Apply(req *http.Request, _ url.Values) error {
	pair := url.QueryEscape(s.clientID) + ":" + url.QueryEscape(s.secret)
	req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(pair)))
	return nil
}
func (s *secretBasic) ClientID() string { return s.clientID }
func (s *secretBasic) Name() string     { return MethodClientSecretBasic }
func (s *secretBasic) String() string   { return MethodClientSecretBasic + "(" + s.clientID + ")" }

// GoString keeps %#v from printing the secret.
func (s *secretBasic) GoString() string { return s.String() }

type secretPost struct{ clientID, secret string }

func (s *secretPost) Apply(_ *http.Request, form url.Values) error {
	form.Set("client_id", s.clientID)
	form.Set("client_secret", s.secret)
	return nil
}
func (s *secretPost) ClientID() string { return s.clientID }
func (s *secretPost) Name() string     { return MethodClientSecretPost }
func (s *secretPost) String() string   { return MethodClientSecretPost + "(" + s.clientID + ")" }
func (s *secretPost) GoString() string { return s.String() }

type privateKeyJWT struct {
	clientID string
	key      crypto.Signer
	method   jwt.SigningMethod
	kid      string
	audience string
	ttl      time.Duration
	now      func() time.Time
}

func newPrivateKeyJWT(opts Options) (*privateKeyJWT, error) {
	if opts.KeyFile == "" {
		return nil, fmt.Errorf("%w: private_key_jwt needs key_file", ErrConfig)
	}
	pemBytes, err := os.ReadFile(opts.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: reading key file: %w", ErrConfig, err)
	}
	key, err := ParsePrivateKey(pemBytes)
	if err != nil {
		return nil, err
	}
	alg := opts.Algorithm
	if alg == "" {
		alg = defaultAlg(key)
	}
	method := jwt.GetSigningMethod(alg)
	if method == nil || alg == "none" || strings.HasPrefix(alg, "HS") {
		return nil, fmt.Errorf("%w: unsupported assertion algorithm %q", ErrConfig, alg)
	}
	if !algFits(alg, key) {
		return nil, fmt.Errorf("%w: algorithm %s does not fit the key", ErrConfig, alg)
	}
	p := &privateKeyJWT{
		clientID: opts.ClientID, key: key, method: method, kid: opts.KeyID,
		audience: opts.Audience, ttl: opts.AssertionTTL, now: opts.Now,
	}
	if p.ttl <= 0 {
		p.ttl = time.Minute
	}
	if p.now == nil {
		p.now = time.Now
	}
	return p, nil
}

// ParsePrivateKey reads the one private key of a PEM file with
// extauthz/keyfile (PKCS#8, PKCS#1 RSA or SEC 1 EC) and accepts RSA of at
// least 2048 bits, ECDSA and Ed25519. Errors wrap ErrConfig.
func ParsePrivateKey(pemBytes []byte) (crypto.Signer, error) {
	k, err := keyfile.Parse(pemBytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	switch key := k.(type) {
	case *rsa.PrivateKey:
		if key.N.BitLen() < 2048 {
			return nil, fmt.Errorf("%w: RSA key shorter than 2048 bits", ErrConfig)
		}
		return key, nil
	case *ecdsa.PrivateKey, ed25519.PrivateKey:
		return key, nil
	default:
		return nil, fmt.Errorf("%w: unsupported private key type %T", ErrConfig, k)
	}
}

func defaultAlg(key crypto.Signer) string {
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P384():
			return "ES384"
		case elliptic.P521():
			return "ES512"
		default:
			return "ES256"
		}
	case ed25519.PrivateKey:
		return "EdDSA"
	default:
		return "RS256"
	}
}

func algFits(alg string, key crypto.Signer) bool {
	switch key.(type) {
	case *rsa.PrivateKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PrivateKey:
		return alg == defaultAlg(key)
	case ed25519.PrivateKey:
		return alg == "EdDSA"
	}
	return false
}

// Apply adds client_assertion_type and a fresh client_assertion to form.
func (p *privateKeyJWT) Apply(req *http.Request, form url.Values) error {
	aud := p.audience
	if aud == "" {
		u := *req.URL
		u.RawQuery, u.Fragment = "", ""
		aud = u.String()
	}
	assertion, err := p.Assertion(aud)
	if err != nil {
		return err
	}
	form.Set("client_assertion_type", AssertionType)
	form.Set("client_assertion", assertion)
	return nil
}

// Assertion signs one client assertion for audience aud.
func (p *privateKeyJWT) Assertion(aud string) (string, error) {
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", fmt.Errorf("clientauth: jti: %w", err)
	}
	now := p.now()
	claims := jwt.RegisteredClaims{
		Issuer:    p.clientID,
		Subject:   p.clientID,
		Audience:  jwt.ClaimStrings{aud},
		ID:        base64.RawURLEncoding.EncodeToString(jti[:]),
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(p.ttl)),
	}
	tok := jwt.NewWithClaims(p.method, claims)
	if p.kid != "" {
		tok.Header["kid"] = p.kid
	}
	s, err := tok.SignedString(p.key)
	if err != nil {
		return "", fmt.Errorf("clientauth: signing assertion: %w", err)
	}
	return s, nil
}

func (p *privateKeyJWT) ClientID() string { return p.clientID }
func (p *privateKeyJWT) Name() string     { return MethodPrivateKeyJWT }
func (p *privateKeyJWT) String() string   { return MethodPrivateKeyJWT + "(" + p.clientID + ")" }
func (p *privateKeyJWT) GoString() string { return p.String() }
