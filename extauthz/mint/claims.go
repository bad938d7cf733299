package mint

import (
	"crypto/rand"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tokentailor/tokentailor/extauthz"
)

// mint signs a new token. now is the minting time.
func (m *Minter) mint(now time.Time, p *extauthz.Principal, g *extauthz.Grant) (extauthz.Token, error) {
	if g.TTL <= 0 {
		return extauthz.Token{}, fmt.Errorf("%w: mint: route %q has no token TTL", extauthz.ErrInternal, g.Route)
	}
	if g.Audience == "" {
		return extauthz.Token{}, fmt.Errorf("%w: mint: route %q has no audience", extauthz.ErrInternal, g.Route)
	}
	// NumericDates are whole seconds; rounding both down keeps exp at or
	// before the incoming exp and iat/nbf at or before now.
	iat := now.Unix()
	exp := now.Add(g.TTL).Unix()
	if in := p.ExpiresAt.Unix(); in < exp {
		exp = in
	}
	expAt := time.Unix(exp, 0)
	if !now.Before(expAt) {
		return extauthz.Token{}, fmt.Errorf("%w: mint: incoming token leaves no lifetime", extauthz.ErrTokenExpired)
	}

	var jti [16]byte
	_, _ = rand.Read(jti[:]) // crypto/rand.Read never fails (Go ≥ 1.24)

	c := make([]byte, 0, 512)
	c = append(c, `{"iss":`...)
	c = appendJSONString(c, m.issuer)
	sub := p.Subject
	if sub == "" {
		sub = p.ClientID // RFC 9068 §2.2: client-credentials tokens name the client
	}
	if sub != "" {
		c = append(c, `,"sub":`...)
		c = appendJSONString(c, sub)
	}
	c = append(c, `,"aud":`...)
	c = appendJSONString(c, g.Audience)
	c = appendScope(c, g.Scopes)
	if p.ClientID != "" {
		c = append(c, `,"client_id":`...)
		c = appendJSONString(c, p.ClientID)
	}
	c = append(c, `,"iat":`...)
	c = strconv.AppendInt(c, iat, 10)
	c = append(c, `,"nbf":`...)
	c = strconv.AppendInt(c, iat, 10)
	c = append(c, `,"exp":`...)
	c = strconv.AppendInt(c, exp, 10)
	c = append(c, `,"jti":"`...)
	c = b64.AppendEncode(c, jti[:])
	c = append(c, '"')
	c, err := appendAct(c, p)
	if err != nil {
		return extauthz.Token{}, err
	}
	if c, err = appendExtra(c, g.Claims); err != nil {
		return extauthz.Token{}, err
	}
	c = append(c, '}')

	prefixed, err := m.signing.sign(g.Prefix, c)
	if err != nil {
		return extauthz.Token{}, fmt.Errorf("%w: mint: %w", extauthz.ErrInternal, err)
	}
	return extauthz.Token{Value: prefixed[len(g.Prefix):], ExpiresAt: expAt, Prefixed: prefixed}, nil
}

// appendScope writes ,"scope":"a b" unless no scope is usable. A scope that
// is empty or holds a space or a quote (not a scope-token, RFC 6749 §3.3) is
// dropped: it would read as other scopes downstream.
func appendScope(c []byte, scopes []string) []byte {
	first := true
	for _, s := range scopes {
		if s == "" || strings.ContainsAny(s, " \"\\") {
			continue
		}
		if first {
			c = append(c, `,"scope":"`...)
			first = false
		} else {
			c = append(c, ' ')
		}
		c = appendJSONStringBody(c, s)
	}
	if !first {
		c = append(c, '"')
	}
	return c
}

// appendAct writes the RFC 8693 act claim: the client as actor, nesting any
// act the incoming token carried.
func appendAct(c []byte, p *extauthz.Principal) ([]byte, error) {
	prior, _ := p.Claims["act"].(map[string]any)
	if p.ClientID == "" && prior == nil {
		return c, nil
	}
	c = append(c, `,"act":`...)
	if p.ClientID == "" {
		return appendJSONValue(c, prior)
	}
	c = append(c, `{"sub":`...)
	c = appendJSONString(c, p.ClientID)
	if p.Issuer != "" {
		c = append(c, `,"iss":`...)
		c = appendJSONString(c, p.Issuer)
	}
	if prior != nil {
		var err error
		c = append(c, `,"act":`...)
		if c, err = appendJSONValue(c, prior); err != nil {
			return c, fmt.Errorf("%w: mint: act: %w", extauthz.ErrInternal, err)
		}
	}
	return append(c, '}'), nil
}

// appendExtra writes the grant's claims in name order, skipping reserved ones.
func appendExtra(c []byte, claims map[string]any) ([]byte, error) {
	if len(claims) == 0 {
		return c, nil
	}
	names := sortedNames(make([]string, 0, 16), claims)
	for _, name := range names {
		if extauthz.IsReservedClaim(name) {
			continue
		}
		c = append(c, ',')
		c = appendJSONString(c, name)
		c = append(c, ':')
		var err error
		if c, err = appendJSONValue(c, claims[name]); err != nil {
			return c, fmt.Errorf("%w: mint: claim %q: %w", extauthz.ErrInternal, name, err)
		}
	}
	return c, nil
}

func sortedNames(dst []string, m map[string]any) []string {
	for k := range m {
		dst = append(dst, k)
	}
	slices.Sort(dst)
	return dst
}
