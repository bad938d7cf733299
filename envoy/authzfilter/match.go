package authzfilter

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

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
