package config

import (
	"fmt"
	"strconv"
	"strings"
)

// validateRouteIssuers checks routes[].issuers of route r (field f): every
// name is a configured issuer, named once, and the introspecting issuers the
// route accepts can be told apart. An opaque token must go to exactly one
// introspection endpoint: sending it to several to find out whose it is
// would hand a user's token to servers it was never meant for. So a route
// that accepts more than one introspecting issuer needs each of them to have
// an introspection.token_shape.prefix (Hydra's ory_at_, for example), no
// prefix the start of another.
func (c *Config) validateRouteIssuers(f string, r *Route, add func(field, format string, args ...any)) {
	seen := map[string]bool{}
	for j, name := range r.Issuers {
		fj := fmt.Sprintf("%s.issuers[%d]", f, j)
		switch {
		case name == "":
			add(fj, "must not be empty")
		case seen[name]:
			add(fj, "%q listed twice", name)
		case !c.hasIssuer(name):
			add(fj, "%q is not the issuer of any issuers[] entry (names must match exactly)", name)
		}
		seen[name] = true
	}
	if r.Public {
		return
	}
	var in []*Issuer
	for i := range c.Issuers {
		is := &c.Issuers[i]
		if is.Introspection != nil && (len(r.Issuers) == 0 || seen[is.Issuer]) {
			in = append(in, is)
		}
	}
	if len(in) < 2 {
		return
	}
	names := make([]string, len(in))
	for i, is := range in {
		names[i] = strconv.Quote(is.Issuer)
	}
	field := f + ".issuers"
	for i, a := range in {
		pa := introspectionPrefix(a)
		if pa == "" {
			add(field, "accepts issuers %s, which all introspect opaque tokens, and %q has no introspection.token_shape.prefix to tell its tokens apart: give each a prefix (e.g. ory_at_) or list only one of them here",
				strings.Join(names, ", "), a.Issuer)
			return
		}
		for _, b := range in[i+1:] {
			if pb := introspectionPrefix(b); pb != "" && (strings.HasPrefix(pa, pb) || strings.HasPrefix(pb, pa)) {
				add(field, "issuers %q and %q introspect tokens with overlapping prefixes %q and %q: a token could be either's",
					a.Issuer, b.Issuer, pa, pb)
			}
		}
	}
}

// introspectionPrefix is is's introspection.token_shape.prefix, "" for none.
func introspectionPrefix(is *Issuer) string {
	if is.Introspection == nil || is.Introspection.TokenShape == nil {
		return ""
	}
	return is.Introspection.TokenShape.Prefix
}
