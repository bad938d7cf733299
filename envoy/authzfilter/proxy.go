package authzfilter

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/tokentailor/tokentailor/extauthz/uripath"
)

// Proxy is an http.Handler playing an Envoy listener with the ext_authz
// filter: it picks the route, asks the authorization service, applies the
// answer and forwards to the route's upstream, or answers the client itself.
type Proxy struct {
	settings  *Settings
	client    authv3.AuthorizationClient
	upstreams map[string]*httputil.ReverseProxy
	log       *slog.Logger
}

// ProxyOptions configures NewProxy.
type ProxyOptions struct {
	// Upstreams maps cluster names to base URLs (e.g. an httptest server's),
	// overriding the clusters' addresses in the bootstrap. Clusters without
	// an entry use http://ADDRESS of their endpoint (TCP only).
	Upstreams map[string]*url.URL
	// Transport is used for upstream requests; nil: http.DefaultTransport.
	Transport http.RoundTripper
	// Logger receives one line per request (outcome, route, status); nil: none.
	// Tokens are never logged.
	Logger *slog.Logger
}

// NewProxy returns a proxy for s that sends Check calls to client.
func NewProxy(s *Settings, client authv3.AuthorizationClient, opts ProxyOptions) (*Proxy, error) {
	p := &Proxy{settings: s, client: client, upstreams: map[string]*httputil.ReverseProxy{}, log: opts.Logger}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	for name, ep := range s.Clusters {
		if name == s.Filter.Cluster {
			continue
		}
		u := opts.Upstreams[name]
		if u == nil {
			if ep.Network != "tcp" {
				continue
			}
			u = &url.URL{Scheme: "http", Host: ep.Address}
		}
		p.upstreams[name] = p.reverseProxy(u, opts.Transport)
	}
	for name := range opts.Upstreams {
		if _, ok := s.Clusters[name]; !ok {
			return nil, fmt.Errorf("%w: upstream for unknown cluster %q", ErrConfig, name)
		}
	}
	return p, nil
}

type resultKey struct{}

func (p *Proxy) reverseProxy(u *url.URL, t http.RoundTripper) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Transport: t,
		Rewrite: func(pr *httputil.ProxyRequest) {
			res := pr.In.Context().Value(resultKey{}).(*Result)
			out := pr.Out
			out.Header = res.Header.Clone()
			for _, h := range hopHeaders {
				out.Header.Del(h)
			}
			out.Host = res.Host
			path, query, _ := strings.Cut(res.Path, "?")
			out.URL = &url.URL{Scheme: u.Scheme, Host: u.Host, Opaque: strings.TrimSuffix(u.Path, "/") + path, RawQuery: query}
		},
		ModifyResponse: func(resp *http.Response) error {
			res := resp.Request.Context().Value(resultKey{}).(*Result)
			for _, h := range res.ResponseHeaders {
				k, v := h.GetHeader().GetKey(), headerValue(h.GetHeader())
				// response_headers_to_add: append true (or unset, legacy
				// default true for this list) adds, false sets.
				if h.GetAppend() != nil && !h.GetAppend().GetValue() {
					resp.Header.Set(k, v)
				} else {
					resp.Header.Add(k, v)
				}
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			p.log.WarnContext(r.Context(), "upstream failed", "err", err)
			http.Error(w, "upstream connect error", http.StatusServiceUnavailable)
		},
	}
}

// ServeHTTP handles one downstream request.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	req := RequestFromHTTP(r)
	req.Header = r.Header.Clone()
	s := p.settings
	// The connection manager's own edits, before any filter.
	if s.NormalizePath || s.MergeSlashes {
		req.Path = normalizePath(req.Path, s.NormalizePath, s.MergeSlashes)
	}
	if s.UseRemoteAddress {
		if ip, _, err := net.SplitHostPort(req.RemoteAddr); err == nil {
			if prev := req.Header.Get("X-Forwarded-For"); prev != "" {
				req.Header.Set("X-Forwarded-For", prev+","+ip)
			} else {
				req.Header.Set("X-Forwarded-For", ip)
			}
		}
		req.Header.Set("X-Forwarded-Proto", req.Scheme)
	}
	if req.Header.Get("X-Request-Id") == "" || s.UseRemoteAddress {
		req.Header.Set("X-Request-Id", requestID())
	}
	route, ok := s.Match(req.Method, req.Host, req.Path, req.Header)
	if !ok {
		p.log.InfoContext(ctx, "no route", "path", redactQuery(req.Path))
		w.WriteHeader(http.StatusNotFound)
		return
	}
	if route.DirectStatus != 0 {
		w.WriteHeader(route.DirectStatus)
		_, _ = w.Write([]byte(route.DirectBody))
		return
	}
	up := p.upstreams[route.Cluster]
	if up == nil {
		http.Error(w, "no healthy upstream", http.StatusServiceUnavailable)
		return
	}
	var res Result
	if route.Disabled {
		res = Result{Outcome: Allowed, Header: req.Header, Host: req.Host, Path: req.Path}
	} else {
		res = p.Check(ctx, req, route)
	}
	p.log.InfoContext(ctx, "ext_authz", "route", route.Name, "outcome", res.Outcome.String(), "status", res.Status, "err", res.Err)
	switch res.Outcome {
	case Denied:
		for k, vs := range res.Header {
			w.Header()[k] = vs
		}
		w.WriteHeader(res.Status)
		_, _ = w.Write([]byte(res.Body))
		return
	case Failed:
		w.WriteHeader(res.Status)
		return
	}
	up.ServeHTTP(w, r.WithContext(context.WithValue(ctx, resultKey{}, &res)))
}

// Check builds the CheckRequest for req on route, calls the authorization
// service with the filter's timeout, and applies the answer.
func (p *Proxy) Check(ctx context.Context, req Request, route *Route) Result {
	f := &p.settings.Filter
	opts := f.Check
	opts.ContextExtensions = route.ContextExtensions
	cr := BuildCheckRequest(req, opts)
	cctx, cancel := context.WithTimeout(ctx, f.Timeout)
	defer cancel()
	resp, err := p.client.Check(cctx, cr)
	return Apply(resp, err, req, f)
}

// hopHeaders are connection-specific (RFC 9110 §7.6.1); never forwarded.
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func requestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func redactQuery(path string) string {
	p, _, _ := strings.Cut(path, "?")
	return p
}

// normalizePath approximates the connection manager's normalize_path (RFC
// 3986 §5.2.4 dot-segment removal, the rule DPoP's htu applies too) and
// merge_slashes on the raw path; the query is kept as is.
func normalizePath(target string, dots, slashes bool) string {
	path, query, hasQuery := strings.Cut(target, "?")
	if slashes {
		for strings.Contains(path, "//") {
			path = strings.ReplaceAll(path, "//", "/")
		}
	}
	if dots {
		path = uripath.RemoveDotSegments(path)
	}
	if hasQuery {
		return path + "?" + query
	}
	return path
}
