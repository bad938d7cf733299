package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/tokentailor/tokentailor/extauthz"
)

// Route is one policy.
type Route struct {
	// Name identifies the route in context_extensions, logs and metrics.
	Name string `json:"name"`
	// Match selects requests when Envoy names no route.
	Match *Match `json:"match"`
	// Public routes need no credential; the upstream gets no token.
	Public bool `json:"public"`
	// Require lists what the credential must carry.
	Require Require `json:"require"`
	// MinLifetime refuses tokens that expire sooner than this. Opaque tokens
	// whose introspection answer has no exp are not judged by it.
	MinLifetime Duration `json:"min_lifetime"`
	// Issuers lists the issuers (their issuer identifiers) whose tokens the
	// route accepts, JWTs and opaque ones; empty accepts every configured
	// issuer. An opaque token goes to the one introspecting issuer among
	// them whose introspection.token_shape.prefix it starts with (or the
	// only one): several without distinct prefixes are refused.
	Issuers []string `json:"issuers"`
	// SenderConstraint is how the route treats DPoP-bound tokens (RFC 9449):
	// off (default: tokens are bearer tokens whatever their cnf), optional
	// (DPoP-bound tokens need the DPoP scheme and a valid proof, others pass
	// as Bearer) or required (only DPoP-bound tokens with a valid proof).
	// Certificate-bound tokens (RFC 8705 cnf x5t#S256) are checked on every
	// route whatever this says.
	SenderConstraint string `json:"sender_constraint"`
	// DPoPOrigin is the scheme and authority clients address, e.g.
	// "https://api.example.com", when a proxy in front of Envoy changes them;
	// empty means Envoy's scheme and :authority. A proof's htu must equal
	// this origin plus the request path.
	DPoPOrigin string `json:"dpop_origin"`
	// Accept is the credential the route takes: access_token (default) or
	// txn_token (an incoming Txn-Token, see TxnToken).
	Accept string `json:"accept"`
	// Upstream says what the upstream gets.
	Upstream Upstream `json:"upstream"`
}

// Match selects requests by host, path and method; empty parts match anything.
type Match struct {
	// Hosts are exact hosts (port ignored), or "*.example.com" suffix patterns.
	Hosts []string `json:"hosts"`
	// Path matches the path exactly.
	Path string `json:"path"`
	// PathPrefix matches the path by prefix, on segment boundaries.
	PathPrefix string `json:"path_prefix"`
	// Methods are HTTP methods (upper case).
	Methods []string `json:"methods"`
}

// Require lists what a credential must carry. A route that is not public
// must state it, if only as "require: {}" (any valid token): a missing or
// null require is refused, so that a file cut after "require:" cannot mean
// "nothing required".
type Require struct {
	// Scopes must all be granted.
	Scopes []string `json:"scopes"`
	// Claims maps a claim name to accepted values: the claim (a string or an
	// array) must hold one of them.
	Claims map[string]StringList `json:"claims"`

	// stated is set when the file gave require a value other than null.
	stated bool
}

// UnmarshalJSON decodes require strictly and remembers that it was stated;
// null leaves it unstated.
func (r *Require) UnmarshalJSON(b []byte) error {
	if string(bytes.TrimSpace(b)) == "null" {
		return nil
	}
	type plain Require
	var p plain
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return err
	}
	*r = Require(p)
	r.stated = true
	return nil
}

// Stated reports whether the file gave require a value (not null, not missing).
func (r Require) Stated() bool { return r.stated }

// Upstream says what the upstream of a route receives.
type Upstream struct {
	// Mode is mint (default), forward, exchange, embedded or txn_token; what
	// each needs is modeRules (modes.go).
	Mode string `json:"mode"`
	// Audience is the upstream's aud.
	Audience string `json:"audience"`
	// Scopes are passed on when the incoming token has them.
	Scopes []string `json:"scopes"`
	// CopyClaims copies claims of the incoming token: source name → name in the
	// minted token (empty keeps the name).
	CopyClaims map[string]string `json:"copy_claims"`
	// Claims are fixed extra claims.
	Claims map[string]any `json:"claims"`
	// TTL is the minted token's lifetime, never beyond the incoming exp (default 5m).
	TTL Duration `json:"ttl"`
	// Header carries the token upstream (default "authorization").
	Header string `json:"header"`
	// Prefix goes before the token (default "Bearer " for authorization, else none).
	Prefix *string `json:"prefix"`
	// StripCredential removes the client's credential header (default true).
	StripCredential *bool `json:"strip_credential"`
	// Exchange configures mode exchange.
	Exchange *Exchange `json:"exchange"`
	// EmbeddedClaim names the claim holding embedded tokens, a map from
	// audience to JWT (mode embedded; default "tokens").
	EmbeddedClaim string `json:"embedded_claim"`
	// EmbeddedIssuers lists issuers, other than the incoming token's, whose
	// embedded tokens are accepted (mode embedded; default none: the embedded
	// token's iss must equal the incoming token's). Its sub must always equal
	// the incoming token's.
	EmbeddedIssuers []string `json:"embedded_issuers"`
}

// Exchange configures RFC 8693 token exchange for a route.
type Exchange struct {
	// Issuer is the configured issuer whose token endpoint is asked (default:
	// the issuer of the incoming token).
	Issuer string `json:"issuer"`
	// Resource is the resource indicator (RFC 8707).
	Resource string `json:"resource"`
	// SubjectTokenType is the subject_token_type sent with the incoming token
	// (default urn:ietf:params:oauth:token-type:access_token, for JWT and
	// opaque tokens alike: both are access tokens).
	SubjectTokenType string `json:"subject_token_type"`
	// RequestedTokenType is the requested_token_type
	// (default urn:ietf:params:oauth:token-type:access_token).
	RequestedTokenType string `json:"requested_token_type"`
	// Actor sends tokentailor's own client credential as actor_token.
	Actor bool `json:"actor"`
}

// Route returns the route named name, or nil.
func (c *Config) Route(name string) *Route {
	for i := range c.Routes {
		if c.Routes[i].Name == name {
			return &c.Routes[i]
		}
	}
	return nil
}

func (c *Config) validateRoutes(p *problems) {
	names := map[string]bool{}
	for i := range c.Routes {
		f := fmt.Sprintf("routes[%d]", i)
		c.validateRoute(p, f, &c.Routes[i], names)
		c.validateRouteIssuers(f, &c.Routes[i], p.add)
		c.validateRouteAccept(f, &c.Routes[i], p.add)
	}
	if c.DefaultRoute != "" && !names[c.DefaultRoute] {
		p.add("default_route", "%q names no route", c.DefaultRoute)
	}
}

func (c *Config) validateRoute(p *problems, f string, r *Route, names map[string]bool) {
	switch {
	case r.Name == "":
		p.add(f+".name", "required")
	case names[r.Name]:
		p.add(f+".name", "duplicate route name %q", r.Name)
	case strings.ContainsAny(r.Name, " \t\n\"'"):
		p.add(f+".name", "%q must not contain spaces or quotes", r.Name)
	}
	switch r.SenderConstraint {
	case "", "off", "optional", "required":
	default:
		hint := ""
		if r.SenderConstraint == "false" || r.SenderConstraint == "true" {
			hint = ` (YAML reads a bare off or on as a boolean: write "off")`
		}
		p.add(f+".sender_constraint", "%q: want off, optional or required%s", r.SenderConstraint, hint)
	}
	if o := r.DPoPOrigin; o != "" {
		if u, err := url.Parse(o); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			p.add(f+".dpop_origin", "%q: want scheme://host[:port] only", o)
		}
	}
	names[r.Name] = true
	r.Match.validate(p, f+".match")
	if r.MinLifetime.Duration < 0 {
		p.add(f+".min_lifetime", "must not be negative")
	}
	for name, vals := range r.Require.Claims {
		if len(vals) == 0 {
			p.add(f+".require.claims."+name, "list at least one accepted value")
		}
	}
	if r.Public {
		if len(r.Require.Scopes) > 0 || len(r.Require.Claims) > 0 {
			p.add(f+".require", "a public route cannot require scopes or claims")
		}
		return
	}
	if !r.Require.Stated() {
		p.add(f+".require", `missing or null: a route that is not public states what the token must carry, e.g. "require: {scopes: [orders:read]}", or "require: {}" for any valid token, so that a file cut after "require:" cannot mean "nothing required" (a route open to all needs "public: true")`)
	}
	c.validateMode(p, f+".upstream", &r.Upstream)
	r.Upstream.validate(p, f+".upstream")
}

func (m *Match) validate(p *problems, f string) {
	if m == nil {
		return
	}
	if m.Path != "" && m.PathPrefix != "" {
		p.add(f, "set path or path_prefix, not both")
	}
	if m.Path != "" && !strings.HasPrefix(m.Path, "/") {
		p.add(f+".path", "must start with /")
	}
	if m.PathPrefix != "" && !strings.HasPrefix(m.PathPrefix, "/") {
		p.add(f+".path_prefix", "must start with /")
	}
	for j, h := range m.Hosts {
		if h == "" || strings.ContainsAny(h, "/ ") || strings.Count(h, "*") > 1 || (strings.Contains(h, "*") && !strings.HasPrefix(h, "*.")) {
			p.add(fmt.Sprintf("%s.hosts[%d]", f, j), "%q is not a host or *.suffix pattern", h)
		}
	}
	for j, meth := range m.Methods {
		if meth == "" || strings.ContainsAny(meth, " /") {
			p.add(fmt.Sprintf("%s.methods[%d]", f, j), "%q is not an HTTP method", meth)
		}
	}
}

func (u *Upstream) validate(p *problems, uf string) {
	if u.TTL.Duration <= 0 {
		p.add(uf+".ttl", "must be positive")
	}
	checkHeaderName(p, uf+".header", u.Header)
	if u.Header == "host" {
		p.add(uf+".header", "cannot carry a token in host")
	}
	for from, to := range u.CopyClaims {
		if to == "" {
			to = from
		}
		if extauthz.IsReservedClaim(to) {
			p.add(uf+".copy_claims."+from, "cannot overwrite the claim %q that tokentailor sets itself", to)
		}
	}
	for name := range u.Claims {
		if extauthz.IsReservedClaim(name) {
			p.add(uf+".claims."+name, "cannot overwrite the claim %q that tokentailor sets itself", name)
		}
	}
}

func (c *Config) hasIssuer(iss string) bool {
	for _, is := range c.Issuers {
		if is.Issuer == iss {
			return true
		}
	}
	return false
}

// isTokenTypeURI reports whether v is an absolute URI, as RFC 8693 §3 token
// type identifiers are (urn:ietf:params:oauth:token-type:… or a URL).
func isTokenTypeURI(v string) bool {
	u, err := url.Parse(v)
	return err == nil && u.Scheme != "" && (u.Opaque != "" || u.Host != "") && !strings.ContainsAny(v, " \t\r\n")
}
