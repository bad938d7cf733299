package authzfilter

import (
	"net"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// Request is the downstream request as the ext_authz filter sees it, after
// the connection manager's own edits.
type Request struct {
	// Method is the :method pseudo-header, e.g. "GET".
	Method string
	// Scheme is the :scheme pseudo-header, "http" or "https".
	Scheme string
	// Host is the :authority pseudo-header (Host in HTTP/1.1).
	Host string
	// Path is the :path pseudo-header: the raw request target with its query.
	Path string
	// Header holds the regular headers; names are matched case-insensitively
	// and sent lower-cased. Values of one name are separate header lines.
	Header http.Header
	// RemoteAddr is the downstream peer, "ip:port" (optional).
	RemoteAddr string
	// Protocol is "HTTP/1.1" or "HTTP/2" (optional).
	Protocol string
}

// RequestFromHTTP takes the Envoy view of an incoming *http.Request. It does
// not copy r.Header: callers that mutate the result's Header must clone it.
func RequestFromHTTP(r *http.Request) Request {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	proto := r.Proto
	if r.ProtoMajor == 2 {
		proto = "HTTP/2"
	}
	return Request{
		Method:     r.Method,
		Scheme:     scheme,
		Host:       r.Host,
		Path:       r.RequestURI,
		Header:     r.Header,
		RemoteAddr: r.RemoteAddr,
		Protocol:   proto,
	}
}

// CheckOptions is what the filter and route contribute to a CheckRequest.
type CheckOptions struct {
	// ContextExtensions are the route's merged check_settings.context_extensions.
	// The map is used as is, not copied.
	ContextExtensions map[string]string
	// EncodeRawHeaders sends header_map (one entry per line, unmerged)
	// instead of the merged headers map.
	EncodeRawHeaders bool
	// Allowed, when set, is allowed_headers: only names it accepts are sent,
	// plus authorization, :method, :path and :authority. Names are lower case.
	Allowed func(name string) bool
	// Disallowed, when set, is disallowed_headers; it wins over Allowed.
	Disallowed func(name string) bool
	// StreamID is the request's id field (Envoy's stream id); 0 leaves it empty.
	StreamID uint64
}

// partialBodyHeader is skipped when a client sends it (check_request_utils.cc).
const partialBodyHeader = "x-envoy-auth-partial-body"

// alwaysAllowed are added to a non-empty allowed_headers list by
// CheckRequestUtils::toRequestMatchers.
func alwaysAllowed(name string) bool {
	switch name {
	case "authorization", ":method", ":path", ":authority":
		return true
	}
	return false
}

// BuildCheckRequest builds the CheckRequest Envoy's ext_authz filter sends
// for req, by CheckRequestUtils::setHttpRequest. It allocates only what the
// message holds; header names already in lower case are not copied.
func BuildCheckRequest(req Request, opts CheckOptions) *authv3.CheckRequest {
	hr := &authv3.AttributeContext_HttpRequest{
		Method:   sanitize(req.Method),
		Path:     sanitize(req.Path),
		Host:     sanitize(req.Host),
		Scheme:   sanitize(req.Scheme),
		Protocol: req.Protocol,
	}
	if opts.StreamID != 0 {
		hr.Id = strconv.FormatUint(opts.StreamID, 10)
	}
	keep := func(name string) bool {
		if name == partialBodyHeader {
			return false
		}
		if opts.Disallowed != nil && opts.Disallowed(name) {
			return false
		}
		if opts.Allowed != nil && !opts.Allowed(name) && !alwaysAllowed(name) {
			return false
		}
		return true
	}
	// Envoy iterates pseudo-headers first, in this order.
	pseudo := [4][2]string{{":authority", req.Host}, {":path", req.Path}, {":method", req.Method}, {":scheme", req.Scheme}}
	if opts.EncodeRawHeaders {
		hm := &corev3.HeaderMap{Headers: make([]*corev3.HeaderValue, 0, 4+len(req.Header))}
		for _, p := range pseudo {
			if p[1] != "" && keep(p[0]) {
				hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: p[0], RawValue: []byte(p[1])})
			}
		}
		for name, values := range req.Header {
			lname := sanitize(lower(name))
			if !keep(lname) {
				continue
			}
			for _, v := range values {
				hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: lname, RawValue: []byte(v)})
			}
		}
		hr.HeaderMap = hm
	} else {
		h := make(map[string]string, 4+len(req.Header))
		for _, p := range pseudo {
			if p[1] != "" && keep(p[0]) {
				h[p[0]] = sanitize(p[1])
			}
		}
		for name, values := range req.Header {
			lname := sanitize(lower(name)) // codecs refuse such names; keep the message valid
			if !keep(lname) || len(values) == 0 {
				continue
			}
			v := joinValues(values)
			if prev, dup := h[lname]; dup { // "Foo" and "foo" both present in a raw map
				v = prev + "," + v
			}
			h[lname] = v
		}
		hr.Headers = h
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:            &authv3.AttributeContext_Peer{Address: socketAddress(req.RemoteAddr)},
		Destination:       &authv3.AttributeContext_Peer{Address: &corev3.Address{}},
		Request:           &authv3.AttributeContext_Request{Http: hr},
		ContextExtensions: opts.ContextExtensions,
	}}
}

// joinValues merges header lines the way Envoy merges duplicates: with ","
// and no space, each value sanitised to UTF-8.
func joinValues(values []string) string {
	if len(values) == 1 {
		return sanitize(values[0])
	}
	n := len(values) - 1
	for _, v := range values {
		n += len(v)
	}
	var b strings.Builder
	b.Grow(n)
	for i, v := range values {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(sanitize(v))
	}
	return b.String()
}

// sanitize mirrors MessageUtil::sanitizeUtf8String: proto strings must be
// UTF-8, so invalid bytes are replaced (Envoy writes '!' per bad byte).
func sanitize(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteByte('!')
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// lower returns s in ASCII lower case, without allocating when it already is.
func lower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

func socketAddress(remote string) *corev3.Address {
	host, port, err := net.SplitHostPort(remote)
	if err != nil {
		return &corev3.Address{}
	}
	p, _ := strconv.ParseUint(port, 10, 32)
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       host,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(p)},
	}}}
}
