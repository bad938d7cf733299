package authztest

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// DefaultTTL is the lifetime Sign gives a token whose claims carry no exp.
const DefaultTTL = 5 * time.Minute

// Breakage names a deliberate defect Sign puts into a token.
type Breakage int

const (
	// BreakNothing signs a well-formed token.
	BreakNothing Breakage = iota
	// BreakSignature flips bits of the signature.
	BreakSignature
	// BreakAlgNone sets alg "none" and leaves the signature empty.
	BreakAlgNone
	// BreakHeaderBase64 puts characters outside base64url in the header.
	BreakHeaderBase64
	// BreakClaimsBase64 puts characters outside base64url in the claims.
	BreakClaimsBase64
	// BreakHeaderJSON makes the header valid base64url of invalid JSON.
	BreakHeaderJSON
	// BreakJWE appends two segments, making a JWE-shaped five-part token.
	BreakJWE
	// BreakSegments drops the signature segment and its dot.
	BreakSegments
)

type signConfig struct {
	alg        string
	kid        *string
	noKid      bool
	typ        *string
	noTyp      bool
	header     map[string]any
	hmacKey    []byte
	key        *Key
	brk        Breakage
	noDefaults bool
}

// SignOption changes how Sign builds a token.
type SignOption func(*signConfig)

// WithAlg sets the signing algorithm (default RS256).
func WithAlg(alg string) SignOption { return func(c *signConfig) { c.alg = alg } }

// WithKid sets the kid header; "" is sent as an empty kid.
func WithKid(kid string) SignOption { return func(c *signConfig) { c.kid = &kid } }

// WithoutKid leaves the kid header out.
func WithoutKid() SignOption { return func(c *signConfig) { c.noKid = true } }

// WithTyp sets the typ header (default "at+jwt", RFC 9068).
func WithTyp(typ string) SignOption { return func(c *signConfig) { c.typ = &typ } }

// WithoutTyp leaves the typ header out.
func WithoutTyp() SignOption { return func(c *signConfig) { c.noTyp = true } }

// WithHeader adds a header field (jku, x5u, jwk, crit, …); it overrides
// the fields Sign sets itself.
func WithHeader(name string, value any) SignOption {
	return func(c *signConfig) {
		if c.header == nil {
			c.header = map[string]any{}
		}
		c.header[name] = value
	}
}

// WithHMACKey signs HS256/384/512 tokens with secret.
func WithHMACKey(secret []byte) SignOption { return func(c *signConfig) { c.hmacKey = secret } }

// WithKey signs with k instead of the issuer's current key (kid defaults to k.Kid).
func WithKey(k Key) SignOption { return func(c *signConfig) { c.key = &k } }

// Broken makes Sign produce a token with defect b.
func Broken(b Breakage) SignOption { return func(c *signConfig) { c.brk = b } }

// WithoutDefaults stops Sign from adding iss, iat and exp when absent.
func WithoutDefaults() SignOption { return func(c *signConfig) { c.noDefaults = true } }

// Sign returns a compact JWS over claims. Unless WithoutDefaults, iss is set
// to URL(), iat to now and exp to now+DefaultTTL when the claims lack them.
// claims is not modified.
func (is *Issuer) Sign(t testing.TB, claims jwt.MapClaims, opts ...SignOption) string {
	t.Helper()
	c := signConfig{alg: "RS256"}
	for _, o := range opts {
		o(&c)
	}
	cl := jwt.MapClaims{}
	for k, v := range claims {
		cl[k] = v
	}
	if !c.noDefaults {
		now := is.now()
		setDefault(cl, "iss", is.URL())
		setDefault(cl, "iat", now.Unix())
		setDefault(cl, "exp", now.Add(DefaultTTL).Unix())
	}

	var signKey any
	kid := ""
	switch {
	case strings.HasPrefix(c.alg, "HS"):
		signKey = c.hmacKey
	case c.key != nil:
		signKey, kid = c.key.Private, c.key.Kid
	case c.brk == BreakAlgNone || c.alg == "none":
		// no key
	default:
		k, ok := is.Key(c.alg)
		if !ok {
			t.Fatalf("authztest: no key for alg %q", c.alg)
		}
		signKey, kid = k.Private, k.Kid
	}
	if c.kid != nil {
		kid = *c.kid
	}
	typ := "at+jwt"
	if c.typ != nil {
		typ = *c.typ
	}
	alg := c.alg
	if c.brk == BreakAlgNone {
		alg = "none"
	}

	header := map[string]any{"alg": alg}
	if !c.noKid && (kid != "" || c.kid != nil) {
		header["kid"] = kid
	}
	if !c.noTyp {
		header["typ"] = typ
	}
	for k, v := range c.header {
		header[k] = v
	}

	h := segment(t, header)
	p := segment(t, cl)
	switch c.brk {
	case BreakHeaderBase64:
		h = "!!" + h[2:]
	case BreakClaimsBase64:
		p = p[:len(p)/2] + "*" + p[len(p)/2+1:]
	case BreakHeaderJSON:
		h = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256",`))
	}
	signing := h + "." + p

	var sig []byte
	if alg != "none" {
		m := jwt.GetSigningMethod(alg)
		if m == nil {
			t.Fatalf("authztest: unknown alg %q", alg)
		}
		var err error
		sig, err = m.Sign(signing, signKey)
		if err != nil {
			t.Fatalf("authztest: sign %s: %v", alg, err)
		}
	}
	if c.brk == BreakSignature && len(sig) > 0 {
		sig[0] ^= 0xff
		sig[len(sig)-1] ^= 0x01
	}
	tok := signing + "." + base64.RawURLEncoding.EncodeToString(sig)
	switch c.brk {
	case BreakJWE:
		tok += ".AAAA.AAAA"
	case BreakSegments:
		tok = signing
	}
	return tok
}

func setDefault(cl jwt.MapClaims, name string, v any) {
	if _, ok := cl[name]; !ok {
		cl[name] = v
	}
}

func segment(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("authztest: marshal: %v", err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
