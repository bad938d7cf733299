// Package mtls checks certificate-bound access tokens (RFC 8705 §3): a token
// whose cnf claim holds "x5t#S256" may only be used over a mutual-TLS
// connection made with that certificate.
//
// Envoy terminates the client's TLS and, with the ext_authz filter's
// include_peer_certificate: true, sends the client certificate in the
// CheckRequest as attributes.source.certificate: the leaf certificate in PEM,
// URL-encoded (envoy/sidecar-mtls.yaml is such a listener). Check compares
// the SHA-256 thumbprint of its DER (base64url, RFC 8705 §3.1) with the
// token's cnf["x5t#S256"] in constant time. A bound token without a
// certificate, with one that cannot be read, or with another certificate is
// refused with a sentinel wrapping extauthz.ErrInvalidToken (401
// invalid_token, RFC 8705 §3). A token that is not bound needs nothing.
package mtls

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net/url"
	"strings"

	"github.com/tokentailor/tokentailor/extauthz"
)

// Deny reasons; each wraps extauthz.ErrInvalidToken (401 invalid_token).
var (
	// ErrNoCertificate: the token is certificate-bound and the connection
	// presented no client certificate (or Envoy was not told to pass it on).
	ErrNoCertificate = fmt.Errorf("%w: certificate-bound token without a client certificate", extauthz.ErrInvalidToken)
	// ErrBadCertificate: the certificate Envoy sent cannot be decoded.
	ErrBadCertificate = fmt.Errorf("%w: client certificate unreadable", extauthz.ErrInvalidToken)
	// ErrCertificateMismatch: the client certificate is not the one the token is bound to.
	ErrCertificateMismatch = fmt.Errorf("%w: token bound to another certificate", extauthz.ErrInvalidToken)
	// ErrBadConfirmation: cnf or cnf["x5t#S256"] has the wrong JSON type.
	ErrBadConfirmation = fmt.Errorf("%w: cnf x5t#S256 is not a string", extauthz.ErrInvalidToken)
)

// ConfirmationMember is the cnf member of RFC 8705 §3.1.
const ConfirmationMember = "x5t#S256"

// maxCertificateBytes bounds source.certificate before decoding (a leaf
// certificate is a few KiB; URL encoding at most triples it).
const maxCertificateBytes = 64 << 10

// Bound returns the token's cnf["x5t#S256"] from its claims (a JWT's or an
// introspection answer's, RFC 8705 §3.1 and §3.2). bound reports that the
// token carries the member; a cnf or member of the wrong type is an error,
// so a binding that cannot be read never passes as no binding.
func Bound(claims map[string]any) (x5t string, bound bool, err error) {
	raw, ok := claims["cnf"]
	if !ok || raw == nil {
		return "", false, nil
	}
	cnf, ok := raw.(map[string]any)
	if !ok {
		return "", true, ErrBadConfirmation
	}
	v, ok := cnf[ConfirmationMember]
	if !ok {
		return "", false, nil
	}
	s, ok := v.(string)
	if !ok || s == "" {
		return "", true, ErrBadConfirmation
	}
	return s, true, nil
}

// ParseCertificate decodes Envoy's source.certificate: URL-encoded PEM (plain
// PEM is accepted too); the first block must be a CERTIFICATE. An empty value
// is ErrNoCertificate.
func ParseCertificate(s string) (*x509.Certificate, error) {
	if s == "" {
		return nil, ErrNoCertificate
	}
	if len(s) > maxCertificateBytes {
		return nil, ErrBadCertificate
	}
	if !strings.HasPrefix(s, "-----BEGIN ") || strings.Contains(s, "%") {
		dec, err := url.PathUnescape(s)
		if err != nil {
			return nil, ErrBadCertificate
		}
		s = dec
	}
	block, _ := pem.Decode([]byte(s))
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, ErrBadCertificate
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, ErrBadCertificate
	}
	return cert, nil
}

// Thumbprint returns the certificate's x5t#S256: base64url (no padding) of
// the SHA-256 of its DER encoding (RFC 8705 §3.1).
func Thumbprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// Check enforces the binding of a token (its claims) to the client
// certificate Envoy sent (source.certificate, "" when none). A token without
// cnf["x5t#S256"] passes whatever the connection.
func Check(claims map[string]any, peerCertificate string) error {
	want, bound, err := Bound(claims)
	if err != nil || !bound {
		return err
	}
	cert, err := ParseCertificate(peerCertificate)
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare([]byte(Thumbprint(cert)), []byte(want)) != 1 {
		return ErrCertificateMismatch
	}
	return nil
}
