package exchange

import (
	"fmt"
	"strings"
)

// redactEcho replaces each run of token characters (RFC 6750 b64token) of
// at least minEchoRedact bytes that is part of subject by "[token]".
func redactEcho(d, subject string) string {
	if subject == "" {
		return d
	}
	var b strings.Builder
	for i := 0; i < len(d); {
		j := i
		for j < len(d) && isTokenChar(d[j]) {
			j++
		}
		if j == i {
			b.WriteByte(d[i])
			i++
			continue
		}
		if run := d[i:j]; len(run) >= minEchoRedact && strings.Contains(subject, run) {
			b.WriteString("[token]")
		} else {
			b.WriteString(run)
		}
		i = j
	}
	return b.String()
}

func isTokenChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~+/=", c) >= 0
}

// maxDescription bounds the error_description kept for the log.
const maxDescription = 200

// minEchoRedact is the length from which a word of the description that is
// part of the subject token is cut out.
const minEchoRedact = 8

// describe renders an error_description for the log as `: "text"`, or ""
// when there is none. Only RFC 6749's characters (%x20-21 / %x23-5B /
// %x5D-7E) are kept, others become '?'; it is cut at maxDescription bytes;
// and any word that is part of the subject token (a server echoing it) is
// replaced by "[token]", so the token never reaches the log.
func describe(v any, subject string) string {
	d, ok := v.(string)
	if !ok || d == "" {
		return ""
	}
	if len(d) > 4*maxDescription {
		d = d[:4*maxDescription]
	}
	clean := []byte(d)
	for i, c := range clean {
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			clean[i] = '?'
		}
	}
	d = redactEcho(string(clean), subject)
	if len(d) > maxDescription {
		d = d[:maxDescription] + "…"
	}
	return fmt.Sprintf(": %q", d)
}

// validErrorCode accepts RFC 6749 error codes (%x20-21 / %x23-5B / %x5D-7E),
// short enough to be logged.
func validErrorCode(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
