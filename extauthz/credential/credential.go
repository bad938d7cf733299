// Package credential finds the access token in a request and tells a JWT from
// an opaque token.
//
// It is strict on purpose: a header that holds two values, the wrong scheme,
// characters outside RFC 6750's b64token or more bytes than allowed is an
// ErrMalformedCredential (a 401), never a guess at which part is the token.
// The JWT/opaque test only looks at the shape of the token, so a JWT-shaped
// token goes to the JWT verifier (which rejects what it cannot verify) and
// everything else to introspection, as ory/oathkeeper's authenticators do.
package credential

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/tokentailor/tokentailor/extauthz"
)

// Options says where the credential is and how large it may be. Build it
// with New from config's already-defaulted values.
type Options struct {
	// Header is the header holding the credential, lower case.
	Header string
	// Scheme is the auth-scheme before the token, matched case-insensitively
	// (RFC 7235 §2.1); empty means the whole value is the token.
	Scheme string
	// MaxBytes bounds the header value.
	MaxBytes int
	// DPoP also accepts the "DPoP" scheme (RFC 9449 §7.1) beside Scheme;
	// Credential.Scheme tells which one came. Whether the token may come
	// with it is decided later, with the token's cnf (extauthz/dpop.Decide).
	DPoP bool

	// hashes remembers the hashes of tokens that came back (see Remember);
	// made by New and shared by every copy of the Options, nil without New.
	hashes *hashes
}

// New checks o and returns it with the header name lower-cased. It refuses
// an empty header and a non-positive MaxBytes: config gives both.
func New(o Options) (Options, error) {
	if o.Header == "" || strings.ContainsAny(o.Header, " :\t") {
		return Options{}, fmt.Errorf("credential: %q is not a header name", o.Header)
	}
	if o.MaxBytes <= 0 {
		return Options{}, errors.New("credential: MaxBytes must be positive")
	}
	o.Header = strings.ToLower(o.Header)
	o.hashes = newHashes()
	return o, nil
}

// Remember keeps the hash and kind of c's token, so that Extract finds them
// instead of scanning and hashing the token again: call it once c's token is known to come back,
// that is when its authenticator answered from its cache (the principal is
// not Fresh). Without New's Options, and for a hash already remembered, it
// does nothing.
func (o Options) Remember(c extauthz.Credential) {
	if !c.HashRemembered && c.CachedTokenHash != "" {
		o.hashes.remember(c)
	}
}

// Extract returns the credential of r.
//
// A request without the header yields Credential{Kind: KindNone} and a nil
// error: whether that is acceptable is the route's business. Every unusable
// header yields an error wrapping extauthz.ErrMalformedCredential; the error
// never quotes the header value.
func (o Options) Extract(r *extauthz.Request) (extauthz.Credential, error) {
	header, scheme, maxBytes := o.Header, o.Scheme, o.MaxBytes

	value, ok := r.Headers[header]
	if !ok {
		return extauthz.Credential{Kind: extauthz.KindNone}, nil
	}
	if len(value) > maxBytes {
		return extauthz.Credential{}, fmt.Errorf("%w: %s header is %d bytes, limit %d",
			extauthz.ErrMalformedCredential, header, len(value), maxBytes)
	}
	// Envoy's merged map joins repeated headers with ","; the raw header_map
	// lets the request view count them. Either way a second value is refused
	// rather than one of them picked (RFC 7230 §3.2.2: Authorization is not
	// a list header).
	if r.HeaderCount[header] > 1 || strings.IndexByte(value, ',') >= 0 {
		return extauthz.Credential{}, fmt.Errorf("%w: %s header sent more than once",
			extauthz.ErrMalformedCredential, header)
	}

	token := value
	used := scheme
	if scheme != "" {
		rest, ok := cutScheme(value, scheme)
		if !ok && o.DPoP {
			rest, ok = cutScheme(value, "DPoP")
			used = "DPoP"
		}
		if !ok {
			return extauthz.Credential{}, fmt.Errorf("%w: %s header does not use the %s scheme",
				extauthz.ErrMalformedCredential, header, scheme)
		}
		token = rest
	}
	if token == "" {
		return extauthz.Credential{}, fmt.Errorf("%w: empty token in %s header",
			extauthz.ErrMalformedCredential, header)
	}
	if e := o.hashes.find(token); e != nil {
		// The very token passed the checks below in an earlier Check.
		return extauthz.Credential{Raw: token, Kind: e.kind, Header: header, Scheme: used,
			CachedTokenHash: e.sum, HashRemembered: true, Memo: &e.memo}, nil
	}
	if !isB64Token(token) {
		return extauthz.Credential{}, fmt.Errorf("%w: token in %s header has characters outside RFC 6750 b64token",
			extauthz.ErrMalformedCredential, header)
	}
	// The token is hashed here, once per Check, unless it was remembered
	// (above): every cache and every log line downstream uses this sum.
	return extauthz.Credential{Raw: token, Kind: Kind(token), Header: header, Scheme: used,
		CachedTokenHash: extauthz.TokenHash(token)}, nil
}

// cutScheme strips "scheme 1*SP" from the front of v, matching the scheme
// case-insensitively. Leading and trailing whitespace around the whole value
// is removed by Envoy's codecs, so none is tolerated here.
func cutScheme(v, scheme string) (string, bool) {
	if len(v) <= len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) || v[len(scheme)] != ' ' {
		return "", false
	}
	return strings.TrimLeft(v[len(scheme):], " "), true
}

// isB64Token reports whether s matches RFC 6750 §2.1's
// b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func isB64Token(s string) bool {
	i := 0
	for ; i < len(s) && b64tokenChar[s[i]]; i++ {
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}

// b64tokenChar marks the characters of RFC 6750's b64token before the '='
// padding; a table lookup per byte keeps the scan of every token cheap.
var b64tokenChar = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "-._~+/" {
		t[c] = true
	}
	return t
}()

// Kind tells a JWT from an opaque token by its shape alone, cheaply: a token
// that starts with "eyJ" (a base64url JSON object: `{"`) and has exactly two
// dots (JWS compact serialization) is KindJWT; anything else is KindOpaque,
// with one exception for four dots below. Empty segments still count as a
// JWT so that, for instance, an unsigned `alg: none` token is rejected
// locally by the verifier instead of being sent to the authorization server's
// introspection endpoint.
//
// Four dots is the JWE compact serialization (RFC 7516 §7.1). A JWE whose
// protected header names a content encryption ("enc") is an encrypted token
// that only its issuer can read (zitadel's opaque access tokens are such
// JWEs): to a resource server it is opaque, so it is KindOpaque and goes to
// introspection. A five-part token whose header cannot be decoded, or has no
// "enc", stays KindJWT, so the verifier refuses it as malformed instead of
// sending it to the authorization server.
func Kind(token string) extauthz.CredentialKind {
	if !strings.HasPrefix(token, "eyJ") {
		return extauthz.KindOpaque
	}
	switch strings.Count(token, ".") {
	case 2:
		return extauthz.KindJWT
	case 4:
		if isJWE(token) {
			return extauthz.KindOpaque
		}
		return extauthz.KindJWT
	default:
		return extauthz.KindOpaque
	}
}

// maxJWEHeader bounds the protected header decoded by isJWE.
const maxJWEHeader = 4096

// isJWE reports whether the first segment of a five-part token is a
// base64url JSON object with an "enc" member of string type (RFC 7516 §4.1.2).
func isJWE(token string) bool {
	head, _, _ := strings.Cut(token, ".")
	if len(head) > maxJWEHeader {
		return false
	}
	raw, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		return false
	}
	// A map, not a struct: member names are matched exactly (RFC 7515
	// §4: case-sensitive), not case-insensitively as struct fields are.
	var h map[string]json.RawMessage
	if err := json.Unmarshal(raw, &h); err != nil {
		return false
	}
	var enc string
	return json.Unmarshal(h["enc"], &enc) == nil && enc != ""
}
