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
//
// When tokentailor matches routes itself, it matches what the upstream will
// serve, not the bytes Envoy forwarded: a request must never land on a laxer
// route than the resource it reaches. Method, host and path are first
// brought to one spelling (canonicalTarget): the method upper-cased, the host
// lower-cased without port or trailing dot, the path with ";params" cut from
// each segment (as Tomcat, Jetty and Spring serve it) and percent-escapes in
// one form. Forms that servers read in different ways — dot segments, empty
// segments, encoded slashes, dots, semicolons and percent signs, backslashes,
// segments ending in a dot or a space, control characters — are refused with
// ErrAmbiguousRequest (400) before any route, the default one included, is
// tried. canonicalPath lists each rule and the servers behind it. Match rules
// in the config are brought to the same form when compiled; a route for GET
// also matches HEAD, which servers answer with the GET handler.
package policy

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
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
		mt, err := compileMatch(m)
		if err != nil {
			return nil, err
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
		EmbeddedIssuers: slices.Clone(u.EmbeddedIssuers),
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
		r.grant.Copied = append(r.grant.Copied, to)
	}
	key, err := grantKey(&r.grant, r.copyClaims, u.Claims)
	if err != nil {
		return nil, err
	}
	r.grant.Key = key
	return r, nil
}

// grantKey encodes, once per route, what of the route shapes a minted token
// besides the principal: the minted-token cache key starts from it instead
// of re-encoding the route's claims on every request. Fields are
// length-prefixed so that no two routes share an encoding.
func grantKey(g *extauthz.Grant, copies []copyClaim, fixed map[string]any) (string, error) {
	fixedJSON, err := json.Marshal(fixed) // encoding/json sorts map keys: one encoding per set of claims
	if err != nil {
		return "", fmt.Errorf("upstream.claims: %w", err)
	}
	field := func(b []byte, s string) []byte {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		return append(b, s...)
	}
	b := field(nil, g.Route)
	b = field(b, g.Audience)
	b = binary.BigEndian.AppendUint64(b, uint64(g.TTL))
	b = field(b, g.Prefix)
	b = field(b, string(fixedJSON))
	b = binary.BigEndian.AppendUint32(b, uint32(len(copies)))
	for _, c := range copies {
		b = field(field(b, c.from), c.to)
	}
	return string(b), nil
}

// compileMatch brings the match rules into the canonical form requests are
// matched in (see canonicalTarget), so that a rule never fails to match the
// requests it names. Paths that have no canonical form, or that hold
// ";params" (which are cut from requests), could never match and are refused.
func compileMatch(m *config.Match) (*matcher, error) {
	mt := &matcher{}
	for _, f := range []struct {
		name, path string
		dst        *string
	}{{"path", m.Path, &mt.path}, {"path_prefix", m.PathPrefix, &mt.prefix}} {
		if f.path == "" {
			continue
		}
		p, err := canonicalPath(f.path)
		if err == nil && (strings.Contains(f.path, ";") || p == "*") {
			err = refuse("the path holds ;params, which requests are matched without")
		}
		if err != nil {
			return nil, fmt.Errorf("match.%s %q: %w", f.name, f.path, err)
		}
		*f.dst = p
	}
	for _, meth := range m.Methods {
		cm, err := canonicalMethod(meth)
		if err != nil {
			return nil, fmt.Errorf("match.methods %q: %w", meth, err)
		}
		if !slices.Contains(mt.methods, cm) {
			mt.methods = append(mt.methods, cm)
		}
	}
	// Go's ServeMux, Spring MVC and Servlet's doHead serve HEAD with the GET
	// handler, so a route for GET covers HEAD: it must not fall through to a
	// laxer route.
	if slices.Contains(mt.methods, "GET") && !slices.Contains(mt.methods, "HEAD") {
		mt.methods = append(mt.methods, "HEAD")
	}
	for _, h := range m.Hosts {
		h = asciiLower(strings.TrimSuffix(h, "."))
		if suffix, ok := strings.CutPrefix(h, "*"); ok {
			mt.hostSuffix = append(mt.hostSuffix, suffix)
		} else {
			mt.hosts = append(mt.hosts, h)
		}
	}
	return mt, nil
}

// Route returns the route named name, or nil.
func (e *Engine) Route(name string) *Route { return e.byName[name] }

// Routes returns the routes in match order.
func (e *Engine) Routes() []*Route { return e.routes }

// Select returns the route for r, or an error wrapping extauthz.ErrNoRoute,
// or, when no route is named by Envoy and r's method, host or path is not in
// a form that can be matched safely, extauthz.ErrAmbiguousRequest.
func (e *Engine) Select(r *extauthz.Request) (*Route, error) {
	if name, ok := r.ContextExtensions[e.routeKey]; ok {
		if rt := e.byName[name]; rt != nil {
			return rt, nil
		}
		return nil, fmt.Errorf("%w: Envoy named route %q, which is not configured", extauthz.ErrNoRoute, name)
	}
	// A request whose path, host or method servers read in different ways
	// could match one route here and reach the upstream as another: it is
	// refused before any route, the default one included, is tried.
	t, err := canonicalTarget(r)
	if err != nil {
		return nil, err
	}
	for _, rt := range e.routes {
		if rt.match != nil && rt.match.fits(&t) {
			return rt, nil
		}
	}
	if e.fallback != nil {
		return e.fallback, nil
	}
	return nil, fmt.Errorf("%w: no route matches", extauthz.ErrNoRoute)
}

func (m *matcher) fits(t *target) bool {
	if len(m.methods) > 0 && !slices.Contains(m.methods, t.method) {
		return false
	}
	if len(m.hosts)+len(m.hostSuffix) > 0 && !m.hostFits(t.host) {
		return false
	}
	switch {
	case m.path != "":
		return t.path == m.path
	case m.prefix != "":
		if !strings.HasPrefix(t.path, m.prefix) {
			return false
		}
		// Segment boundary: /orders matches /orders and /orders/1, not /ordersx.
		return len(t.path) == len(m.prefix) || strings.HasSuffix(m.prefix, "/") || t.path[len(m.prefix)] == '/'
	}
	return true
}

// hostFits reports whether the canonical host fits the route's hosts.
func (m *matcher) hostFits(host string) bool {
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

// HoldsUntil returns an instant before which p meets the route's one
// requirement that depends on the time (min_lifetime) as Authorize judges
// it; the zero Time when, for p, none does. Every other requirement
// depends on p alone.
func (rt *Route) HoldsUntil(p *extauthz.Principal) time.Time {
	if rt.minLifetime > 0 && !p.ExpiryUnknown {
		return p.ExpiresAt.Add(-rt.minLifetime)
	}
	return time.Time{}
}

// Authorize checks p against the route's requirements at time now and returns
// what the upstream gets, which may be shared with other Checks of the same
// route and principal (p.Memo): it must not be modified. Errors wrap
// ErrInsufficientScope (as a *extauthz.ScopeError), ErrClaimMismatch or
// ErrExpiresTooSoon.
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
	// The grant depends on the route and the principal alone: a cached
	// JWT principal keeps the one this route derived (see KeepGrant).
	if g, ok := p.KeptGrant(rt); ok {
		return g, nil
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
	p.KeepGrant(rt, &g)
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
