// Package response turns the outcome of a Check into Envoy's CheckResponse:
// an OkHttpResponse that hands the upstream its token, or a DeniedHttpResponse
// that follows RFC 6750. It holds the one table (table.go) that maps every
// extauthz deny sentinel to an HTTP status, a WWW-Authenticate challenge, a
// stable reason label and a client-safe description.
//
// Every outcome, failures included, is a CheckResponse with a non-OK status
// and a DeniedHttpResponse, never a gRPC error: Envoy would treat a gRPC error
// as a failure of the authorization service and apply failure_mode_allow.
//
// # How Envoy applies an OkHttpResponse
//
// Envoy's ext_authz HTTP filter (source/extensions/filters/http/ext_authz/
// ext_authz.cc, Filter::onComplete, case CheckStatus::OK) first applies the
// header mutations of `headers` (set, add, append), and only THEN removes
// `headers_to_remove`. Naming the internal token's header in
// headers_to_remove would therefore delete the token that was just set.
// So Allow never removes that header: the token header is set with
// OVERWRITE_IF_EXISTS_OR_ADD, which replaces every value a client sent under
// that name (README invariant 3), and headers_to_remove only names other
// headers (the client's credential header when the route strips it). When
// there is no token to set, the header is removed instead.
//
// "Overwrite" is HeaderMapImpl::setCopy, which is remove(key) then addCopy in
// current Envoy (source/common/http/header_map_impl.cc). Old releases (the
// runtime flag http_set_copy_replace_all_headers, ~2020) replaced only the
// FIRST value, so a client that sends the internal header twice could keep its
// second value there; credential extraction already refuses a duplicated
// credential header, but for a distinct internal header on such old Envoys the
// server should deny requests that carry it more than once.
//
// # append and append_action
//
// Envoy up to 1.36 read only the deprecated `append` flag; 1.37 briefly read
// `append_action` (default APPEND_IF_EXISTS_OR_ADD: the token was added next
// to the client's header); later releases read `append` first when it is set
// and map false to "set" (source/extensions/filters/common/ext_authz/
// ext_authz_grpc_impl.cc, has_append()). Every header written here therefore
// carries both `append: false` and `append_action: OVERWRITE_IF_EXISTS_OR_ADD`,
// which every version reads as "overwrite". The ext_authz client does not
// reject both being set (only the route HeaderParser does).
//
// # Allocation
//
// Responses are marshalled by gRPC after Allow or Deny returns, so nothing
// returned is ever modified again. The parts of a denial that do not depend
// on the request (status, headers, body) are built once per table row and
// shared read-only by every response; protobuf messages may be marshalled
// concurrently as long as nobody writes to them. An allowed answer may be
// handed to every Check of the same principal, route, token and headers
// (AllowFor). Callers must therefore treat returned messages, the
// CheckResponse itself included, as read-only.
package response

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpccode "google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tokentailor/tokentailor/extauthz"
)

// Builder builds CheckResponses. The zero value with Realm set is ready to
// use; what does not depend on the request is computed on first use. A
// Builder must not be copied after first use; it is safe for concurrent use.
type Builder struct {
	// Realm is the realm of WWW-Authenticate challenges; empty omits it.
	Realm string
	// InternalHeaders names the header of every route's internal token, lower
	// case. A client-sent header under one of these names never reaches the
	// upstream (invariant 3): a sidecar's app may trust that header whichever
	// route the request took. Not copied: it must not change after first use.
	InternalHeaders []string
	// CredentialHeader is where clients send their token, lower case; public
	// routes that strip the credential remove it.
	CredentialHeader string
	// DPoP renders DPoP denials (WWW-Authenticate: DPoP …, DPoP-Nonce);
	// nil when no route checks DPoP proofs.
	DPoP DPoPChallenger
	// ConsumedHeaders are request headers tokentailor consumed (the DPoP
	// proof): removed before the upstream on every allowed request that
	// carries them. Not copied: it must not change after first use.
	ConsumedHeaders []string
	// Encode, when set, encodes an answer AllowFor keeps, once, in the bytes
	// the gRPC server would send for it: Checks that get the kept answer
	// back get its encoding too, and the server sends it as it is instead of
	// encoding the same answer again. Nil keeps no encoding.
	Encode func(*authv3.CheckResponse) ([]byte, error)

	once     sync.Once
	denials  [len(rows)]*authv3.DeniedHttpResponse
	statuses [len(rows)]*rpcstatus.Status
	// ok, appendFalse and jsonCT, noStore are shared read-only parts.
	ok          *rpcstatus.Status
	appendFalse *wrapperspb.BoolValue
	jsonCT      *corev3.HeaderValueOption
	noStore     *corev3.HeaderValueOption
	// publicStrip is InternalHeaders plus CredentialHeader: what a public
	// route that strips the credential removes.
	publicStrip []string
}

// NewBuilder returns a Builder for realm with its static parts built.
func NewBuilder(realm string) *Builder {
	b := &Builder{Realm: realm}
	b.once.Do(b.init)
	return b
}

func (b *Builder) init() {
	b.ok = &rpcstatus.Status{Code: int32(rpccode.Code_OK)}
	b.appendFalse = wrapperspb.Bool(false)
	b.jsonCT = b.header("content-type", "application/json")
	b.noStore = b.header("cache-control", "no-store")
	for i, r := range rows {
		b.statuses[i] = &rpcstatus.Status{Code: int32(grpcCode(r.status)), Message: r.reason}
		b.denials[i] = b.denied(i, "")
	}
	b.publicStrip = b.InternalHeaders
	if h := b.CredentialHeader; h != "" && !slices.Contains(b.InternalHeaders, h) {
		b.publicStrip = append(slices.Clip(b.InternalHeaders), h)
	}
}

// header returns a HeaderValueOption that overwrites name in every Envoy
// release (see the package documentation).
func (b *Builder) header(name, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: name, Value: value},
		Append:       b.appendFalse,
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

// denied builds the DeniedHttpResponse of row i; scope is the scope
// parameter of an insufficient_scope challenge, "" for none.
func (b *Builder) denied(i int, scope string) *authv3.DeniedHttpResponse {
	r := rows[i]
	headers := make([]*corev3.HeaderValueOption, 0, 3)
	if r.challenge {
		headers = append(headers, b.header("www-authenticate", challenge(b.Realm, r.code, r.desc, scope)))
	}
	headers = append(headers, b.jsonCT, b.noStore)
	return &authv3.DeniedHttpResponse{
		Status:  &typev3.HttpStatus{Code: typev3.StatusCode(r.status)},
		Headers: headers,
		Body:    body(r),
	}
}

// body is the small JSON document of a denial.
func body(r row) string {
	code := r.code
	if code == "" {
		switch r.status {
		case http.StatusUnauthorized:
			code = "unauthorized"
		case http.StatusForbidden:
			code = "access_denied"
		case http.StatusBadRequest, http.StatusRequestHeaderFieldsTooLarge:
			code = "invalid_request"
		default:
			code = "temporarily_unavailable"
		}
	}
	out, err := json.Marshal(struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}{code, r.desc})
	if err != nil { // two plain strings cannot fail to marshal
		return `{"error":"temporarily_unavailable"}`
	}
	return string(out)
}

// grpcCode maps an HTTP denial status to the google.rpc code of CheckResponse.status.
func grpcCode(status int) rpccode.Code {
	switch status {
	case http.StatusUnauthorized:
		return rpccode.Code_UNAUTHENTICATED
	case http.StatusForbidden:
		return rpccode.Code_PERMISSION_DENIED
	case http.StatusBadRequest:
		return rpccode.Code_INVALID_ARGUMENT
	case http.StatusRequestHeaderFieldsTooLarge:
		return rpccode.Code_RESOURCE_EXHAUSTED
	default:
		return rpccode.Code_UNAVAILABLE
	}
}

// deniedResponse and allowedResponse put every message of one response in a
// single allocation.
type deniedResponse struct {
	resp  authv3.CheckResponse
	oneof authv3.CheckResponse_DeniedResponse
}

type allowedResponse struct {
	resp   authv3.CheckResponse
	oneof  authv3.CheckResponse_OkResponse
	ok     authv3.OkHttpResponse
	opt    corev3.HeaderValueOption
	value  corev3.HeaderValue
	set    [1]*corev3.HeaderValueOption
	remove [2]string
}

// Deny returns the denial for err and its classification by the table, so
// that logs and metrics use the very row the client's answer came from. A
// nil or unknown error denies with 503 (fail closed).
func (b *Builder) Deny(err error) (*authv3.CheckResponse, Denial) {
	b.once.Do(b.init)
	i, scopes := classify(err)
	if resp, class, ok := b.dpopDenial(i, err); ok {
		return resp, class
	}
	d, class := b.denials[i], denials[i]
	if len(scopes) > 0 {
		if scope := scopeParam(scopes); scope != "" {
			d = b.denied(i, scope)
			class.Challenge = challenge("", class.Code, class.Description, scope)
		}
	}
	return b.deny(i, d), class
}

func (b *Builder) deny(i int, d *authv3.DeniedHttpResponse) *authv3.CheckResponse {
	a := &deniedResponse{}
	a.oneof.DeniedResponse = d
	a.resp.Status = b.statuses[i]
	a.resp.HttpResponse = &a.oneof
	return &a.resp
}

// Allow lets the request through and hands the upstream its token:
//
//   - g.Header is set to g.Prefix+tok.Value, overwriting whatever the client
//     sent under that name (README invariant 3);
//   - with an empty tok.Value (ModeNone) g.Header is removed instead, so a
//     client-sent value never reaches the upstream either;
//   - the client's credential header is removed when g.StripCredential and it
//     differs from g.Header (when it is the same header it is overwritten);
//   - every other route's internal header that the client sent (sent holds
//     the request's headers by lower-case name) is removed (invariant 3).
//
// A nil grant, a token without a header to carry it, or a token that cannot
// be a header value (control characters) is a tokentailor bug or a broken
// token endpoint answer: Allow then denies with 503 rather than let the
// request through without its token.
func (b *Builder) Allow(g *extauthz.Grant, tok extauthz.Token, cred extauthz.Credential, sent map[string]string) *authv3.CheckResponse {
	b.once.Do(b.init)
	return b.allow(g, tok, cred, b.sentMask(g, cred, sent), sent)
}

// AllowFor is Allow for the principal p that g was granted to. An allowed
// answer depends on nothing but g, tok, cred.Header and which of the
// headers it may remove were sent (the Builder's settings aside), so p's
// Memo keeps it beside g (extauthz.Principal.KeepWith) and the next Check of
// the same cached principal and route gets the very same answer back when
// those are the same: a warm Check builds no answer. wire is the kept
// answer's encoding (Encode), nil when there is none; it is resp's, byte
// for byte, since a kept answer is never modified.
func (b *Builder) AllowFor(p *extauthz.Principal, g *extauthz.Grant, tok extauthz.Token, cred extauthz.Credential, sent map[string]string) (resp *authv3.CheckResponse, wire []byte) {
	return b.allowKept(nil, p, g, tok, cred, sent)
}

// Kept returns the answer AllowFor keeps for p under g, for a caller that
// keeps it elsewhere too (extauthz/pipeline's warm answers) and gives it
// back to AllowKept; nil when none is kept.
func (b *Builder) Kept(p *extauthz.Principal, g *extauthz.Grant) *Kept {
	if v, ok := p.KeptWith(g, extauthz.MemoAnswer, b); ok {
		return (*Kept)(v.(*keptAnswer))
	}
	return nil
}

// Kept is an allowed answer kept by AllowFor (see Builder.Kept); never
// modified.
type Kept keptAnswer

// AllowKept is AllowFor with an answer it kept for the same principal and
// grant g at hand (Kept, nil for none), tried before the one p's Memo keeps.
func (b *Builder) AllowKept(k *Kept, p *extauthz.Principal, g *extauthz.Grant, tok extauthz.Token, cred extauthz.Credential, sent map[string]string) (resp *authv3.CheckResponse, wire []byte) {
	return b.allowKept((*keptAnswer)(k), p, g, tok, cred, sent)
}

// allowKept is AllowFor trying held, an answer kept for p and g earlier
// (nil for none), before the one p's Memo keeps: a kept answer is given
// back only when it fits.
func (b *Builder) allowKept(held *keptAnswer, p *extauthz.Principal, g *extauthz.Grant, tok extauthz.Token, cred extauthz.Credential, sent map[string]string) (resp *authv3.CheckResponse, wire []byte) {
	b.once.Do(b.init)
	mask := b.sentMask(g, cred, sent)
	if mask == maskUnknown {
		return b.allow(g, tok, cred, mask, sent), nil
	}
	if held.fits(mask, tok, cred) {
		return held.resp, held.wire
	}
	if v, ok := p.KeptWith(g, extauthz.MemoAnswer, b); ok {
		if k := v.(*keptAnswer); k.fits(mask, tok, cred) {
			return k.resp, k.wire
		}
	}
	resp = b.allow(g, tok, cred, mask, sent)
	if resp.GetOkResponse() == nil || !p.Keeps(g) {
		return resp, nil
	}
	k := &keptAnswer{token: tok.Value, header: cred.Header, mask: mask, resp: resp}
	if b.Encode != nil {
		if w, err := b.Encode(resp); err == nil {
			k.wire = w // on failure the server's codec encodes (and reports) it
		}
	}
	p.KeepWith(g, extauthz.MemoAnswer, b, k)
	return resp, k.wire
}

// fits reports whether k, kept for the same principal and grant, is the
// answer for tok, cred's header and the sent headers' mask: all an allowed
// answer depends on besides them. A nil k fits nothing.
func (k *keptAnswer) fits(mask uint64, tok extauthz.Token, cred extauthz.Credential) bool {
	return k != nil && k.mask == mask && k.token == tok.Value && k.header == cred.Header
}

// keptAnswer is an allowed answer kept by AllowFor with what it was built
// from, and its encoding (nil without Builder.Encode).
type keptAnswer struct {
	token  string // tok.Value
	header string // cred.Header
	mask   uint64 // sentMask
	resp   *authv3.CheckResponse
	wire   []byte
}

// maskUnknown is sentMask's answer when the headers an answer may remove
// are too many to fit in a mask: AllowFor then keeps nothing.
const maskUnknown = ^uint64(0)

// candidate returns the i-th header an answer may remove besides g's own
// and the credential's (0: the usual credential header, then
// InternalHeaders, then ConsumedHeaders), and whether a request that sent
// it must have it removed. ok is false past the last one.
func (b *Builder) candidate(i int, g *extauthz.Grant, cred extauthz.Credential) (h string, removable, ok bool) {
	switch n := len(b.InternalHeaders); {
	case i == 0:
		// The credential came from another header (a Txn-Token): what the
		// client put in the usual one was never verified, so it does not
		// travel on either.
		h = b.CredentialHeader
		return h, g.StripCredential && h != "" && cred.Header != h && h != g.Header, true
	case i <= n:
		// Another route's internal header sent by the client (invariant 3);
		// with one route header, g.Header is that one and is overwritten.
		h = b.InternalHeaders[i-1]
		return h, n > 1 && h != g.Header, true
	case i <= n+len(b.ConsumedHeaders):
		h = b.ConsumedHeaders[i-1-n]
		return h, h != g.Header, true
	}
	return "", false, false
}

// sentMask returns bit i set for each candidate header i that the answer
// must remove because the client sent it (sent holds the request's headers
// by lower-case name); maskUnknown when there are more than 63 candidates.
func (b *Builder) sentMask(g *extauthz.Grant, cred extauthz.Credential, sent map[string]string) uint64 {
	if g == nil || 1+len(b.InternalHeaders)+len(b.ConsumedHeaders) > 63 {
		return maskUnknown
	}
	var mask uint64
	for i := 0; ; i++ {
		h, removable, ok := b.candidate(i, g, cred)
		if !ok {
			return mask
		}
		if removable {
			if _, sentIt := sent[h]; sentIt {
				mask |= 1 << i
			}
		}
	}
}

// allow is Allow with the sent headers read into mask (sentMask); with
// maskUnknown it reads sent itself.
func (b *Builder) allow(g *extauthz.Grant, tok extauthz.Token, cred extauthz.Credential, mask uint64, sent map[string]string) *authv3.CheckResponse {
	// A minted token is base64url and dots by construction (extauthz/mint),
	// so only tokens from elsewhere (forward, exchange, embedded) are scanned.
	if g == nil || (tok.Value != "" && (g.Header == "" || !validHeaderValue(g.Prefix) ||
		(g.Mode != extauthz.ModeMint && !validHeaderValue(tok.Value)))) {
		return b.deny(internalRow, b.denials[internalRow])
	}
	a := &allowedResponse{}
	a.resp.Status = b.ok
	a.resp.HttpResponse = &a.oneof
	a.oneof.OkResponse = &a.ok

	n := 0
	if tok.Value != "" {
		a.value.Key = g.Header
		a.value.Value = tok.HeaderValue(g.Prefix)
		a.opt.Header = &a.value
		a.opt.Append = b.appendFalse
		a.opt.AppendAction = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
		a.set[0] = &a.opt
		a.ok.Headers = a.set[:]
	} else if g.Header != "" {
		// Nothing is set, so removing the internal header's name is safe.
		a.remove[n] = g.Header
		n++
	}
	if g.StripCredential && cred.Header != "" && !strings.EqualFold(cred.Header, g.Header) {
		a.remove[n] = cred.Header
		n++
	}
	remove := a.remove[:n]
	for i := 0; ; i++ {
		h, removable, ok := b.candidate(i, g, cred)
		if !ok {
			break
		}
		if !removable {
			continue
		}
		if mask != maskUnknown {
			if mask&(1<<i) != 0 {
				remove = append(remove, h) // allocates only when the client sent one
			}
		} else if _, sentIt := sent[h]; sentIt {
			remove = append(remove, h)
		}
	}
	if len(remove) > 0 {
		a.ok.HeadersToRemove = remove
	}
	return &a.resp
}

// AllowPublic lets a request through on the public route of g, removing every
// internal header (b.InternalHeaders) so a client cannot smuggle a token of
// its own to the upstream, and the credential header when g.StripCredential.
func (b *Builder) AllowPublic(g *extauthz.Grant) *authv3.CheckResponse {
	b.once.Do(b.init)
	a := &struct {
		resp  authv3.CheckResponse
		oneof authv3.CheckResponse_OkResponse
		ok    authv3.OkHttpResponse
	}{}
	a.resp.Status = b.ok
	a.resp.HttpResponse = &a.oneof
	a.oneof.OkResponse = &a.ok
	strip := b.InternalHeaders
	if g != nil && g.StripCredential {
		strip = b.publicStrip
	}
	if len(strip) > 0 {
		a.ok.HeadersToRemove = strip
	}
	return &a.resp
}

// validHeaderValue reports whether s can travel as an HTTP header value in
// an answer: no control characters (CR, LF and NUL above all), no DEL, and
// valid UTF-8 (a protobuf string field must be: protobuf-go would refuse
// to marshal the answer, and the generated code the gRPC server marshals
// with does not check).
func validHeaderValue(s string) bool {
	ascii := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
		ascii = ascii && c < utf8.RuneSelf
	}
	return ascii || utf8.ValidString(s)
}

// String describes o for logs: status and reason only.
func (o Denial) String() string {
	return strconv.Itoa(o.Status) + " " + o.Reason
}
