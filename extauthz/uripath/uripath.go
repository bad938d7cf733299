// Package uripath holds the one RFC 3986 path rule that both DPoP's htu
// comparison (RFC 9449 §4.3, extauthz/dpop) and the model of Envoy's
// normalize_path (envoy/authzfilter) apply: dot-segment removal. What else
// each normalises differs on purpose and stays with it: htu also folds
// percent-encoding and drops query and fragment; Envoy keeps the query and
// may merge slashes.
package uripath

import "strings"

// RemoveDotSegments is RFC 3986 §5.2.4 for a path: "." segments go, ".."
// segments remove the one before (never above the root), and a path ending
// in either keeps its trailing slash. The result is absolute ("/" first)
// whether or not p was.
func RemoveDotSegments(p string) string {
	if !strings.Contains(p, ".") {
		if !strings.HasPrefix(p, "/") {
			return "/" + p
		}
		return p
	}
	segs := strings.Split(strings.TrimPrefix(p, "/"), "/")
	out := make([]string, 0, len(segs))
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case ".":
			if last {
				out = append(out, "")
			}
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, s)
		}
	}
	return "/" + strings.Join(out, "/")
}
