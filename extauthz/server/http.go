package server

import (
	"errors"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/tokentailor/tokentailor/extauthz/config"
	"github.com/tokentailor/tokentailor/extauthz/httpauthz"
)

// HTTPAuthz answers the HTTP authorization protocols of extauthz/httpauthz
// (Envoy's http_service, nginx auth_request, Caddy/Traefik forward_auth) on
// the same pipeline, caches and metrics as the gRPC service: it decides
// through the Authz it was built on, so a reload swaps both at once.
type HTTPAuthz struct {
	authz *Authz
	// trusted are the peers whose questions are answered; nil with
	// trustAll answers every peer (a unix socket).
	trusted  []netip.Prefix
	trustAll bool
}

var _ http.Handler = (*HTTPAuthz)(nil)

// NewHTTPAuthz returns the HTTP front end of a, answering peers inside
// trusted only.
func NewHTTPAuthz(a *Authz, trusted []netip.Prefix) *HTTPAuthz {
	return &HTTPAuthz{authz: a, trusted: trusted}
}

// trustingAll returns a copy of h that answers every peer: for the unix
// socket, where the socket file's permissions decide who may connect.
func (h *HTTPAuthz) trustingAll() *HTTPAuthz {
	return &HTTPAuthz{authz: h.authz, trustAll: true}
}

// trustedPrefixes parses listen.http_trusted_proxies (validated by config).
func trustedPrefixes(cfg *config.Config) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(cfg.Listen.HTTPTrustedProxies))
	for _, s := range cfg.Listen.HTTPTrustedProxies {
		p, err := config.ParseTrustedProxy(s)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// peerTrusted reports whether remote (http.Request.RemoteAddr) is a trusted
// proxy. An address that does not parse is not trusted.
func (h *HTTPAuthz) peerTrusted(remote string) bool {
	if h.trustAll {
		return true
	}
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return false
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range h.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Bodies of the answers that are not the pipeline's.
const (
	untrustedBody  = `{"error":"access_denied","error_description":"this peer is not a trusted proxy"}`
	badForwardBody = `{"error":"invalid_request","error_description":"the proxy sent no usable description of the original request"}`
)

// ServeHTTP answers one authorization subrequest. A peer outside the
// trusted proxies gets 403 before anything it sent is read: the
// forwarded-request headers describe a request tokentailor did not see, and
// only a proxy that overwrites the client's copies of them may send them.
// Unknown paths get 404; forwarded-request headers that are missing,
// repeated or contradictory get 400 (403 for nginx, which would turn a 400
// into 500). Every other outcome is the pipeline's.
func (h *HTTPAuthz) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if !h.peerTrusted(r.RemoteAddr) {
		h.authz.metrics.Decision("error", "untrusted_peer", "", time.Since(start))
		if ok, _ := h.authz.denyLog.Admit("untrusted_peer"); ok { // a flood must not flood the log
			h.authz.log.Warn("HTTP authorization request from an untrusted peer refused", "peer", r.RemoteAddr)
		}
		writeJSON(w, http.StatusForbidden, untrustedBody)
		return
	}
	req, conv, err := httpauthz.FromHTTP(r)
	switch {
	case errors.Is(err, httpauthz.ErrNotFound):
		http.NotFound(w, r)
		return
	case err != nil:
		h.authz.metrics.Decision("error", "bad_request", "", time.Since(start))
		if ok, _ := h.authz.denyLog.Admit("bad_request"); ok {
			h.authz.log.Info("HTTP authorization request refused", "convention", conv.String(), "error", err.Error())
		}
		writeJSON(w, httpauthz.Status(http.StatusBadRequest, conv), badForwardBody)
		return
	}
	out := h.authz.decide(r.Context(), &req, start)
	httpauthz.Write(w, out.Response, conv)
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}
