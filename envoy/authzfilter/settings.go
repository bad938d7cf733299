package authzfilter

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/tokentailor/tokentailor/envoy/validate"
)

// ErrConfig: the bootstrap lacks what the model needs (the listener, its
// connection manager, a static route_config) or uses a feature it does not
// model. Match with errors.Is; bootstrap syntax errors wrap validate.ErrSyntax.
var ErrConfig = errors.New("authzfilter: unsupported bootstrap")

// DefaultTimeout is ext_authz's grpc_service timeout when none is set.
const DefaultTimeout = 200 * time.Millisecond

// Endpoint is where a static cluster sends traffic: the first endpoint of
// its load_assignment.
type Endpoint struct {
	// Network is "tcp" or "unix".
	Network string
	// Address is "host:port" or a socket path.
	Address string
}

// GRPCTarget is the endpoint as a grpc.NewClient target.
func (e Endpoint) GRPCTarget() string {
	if e.Network == "unix" {
		return "unix://" + e.Address
	}
	return e.Address
}

// Route is one route of the route table, with its ext_authz settings.
type Route struct {
	// Name is the route's name (may be empty).
	Name string
	// Cluster is the route action's cluster; "" for a direct_response.
	Cluster string
	// DirectStatus is a direct_response's status (0 for forwarding routes).
	DirectStatus int
	// DirectBody is a direct_response's inline body.
	DirectBody string
	// Disabled is the merged ExtAuthzPerRoute.disabled: no check.
	Disabled bool
	// ContextExtensions are the merged check_settings.context_extensions
	// (virtual host, then route; the route wins per key).
	ContextExtensions map[string]string

	match routeMatch
}

// VirtualHost is a virtual host of the route table.
type VirtualHost struct {
	// Name is the virtual host's name.
	Name string
	// Domains are its domains, lower case.
	Domains []string
	// Routes are its routes, in order: the first match wins.
	Routes []*Route
}

// Settings is what the model needs from one listener of a bootstrap.
type Settings struct {
	// Filter is the listener's ext_authz filter.
	Filter Filter
	// VirtualHosts is the static route_config.
	VirtualHosts []*VirtualHost
	// Clusters maps every static cluster to its first endpoint.
	Clusters map[string]Endpoint
	// NormalizePath and MergeSlashes are the connection manager's settings.
	NormalizePath, MergeSlashes bool
	// UseRemoteAddress is the connection manager's use_remote_address.
	UseRemoteAddress bool
}

// Load parses a bootstrap (YAML or JSON, strictly, with envoy/validate) and
// reads the settings of the named listener.
func Load(bootstrap []byte, listener string) (*Settings, error) {
	b, err := validate.Parse(bootstrap)
	if err != nil {
		return nil, err
	}
	return FromBootstrap(b, listener)
}

// FromBootstrap reads the settings of the named listener of b: its first
// filter chain's http_connection_manager, ext_authz filter and static
// route_config.
func FromBootstrap(b *bootstrapv3.Bootstrap, listener string) (*Settings, error) {
	s := &Settings{Clusters: map[string]Endpoint{}}
	for _, c := range b.GetStaticResources().GetClusters() {
		for _, le := range c.GetLoadAssignment().GetEndpoints() {
			for _, lb := range le.GetLbEndpoints() {
				if _, done := s.Clusters[c.GetName()]; done {
					continue
				}
				a := lb.GetEndpoint().GetAddress()
				switch {
				case a.GetPipe() != nil:
					s.Clusters[c.GetName()] = Endpoint{Network: "unix", Address: a.GetPipe().GetPath()}
				case a.GetSocketAddress() != nil:
					sa := a.GetSocketAddress()
					s.Clusters[c.GetName()] = Endpoint{Network: "tcp",
						Address: net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10))}
				}
			}
		}
	}
	var hcm *hcmv3.HttpConnectionManager
	found := false
	for _, l := range b.GetStaticResources().GetListeners() {
		if l.GetName() != listener {
			continue
		}
		found = true
		for _, fc := range l.GetFilterChains() {
			for _, nf := range fc.GetFilters() {
				m := &hcmv3.HttpConnectionManager{}
				if nf.GetTypedConfig() != nil && nf.GetTypedConfig().UnmarshalTo(m) == nil {
					hcm = m
					break
				}
			}
			if hcm != nil {
				break
			}
		}
	}
	switch {
	case !found:
		return nil, fmt.Errorf("%w: no static listener %q", ErrConfig, listener)
	case hcm == nil:
		return nil, fmt.Errorf("%w: listener %q has no http_connection_manager", ErrConfig, listener)
	case hcm.GetRouteConfig() == nil:
		return nil, fmt.Errorf("%w: listener %q: only a static route_config is modelled", ErrConfig, listener)
	}
	s.NormalizePath = hcm.GetNormalizePath().GetValue()
	s.MergeSlashes = hcm.GetMergeSlashes()
	s.UseRemoteAddress = hcm.GetUseRemoteAddress().GetValue()
	s.Filter.MaxRequestHeadersKB = int(hcm.GetMaxRequestHeadersKb().GetValue())
	if s.Filter.MaxRequestHeadersKB == 0 {
		s.Filter.MaxRequestHeadersKB = 60
	}
	at := fmt.Sprintf("listener %q", listener)
	if err := s.readFilter(hcm, at); err != nil {
		return nil, err
	}
	if err := s.readRoutes(hcm.GetRouteConfig(), at); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Settings) readFilter(hcm *hcmv3.HttpConnectionManager, at string) error {
	for _, hf := range hcm.GetHttpFilters() {
		cfg := &extauthzv3.ExtAuthz{}
		if hf.GetTypedConfig() == nil || hf.GetTypedConfig().UnmarshalTo(cfg) != nil {
			continue
		}
		f := &s.Filter
		f.Name = hf.GetName()
		gs := cfg.GetGrpcService()
		if gs.GetEnvoyGrpc() == nil {
			return fmt.Errorf("%s: %w: ext_authz %q: only grpc_service.envoy_grpc is modelled", at, ErrConfig, f.Name)
		}
		f.Cluster = gs.GetEnvoyGrpc().GetClusterName()
		f.Timeout = DefaultTimeout
		if gs.GetTimeout() != nil {
			f.Timeout = gs.GetTimeout().AsDuration()
		}
		f.StatusOnError = int(cfg.GetStatusOnError().GetCode())
		if f.StatusOnError == 0 {
			f.StatusOnError = http.StatusForbidden
		}
		f.FailureModeAllow = cfg.GetFailureModeAllow()
		f.ValidateMutations = cfg.GetValidateMutations()
		f.Check.EncodeRawHeaders = cfg.GetEncodeRawHeaders()
		var err error
		if f.Check.Allowed, err = listMatcher(cfg.GetAllowedHeaders()); err != nil {
			return fmt.Errorf("%s: %w: ext_authz allowed_headers: %w", at, ErrConfig, err)
		}
		if f.Check.Disallowed, err = listMatcher(cfg.GetDisallowedHeaders()); err != nil {
			return fmt.Errorf("%s: %w: ext_authz disallowed_headers: %w", at, ErrConfig, err)
		}
		if cfg.GetWithRequestBody() != nil {
			return fmt.Errorf("%s: %w: ext_authz with_request_body is not modelled", at, ErrConfig)
		}
		return nil
	}
	return fmt.Errorf("%s: %w: no ext_authz filter", at, ErrConfig)
}

// perRoute reads the ext_authz per-route config of a typed_per_filter_config.
func (s *Settings) perRoute(m map[string]*anypb.Any, disabled *bool, ext map[string]string) error {
	a, ok := m[s.Filter.Name]
	if !ok {
		return nil
	}
	pr := &extauthzv3.ExtAuthzPerRoute{}
	if err := a.UnmarshalTo(pr); err != nil {
		return fmt.Errorf("%w: per-route config of %q: %w", ErrConfig, s.Filter.Name, err)
	}
	if d, isD := pr.GetOverride().(*extauthzv3.ExtAuthzPerRoute_Disabled); isD {
		*disabled = d.Disabled
	} else if pr.GetCheckSettings() != nil {
		*disabled = false
		maps.Copy(ext, pr.GetCheckSettings().GetContextExtensions())
	}
	return nil
}

func (s *Settings) readRoutes(rc *routev3.RouteConfiguration, at string) error {
	for vi, vh := range rc.GetVirtualHosts() {
		v := &VirtualHost{Name: vh.GetName()}
		for _, d := range vh.GetDomains() {
			v.Domains = append(v.Domains, strings.ToLower(d))
		}
		var vhDisabled bool
		vhExt := map[string]string{}
		if err := s.perRoute(vh.GetTypedPerFilterConfig(), &vhDisabled, vhExt); err != nil {
			return fmt.Errorf("%s: virtual_hosts[%d]: %w", at, vi, err)
		}
		for ri, r := range vh.GetRoutes() {
			where := fmt.Sprintf("%s: virtual_hosts[%d].routes[%d]", at, vi, ri)
			rt := &Route{Name: r.GetName(), Disabled: vhDisabled, ContextExtensions: maps.Clone(vhExt)}
			if err := s.perRoute(r.GetTypedPerFilterConfig(), &rt.Disabled, rt.ContextExtensions); err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
			switch {
			case r.GetRoute() != nil:
				rt.Cluster = r.GetRoute().GetCluster()
				if rt.Cluster == "" {
					return fmt.Errorf("%s: %w: only route.cluster is modelled", where, ErrConfig)
				}
			case r.GetDirectResponse() != nil:
				rt.DirectStatus = int(r.GetDirectResponse().GetStatus())
				rt.DirectBody = r.GetDirectResponse().GetBody().GetInlineString()
			default:
				return fmt.Errorf("%s: %w: only route and direct_response actions are modelled", where, ErrConfig)
			}
			m, err := compileMatch(r.GetMatch())
			if err != nil {
				return fmt.Errorf("%s: %w: %w", where, ErrConfig, err)
			}
			rt.match = m
			v.Routes = append(v.Routes, rt)
		}
		s.VirtualHosts = append(s.VirtualHosts, v)
	}
	return nil
}

// Match returns the route Envoy picks for a request: the virtual host by
// host (port ignored when no domain has one), then the first route whose
// match fits. path is the :path (its query is ignored); h holds the regular
// headers. ok is false when nothing matches (Envoy answers 404).
func (s *Settings) Match(method, host, path string, h http.Header) (r *Route, ok bool) {
	vh := s.virtualHost(host)
	if vh == nil {
		return nil, false
	}
	p, _, _ := strings.Cut(path, "?")
	for _, rt := range vh.Routes {
		if rt.match.matches(method, host, p, h) {
			return rt, true
		}
	}
	return nil, false
}

func (s *Settings) virtualHost(host string) *VirtualHost {
	host = strings.ToLower(host)
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	var best *VirtualHost
	bestRank, bestLen := 0, -1
	for _, vh := range s.VirtualHosts {
		for _, d := range vh.Domains {
			rank, n := 0, len(d)
			switch {
			case d == host:
				rank = 4
			case d == "*":
				rank = 1
			case strings.HasPrefix(d, "*") && strings.HasSuffix(host, d[1:]) && len(host) > len(d)-1:
				rank = 3
			case strings.HasSuffix(d, "*") && strings.HasPrefix(host, d[:len(d)-1]) && len(host) > len(d)-1:
				rank = 2
			}
			if rank > bestRank || (rank == bestRank && rank > 0 && n > bestLen) {
				best, bestRank, bestLen = vh, rank, n
			}
		}
	}
	return best
}

// routeMatch is a compiled RouteMatch.
type routeMatch struct {
	kind          int // 1 prefix, 2 path, 3 path_separated_prefix, 4 regex
	value         string
	re            *regexp.Regexp
	caseSensitive bool
	headers       []headerMatch
}

type headerMatch struct {
	name    string
	str     func(string) bool // nil: present_match
	present bool
	invert  bool
}

func compileMatch(m *routev3.RouteMatch) (routeMatch, error) {
	rm := routeMatch{caseSensitive: m.GetCaseSensitive() == nil || m.GetCaseSensitive().GetValue()}
	switch ps := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		rm.kind, rm.value = 1, ps.Prefix
	case *routev3.RouteMatch_Path:
		rm.kind, rm.value = 2, ps.Path
	case *routev3.RouteMatch_PathSeparatedPrefix:
		rm.kind, rm.value = 3, ps.PathSeparatedPrefix
	case *routev3.RouteMatch_SafeRegex:
		re, err := regexp.Compile(`^(?:` + ps.SafeRegex.GetRegex() + `)$`)
		if err != nil {
			return rm, err
		}
		rm.kind, rm.re = 4, re
	default:
		return rm, fmt.Errorf("path specifier %T is not modelled", ps)
	}
	if m.GetQueryParameters() != nil || m.GetGrpc() != nil || m.GetTlsContext() != nil || m.GetRuntimeFraction() != nil {
		return rm, errors.New("only path and header matching is modelled")
	}
	for _, hm := range m.GetHeaders() {
		c := headerMatch{name: strings.ToLower(hm.GetName()), invert: hm.GetInvertMatch()}
		switch spec := hm.GetHeaderMatchSpecifier().(type) {
		case *routev3.HeaderMatcher_StringMatch:
			f, err := stringMatcher(spec.StringMatch)
			if err != nil {
				return rm, err
			}
			c.str = f
		case *routev3.HeaderMatcher_PresentMatch:
			c.present = spec.PresentMatch
		case *routev3.HeaderMatcher_ExactMatch:
			v := spec.ExactMatch
			c.str = func(s string) bool { return s == v }
		case *routev3.HeaderMatcher_PrefixMatch:
			v := spec.PrefixMatch
			c.str = func(s string) bool { return strings.HasPrefix(s, v) }
		case *routev3.HeaderMatcher_SuffixMatch:
			v := spec.SuffixMatch
			c.str = func(s string) bool { return strings.HasSuffix(s, v) }
		case *routev3.HeaderMatcher_ContainsMatch:
			v := spec.ContainsMatch
			c.str = func(s string) bool { return strings.Contains(s, v) }
		case *routev3.HeaderMatcher_SafeRegexMatch:
			re, err := regexp.Compile(`^(?:` + spec.SafeRegexMatch.GetRegex() + `)$`)
			if err != nil {
				return rm, err
			}
			c.str = re.MatchString
		case nil:
			c.present = true
		default:
			return rm, fmt.Errorf("header matcher %T is not modelled", spec)
		}
		rm.headers = append(rm.headers, c)
	}
	return rm, nil
}

func (m routeMatch) matches(method, host, path string, h http.Header) bool {
	eq := func(a, b string) bool {
		if m.caseSensitive {
			return a == b
		}
		return strings.EqualFold(a, b)
	}
	switch m.kind {
	case 1:
		if len(path) < len(m.value) || !eq(path[:len(m.value)], m.value) {
			return false
		}
	case 2:
		if !eq(path, m.value) {
			return false
		}
	case 3:
		if len(path) < len(m.value) || !eq(path[:len(m.value)], m.value) ||
			(len(path) > len(m.value) && path[len(m.value)] != '/') {
			return false
		}
	case 4:
		if !m.re.MatchString(path) {
			return false
		}
	}
	for _, hm := range m.headers {
		var v string
		var present bool
		switch hm.name {
		case ":method":
			v, present = method, true
		case ":authority", "host":
			v, present = host, true
		case ":path":
			v, present = path, true
		default:
			vs := h.Values(hm.name)
			v, present = strings.Join(vs, ","), len(vs) > 0
		}
		ok := present
		if hm.str != nil {
			ok = present && hm.str(v)
		} else if !hm.present {
			ok = !present
		}
		if ok == hm.invert {
			return false
		}
	}
	return true
}

// stringMatcher compiles a StringMatcher (exact, prefix, suffix, contains,
// safe_regex as a full match; ignore_case except for regexes).
func stringMatcher(sm *matcherv3.StringMatcher) (func(string) bool, error) {
	ic := sm.GetIgnoreCase()
	norm := func(s string) string {
		if ic {
			return strings.ToLower(s)
		}
		return s
	}
	switch p := sm.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		v := norm(p.Exact)
		return func(s string) bool { return norm(s) == v }, nil
	case *matcherv3.StringMatcher_Prefix:
		v := norm(p.Prefix)
		return func(s string) bool { return strings.HasPrefix(norm(s), v) }, nil
	case *matcherv3.StringMatcher_Suffix:
		v := norm(p.Suffix)
		return func(s string) bool { return strings.HasSuffix(norm(s), v) }, nil
	case *matcherv3.StringMatcher_Contains:
		v := norm(p.Contains)
		return func(s string) bool { return strings.Contains(norm(s), v) }, nil
	case *matcherv3.StringMatcher_SafeRegex:
		re, err := regexp.Compile(`^(?:` + p.SafeRegex.GetRegex() + `)$`)
		if err != nil {
			return nil, err
		}
		return re.MatchString, nil
	}
	return nil, fmt.Errorf("string matcher %T is not modelled", sm.GetMatchPattern())
}

// listMatcher compiles a ListStringMatcher; nil when the list is absent.
func listMatcher(l *matcherv3.ListStringMatcher) (func(string) bool, error) {
	if l == nil || len(l.GetPatterns()) == 0 {
		return nil, nil
	}
	fs := make([]func(string) bool, 0, len(l.GetPatterns()))
	for _, p := range l.GetPatterns() {
		f, err := stringMatcher(p)
		if err != nil {
			return nil, err
		}
		fs = append(fs, f)
	}
	return func(s string) bool {
		for _, f := range fs {
			if f(s) {
				return true
			}
		}
		return false
	}, nil
}
