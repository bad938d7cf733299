package dpop

import (
	"errors"
	"net/url"
	"strings"

	"github.com/tokentailor/tokentailor/extauthz/uripath"
)

// errURI is returned by NormalizeURI for a value that is not an absolute
// http(s) URI tokentailor can compare.
var errURI = errors.New("not an absolute http(s) URI")

// NormalizeURI returns the form of an absolute http or https URI in which
// htu and the request URI are compared (RFC 9449 §4.3 asks for RFC 3986
// §6.2.2 syntax-based and §6.2.3 scheme-based normalisation):
//   - scheme and host in lower case (§6.2.2.1), a trailing dot of the host kept
//     (a different name in DNS terms, and clients do not send one);
//   - the default port dropped (:443 for https, :80 for http) (§6.2.3);
//   - an empty path is "/" (§6.2.3);
//   - percent-encodings in upper case, those of unreserved characters decoded
//     (§6.2.2.1, §6.2.2.2);
//   - dot segments removed (§6.2.2.3);
//   - query and fragment dropped (RFC 9449 §4.2: htu has none, and §4.3
//     check 9 ignores them).
//
// A URI with user information, another scheme, no host, an IPv6 zone, a bad
// port, a broken percent-encoding, or longer than 8 KiB before or after
// normalisation is refused: such a proof could never match a
// request Envoy forwards.
func NormalizeURI(s string) (string, error) {
	if len(s) > maxURIBytes {
		return "", errURI
	}
	u, err := url.Parse(s)
	if err != nil || u.Opaque != "" || u.User != nil || u.Host == "" {
		return "", errURI
	}
	scheme := strings.ToLower(u.Scheme)
	var defPort string
	switch scheme {
	case "https":
		defPort = "443"
	case "http":
		defPort = "80"
	default:
		return "", errURI
	}
	host, port := u.Hostname(), u.Port()
	if host == "" || strings.Contains(host, "%") { // no IPv6 zone (RFC 6874)
		return "", errURI
	}
	if port != "" {
		for _, c := range port {
			if c < '0' || c > '9' {
				return "", errURI
			}
		}
		port = strings.TrimLeft(port, "0")
		if port == "" { // port 0 is no port a client can address
			return "", errURI
		}
		if port == defPort {
			port = ""
		}
	}
	host = strings.ToLower(host)
	if strings.Contains(host, ":") { // IPv6 literal
		host = "[" + host + "]"
	}
	path, ok := normalizePath(u.EscapedPath())
	if !ok {
		return "", errURI
	}
	var b strings.Builder
	b.Grow(len(scheme) + 3 + len(host) + len(port) + 1 + len(path))
	b.WriteString(scheme)
	b.WriteString("://")
	b.WriteString(host)
	if port != "" {
		b.WriteByte(':')
		b.WriteString(port)
	}
	b.WriteString(path)
	if b.Len() > maxURIBytes { // escaping can triple a path's length
		return "", errURI
	}
	return b.String(), nil
}

// TargetURI builds the request URI a client addressed: origin (a configured
// "https://api.example.com" when a gateway in front rewrites host or scheme)
// or else scheme and host as Envoy saw them, then path with its query cut.
// The result still goes through NormalizeURI before comparison.
func TargetURI(origin, scheme, host, path string) string {
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	if origin != "" {
		return strings.TrimSuffix(origin, "/") + path
	}
	return scheme + "://" + host + path
}

// normalizePath applies percent-encoding normalisation and dot-segment
// removal to an escaped path.
func normalizePath(p string) (string, bool) {
	if p == "" {
		return "/", true
	}
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
			return "", false
		}
		v := unhex(p[i+1])<<4 | unhex(p[i+2])
		if isUnreserved(v) {
			b.WriteByte(v)
		} else {
			b.WriteByte('%')
			b.WriteByte(upper(p[i+1]))
			b.WriteByte(upper(p[i+2]))
		}
		i += 2
	}
	return uripath.RemoveDotSegments(b.String()), true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

func upper(c byte) byte {
	if 'a' <= c && c <= 'f' {
		return c - 'a' + 'A'
	}
	return c
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}
