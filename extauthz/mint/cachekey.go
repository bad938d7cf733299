package mint

import (
	"encoding/binary"

	"github.com/tokentailor/tokentailor/extauthz"
)

// appendCacheKey appends the minted-token cache key to b: everything that
// shapes a minted token, namely the incoming token's hash (which fixes the
// principal), the principal's fields that Token reads (in case an
// introspection answer changed), and the grant. Fields are length-prefixed
// so that no two inputs share an encoding.
func appendCacheKey(b []byte, p *extauthz.Principal, g *extauthz.Grant) []byte {
	if g.Key != "" {
		return appendRouteCacheKey(b, p, g)
	}
	b = append(b, 1)                             // key format version
	b = appendField(b, p.Credential.TokenHash()) // the token's SHA-256, computed once per Check
	b = appendField(b, p.Issuer)
	b = appendField(b, p.Subject)
	b = appendField(b, p.ClientID)
	b = binary.BigEndian.AppendUint64(b, uint64(p.ExpiresAt.UnixNano()))
	b = appendField(b, g.Route)
	b = appendField(b, g.Audience)
	b = binary.BigEndian.AppendUint64(b, uint64(g.TTL))
	b = binary.BigEndian.AppendUint32(b, uint32(len(g.Scopes)))
	for _, s := range g.Scopes {
		b = appendField(b, s)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(g.Claims)))
	if len(g.Claims) > 0 {
		for _, name := range sortedNames(make([]string, 0, 16), g.Claims) {
			b = appendField(b, name)
			at := len(b)
			b = append(b, 0, 0, 0, 0)
			var err error
			if b, err = appendJSONValue(b, g.Claims[name]); err != nil {
				b = append(b[:at+4], 0xff) // unencodable: minting will fail anyway
			}
			binary.BigEndian.PutUint32(b[at:], uint32(len(b)-at-4))
		}
	}
	// The key is the encoding itself: it holds the token's hash, never the
	// token, and hashing it again would only cost time on the warm path.
	return b
}

// appendRouteCacheKey is appendCacheKey for a grant the policy compiled
// (g.Key set): the route's part is g.Key, encoded once when the route was
// built, so per request only the principal's identity, the granted scopes and
// the copied claims' values are appended, in the route's order (g.Copied):
// no sorting of claim names, and a string claim, the usual kind, is appended
// as it is. Format version 2 keeps these keys apart from appendCacheKey's own.
func appendRouteCacheKey(b []byte, p *extauthz.Principal, g *extauthz.Grant) []byte {
	b = append(b, 2) // key format version
	b = appendField(b, p.Credential.TokenHash())
	b = appendField(b, p.Issuer)
	b = appendField(b, p.Subject)
	b = appendField(b, p.ClientID)
	b = binary.BigEndian.AppendUint64(b, uint64(p.ExpiresAt.UnixNano()))
	b = appendField(b, g.Key)
	b = binary.BigEndian.AppendUint32(b, uint32(len(g.Scopes)))
	for _, s := range g.Scopes {
		b = appendField(b, s)
	}
	// The count guards the contract that Claims holds only the route's fixed
	// claims (in g.Key) and those of Copied.
	b = binary.BigEndian.AppendUint32(b, uint32(len(g.Claims)))
	for _, name := range g.Copied {
		switch v, ok := g.Claims[name]; {
		case !ok:
			b = append(b, 0)
		case isString(v):
			b = appendField(append(b, 's'), v.(string))
		default:
			b = append(b, 'j')
			at := len(b)
			b = append(b, 0, 0, 0, 0)
			var err error
			if b, err = appendJSONValue(b, v); err != nil {
				b = append(b[:at+4], 0xff) // unencodable: minting will fail anyway
			}
			binary.BigEndian.PutUint32(b[at:], uint32(len(b)-at-4))
		}
	}
	return b
}

func isString(v any) bool { _, ok := v.(string); return ok }

func appendField(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}
