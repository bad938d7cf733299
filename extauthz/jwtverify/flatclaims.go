package jwtverify

import (
	"strconv"
	"unicode/utf8"
)

// decodeFlatClaims decodes cb into claims (empty) when cb is the JSON nearly
// every access token carries: one object whose members are strings without
// escapes, numbers, true, false, null, or arrays of those. For anything else
// (an escape, a nested object, a duplicate name, invalid UTF-8, any syntax
// error) it reports false, and the caller decodes cb with json.Unmarshal,
// the authority, on a fresh map: what it accepts, it decodes exactly as
// json.Unmarshal does into a map[string]any (FuzzFlatClaims holds it to
// that), and what json.Unmarshal refuses, it never accepts.
//
// Why: json.Unmarshal spent about 5 µs on a ten-claim access token, the
// largest cost of a cold Check after the signatures; this takes well under
// half of that (BenchmarkDecodeClaims). Strictness stays json.Unmarshal's,
// since every case this does not decode goes to it.
func decodeFlatClaims(cb []byte, claims map[string]any) bool {
	p := flatParser{b: cb}
	if !p.eat('{') {
		return false
	}
	if p.eat('}') {
		return p.end()
	}
	for {
		k, ok := p.str(true)
		if !ok || !p.eat(':') {
			return false
		}
		v, ok := p.value(true)
		if !ok {
			return false
		}
		if _, dup := claims[k]; dup {
			return false
		}
		claims[k] = v
		if p.eat(',') {
			continue
		}
		return p.eat('}') && p.end()
	}
}

// flatParser reads b from i on.
type flatParser struct {
	b []byte
	i int
}

// ws skips JSON whitespace.
func (p *flatParser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// eat skips whitespace, then c if it comes next.
func (p *flatParser) eat(c byte) bool {
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// end reports whether only whitespace is left.
func (p *flatParser) end() bool {
	p.ws()
	return p.i == len(p.b)
}

// value reads a string, number, true, false, null or (when array) an array
// of those.
func (p *flatParser) value(array bool) (any, bool) {
	p.ws()
	if p.i >= len(p.b) {
		return nil, false
	}
	switch c := p.b[p.i]; {
	case c == '"':
		return p.str(false)
	case c == '-' || '0' <= c && c <= '9':
		return p.number()
	case c == '[' && array:
		p.i++
		list := []any{}
		if p.eat(']') {
			return list, true
		}
		for {
			v, ok := p.value(false)
			if !ok {
				return nil, false
			}
			list = append(list, v)
			if p.eat(',') {
				continue
			}
			return list, p.eat(']')
		}
	}
	for _, lit := range [...]struct {
		s string
		v any
	}{{"true", true}, {"false", false}, {"null", nil}} {
		if len(p.b)-p.i >= len(lit.s) && string(p.b[p.i:p.i+len(lit.s)]) == lit.s {
			p.i += len(lit.s)
			return lit.v, true
		}
	}
	return nil, false
}

// str reads a string without escapes or control characters, in valid
// UTF-8; a name (key) of a registered claim is not allocated.
func (p *flatParser) str(key bool) (string, bool) {
	p.ws()
	if p.i >= len(p.b) || p.b[p.i] != '"' {
		return "", false
	}
	start := p.i + 1
	ascii := true
	for j := start; j < len(p.b); j++ {
		switch c := p.b[j]; {
		case c == '"':
			raw := p.b[start:j]
			if !ascii && !utf8.Valid(raw) {
				return "", false
			}
			p.i = j + 1
			if key {
				if name, ok := claimNames[string(raw)]; ok {
					return name, true
				}
			}
			return string(raw), true
		case c == '\\' || c < 0x20:
			return "", false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return "", false
}

// number reads a JSON number (RFC 8259 §6) as a float64, as json.Unmarshal
// does into an any; one out of float64's range is left to json.Unmarshal.
func (p *flatParser) number() (any, bool) {
	b, start := p.b, p.i
	j := start
	digits := func() int {
		n := 0
		for j < len(b) && '0' <= b[j] && b[j] <= '9' {
			j++
			n++
		}
		return n
	}
	if j < len(b) && b[j] == '-' {
		j++
	}
	switch {
	case j < len(b) && b[j] == '0':
		j++
	case digits() == 0:
		return nil, false
	}
	if j < len(b) && b[j] == '.' {
		j++
		if digits() == 0 {
			return nil, false
		}
	}
	if j < len(b) && (b[j] == 'e' || b[j] == 'E') {
		j++
		if j < len(b) && (b[j] == '+' || b[j] == '-') {
			j++
		}
		if digits() == 0 {
			return nil, false
		}
	}
	f, err := strconv.ParseFloat(string(b[start:j]), 64)
	if err != nil {
		return nil, false
	}
	p.i = j
	return f, true
}

// claimNames interns the names of registered and common claims.
var claimNames = func() map[string]string {
	m := map[string]string{}
	for _, n := range []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "typ", "scope", "scp",
		"client_id", "azp", "cid", "cnf", "auth_time", "acr", "amr", "sid", "act", "may_act", "email",
		"name", "groups", "roles", "tenant", "tid", "ver", "uid"} {
		m[n] = n
	}
	return m
}()
