// Package httpauthz is the HTTP face of tokentailor's request path: it reads
// the question a proxy asks over plain HTTP into the protocol-free
// extauthz.Request, and writes the pipeline's answer (an Envoy CheckResponse,
// built by extauthz/response) back as the HTTP response that proxy reads.
//
// Three conventions are served, each on its own path so that no header a
// client might smuggle through can switch between them:
//
//   - EnvoyPrefix ("/envoy"): Envoy's ext_authz http_service with
//     `path_prefix: /envoy`. Envoy sends the original method, the original
//     request target after the prefix, the original Host and the headers its
//     `allowed_headers` admit. It reads 200 as allow and copies the headers
//     named in `allowed_upstream_headers` onto the upstream request, removes
//     those listed in `x-envoy-auth-headers-to-remove`, and answers any other
//     status to the client with the headers in `allowed_client_headers` and
//     the body.
//   - ForwardAuthPath ("/forward-auth") with X-Forwarded-Method,
//     X-Forwarded-Uri, X-Forwarded-Host (and X-Forwarded-Proto): Caddy's
//     forward_auth and Traefik's ForwardAuth. They treat 2xx as allow and
//     copy configured response headers onto the upstream request; any other
//     answer goes to the client as it is.
//   - ForwardAuthPath with X-Original-Method and X-Original-URI (and
//     X-Forwarded-Host): nginx's auth_request, whose config sets them.
//     nginx honours only 2xx, 401 and 403 from the subrequest and turns
//     anything else into 500, so a 400 is answered as 403 in this
//     convention (the request is refused either way); a 503 stays 503 and
//     becomes nginx's 500, which the shipped config maps back to 503.
//
// Which peers may ask is decided by the caller (extauthz/server): these
// headers describe a request tokentailor did not see, so only a proxy that
// overwrites every client-sent copy of them may send them.
package httpauthz

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/tokentailor/tokentailor/extauthz"
)

const (
	// EnvoyPrefix is the path_prefix Envoy's http_service must be configured
	// with; what follows it is the original request target.
	EnvoyPrefix = "/envoy"
	// ForwardAuthPath is where nginx, Caddy and Traefik send their
	// forward-auth subrequests.
	ForwardAuthPath = "/forward-auth"
	// HeadersToRemove is the response header in which Envoy's http_service
	// reads the request headers to remove, comma-separated.
	HeadersToRemove = "x-envoy-auth-headers-to-remove"
)

// Convention is the protocol a request arrived in.
type Convention int

const (
	// Envoy is Envoy's ext_authz http_service.
	Envoy Convention = iota + 1
	// Forwarded is Caddy/Traefik forward-auth (X-Forwarded-*).
	Forwarded
	// Original is nginx auth_request (X-Original-*).
	Original
)

// String names c for logs.
func (c Convention) String() string {
	switch c {
	case Envoy:
		return "envoy"
	case Forwarded:
		return "forwarded"
	case Original:
		return "original"
	default:
		return "unknown"
	}
}

var (
	// ErrNotFound is returned for a path that is neither EnvoyPrefix nor
	// ForwardAuthPath: not a question this listener answers.
	ErrNotFound = errors.New("httpauthz: not an authorization endpoint")
	// ErrBadForward is returned when the forwarded-request headers are
	// missing, repeated, contradictory or malformed: the proxy's config is
	// wrong or a client's copy got through, and nothing can be decided.
	ErrBadForward = errors.New("httpauthz: bad forwarded-request headers")
)

// Forwarded-request headers, canonical form.
const (
	hXFMethod = "X-Forwarded-Method"
	hXFURI    = "X-Forwarded-Uri"
	hXFHost   = "X-Forwarded-Host"
	hXFProto  = "X-Forwarded-Proto"
	hXOMethod = "X-Original-Method"
	hXOURI    = "X-Original-Uri"
)

// FromHTTP reads the request r asks about. The returned Request's Headers
// hold r's headers by lower-case name (duplicates joined with ",", counted
// in HeaderCount), as the gRPC path sees Envoy's.
func FromHTTP(r *http.Request) (extauthz.Request, Convention, error) {
	target := r.RequestURI
	switch {
	case target == ForwardAuthPath || strings.HasPrefix(target, ForwardAuthPath+"?"):
		return forwarded(r)
	case strings.HasPrefix(target, EnvoyPrefix+"/"):
		req := base(r)
		req.Method = asciiUpper(r.Method)
		req.RawPath = target[len(EnvoyPrefix):]
		req.Path = pathOnly(req.RawPath)
		req.Host = asciiLower(r.Host)
		req.Scheme = "http"
		if r.TLS != nil {
			req.Scheme = "https"
		}
		return req, Envoy, nil
	}
	return extauthz.Request{}, 0, ErrNotFound
}

// forwarded reads a forward-auth subrequest: X-Original-* (nginx) or
// X-Forwarded-* (Caddy, Traefik), never a mix.
func forwarded(r *http.Request) (extauthz.Request, Convention, error) {
	_, hasXO := r.Header[hXOURI]
	_, hasXOM := r.Header[hXOMethod]
	_, hasXF := r.Header[hXFURI]
	_, hasXFM := r.Header[hXFMethod]
	conv, mh, uh := Forwarded, hXFMethod, hXFURI
	switch {
	case (hasXO || hasXOM) && (hasXF || hasXFM):
		return extauthz.Request{}, 0, fmt.Errorf("%w: both X-Original-* and X-Forwarded-Method/Uri are present", ErrBadForward)
	case hasXO || hasXOM:
		conv, mh, uh = Original, hXOMethod, hXOURI
	}
	method, err := single(r.Header, mh)
	if err != nil {
		return extauthz.Request{}, conv, err
	}
	uri, err := single(r.Header, uh)
	if err != nil {
		return extauthz.Request{}, conv, err
	}
	host, err := single(r.Header, hXFHost)
	if err != nil {
		return extauthz.Request{}, conv, err
	}
	if !strings.HasPrefix(uri, "/") {
		return extauthz.Request{}, conv, fmt.Errorf("%w: %s is not an origin-form request target", ErrBadForward, uh)
	}
	if strings.ContainsAny(host, ", \t/") {
		return extauthz.Request{}, conv, fmt.Errorf("%w: %s holds more than one host", ErrBadForward, hXFHost)
	}
	req := base(r)
	req.Method = asciiUpper(method)
	req.RawPath = uri
	req.Path = pathOnly(uri)
	req.Host = asciiLower(host)
	req.Scheme = "http"
	if proto := r.Header.Values(hXFProto); len(proto) == 1 {
		req.Scheme = asciiLower(proto[0])
	} else if len(proto) > 1 {
		return extauthz.Request{}, conv, fmt.Errorf("%w: %s is repeated", ErrBadForward, hXFProto)
	}
	return req, conv, nil
}

// single returns the one non-empty value of h[name].
func single(h http.Header, name string) (string, error) {
	v := h.Values(name)
	switch {
	case len(v) == 0 || (len(v) == 1 && v[0] == ""):
		return "", fmt.Errorf("%w: %s is missing", ErrBadForward, name)
	case len(v) > 1:
		return "", fmt.Errorf("%w: %s is repeated", ErrBadForward, name)
	}
	return v[0], nil
}

// base copies r's headers into a Request: lower-case names, duplicates
// joined with "," as Envoy joins them. HeaderCount is built only when a name
// repeats (it runs on every request; the joining comma alone already makes a
// repeated credential header visible to extauthz/credential).
func base(r *http.Request) extauthz.Request {
	headers := make(map[string]string, len(r.Header)+1)
	repeated := false
	for k, vs := range r.Header {
		headers[lowerName(k)] = strings.Join(vs, ",")
		repeated = repeated || len(vs) > 1
	}
	if r.Host != "" {
		headers["host"] = r.Host
	}
	req := extauthz.Request{Headers: headers}
	if repeated {
		req.HeaderCount = make(map[string]int, len(r.Header)+1)
		for k, vs := range r.Header {
			req.HeaderCount[lowerName(k)] += len(vs)
		}
		if r.Host != "" {
			req.HeaderCount["host"]++
		}
	}
	return req
}

// lowerName lower-cases a header name, without allocating for the names
// every subrequest carries.
func lowerName(k string) string {
	switch k {
	case "Authorization":
		return "authorization"
	case "Accept":
		return "accept"
	case "Accept-Encoding":
		return "accept-encoding"
	case "User-Agent":
		return "user-agent"
	case "X-Forwarded-Host":
		return "x-forwarded-host"
	case "X-Forwarded-Proto":
		return "x-forwarded-proto"
	case "X-Forwarded-Method":
		return "x-forwarded-method"
	case "X-Forwarded-Uri":
		return "x-forwarded-uri"
	case "X-Forwarded-For":
		return "x-forwarded-for"
	case "X-Original-Method":
		return "x-original-method"
	case "X-Original-Uri":
		return "x-original-uri"
	case "X-Request-Id":
		return "x-request-id"
	case "Content-Length":
		return "content-length"
	case "Connection":
		return "connection"
	}
	return strings.ToLower(k)
}

// Write renders resp, the pipeline's complete answer, in convention c:
//
//   - allowed: 200, the headers to set as response headers (the proxy copies
//     them onto the upstream request), the headers to remove in
//     x-envoy-auth-headers-to-remove (Envoy reads it) and, outside Envoy's
//     convention, also as empty response headers: nginx and Caddy copy the
//     empty value over the client's;
//   - denied: the denial's status, headers (WWW-Authenticate, Content-Type,
//     Cache-Control) and body; for Original (nginx) a status other than 401,
//     403 or 5xx becomes 403.
//
// A response that is neither is answered 503 (fail closed).
func Write(w http.ResponseWriter, resp *authv3.CheckResponse, c Convention) {
	h := w.Header()
	if ok := resp.GetOkResponse(); ok != nil && resp.GetStatus().GetCode() == 0 {
		for _, o := range ok.GetHeaders() {
			if k := o.GetHeader().GetKey(); k != "" {
				h.Set(k, o.GetHeader().GetValue())
			}
		}
		if rm := ok.GetHeadersToRemove(); len(rm) > 0 {
			h.Set(HeadersToRemove, strings.Join(rm, ", "))
			if c != Envoy {
				// nginx and Caddy copy configured headers from this answer
				// onto the upstream request; a header they find empty is
				// sent empty (Caddy) or not at all (nginx), so the client's
				// copy is gone either way. Caddy before 2.7 would otherwise
				// send its unresolved placeholder text.
				for _, name := range rm {
					if _, set := h[http.CanonicalHeaderKey(name)]; !set {
						h[http.CanonicalHeaderKey(name)] = []string{""}
					}
				}
			}
		}
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
		return
	}
	d := resp.GetDeniedResponse()
	if d == nil || resp.GetStatus().GetCode() == 0 {
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"error":"temporarily_unavailable"}`))
		return
	}
	for _, o := range d.GetHeaders() {
		if k := o.GetHeader().GetKey(); k != "" {
			h.Set(k, o.GetHeader().GetValue())
		}
	}
	status := Status(int(d.GetStatus().GetCode()), c)
	h.Set("Content-Length", strconv.Itoa(len(d.GetBody())))
	w.WriteHeader(status)
	_, _ = w.Write([]byte(d.GetBody()))
}

// Status is the HTTP status a denial with status s is answered with in
// convention c. Envoy's DeniedHttpResponse defaults to 403 when unset. nginx
// (Original) turns every subrequest status but 2xx, 401 and 403 into 500:
// a 4xx other than 401 is answered 403 so the client still gets a 4xx; 5xx
// statuses are kept (nginx answers 500, the shipped config maps it to 503).
func Status(s int, c Convention) int {
	if s < 400 || s > 599 {
		s = http.StatusForbidden
	}
	if c == Original && s >= 400 && s < 500 && s != http.StatusUnauthorized {
		return http.StatusForbidden
	}
	return s
}

// asciiUpper upper-cases ASCII letters only (see extauthz/request).
func asciiUpper(s string) string { return mapASCII(s, 'a', 'z', 'A'-'a') }

// asciiLower lower-cases ASCII letters only.
func asciiLower(s string) string { return mapASCII(s, 'A', 'Z', 'a'-'A') }

func mapASCII(s string, lo, hi byte, delta int) string {
	b := []byte(s)
	for i, c := range b {
		if lo <= c && c <= hi {
			b[i] = byte(int(c) + delta)
		}
	}
	return string(b)
}

// pathOnly cuts the query string and fragment off a request target.
func pathOnly(target string) string {
	if i := strings.IndexAny(target, "?#"); i >= 0 {
		return target[:i]
	}
	return target
}
