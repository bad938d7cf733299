package server

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
)

const senderConfig = baseConfig + `
  - name: dpop-optional
    require: {}
    match: {path_prefix: /opt}
    sender_constraint: optional
    upstream: {audience: opt-api}
  - name: dpop-required
    require: {}
    match: {path_prefix: /req}
    sender_constraint: required
    upstream: {audience: req-api}
  - name: dpop-behind-gateway
    require: {}
    match: {path_prefix: /gw}
    sender_constraint: required
    dpop_origin: https://api.example.com
    upstream: {audience: gw-api}
dpop:
  algorithms: [ES256, EdDSA]
`

// dpopClient is a DPoP client: its proofs are made with go-jose, not with
// the code under test.
type dpopClient struct {
	t      *testing.T
	signer jose.Signer
	jkt    string
	n      int
}

func newDPoPClient(t *testing.T) *dpopClient {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k}, (&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	tp, err := (&jose.JSONWebKey{Key: k.Public()}).Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return &dpopClient{t: t, signer: s, jkt: base64.RawURLEncoding.EncodeToString(tp)}
}

// proof makes a fresh proof for method and htu bound to token.
func (c *dpopClient) proof(method, htu, token string, extra map[string]any) string {
	c.t.Helper()
	c.n++
	ath := sha256.Sum256([]byte(token))
	claims := map[string]any{"jti": c.t.Name() + "-" + string(rune('a'+c.n)), "htm": method, "htu": htu, "iat": time.Now().Unix(),
		"ath": base64.RawURLEncoding.EncodeToString(ath[:])}
	for k, v := range extra {
		claims[k] = v
	}
	b, _ := json.Marshal(claims)
	jws, err := c.signer.Sign(b)
	if err != nil {
		c.t.Fatal(err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		c.t.Fatal(err)
	}
	return s
}

func removed(resp *authv3.CheckResponse, name string) bool {
	for _, h := range resp.GetOkResponse().GetHeadersToRemove() {
		if h == name {
			return true
		}
	}
	return false
}

// TestDPoPThroughTheServer: RFC 9449 journeys through Envoy's gRPC API.
func TestDPoPThroughTheServer(t *testing.T) {
	h := newHarness(t, senderConfig)
	c := newDPoPClient(t)
	other := newDPoPClient(t)
	bound := h.token(jwt.MapClaims{"cnf": map[string]any{"jkt": c.jkt}})
	plain := h.token(nil)
	const htu = "http://app.test/opt/1"

	replayed := c.proof("GET", htu, bound, nil)
	tests := []struct {
		name          string
		path          string
		headers       map[string]string
		wantStatus    int
		wantChallenge string // prefix of WWW-Authenticate
	}{
		{name: "optional: unbound Bearer passes", path: "/opt/1", headers: bearer(plain), wantStatus: 200},
		{name: "optional: bound token, DPoP scheme, valid proof", path: "/opt/1", headers: map[string]string{"authorization": "DPoP " + bound, "dpop": replayed}, wantStatus: 200},
		{name: "the same proof again is a replay", path: "/opt/1", headers: map[string]string{"authorization": "DPoP " + bound, "dpop": replayed}, wantStatus: 401,
			wantChallenge: `DPoP realm="tokentailor", error="invalid_dpop_proof", algs="ES256 EdDSA"`},
		{name: "bound token as Bearer is a downgrade (§7.2)", path: "/opt/1", headers: bearer(bound), wantStatus: 401,
			wantChallenge: `Bearer realm="tokentailor", error="invalid_token", DPoP algs="ES256 EdDSA"`},
		{name: "DPoP scheme without a proof", path: "/opt/1", headers: map[string]string{"authorization": "DPoP " + bound}, wantStatus: 401,
			wantChallenge: `DPoP realm="tokentailor", error="invalid_dpop_proof"`},
		{name: "proof for another URI", path: "/opt/1", headers: map[string]string{"authorization": "DPoP " + bound, "dpop": c.proof("GET", "http://app.test/opt/2", bound, nil)}, wantStatus: 401,
			wantChallenge: `DPoP realm="tokentailor", error="invalid_dpop_proof"`},
		{name: "proof for another method", path: "/opt/1", headers: map[string]string{"authorization": "DPoP " + bound, "dpop": c.proof("POST", htu, bound, nil)}, wantStatus: 401,
			wantChallenge: `DPoP realm="tokentailor", error="invalid_dpop_proof"`},
		{name: "proof by another key", path: "/opt/1", headers: map[string]string{"authorization": "DPoP " + bound, "dpop": other.proof("GET", htu, bound, nil)}, wantStatus: 401,
			wantChallenge: `DPoP realm="tokentailor", error="invalid_token"`},
		{name: "required: unbound Bearer refused", path: "/req/1", headers: bearer(plain), wantStatus: 401,
			wantChallenge: `Bearer realm="tokentailor", error="invalid_token", DPoP algs=`},
		{name: "required: valid proof passes", path: "/req/1", headers: map[string]string{"authorization": "DPoP " + bound, "dpop": c.proof("GET", "http://app.test/req/1", bound, nil)}, wantStatus: 200},
		{name: "behind a gateway: htu is the public origin", path: "/gw/1?x=1", headers: map[string]string{"authorization": "DPoP " + bound, "dpop": c.proof("GET", "https://api.example.com/gw/1", bound, nil)}, wantStatus: 200},
		{name: "behind a gateway: Envoy's own host is not the client's", path: "/gw/1", headers: map[string]string{"authorization": "DPoP " + bound, "dpop": c.proof("GET", "http://app.test/gw/1", bound, nil)}, wantStatus: 401},
		{name: "DPoP off: the DPoP scheme is not accepted", path: "/orders/1", headers: map[string]string{"authorization": "DPoP " + bound, "dpop": c.proof("GET", "http://app.test/orders/1", bound, nil)}, wantStatus: 401},
		{name: "DPoP off: a bound token passes as Bearer (unaware resource)", path: "/orders/1", headers: bearer(bound), wantStatus: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := h.check("GET", tt.path, tt.headers)
			if got := httpStatus(resp); got != tt.wantStatus {
				t.Fatalf("status %d, want %d (%s)", got, tt.wantStatus, header(resp, "www-authenticate"))
			}
			if tt.wantChallenge != "" && !strings.HasPrefix(header(resp, "www-authenticate"), tt.wantChallenge) {
				t.Errorf("WWW-Authenticate %q, want %q…", header(resp, "www-authenticate"), tt.wantChallenge)
			}
			if tt.wantStatus != 200 {
				return
			}
			_, sentProof := tt.headers["dpop"]
			if sentProof != removed(resp, "dpop") {
				t.Errorf("dpop header removed = %v, sent = %v", removed(resp, "dpop"), sentProof)
			}
			minted := jwt.MapClaims{}
			if _, _, err := jwt.NewParser().ParseUnverified(strings.TrimPrefix(header(resp, "authorization"), "Bearer "), minted); err != nil {
				t.Fatal(err)
			}
			if minted["cnf"] != nil {
				t.Errorf("the minted token carries the client's cnf: %v", minted["cnf"])
			}
		})
	}
}

// TestDPoPNonceThroughTheServer: with dpop.nonce_secret, a proof without a
// nonce gets 401 use_dpop_nonce and a DPoP-Nonce, and the retry with it passes.
func TestDPoPNonceThroughTheServer(t *testing.T) {
	t.Setenv("TT_DPOP_NONCE", "a-nonce-secret-of-at-least-32-bytes!")
	cfg := strings.Replace(senderConfig, "dpop:\n", "dpop:\n  nonce_secret: {env: TT_DPOP_NONCE}\n", 1)
	h := newHarness(t, cfg)
	c := newDPoPClient(t)
	bound := h.token(jwt.MapClaims{"cnf": map[string]any{"jkt": c.jkt}})
	const htu = "http://app.test/req/1"
	resp := h.check("GET", "/req/1", map[string]string{"authorization": "DPoP " + bound, "dpop": c.proof("GET", htu, bound, nil)})
	nonce := header(resp, "dpop-nonce")
	if httpStatus(resp) != 401 || !strings.HasPrefix(header(resp, "www-authenticate"), `DPoP realm="tokentailor", error="use_dpop_nonce"`) || nonce == "" {
		t.Fatalf("without nonce: %d %q nonce %q", httpStatus(resp), header(resp, "www-authenticate"), nonce)
	}
	resp = h.check("GET", "/req/1", map[string]string{"authorization": "DPoP " + bound, "dpop": c.proof("GET", htu, bound, map[string]any{"nonce": "forged"})})
	if httpStatus(resp) != 401 || header(resp, "dpop-nonce") == "" {
		t.Fatalf("forged nonce: %d", httpStatus(resp))
	}
	resp = h.check("GET", "/req/1", map[string]string{"authorization": "DPoP " + bound, "dpop": c.proof("GET", htu, bound, map[string]any{"nonce": nonce})})
	if httpStatus(resp) != 200 {
		t.Fatalf("with the server's nonce: %d %q", httpStatus(resp), header(resp, "www-authenticate"))
	}
}

// TestCertificateBoundTokenThroughTheServer: RFC 8705 through Envoy's gRPC
// API: source.certificate as Envoy sends it against cnf x5t#S256.
func TestCertificateBoundTokenThroughTheServer(t *testing.T) {
	h := newHarness(t, baseConfig)
	certPEM, x5t := clientCertificate(t)
	otherPEM, _ := clientCertificate(t)
	bound := h.token(jwt.MapClaims{"cnf": map[string]any{"x5t#S256": x5t}})
	tests := []struct {
		name       string
		cert       string
		token      string
		wantStatus int
	}{
		{name: "bound token with its certificate", cert: url.PathEscape(certPEM), token: bound, wantStatus: 200},
		{name: "bound token without a certificate", token: bound, wantStatus: 401},
		{name: "bound token with another certificate", cert: url.PathEscape(otherPEM), token: bound, wantStatus: 401},
		{name: "unbound token with a certificate", cert: url.PathEscape(certPEM), token: h.token(nil), wantStatus: 200},
	}
	// Twice: the second pass finds every principal in the validation cache,
	// where a bound token's must still say it may be bound (Unbound false).
	for _, pass := range []string{"first", "cached"} {
		for _, tt := range tests {
			t.Run(pass+"/"+tt.name, func(t *testing.T) {
				req := checkRequest("GET", "/orders/1", bearer(tt.token))
				req.Attributes.Source.Certificate = tt.cert
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				resp, err := h.client.Check(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				if got := httpStatus(resp); got != tt.wantStatus {
					t.Fatalf("status %d, want %d", got, tt.wantStatus)
				}
				if tt.wantStatus == 401 && !strings.Contains(header(resp, "www-authenticate"), `error="invalid_token"`) {
					t.Errorf("WWW-Authenticate %q", header(resp, "www-authenticate"))
				}
			})
		}
	}
}

// clientCertificate returns a new self-signed client certificate in PEM and
// its RFC 8705 thumbprint.
func clientCertificate(t *testing.T) (string, string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "client"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), base64.RawURLEncoding.EncodeToString(sum[:])
}
