// Package policy picks the route for a request and decides what its upstream
// gets. Routes are compiled once from the config; Select and Authorize run per
// request and only read.
//
// A route is chosen by the request's context extensions (Envoy's per-route
// ExtAuthzPerRoute.check_settings.context_extensions, key "route" by default);
// when Envoy names none, routes are tried in order and the first whose match
// fits wins; when none fits, the default route, if any, applies; else the
// request is denied. A request naming a route that does not exist is denied:
// a typo in Envoy's config must never fall through to a laxer route.
package policy

import (
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/config"
)

// Engine holds the compiled routes.
type Engine struct {
	routeKey string
	routes   []*Route
	byName   map[string]*Route
	fallback *Route
}

// Route is one compiled route policy.
type Route struct {
	// Name is the route's name.
	Name string
	// Public routes need no credential.
	Public bool

	match         *matcher
	requireScopes []string
	scopeErr      *extauthz.ScopeError
	requireClaims []requiredClaim
	minLifetime   time.Duration
	grant         extauthz.Grant
	copyClaims    []copyClaim
}

type requiredClaim struct {
	name   string
	values []string
}

type copyClaim struct{ from, to string }

type matcher struct {
	hosts      []string // exact, lower case
	hostSuffix []string // from "*.example.com": ".example.com"
	path       string
	prefix     string
	methods    []string
}

// New compiles the routes of cfg. cfg must have been validated.
func New(cfg *config.Config) (*Engine, error) {
	e := &Engine{routeKey: cfg.RouteKey, byName: make(map[string]*Route, len(cfg.Routes))}
	for i := range cfg.Routes {
		r, err := compile(&cfg.Routes[i])
		if err != nil {
			return nil, fmt.Errorf("routes[%d]: %w", i, err)
		}
		e.routes = append(e.routes, r)
		e.byName[r.Name] = r
	}
	if cfg.DefaultRoute != "" {
		e.fallback = e.byName[cfg.DefaultRoute]
		if e.fallback == nil {
			return nil, fmt.Errorf("default_route %q names no route", cfg.DefaultRoute)
		}
	}
	return e, nil
}

func compile(c *config.Route) (*Route, error) {
	r := &Route{Name: c.Name, Public: c.Public, minLifetime: c.MinLifetime.Duration}
	if m := c.Match; m != nil {
		mt := &matcher{path: m.Path, prefix: m.PathPrefix, methods: m.Methods}
		for _, h := range m.Hosts {
			if suffix, ok := strings.CutPrefix(h, "*"); ok {
				mt.hostSuffix = append(mt.hostSuffix, suffix)
			} else {
				mt.hosts = append(mt.hosts, h)
			}
		}
		r.match = mt
	}
	r.requireScopes = slices.Clone(c.Require.Scopes)
	if len(r.requireScopes) > 0 {
		r.scopeErr = &extauthz.ScopeError{Required: r.requireScopes}
	}
	names := make([]string, 0, len(c.Require.Claims))
	for n := range c.Require.Claims {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		r.requireClaims = append(r.requireClaims, requiredClaim{name: n, values: c.Require.Claims[n]})
	}
	if c.Public {
		r.grant = extauthz.Grant{Route: c.Name, Mode: extauthz.ModeNone, Header: c.Upstream.Header, StripCredential: *c.Upstream.StripCredential}
		return r, nil
	}
	u := c.Upstream
	r.grant = extauthz.Grant{
		Route:           c.Name,
		Mode:            extauthz.Mode(u.Mode),
		Audience:        u.Audience,
		Scopes:          slices.Clone(u.Scopes),
		TTL:             u.TTL.Duration,
		Header:          u.Header,
		Prefix:          *u.Prefix,
		StripCredential: *u.StripCredential,
		EmbeddedClaim:   u.EmbeddedClaim,
	}
	if len(u.Claims) > 0 {
		r.grant.Claims = make(map[string]any, len(u.Claims))
		for k, v := range u.Claims {
			r.grant.Claims[k] = v
		}
	}
	if x := u.Exchange; x != nil {
		r.grant.Exchange = &extauthz.ExchangeSpec{Issuer: x.Issuer, Resource: x.Resource, SubjectTokenType: x.SubjectTokenType, RequestedTokenType: x.RequestedTokenType, Actor: x.Actor}
	}
	from := make([]string, 0, len(u.CopyClaims))
	for f := range u.CopyClaims {
		from = append(from, f)
	}
	sort.Strings(from)
	for _, f := range from {
		to := u.CopyClaims[f]
		if to == "" {
			to = f
		}
		r.copyClaims = append(r.copyClaims, copyClaim{from: f, to: to})
	}
	return r, nil
}

// Route returns the route named name, or nil.
func (e *Engine) Route(name string) *Route { return e.byName[name] }

// Routes returns the routes in match order.
func (e *Engine) Routes() []*Route { return e.routes }

// Select returns the route for r, or an error wrapping extauthz.ErrNoRoute.
func (e *Engine) Select(r *extauthz.Request) (*Route, error) {
	if name, ok := r.ContextExtensions[e.routeKey]; ok {
		if rt := e.byName[name]; rt != nil {
			return rt, nil
		}
		return nil, fmt.Errorf("%w: Envoy named route %q, which is not configured", extauthz.ErrNoRoute, name)
	}
	if !cleanPath(r.Path) {
		// A path with dot segments, doubled or encoded slashes could match
		// one route here and reach another upstream path: refuse it. Envoy's
		// normalize_path and merge_slashes prevent this for honest clients.
		return nil, fmt.Errorf("%w: path is not normalised", extauthz.ErrNoRoute)
	}
	for _, rt := range e.routes {
		if rt.match != nil && rt.match.fits(r) {
			return rt, nil
		}
	}
	if e.fallback != nil {
		return e.fallback, nil
	}
	return nil, fmt.Errorf("%w: no route matches", extauthz.ErrNoRoute)
}

// cleanPath reports whether p is an absolute path without dot segments,
// empty segments, backslashes or percent-escapes that a server could decode
// into something else: encoded slashes, dots and backslashes, and encoded
// unreserved characters (RFC 3986 §2.3 says to decode those, so "%6frders"
// and "orders" name the same resource). A segment's ";params" are ignored
// when looking for dot segments, since Tomcat, Jetty and Spring strip them:
// "/docs/..;/admin" is "/admin" to them.
func cleanPath(p string) bool {
	if p == "" || p[0] != '/' {
		return p == "" || p == "*"
	}
	if strings.Contains(p, "//") || strings.Contains(p, "\\") {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] != '%' {
			continue
		}
		if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
			return false
		}
		c := unhex(p[i+1])<<4 | unhex(p[i+2])
		if c == '/' || c == '\\' || c == '.' || isUnreserved(c) {
			return false
		}
	}
	for seg := range strings.SplitSeq(p, "/") {
		seg, _, _ = strings.Cut(seg, ";")
		if seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

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

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '~'
}

func (m *matcher) fits(r *extauthz.Request) bool {
	if len(m.methods) > 0 && !slices.Contains(m.methods, r.Method) {
		return false
	}
	if len(m.hosts)+len(m.hostSuffix) > 0 && !m.hostFits(r.Host) {
		return false
	}
	switch {
	case m.path != "":
		return r.Path == m.path
	case m.prefix != "":
		if !strings.HasPrefix(r.Path, m.prefix) {
			return false
		}
		// Segment boundary: /orders matches /orders and /orders/1, not /ordersx.
		return len(r.Path) == len(m.prefix) || strings.HasSuffix(m.prefix, "/") || r.Path[len(m.prefix)] == '/'
	}
	return true
}

func (m *matcher) hostFits(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if slices.Contains(m.hosts, host) {
		return true
	}
	for _, s := range m.hostSuffix {
		if strings.HasSuffix(host, s) && len(host) > len(s) {
			return true
		}
	}
	return false
}

// Grant returns the route's grant template for a request without a principal
// (public routes). It must not be modified.
func (rt *Route) Grant() *extauthz.Grant { return &rt.grant }

// Authorize checks p against the route's requirements at time now and returns
// what the upstream gets. Errors wrap ErrInsufficientScope (as a
// *extauthz.ScopeError), ErrClaimMismatch or ErrExpiresTooSoon.
func (rt *Route) Authorize(p *extauthz.Principal, now time.Time) (*extauthz.Grant, error) {
	for _, s := range rt.requireScopes {
		if !p.HasScope(s) {
			return nil, rt.scopeErr
		}
	}
	for _, rc := range rt.requireClaims {
		if !claimHolds(p.Claims[rc.name], rc.values) {
			return nil, fmt.Errorf("%w: %s", extauthz.ErrClaimMismatch, rc.name)
		}
	}
	// A token whose expiry is unknown (introspection without exp) is not
	// judged: its ExpiresAt is only tokentailor's own vouching horizon.
	if rt.minLifetime > 0 && !p.ExpiryUnknown && p.ExpiresAt.Sub(now) < rt.minLifetime {
		return nil, fmt.Errorf("%w: the token expires in less than %s; refresh it first", extauthz.ErrExpiresTooSoon, rt.minLifetime)
	}
	g := rt.grant
	g.Scopes = intersect(rt.grant.Scopes, p)
	if len(rt.copyClaims) > 0 {
		claims := make(map[string]any, len(rt.copyClaims)+len(rt.grant.Claims))
		for _, c := range rt.copyClaims {
			if v, ok := p.Claims[c.from]; ok {
				claims[c.to] = v
			}
		}
		for k, v := range rt.grant.Claims {
			claims[k] = v
		}
		g.Claims = claims
	}
	return &g, nil
}

// intersect returns the route's scopes that p holds, in route order. It
// returns the route's own slice when p holds them all, which is not modified.
func intersect(route []string, p *extauthz.Principal) []string {
	for i, s := range route {
		if !p.HasScope(s) {
			out := slices.Clone(route[:i])
			for _, s := range route[i+1:] {
				if p.HasScope(s) {
					out = append(out, s)
				}
			}
			return out
		}
	}
	return route
}

// claimHolds reports whether v (a string, a number, a bool or an array of
// them) holds one of want.
func claimHolds(v any, want []string) bool {
	switch x := v.(type) {
	case nil:
		return false
	case string:
		return slices.Contains(want, x)
	case []any:
		for _, e := range x {
			if claimHolds(e, want) {
				return true
			}
		}
		return false
	case []string:
		for _, e := range x {
			if slices.Contains(want, e) {
				return true
			}
		}
		return false
	case map[string]any:
		return false
	default:
		return slices.Contains(want, fmt.Sprint(x))
	}
}
