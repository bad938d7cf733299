package extauthz

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"reflect"
	"sync/atomic"
	"time"
	"unsafe"
)

// Request is the protocol-free view of the HTTP request Envoy asks about.
type Request struct {
	// Method is the HTTP method, upper case.
	Method string
	// Scheme is "http" or "https".
	Scheme string
	// Host is the :authority without a port-less normalisation; lower case.
	Host string
	// Path is the request path without the query string.
	Path string
	// RawPath is the request target as Envoy sent it, query included.
	RawPath string
	// Headers holds request headers by lower-case name. Duplicate headers are
	// joined with "," as Envoy does; HeaderCount counts each raw occurrence.
	Headers map[string]string
	// HeaderCount counts raw occurrences of each lower-case header name, so a
	// duplicated Authorization header is detected even after joining. Nil when
	// the source cannot tell (Envoy's merged map), in which case callers look for
	// the joining comma.
	HeaderCount map[string]int
	// ContextExtensions are the route's ext_authz per-route context extensions.
	ContextExtensions map[string]string
	// SourcePrincipal is the peer certificate identity when mTLS is on.
	SourcePrincipal string
	// SourceCertificate is the client certificate Envoy sends with
	// include_peer_certificate: URL-encoded PEM; "" without mTLS. Certificate-
	// bound tokens (RFC 8705) are checked against it.
	SourceCertificate string
	// SourceAddress is the downstream peer's IP address as Envoy saw it.
	SourceAddress string
	// Time is when the request arrived, read from the pipeline's clock once
	// per Check so that no later stage reads it again (issue 14); zero lets
	// the pipeline read its clock itself.
	Time time.Time
}

// CredentialKind tells how a credential is to be checked.
type CredentialKind int

const (
	// KindNone means the request carries no credential.
	KindNone CredentialKind = iota
	// KindJWT is a compact JWS: three base64url segments.
	KindJWT
	// KindOpaque is any other token; it is introspected.
	KindOpaque
)

// String returns "none", "jwt" or "opaque".
func (k CredentialKind) String() string {
	switch k {
	case KindJWT:
		return "jwt"
	case KindOpaque:
		return "opaque"
	default:
		return "none"
	}
}

// Credential is the token found in a request and where it was found.
type Credential struct {
	// Raw is the token itself. It never goes to logs, metrics or errors.
	Raw string
	// Kind says whether Raw looks like a JWT or is opaque.
	Kind CredentialKind
	// Header is the lower-case header the token came from.
	Header string
	// Scheme is the auth-scheme the token came with, as configured ("Bearer")
	// or "DPoP" (RFC 9449 §7.1); "" for a header without a scheme.
	Scheme string
	// CachedTokenHash is TokenHash(Raw), computed once when the credential is
	// extracted so that no later stage hashes the token again; empty when not
	// computed. Read it through the TokenHash method.
	CachedTokenHash string
	// HashRemembered says CachedTokenHash was remembered from an earlier
	// Check of the same token (extauthz/credential.Options.Remember)
	// rather than computed for this one.
	HashRemembered bool
	// PresentedAt is the request's Time: the instant expiry and lifetimes
	// are judged at by the verifier and the token sources of this Check, so
	// that a Check reads the clock once. Zero means they read their own.
	PresentedAt time.Time
	// Memo is the memo of a token the credential table remembers (see
	// CredentialMemo), set with HashRemembered; nil otherwise. It belongs to
	// the remembered token: a principal that a cache keeps must not hold it.
	Memo *CredentialMemo
}

// CredentialMemo keeps, beside a token that the credential table remembers
// (extauthz/credential.Options.Remember), one value that the request path
// derived from that token: the whole warm answer of a route
// (extauthz/pipeline), found with the token instead of in each stage's
// cache. It is bounded with the table, one value per remembered token, and
// goes with the token's entry. Safe for concurrent use; a nil memo keeps
// nothing.
type CredentialMemo struct {
	kept atomic.Pointer[memoValue]
}

// Load returns the kept value, nil when none. It is shared by concurrent
// requests and must not be modified.
func (m *CredentialMemo) Load() any {
	if m == nil {
		return nil
	}
	if kv := m.kept.Load(); kv != nil {
		return kv.v
	}
	return nil
}

// Store keeps v, replacing what was kept; v must not be modified once kept.
func (m *CredentialMemo) Store(v any) {
	if m != nil {
		m.kept.Store(&memoValue{v: v})
	}
}

// A token has one hash under one name, in two lengths: TokenHash, the hex
// SHA-256 that keys caches, and ShortTokenHash, its first 12 hex digits, the
// only form of a token that may appear in logs (invariant 4).

// TokenHash returns TokenHash(c.Raw): CachedTokenHash when it was computed at
// extraction, else computed now.
func (c Credential) TokenHash() string {
	if c.CachedTokenHash != "" {
		return c.CachedTokenHash
	}
	return TokenHash(c.Raw)
}

// ShortTokenHash returns ShortTokenHash(c.Raw), reusing CachedTokenHash.
func (c Credential) ShortTokenHash() string {
	if c.Raw == "" {
		return ""
	}
	return c.TokenHash()[:shortTokenHashLen]
}

// shortTokenHashLen is the length of ShortTokenHash in hex digits.
const shortTokenHashLen = 12

// TokenHash returns the hex SHA-256 of a raw token; used as a cache key.
// It runs on every Check, so it hashes the string's bytes in place (SHA-256
// only reads them) and allocates only the 64-byte result.
func TokenHash(raw string) string {
	sum := sha256.Sum256(unsafe.Slice(unsafe.StringData(raw), len(raw)))
	var buf [2 * sha256.Size]byte
	hex.Encode(buf[:], sum[:])
	return string(buf[:])
}

// ShortTokenHash returns the first 12 hex digits of TokenHash(raw), the only
// form of a token that may appear in logs; "" for no token.
func ShortTokenHash(raw string) string {
	if raw == "" {
		return ""
	}
	return TokenHash(raw)[:shortTokenHashLen]
}

// Principal is who the validated credential speaks for.
type Principal struct {
	// Issuer is the token's iss, matched against a configured issuer.
	Issuer string
	// Subject is the token's sub.
	Subject string
	// ClientID is the OAuth client the token was issued to (client_id, azp or cid).
	ClientID string
	// Audience lists the token's aud values.
	Audience []string
	// Scopes lists the granted scopes, from a space-separated string or an array.
	Scopes []string
	// Claims holds every claim of the token (or introspection answer).
	Claims map[string]any
	// ExpiresAt is the token's exp; the upstream's token never outlives it.
	ExpiresAt time.Time
	// ExpiryUnknown says the token's own expiry is not known (an
	// introspection answer without exp): ExpiresAt is then only how long
	// tokentailor vouches for it, and a route's min_lifetime cannot judge it.
	ExpiryUnknown bool
	// IssuedAt is the token's iat, zero when absent.
	IssuedAt time.Time
	// Credential is the credential the principal was built from.
	Credential Credential
	// Fresh says the authenticator built the principal in this Check: no
	// cache of its (validation, introspection, shared) knew the credential,
	// so it may never come back. Caches further down (the minted-token
	// cache, the grant kept in Memo) then keep nothing derived from it, and
	// a token seen once costs no memory there; the credential's next Check
	// comes from the authenticator's cache, not fresh, and is kept.
	Fresh bool
	// Unbound says Claims has no cnf: the token is bound to no certificate
	// (RFC 8705) nor key (RFC 9449), so a Check need not look into Claims
	// for one (see Unconfirmed). Set where a principal is built from its
	// claims; false, the zero value, only means "look".
	Unbound bool
	// Memo, shared by every copy of a cached principal, keeps what a route
	// derives from the principal alone, so that a warm Check does not derive
	// it again. Nil keeps nothing.
	Memo *Memo
}

// Unconfirmed reports whether claims has no cnf (confirmation, RFC 7800)
// member: the value of Principal.Unbound for a principal of those claims.
func Unconfirmed(claims map[string]any) bool {
	_, ok := claims["cnf"]
	return !ok
}

// Memo keeps the grant the last route to authorize a principal derived from
// it (see Principal.Memo), and beside it what later stages derived from that
// grant (KeepWith). Every copy of a cached principal shares its
// Scopes and Claims, never modified; the grant is given back only to a
// principal holding those very Scopes and Claims, so a copy that was handed
// other ones gets a grant of its own. Safe for concurrent use.
type Memo struct {
	last atomic.Pointer[memoGrant]
}

type memoGrant struct {
	owner  any
	scopes *string // the Scopes slice the grant was derived from
	nScope int
	claims unsafe.Pointer // the Claims map the grant was derived from
	grant  *Grant
	// kept holds, per MemoSlot, what a later stage derived from the grant
	// and the principal alone (its upstream token, its answer).
	kept [memoSlots]atomic.Pointer[memoValue]
}

// memoValue is a value a stage kept beside a grant, with the stage it is for.
type memoValue struct {
	owner any
	v     any
}

// MemoSlot names what a stage after the policy keeps beside a kept grant
// (Principal.KeepWith): each stage has its own slot.
type MemoSlot int

const (
	// MemoToken is the upstream token's slot (extauthz/mint).
	MemoToken MemoSlot = iota
	// MemoAnswer is the answer's slot, with its encoding (extauthz/response).
	MemoAnswer
	memoSlots
)

// mapPointer is a map's identity.
func mapPointer(m map[string]any) unsafe.Pointer { return reflect.ValueOf(m).UnsafePointer() }

// KeptGrant returns the grant kept for owner (a compiled route) when p holds
// the Scopes and Claims it was derived from. It is shared by concurrent
// requests and must not be modified.
func (p *Principal) KeptGrant(owner any) (*Grant, bool) {
	if p.Memo == nil {
		return nil, false
	}
	e := p.Memo.last.Load()
	if e == nil || e.owner != owner || !e.derivedFrom(p) {
		return nil, false
	}
	return e.grant, true
}

// derivedFrom reports whether e was derived from the Scopes and Claims p holds.
func (e *memoGrant) derivedFrom(p *Principal) bool {
	return e.scopes == unsafe.SliceData(p.Scopes) && e.nScope == len(p.Scopes) && e.claims == mapPointer(p.Claims)
}

// KeepGrant keeps g as owner's grant for p's Scopes and Claims, replacing
// what another route kept; for a fresh principal (a token's first Check,
// whose principal no cache keeps) and without a Memo it does nothing.
func (p *Principal) KeepGrant(owner any, g *Grant) {
	if p.Memo != nil && !p.Fresh {
		p.Memo.last.Store(&memoGrant{owner: owner, scopes: unsafe.SliceData(p.Scopes), nScope: len(p.Scopes),
			claims: mapPointer(p.Claims), grant: g})
	}
}

// KeptWith returns what owner kept in slot s beside the grant g (see
// KeepWith): only when g is the grant p's Memo keeps and was derived from
// the very Scopes and Claims p holds, so that what was kept with it was
// derived from this principal too. It is shared by concurrent
// requests and must not be modified.
func (p *Principal) KeptWith(g *Grant, s MemoSlot, owner any) (any, bool) {
	e := p.memoOf(g)
	if e == nil {
		return nil, false
	}
	kv := e.kept[s].Load()
	if kv == nil || kv.owner != owner {
		return nil, false
	}
	return kv.v, true
}

// KeepWith keeps v in slot s beside the grant g for owner, when g is the
// grant p's Memo keeps; otherwise (a fresh principal, a grant derived for
// this request only, another route's grant kept since) it does nothing. v
// must not be modified once kept. What v was derived from besides g, the
// principal and owner's own settings (a token value, request headers) is
// the owner's to keep with it and compare before using it again.
func (p *Principal) KeepWith(g *Grant, s MemoSlot, owner any, v any) {
	if e := p.keeping(g); e != nil {
		e.kept[s].Store(&memoValue{owner: owner, v: v})
	}
}

// Keeps reports whether KeepWith would keep a value beside g, so that an
// owner derives what it would keep only when it will be kept.
func (p *Principal) Keeps(g *Grant) bool { return p.keeping(g) != nil }

// keeping returns the Memo's entry KeepWith keeps values beside g in; nil
// when it keeps none (a fresh principal keeps nothing).
func (p *Principal) keeping(g *Grant) *memoGrant {
	if p.Fresh {
		return nil
	}
	return p.memoOf(g)
}

// memoOf returns p's Memo entry when it keeps g, derived from the very
// Scopes and Claims p holds; nil otherwise.
func (p *Principal) memoOf(g *Grant) *memoGrant {
	if p.Memo == nil || g == nil {
		return nil
	}
	if e := p.Memo.last.Load(); e != nil && e.grant == g && e.derivedFrom(p) {
		return e
	}
	return nil
}

// HasScope reports whether the principal was granted scope s.
func (p *Principal) HasScope(s string) bool {
	for _, have := range p.Scopes {
		if have == s {
			return true
		}
	}
	return false
}

// Mode is how a route's upstream gets its token.
type Mode string

const (
	// ModeMint signs a new narrowed JWT with tokentailor's own key.
	ModeMint Mode = "mint"
	// ModeForward passes the validated incoming JWT on unchanged.
	ModeForward Mode = "forward"
	// ModeExchange asks the authorization server for a token (RFC 8693).
	ModeExchange Mode = "exchange"
	// ModeEmbedded forwards a narrower JWT found inside a claim of the incoming token.
	ModeEmbedded Mode = "embedded"
	// ModeTxnToken hands the upstream a Transaction Token (txntoken+jwt,
	// draft-ietf-oauth-transaction-tokens) signed by tokentailor, in the
	// Txn-Token header.
	ModeTxnToken Mode = "txn_token"
	// ModeNone sends no token upstream (public routes).
	ModeNone Mode = "none"
)

// Grant says what the upstream of an allowed request receives.
type Grant struct {
	// Route is the name of the matched route.
	Route string
	// Mode is how the token is produced.
	Mode Mode
	// Audience is the upstream's audience.
	Audience string
	// Scopes are the scopes passed on: route scopes ∩ incoming scopes, in route order.
	Scopes []string
	// Claims are the extra claims: copied (after renames) and fixed ones.
	Claims map[string]any
	// TTL is the wanted lifetime; the minted token's exp is min(now+TTL, incoming exp).
	TTL time.Duration
	// Header is the lower-case header that carries the token upstream.
	Header string
	// Prefix goes before the token in Header, e.g. "Bearer ".
	Prefix string
	// StripCredential removes the client's credential header.
	StripCredential bool
	// Exchange holds settings for ModeExchange; nil otherwise.
	Exchange *ExchangeSpec
	// EmbeddedClaim names the claim that holds embedded tokens (ModeEmbedded).
	EmbeddedClaim string
	// EmbeddedIssuers are issuers other than the incoming token's whose
	// embedded tokens are accepted (ModeEmbedded); the subject must match
	// whatever the issuer.
	EmbeddedIssuers []string
	// Key, set by the policy when it compiles the route, encodes everything
	// of the route that shapes a minted token (route, audience, TTL, prefix,
	// fixed claims, which claims are copied under which names), so that the
	// minted-token cache key need not encode them per request. Claims must
	// then hold the fixed claims plus, at most, the claims of Copied. Empty
	// for a Grant built by hand: the cache key encodes the fields instead.
	Key string
	// Copied names the claims copied from the principal, in the route's
	// compiled order, when Key is set.
	Copied []string
}

// ExchangeSpec holds the RFC 8693 parameters of a route.
type ExchangeSpec struct {
	// Issuer names the configured issuer whose token endpoint is used.
	Issuer string
	// Resource is the optional resource indicator (RFC 8707).
	Resource string
	// SubjectTokenType is the subject_token_type URN (config defaults it).
	SubjectTokenType string
	// RequestedTokenType is the requested_token_type URN.
	RequestedTokenType string
	// Actor sends tokentailor's own client credential as actor_token.
	Actor bool
}

// Decision is the outcome of a route's policy for one request.
type Decision struct {
	// Route is the matched route's name ("" when none matched).
	Route string
	// Public is true when the route needs no credential.
	Public bool
	// Grant is what the upstream gets; nil for a public route without credential.
	Grant *Grant
}

// Token is a token for the upstream.
type Token struct {
	// Value is the token itself.
	Value string
	// ExpiresAt is when it stops being valid.
	ExpiresAt time.Time
	// Prefixed, when set, is a header prefix (such as "Bearer ") followed by
	// Value, made together with the token so that answering Envoy does not
	// copy the token again on every request; see HeaderValue.
	Prefixed string
}

// HeaderValue returns prefix followed by Value: Prefixed when it is exactly
// that, else a new string.
func (t Token) HeaderValue(prefix string) string {
	if len(t.Prefixed) == len(prefix)+len(t.Value) && t.Prefixed[:len(prefix)] == prefix && t.Prefixed[len(prefix):] == t.Value {
		return t.Prefixed
	}
	return prefix + t.Value
}

// Authenticator turns a credential into a principal, or fails with an error
// wrapping one of this package's sentinels.
type Authenticator interface {
	Authenticate(ctx context.Context, cred Credential) (*Principal, error)
}

// TokenSource produces the upstream token for a principal and a grant. The
// grant may be shared with concurrent Checks (see Memo): it must not be
// modified.
type TokenSource interface {
	Token(ctx context.Context, p *Principal, g *Grant) (Token, error)
}
