package jwtverify

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/tokentailor/tokentailor/extauthz"
)

// accessTypes are the typ values (normalised by normType) accepted when an
// issuer sets no RequiredType: none, the generic "JWT" (RFC 7519 §5.1) and
// RFC 9068's "at+jwt". Everything else is refused; see Token kinds.
var accessTypes = map[string]bool{"": true, "jwt": true, "at+jwt": true}

// segments splits a compact JWS into its three base64url segments and
// refuses JWE and other shapes.
func segments(raw string) (header, claims, sig string, err error) {
	header, rest, ok := strings.Cut(raw, ".")
	if ok {
		claims, sig, ok = strings.Cut(rest, ".")
	}
	if !ok || strings.IndexByte(sig, '.') >= 0 {
		if strings.Count(raw, ".") == 4 {
			return "", "", "", invalid("JWE (encrypted) tokens are not accepted")
		}
		return "", "", "", invalid("not a compact JWS")
	}
	return header, claims, sig, nil
}

// jwsHeader holds the JOSE header parameters that tokentailor reads (RFC 7515
// §4.1). Names match case-sensitively; alg, kid and typ must be strings. The
// others are kept raw: their presence alone is refused (or, for b64, any
// value but true).
type jwsHeader struct {
	Alg  string         `json:"alg"`
	Kid  *string        `json:"kid"`
	Typ  string         `json:"typ"`
	Crit jsontext.Value `json:"crit"`
	Enc  jsontext.Value `json:"enc"`
	Zip  jsontext.Value `json:"zip"`
	B64  jsontext.Value `json:"b64"`
}

var b64 = base64.RawURLEncoding.Strict()

// maxCachedHeaders bounds headerCache; an issuer uses one header per key.
const maxCachedHeaders = 256

// headerCache remembers decoded JOSE headers by their exact base64url
// segment. An issuer signs every token of a key with the same header, so
// decoding it (a third of the non-cryptographic cost of a new token) is paid
// once per key instead of once per token. Entries are read-only and shared;
// when full the cache starts again, so junk headers can cost time but never
// memory beyond the bound, and they never change a result: a cached header is
// exactly what decoding the same bytes again would give.
type headerCache struct {
	m sync.Map // segment string → *jwsHeader
	n atomic.Int32
}

func (c *headerCache) decode(seg string) (*jwsHeader, error) {
	if h, ok := c.m.Load(seg); ok {
		return h.(*jwsHeader), nil
	}
	var arr [256]byte
	buf := arr[:]
	if n := b64.DecodedLen(len(seg)); n > len(buf) {
		buf = make([]byte, n)
	}
	hb, err := decodeSegment(buf, seg)
	if err != nil {
		return nil, err
	}
	h := new(jwsHeader)
	if err := json.Unmarshal(hb, h); err != nil {
		return nil, invalid("header is not a JSON object of the JWS header parameters without duplicate names")
	}
	if c.n.Add(1) > maxCachedHeaders {
		c.m.Clear()
		c.n.Store(1)
	}
	c.m.Store(strings.Clone(seg), h)
	return h, nil
}

// decodeSegment decodes one base64url segment (no padding, canonical) into
// dst, which must be large enough.
func decodeSegment(dst []byte, seg string) ([]byte, error) {
	// Decode only reads its source: view the string's bytes, do not copy them.
	n, err := b64.Decode(dst, unsafe.Slice(unsafe.StringData(seg), len(seg)))
	if err != nil {
		return nil, invalid("segment is not base64url")
	}
	return dst[:n:n], nil
}

// key applies the header rules and returns the verification key. Any crit
// header is refused, as no extension is implemented (RFC 7515 §4.1.11).
func (is *issuer) key(ctx context.Context, h *jwsHeader) (any, error) {
	alg := h.Alg
	if !is.algs[alg] {
		return nil, invalid("alg not allowed for this issuer")
	}
	if h.Crit != nil {
		return nil, invalid("critical header extensions are not supported")
	}
	if h.Enc != nil {
		return nil, invalid("encrypted tokens are not accepted")
	}
	if h.Zip != nil {
		return nil, invalid("compressed tokens are not accepted")
	}
	if h.B64 != nil && string(h.B64) != "true" {
		return nil, invalid("unencoded payloads are not accepted")
	}
	if err := is.checkType(h.Typ); err != nil {
		return nil, err
	}
	kid := ""
	if h.Kid != nil {
		kid = *h.Kid
	}
	// jku, x5u, jwk and x5c are deliberately never read.
	if strings.HasPrefix(alg, "HS") {
		return is.cfg.HMACSecret, nil
	}
	key, err := is.cfg.Keys.Key(ctx, kid, alg)
	if err != nil {
		if !errors.Is(err, extauthz.ErrUnknownKey) && !errors.Is(err, extauthz.ErrKeysUnavailable) {
			err = fmt.Errorf("%w: %w", extauthz.ErrKeysUnavailable, err)
		}
		return nil, err
	}
	return key, nil
}

// checkType applies explicit typing (RFC 8725 §3.11): the typ header must
// be the issuer's RequiredType, or without one a type an access token may
// carry (accessTypes), so a DPoP proof, logout token, security event or
// introspection answer signed with the issuer's key is never taken for one.
func (is *issuer) checkType(typ string) error {
	t := normType(typ)
	if is.typ != "" {
		if t != is.typ {
			return invalid("typ is not %s", is.cfg.RequiredType)
		}
		return nil
	}
	if !accessTypes[t] {
		return invalid("typ names no access token")
	}
	return nil
}
