package policy

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/tokentailor/tokentailor/extauthz"
)

// target is a request as routes see it: method, host and path each reduced
// to one spelling, so that two requests a common server reads as the same
// resource and method look the same here. Forms that servers read in
// different ways have no such spelling and are refused instead.
type target struct {
	method string // RFC 9110 token, ASCII upper case
	host   string // lower case, no port, no trailing dot; "" when absent
	path   string // see canonicalPath
}

// refuse wraps ErrAmbiguousRequest. why is a fixed text: it never holds
// request data, which may carry secrets.
func refuse(why string) error {
	return fmt.Errorf("%w: %s", extauthz.ErrAmbiguousRequest, why)
}

// canonicalTarget returns r's target, or an error wrapping
// ErrAmbiguousRequest.
func canonicalTarget(r *extauthz.Request) (target, error) {
	m, err := canonicalMethod(r.Method)
	if err != nil {
		return target{}, err
	}
	h, err := canonicalHost(r.Host)
	if err != nil {
		return target{}, err
	}
	p, err := canonicalPath(r.Path)
	if err != nil {
		return target{}, err
	}
	return target{method: m, host: h, path: p}, nil
}

// canonicalMethod upper-cases an RFC 9110 method token (ASCII only: Go's
// strings.ToUpper would turn some non-ASCII letters into ASCII ones).
// Methods are case-sensitive in RFC 9110, but Werkzeug (Flask), Jetty's
// method cache and others serve "delete" as DELETE, so a route limited to
// DELETE must see it too. A method that is not a token is refused.
func canonicalMethod(m string) (string, error) {
	if m == "" {
		return "", refuse("the request has no method")
	}
	lower := false
	for i := 0; i < len(m); i++ {
		c := m[i]
		if !isTchar(c) {
			return "", refuse("the method is not an HTTP token")
		}
		lower = lower || 'a' <= c && c <= 'z'
	}
	if !lower {
		return m, nil
	}
	b := []byte(m)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b), nil
}

// isTchar reports whether c is an RFC 9110 §5.6.2 tchar.
func isTchar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// canonicalHost drops the port and one trailing dot ("example.com." is the
// same DNS name as "example.com") and lower-cases ASCII letters. Like nginx's
// host validation it refuses empty labels ("a..b", ".a", "a.."), and it
// refuses anything but letters, digits, '-', '_' and '.' in a name, or an
// IPv6 literal in brackets: a name that is not ASCII is sent punycoded by
// honest clients. A non-numeric port is refused. "" (no host) is kept.
func canonicalHost(h string) (string, error) {
	if h == "" {
		return "", nil
	}
	name, port := h, ""
	if h[0] == '[' {
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return "", refuse("the host is not a name or an address")
		}
		name, port = h[:end+1], h[end+1:]
		for i := 1; i < end; i++ {
			if c := h[i]; !isHex(c) && c != ':' && c != '.' {
				return "", refuse("the host is not a name or an address")
			}
		}
	} else if i := strings.IndexByte(h, ':'); i >= 0 {
		name, port = h[:i], h[i:]
	}
	if port != "" {
		if port[0] != ':' || len(port) == 1 {
			return "", refuse("the host's port is not a number")
		}
		for i := 1; i < len(port); i++ {
			if c := port[i]; c < '0' || c > '9' {
				return "", refuse("the host's port is not a number")
			}
		}
	}
	if name == "" {
		return "", refuse("the host has a port but no name")
	}
	if name[0] == '[' {
		return asciiLower(name), nil
	}
	name = strings.TrimSuffix(name, ".")
	if name == "" || name[0] == '.' || name[len(name)-1] == '.' || strings.Contains(name, "..") {
		return "", refuse("the host has an empty label")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return "", refuse("the host is not a name or an address")
		}
	}
	return asciiLower(name), nil
}

// asciiLower lower-cases ASCII letters, copying only when there is one.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; 'A' <= c && c <= 'Z' {
					b[j] = c - 'A' + 'a'
				}
			}
			return string(b)
		}
	}
	return s
}

// canonicalPath returns the path that routes are matched against, or an
// error wrapping ErrAmbiguousRequest. Each rule says what common servers do
// (Envoy's normalize_path, Tomcat/Jetty/Spring, Go's net/http, nginx, IIS):
//
//   - ";params" are cut from every segment: Tomcat, Jetty and Spring serve
//     "/admin;x/users" and "/admin;/users" as "/admin/users" (Envoy leaves
//     ';' alone). The params are still checked by the rules below.
//   - Dot segments ("." and "..", also with params: "..;x") are refused:
//     they are resolved differently (Envoy only with normalize_path, Tomcat
//     after cutting params, Go by redirecting).
//   - Empty segments ("//", also "/;x/") are refused: nginx, Tomcat and Go
//     merge them, Envoy only with merge_slashes. A trailing "/" is kept.
//   - A segment ending in '.' or "%20" is refused: IIS and Windows file
//     systems drop trailing dots and spaces, so "/admin./users" is
//     "/admin/users" there.
//   - Backslashes, raw or as %5C, are refused: IIS and Envoy's URL library
//     may read them as '/', Tomcat refuses them.
//   - Escapes of '/', '.', ';', '%' and of unreserved characters are
//     refused: servers decode "%2F" and "%3B" before or after splitting
//     segments (Envoy's path_with_escaped_slashes_action decides), "%2E%2E"
//     is a dot segment to some, "%25" invites double decoding, and honest
//     clients never encode unreserved characters (RFC 3986 §2.3). Spring
//     Security's StrictHttpFirewall refuses the same escapes.
//   - Escapes of control characters (e.g. "%00") and raw control
//     characters are refused, as are broken escapes ("%zz", "%4") and
//     escapes that decode to invalid UTF-8 (overlong "%C0%AE" is a '.' to
//     old decoders).
//   - Escapes of the other characters allowed as themselves in a segment
//     (sub-delims but ';', ':' and '@') are decoded: every decoding server
//     reads "a%40b" as "a@b", and encodeURIComponent sends the former.
//   - Other escapes are kept with upper-case hex ("%c3%a9" is "%C3%A9",
//     RFC 3986 §6.2.2.1), and raw bytes that a path cannot hold as
//     themselves (space, non-ASCII, `"<>[]^{|}` and backquote) are
//     escaped the same way, since decoding servers read both as one byte.
//   - Letters keep their case: "/Admin" is not "/admin".
//
// "" and "*" (OPTIONS *) are returned as they are: they match only routes
// without a path rule. Any other path must start with '/'. The result is p
// itself (no allocation) when p is already canonical.
func canonicalPath(p string) (string, error) {
	if p == "" || p == "*" {
		return p, nil
	}
	if p[0] != '/' {
		return "", refuse("the path does not start with /")
	}
	var stack [256]byte
	out := append(stack[:0], '/')
	segStart := len(out) // where the current segment starts in out
	params := false      // inside a segment's ";params": checked, not copied
	escaped := false     // out holds an escape of a byte ≥ 0x80
	for i := 1; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '/':
			if err := checkSegment(out[segStart:], false); err != nil {
				return "", err
			}
			params = false
			out = append(out, '/')
			segStart = len(out)
		case c == ';':
			params = true
		case c == '%':
			if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
				return "", refuse("the path holds a broken escape")
			}
			d := unhex(p[i+1])<<4 | unhex(p[i+2])
			i += 2
			switch {
			case d == '/' || d == '\\':
				return "", refuse("the path holds an encoded slash or backslash")
			case d == '.' || d == ';' || d == '%':
				return "", refuse("the path holds an encoded dot, semicolon or percent sign")
			case isUnreserved(d):
				return "", refuse("the path holds an encoded unreserved character")
			case d < 0x20 || d == 0x7f:
				return "", refuse("the path holds an encoded control character")
			case params:
			case isSubDelim(d) || d == ':' || d == '@':
				out = append(out, d)
			default:
				out = append(out, '%', upperHex[d>>4], upperHex[d&15])
				escaped = escaped || d >= 0x80
			}
		case c == '\\':
			return "", refuse("the path holds a backslash")
		case c < 0x20 || c == 0x7f:
			return "", refuse("the path holds a control character")
		case params:
		case isUnreserved(c) || c == '.' || isSubDelim(c) || c == ':' || c == '@':
			out = append(out, c)
		default:
			out = append(out, '%', upperHex[c>>4], upperHex[c&15])
			escaped = escaped || c >= 0x80
		}
	}
	if err := checkSegment(out[segStart:], true); err != nil {
		return "", err
	}
	if escaped {
		var decoded [256]byte
		if !utf8.Valid(decodeEscapes(decoded[:0], out)) {
			return "", refuse("the path does not decode to UTF-8")
		}
	}
	if string(out) == p {
		return p, nil
	}
	return string(out), nil
}

// checkSegment checks one segment of the canonical path, params cut.
func checkSegment(seg []byte, last bool) error {
	switch {
	case len(seg) == 0:
		if last {
			return nil // a trailing slash
		}
		return refuse("the path has an empty segment")
	case string(seg) == "." || string(seg) == "..":
		return refuse("the path has a dot segment")
	case seg[len(seg)-1] == '.':
		return refuse("a path segment ends with a dot")
	case len(seg) >= 3 && string(seg[len(seg)-3:]) == "%20":
		return refuse("a path segment ends with a space")
	}
	return nil
}

// decodeEscapes appends to out the canonical path p with its escapes (all
// well formed) decoded.
func decodeEscapes(out, p []byte) []byte {
	for i := 0; i < len(p); i++ {
		if p[i] == '%' && i+2 < len(p) {
			out = append(out, unhex(p[i+1])<<4|unhex(p[i+2]))
			i += 2
			continue
		}
		out = append(out, p[i])
	}
	return out
}

const upperHex = "0123456789ABCDEF"

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	default:
		return c - 'a' + 10
	}
}

// isUnreserved reports whether c is an RFC 3986 unreserved character other
// than '.', which has its own rules.
func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '~'
}

// isSubDelim reports whether c is an RFC 3986 sub-delim other than ';',
// which starts a segment's params.
func isSubDelim(c byte) bool {
	return strings.IndexByte("!$&'()*+,=", c) >= 0
}
