// Package dpop verifies DPoP proofs (RFC 9449) at the resource server: the
// `DPoP` header that comes with an access token presented as
// `Authorization: DPoP <token>`.
//
// Verifier.Verify runs every check of RFC 9449 §4.3 in one straight line,
// cheapest first, the signature and the replay cache last:
//
//	size bound → one header → header JSON (typ, alg allowlist, jwk public
//	and free of private members) → JWS parse → signature with the jwk →
//	claims (jti, htm, htu, iat, ath present and typed) → htm → htu
//	(normalised) → iat window → nonce → ath = SHA-256(token) → jwk
//	thumbprint = cnf.jkt → jti not seen (replay cache)
//
// Each failure is a sentinel (errors.go) wrapping ErrInvalidProof,
// ErrUseNonce or ErrKeyBinding; Challenge turns any of them into the
// WWW-Authenticate value of RFC 9449 §7.1 and tells when a DPoP-Nonce header
// goes with it. Decide says, from the Authorization scheme, the token's
// cnf.jkt and the configured Mode, whether a proof must be verified, and
// refuses a DPoP-bound token presented as Bearer (§7.2).
//
// JOSE is go-jose/v4 (already a dependency, used by the mint tests): it parses
// the embedded `jwk` header into a key, refuses a private embedded key,
// checks that the key fits the algorithm (EC curve per ES*), and computes
// RFC 7638 thumbprints. golang-jwt has no JWK type, so using it would mean
// parsing JWKs and computing thumbprints by hand.
package dpop

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Defaults for Options fields left zero.
const (
	// DefaultMaxAge is how old a proof's iat may be (RFC 9449 §11.1 leaves
	// the window to the server; seconds, not minutes, since a proof is made
	// for one request).
	DefaultMaxAge = 60 * time.Second
	// DefaultLeeway is how far in the future iat may be (client clock skew).
	DefaultLeeway = 5 * time.Second
	// DefaultReplayEntries bounds MemoryReplay.
	DefaultReplayEntries = 100_000
	// DefaultNonceLifetime is how long an issued nonce is accepted.
	DefaultNonceLifetime = 5 * time.Minute
	// DefaultMaxProofBytes bounds a proof before any parsing.
	DefaultMaxProofBytes = 8 << 10

	maxURIBytes = 8 << 10
	minRSABits  = 2048
)

// DefaultAlgorithms are the proof algorithms accepted when none are
// configured: every asymmetric JWS algorithm go-jose verifies. HS*, none and
// anything else are never accepted whatever is configured.
var DefaultAlgorithms = []string{"ES256", "ES384", "ES512", "EdDSA", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}

// asymmetric lists the algorithms that may be configured.
var asymmetric = map[string]jose.SignatureAlgorithm{
	"ES256": jose.ES256, "ES384": jose.ES384, "ES512": jose.ES512, "EdDSA": jose.EdDSA,
	"RS256": jose.RS256, "RS384": jose.RS384, "RS512": jose.RS512,
	"PS256": jose.PS256, "PS384": jose.PS384, "PS512": jose.PS512,
}

// Options configures a Verifier.
type Options struct {
	// Algorithms is the alg allowlist; nil means DefaultAlgorithms. Only
	// asymmetric algorithms may be named; it is also the challenge's algs.
	Algorithms []string
	// MaxAge bounds how old iat may be; default DefaultMaxAge.
	MaxAge time.Duration
	// Leeway bounds how far in the future iat may be; default DefaultLeeway.
	Leeway time.Duration
	// Replay remembers accepted proofs; nil means a MemoryReplay of
	// DefaultReplayEntries.
	Replay ReplayCache
	// Nonces, when set, makes a server nonce mandatory in every proof.
	Nonces *Nonces
	// MaxProofBytes bounds the proof; default DefaultMaxProofBytes.
	MaxProofBytes int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Verifier checks DPoP proofs. It is safe for concurrent use.
type Verifier struct {
	algs     []jose.SignatureAlgorithm
	algNames []string
	maxAge   time.Duration
	leeway   time.Duration
	replay   ReplayCache
	nonces   *Nonces
	maxBytes int
	now      func() time.Time
}

// New validates opts and returns a Verifier.
func New(opts Options) (*Verifier, error) {
	v := &Verifier{
		maxAge: opts.MaxAge, leeway: opts.Leeway, replay: opts.Replay,
		nonces: opts.Nonces, maxBytes: opts.MaxProofBytes, now: opts.Now,
	}
	names := opts.Algorithms
	if names == nil {
		names = DefaultAlgorithms
	}
	if len(names) == 0 {
		return nil, errors.New("dpop: no algorithms")
	}
	for _, n := range names {
		a, ok := asymmetric[n]
		if !ok {
			return nil, fmt.Errorf("dpop: algorithm %q is not an asymmetric JWS algorithm", n)
		}
		if !slices.Contains(v.algs, a) {
			v.algs = append(v.algs, a)
			v.algNames = append(v.algNames, n)
		}
	}
	if v.maxAge <= 0 {
		v.maxAge = DefaultMaxAge
	}
	if v.leeway < 0 {
		return nil, errors.New("dpop: negative leeway")
	}
	if opts.Leeway == 0 {
		v.leeway = DefaultLeeway
	}
	if v.now == nil {
		v.now = time.Now
	}
	if v.replay == nil {
		v.replay = NewMemoryReplay(DefaultReplayEntries, v.now)
	}
	if v.maxBytes <= 0 {
		v.maxBytes = DefaultMaxProofBytes
	}
	return v, nil
}

// Algorithms returns the accepted algorithms, for the challenge's algs.
func (v *Verifier) Algorithms() []string { return slices.Clone(v.algNames) }

// Nonce returns a fresh server nonce, or "" when nonces are not used.
func (v *Verifier) Nonce() string {
	if v.nonces == nil {
		return ""
	}
	return v.nonces.Issue()
}

// Request is what a proof is checked against.
type Request struct {
	// Proofs holds every DPoP header value of the request (RFC 9449 §4.3
	// check 1 needs to see duplicates; Envoy's merged header map joins them
	// with ",", which is no base64url character, so one joined value is
	// refused as malformed too).
	Proofs []string
	// Method is the request method.
	Method string
	// URI is the request URI as the client addressed it (see TargetURI);
	// query and fragment are ignored.
	URI string
	// AccessToken is the token presented with the proof; ath must be its
	// hash. Empty only where no token is presented (never at a resource).
	AccessToken string
	// JKT is the token's cnf.jkt; the proof's key thumbprint must equal it.
	JKT string
}

// Proof is what a verified proof established.
type Proof struct {
	// JKT is the RFC 7638 SHA-256 thumbprint of the proof's key, base64url.
	JKT string
	// IssuedAt is the proof's iat.
	IssuedAt time.Time
	// Algorithm is the proof's alg.
	Algorithm string
}

// header is the part of the JOSE header checked before go-jose parses it.
type header struct {
	Typ string          `json:"typ"`
	Alg string          `json:"alg"`
	JWK json.RawMessage `json:"jwk"`
}

// claims are the proof's claims; pointer fields tell absent from empty.
type claims struct {
	JTI   *string         `json:"jti"`
	HTM   *string         `json:"htm"`
	HTU   *string         `json:"htu"`
	IAT   json.RawMessage `json:"iat"` // a JSON number; json.Number would take "123" too
	ATH   *string         `json:"ath"`
	Nonce *string         `json:"nonce"`
}

// privateMembers are JWK members that only a private key has (RFC 7518 §6).
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// Verify checks r.Proofs against r (RFC 9449 §4.3) and records the proof in
// the replay cache. Errors wrap the sentinels of errors.go; none contains
// the proof, the token or any claim value.
func (v *Verifier) Verify(ctx context.Context, r Request) (Proof, error) {
	switch len(r.Proofs) {
	case 0:
		return Proof{}, ErrProofMissing
	case 1:
	default:
		return Proof{}, ErrProofMultiple
	}
	raw := r.Proofs[0]
	if raw == "" {
		return Proof{}, ErrProofMissing
	}
	if len(raw) > v.maxBytes || strings.Count(raw, ".") != 2 {
		return Proof{}, ErrProofMalformed
	}

	h, jwk, payload, err := v.verifySignature(raw)
	if err != nil {
		return Proof{}, err
	}
	var c claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return Proof{}, ErrProofMalformed
	}
	now := v.now()
	htu, iat, err := v.checkClaims(r, &c, now)
	if err != nil {
		return Proof{}, err
	}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return Proof{}, ErrProofKey
	}
	jkt := base64.RawURLEncoding.EncodeToString(tp)
	if r.JKT == "" || !equalString(jkt, r.JKT) {
		return Proof{}, ErrKeyBinding
	}
	// Last: only a proof that passed every other check takes a slot, so
	// filling the cache needs valid tokens and their keys.
	seen, err := v.replay.Add(ctx, ReplayKey(jkt, htu, *c.JTI), now.Add(v.maxAge+v.leeway))
	if err != nil {
		return Proof{}, fmt.Errorf("%w: %w", ErrReplayStore, err)
	}
	if seen {
		return Proof{}, ErrProofReplay
	}
	return Proof{JKT: jkt, IssuedAt: iat, Algorithm: h.Alg}, nil
}

// verifySignature checks the proof's header (typ, alg, a public jwk) before
// any key is built, then its signature with that jwk, and returns the
// header, the key and the payload.
func (v *Verifier) verifySignature(raw string) (header, *jose.JSONWebKey, []byte, error) {
	// Header first: typ, alg and the jwk's members, before any key is built.
	h, err := parseHeader(raw[:strings.IndexByte(raw, '.')])
	if err != nil {
		return header{}, nil, nil, err
	}
	if !isDPoPType(h.Typ) {
		return header{}, nil, nil, ErrProofType
	}
	alg, ok := asymmetric[h.Alg]
	if !ok || !slices.Contains(v.algs, alg) {
		return header{}, nil, nil, ErrProofAlgorithm
	}
	if err := checkPublicMembers(h.JWK); err != nil {
		return header{}, nil, nil, err
	}

	jws, err := jose.ParseSignedCompact(raw, v.algs)
	if err != nil || len(jws.Signatures) != 1 {
		return header{}, nil, nil, ErrProofMalformed
	}
	jwk := jws.Signatures[0].Protected.JSONWebKey
	if jwk == nil || !jwk.Valid() || !jwk.IsPublic() {
		return header{}, nil, nil, ErrProofKey
	}
	if k, ok := jwk.Key.(*rsa.PublicKey); ok && k.N.BitLen() < minRSABits {
		return header{}, nil, nil, ErrProofKey
	}
	payload, err := jws.Verify(jwk.Key)
	if err != nil {
		if errors.Is(err, jose.ErrUnsupportedCriticalHeader) {
			return header{}, nil, nil, ErrProofMalformed
		}
		return header{}, nil, nil, ErrProofSignature
	}

	return h, jwk, payload, nil
}

// checkClaims checks the proof's claims against the request (RFC 9449
// §4.3 steps 7–11: claims present, htm, htu, iat window, nonce, ath) and
// returns the normalised htu and iat.
func (v *Verifier) checkClaims(r Request, c *claims, now time.Time) (string, time.Time, error) {
	if c.JTI == nil || *c.JTI == "" || c.HTM == nil || c.HTU == nil || c.IAT == nil || string(c.IAT) == "null" {
		return "", time.Time{}, ErrProofMissingClaim
	}
	if r.AccessToken != "" && (c.ATH == nil || *c.ATH == "") {
		return "", time.Time{}, ErrProofMissingClaim
	}
	if *c.HTM != r.Method {
		return "", time.Time{}, ErrProofMethod
	}
	htu, err := NormalizeURI(*c.HTU)
	if err != nil {
		return "", time.Time{}, ErrProofURI
	}
	target, err := NormalizeURI(r.URI)
	if err != nil || htu != target {
		return "", time.Time{}, ErrProofURI
	}
	iat, err := unixTime(c.IAT)
	if err != nil {
		return "", time.Time{}, ErrProofMalformed
	}
	if iat.After(now.Add(v.leeway)) || now.Sub(iat) > v.maxAge {
		return "", time.Time{}, ErrProofTime
	}
	if v.nonces != nil && (c.Nonce == nil || !v.nonces.Valid(*c.Nonce)) {
		return "", time.Time{}, ErrUseNonce
	}
	if r.AccessToken != "" && !equalString(*c.ATH, TokenHash(r.AccessToken)) {
		return "", time.Time{}, ErrProofTokenHash
	}
	return htu, iat, nil
}

// TokenHash returns the ath of an access token: base64url(SHA-256(token)).
func TokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func parseHeader(seg string) (header, error) {
	var h header
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil || json.Unmarshal(b, &h) != nil {
		return header{}, ErrProofMalformed
	}
	return h, nil
}

// isDPoPType reports typ = dpop+jwt. Media types are case-insensitive
// (RFC 7515 §4.1.9 lets "application/" be left out; it is accepted too).
func isDPoPType(typ string) bool {
	typ = strings.ToLower(typ)
	return typ == "dpop+jwt" || typ == "application/dpop+jwt"
}

// checkPublicMembers refuses a missing jwk, one that is not a JSON object
// and one holding any private or symmetric key member (RFC 9449 §4.3 check 7).
func checkPublicMembers(raw json.RawMessage) error {
	if len(raw) == 0 {
		return ErrProofKey
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil || members == nil {
		return ErrProofKey
	}
	for _, m := range privateMembers {
		if _, ok := members[m]; ok {
			return ErrProofKey
		}
	}
	return nil
}

// unixTime reads a NumericDate, a JSON number; fractions are allowed
// (RFC 7519 §2), strings are not.
func unixTime(raw json.RawMessage) (time.Time, error) {
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
		return time.Time{}, errors.New("NumericDate is not a number")
	}
	n := json.Number(raw)
	if i, err := n.Int64(); err == nil {
		return time.Unix(i, 0), nil
	}
	f, err := n.Float64()
	if err != nil || f < 0 || f > 1<<40 {
		return time.Time{}, errors.New("bad NumericDate")
	}
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9)), nil
}

func equalString(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
