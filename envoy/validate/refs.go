package validate

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Names of the types and extensions Refs looks for.
const (
	hcmType           = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
	extAuthzType      = "envoy.extensions.filters.http.ext_authz.v3.ExtAuthz"
	protocolOptionKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
)

// Refs checks what relates parts of the bootstrap to each other and to
// tokentailor, for static_resources (clusters from xDS are not known here):
//   - admin is bound to a loopback address (or a unix socket);
//   - every cluster named by a route (cluster, weighted_clusters,
//     request_mirror_policies) or by ext_authz's envoy_grpc exists;
//   - every HTTP filter chain ends with the router, and every connection
//     manager that forwards to a cluster has an ext_authz filter;
//   - ext_authz uses gRPC through envoy_grpc, transport_api_version V3, an
//     explicit timeout, failure_mode_allow false, a 5xx status_on_error and
//     no with_request_body;
//   - or ext_authz uses http_service: its server_uri.cluster exists and every
//     endpoint is tt.HTTP, path_prefix is /envoy (where tokentailor answers
//     Envoy's convention), authorization_response.allowed_upstream_headers
//     lets authorization through (else the narrowed token never reaches the
//     upstream), and no route sets context_extensions (http_service sends
//     none, so the route would silently not be named);
//   - the ext_authz cluster speaks HTTP/2 and every endpoint is tt.Socket or
//     tt.GRPC (skipped when both are empty);
//   - every per-route ExtAuthzPerRoute is keyed by an ext_authz filter's name,
//     and its context_extensions[tt.ContextKey] is one of tt.Routes (skipped
//     when tt.Routes is nil).
//
// All failures are joined; each names its place and wraps a sentinel.
func Refs(b *bootstrapv3.Bootstrap, tt Tokentailor) error {
	if tt.ContextKey == "" {
		tt.ContextKey = "route"
	}
	r := &refs{tt: tt, clusters: map[string]*clusterv3.Cluster{}, index: map[string]int{}}
	r.admin(b.GetAdmin())
	for i, c := range b.GetStaticResources().GetClusters() {
		if _, dup := r.clusters[c.GetName()]; !dup {
			r.clusters[c.GetName()] = c
			r.index[c.GetName()] = i
		}
	}
	for i, l := range b.GetStaticResources().GetListeners() {
		chains := l.GetFilterChains()
		at := fmt.Sprintf("static_resources.listeners[%d]", i)
		for j, fc := range chains {
			for k, f := range fc.GetFilters() {
				r.filter(f.GetTypedConfig(), fmt.Sprintf("%s.filter_chains[%d].filters[%d].typed_config", at, j, k))
			}
		}
		if fc := l.GetDefaultFilterChain(); fc != nil {
			for k, f := range fc.GetFilters() {
				r.filter(f.GetTypedConfig(), fmt.Sprintf("%s.default_filter_chain.filters[%d].typed_config", at, k))
			}
		}
	}
	return errors.Join(r.errs...)
}

type refs struct {
	tt Tokentailor
	// httpMode is set while checking a connection manager whose ext_authz
	// uses http_service: Envoy then ignores context_extensions.
	httpMode bool
	clusters map[string]*clusterv3.Cluster
	index    map[string]int // position in static_resources.clusters
	errs     []error
}

func (r *refs) fail(at string, sentinel error, format string, args ...any) {
	r.errs = append(r.errs, fmt.Errorf("%s: %w: %s", at, sentinel, fmt.Sprintf(format, args...)))
}

func (r *refs) admin(a *bootstrapv3.Admin) {
	if a == nil || a.GetAddress() == nil || a.GetAddress().GetPipe() != nil {
		return
	}
	sa := a.GetAddress().GetSocketAddress()
	ip, err := netip.ParseAddr(sa.GetAddress())
	if sa.GetAddress() == "localhost" || (err == nil && ip.IsLoopback()) {
		return
	}
	r.fail("admin.address.socket_address.address", ErrAdminExposed, "%q is reachable from outside; use 127.0.0.1", sa.GetAddress())
}

// unpack returns the message in a, or nil when a holds another type than want.
func unpack[T proto.Message](a *anypb.Any, want T) (T, bool) {
	var zero T
	if a == nil || a.MessageName() != want.ProtoReflect().Descriptor().FullName() {
		return zero, false
	}
	m := want.ProtoReflect().New().Interface().(T)
	if err := a.UnmarshalTo(m); err != nil {
		return zero, false // Deep reports it
	}
	return m, true
}

func (r *refs) filter(tc *anypb.Any, at string) {
	hcm, ok := unpack(tc, &hcmv3.HttpConnectionManager{})
	if !ok {
		return
	}
	at = fmt.Sprintf("%s(%s)", at, hcmType)
	r.httpMode = false // per connection manager
	filters := hcm.GetHttpFilters()
	authzNames := map[string]bool{}
	for i, f := range filters {
		fat := fmt.Sprintf("%s.http_filters[%d]", at, i)
		if _, isRouter := unpack(f.GetTypedConfig(), &routerv3.Router{}); isRouter && i != len(filters)-1 {
			r.fail(fat, ErrRouterNotLast, "filter %q comes before %d more filter(s) that would never run", f.GetName(), len(filters)-1-i)
		}
		if ea, isAuthz := unpack(f.GetTypedConfig(), &extauthzv3.ExtAuthz{}); isAuthz {
			authzNames[f.GetName()] = true
			r.extAuthz(ea, fmt.Sprintf("%s.typed_config(%s)", fat, extAuthzType))
		}
	}
	if n := len(filters); n == 0 {
		r.fail(at+".http_filters", ErrRouterNotLast, "no http filters, no router")
	} else if _, isRouter := unpack(filters[n-1].GetTypedConfig(), &routerv3.Router{}); !isRouter {
		r.fail(fmt.Sprintf("%s.http_filters[%d]", at, n-1), ErrRouterNotLast, "last filter %q is not envoy.filters.http.router", filters[n-1].GetName())
	}
	rc := hcm.GetRouteConfig()
	if rc == nil {
		return // RDS: routes come from xDS
	}
	at += ".route_config"
	forwards := ""
	for i, vh := range rc.GetVirtualHosts() {
		vat := fmt.Sprintf("%s.virtual_hosts[%d]", at, i)
		r.perFilter(vh.GetTypedPerFilterConfig(), authzNames, vat)
		for j, rt := range vh.GetRoutes() {
			rat := fmt.Sprintf("%s.routes[%d]", vat, j)
			r.perFilter(rt.GetTypedPerFilterConfig(), authzNames, rat)
			if ra := rt.GetRoute(); ra != nil {
				if forwards == "" {
					forwards = rat
				}
				r.routeAction(ra, rat+".route")
			}
		}
	}
	if forwards != "" && len(authzNames) == 0 {
		r.fail(forwards, ErrUnchecked, "forwards to a cluster but the connection manager has no ext_authz filter")
	}
}

func (r *refs) routeAction(ra *routev3.RouteAction, at string) {
	if c := ra.GetCluster(); c != "" {
		r.cluster(c, at+".cluster")
	}
	for i, wc := range ra.GetWeightedClusters().GetClusters() {
		r.cluster(wc.GetName(), fmt.Sprintf("%s.weighted_clusters.clusters[%d].name", at, i))
	}
	for i, m := range ra.GetRequestMirrorPolicies() {
		if m.GetCluster() != "" {
			r.cluster(m.GetCluster(), fmt.Sprintf("%s.request_mirror_policies[%d].cluster", at, i))
		}
	}
}

func (r *refs) cluster(name, at string) *clusterv3.Cluster {
	c, ok := r.clusters[name]
	if !ok {
		r.fail(at, ErrUnknownCluster, "cluster %q is not defined in static_resources.clusters", name)
	}
	return c
}

func (r *refs) perFilter(m map[string]*anypb.Any, authzNames map[string]bool, at string) {
	for _, key := range slices.Sorted(maps.Keys(m)) {
		a := m[key]
		if fc, ok := unpack(a, &routev3.FilterConfig{}); ok {
			a = fc.GetConfig()
		}
		pr, ok := unpack(a, &extauthzv3.ExtAuthzPerRoute{})
		if !ok {
			continue
		}
		pat := fmt.Sprintf("%s.typed_per_filter_config[%s]", at, key)
		if d, isDisabled := pr.GetOverride().(*extauthzv3.ExtAuthzPerRoute_Disabled); isDisabled && !d.Disabled {
			// Envoy's proto says (validate.rules).bool.const = true; the
			// generated Go validator does not carry that rule.
			r.fail(pat+".disabled", ErrInvalid, "must be true when set; to check the route, set check_settings instead")
		}
		if !authzNames[key] {
			r.fail(pat, ErrUnknownFilter, "no ext_authz filter is named %q, so Envoy ignores this config", key)
		}
		if r.httpMode && len(pr.GetCheckSettings().GetContextExtensions()) > 0 {
			r.fail(pat+".check_settings.context_extensions", ErrIgnored,
				"http_service sends no context_extensions; tokentailor matches the route itself (routes[].match)")
			continue
		}
		name, has := pr.GetCheckSettings().GetContextExtensions()[r.tt.ContextKey]
		if !has || r.tt.Routes == nil {
			continue
		}
		if !slices.Contains(r.tt.Routes, name) {
			r.fail(pat+".check_settings.context_extensions["+r.tt.ContextKey+"]", ErrUnknownRoute,
				"%q is not a route of tokentailor's config (have %q)", name, r.tt.Routes)
		}
	}
}

func (r *refs) extAuthz(ea *extauthzv3.ExtAuthz, at string) {
	if ea.GetFailureModeAllow() {
		r.fail(at+".failure_mode_allow", ErrFailOpen, "true lets requests through unchecked when tokentailor is down; set false")
	}
	if ea.GetTransportApiVersion() != corev3.ApiVersion_V3 {
		r.fail(at+".transport_api_version", ErrAuthzSettings, "is %s; tokentailor serves envoy.service.auth.v3, set V3", ea.GetTransportApiVersion())
	}
	if code := ea.GetStatusOnError().GetCode(); code < 500 {
		r.fail(at+".status_on_error", ErrAuthzSettings, "tokentailor failing must answer a 5xx (ServiceUnavailable), not %d", code)
	}
	if ea.GetWithRequestBody() != nil {
		r.fail(at+".with_request_body", ErrAuthzSettings, "tokentailor decides on headers; buffering bodies only costs")
	}
	if hs := ea.GetHttpService(); hs != nil {
		r.httpService(hs, at+".http_service")
		return
	}
	gs := ea.GetGrpcService()
	if gs == nil {
		r.fail(at+".grpc_service", ErrAuthzSettings, "set grpc_service (tokentailor's gRPC ext_authz) or http_service (its HTTP listener)")
		return
	}
	if gs.GetTimeout() == nil {
		r.fail(at+".grpc_service.timeout", ErrAuthzSettings, "set an explicit timeout (the 200ms default is shorter than an introspection round trip)")
	}
	eg := gs.GetEnvoyGrpc()
	if eg == nil {
		r.fail(at+".grpc_service", ErrAuthzSettings, "use envoy_grpc with a static cluster")
		return
	}
	cat := at + ".grpc_service.envoy_grpc.cluster_name"
	c := r.cluster(eg.GetClusterName(), cat)
	if c == nil {
		return
	}
	r.authzCluster(c, fmt.Sprintf("static_resources.clusters[%d]", r.index[c.GetName()]))
}

func (r *refs) authzCluster(c *clusterv3.Cluster, at string) {
	po, _ := unpack(c.GetTypedExtensionProtocolOptions()[protocolOptionKey], &httpv3.HttpProtocolOptions{})
	if po.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
		r.fail(at+".typed_extension_protocol_options["+protocolOptionKey+"]", ErrAuthzCluster,
			"gRPC needs HTTP/2: set explicit_http_config.http2_protocol_options")
	}
	if r.tt.Socket == "" && r.tt.GRPC == "" {
		return
	}
	n := 0
	for i, le := range c.GetLoadAssignment().GetEndpoints() {
		for j, lb := range le.GetLbEndpoints() {
			n++
			eat := fmt.Sprintf("%s.load_assignment.endpoints[%d].lb_endpoints[%d].endpoint.address", at, i, j)
			addr := lb.GetEndpoint().GetAddress()
			switch {
			case addr.GetPipe() != nil:
				if r.tt.Socket == "" || addr.GetPipe().GetPath() != r.tt.Socket {
					r.fail(eat, ErrAuthzCluster, "unix socket %q is not where tokentailor listens (%s)", addr.GetPipe().GetPath(), r.want())
				}
			case addr.GetSocketAddress() != nil:
				sa := addr.GetSocketAddress()
				hp := net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10))
				if r.tt.GRPC == "" || hp != r.tt.GRPC {
					r.fail(eat, ErrAuthzCluster, "%s is not where tokentailor listens (%s)", hp, r.want())
				}
			default:
				r.fail(eat, ErrAuthzCluster, "neither a socket address nor a pipe")
			}
		}
	}
	if n == 0 {
		r.fail(at+".load_assignment", ErrAuthzCluster, "no endpoints; tokentailor listens on %s", r.want())
	}
}

func (r *refs) want() string {
	switch {
	case r.tt.Socket != "" && r.tt.GRPC != "":
		return "unix:" + r.tt.Socket + " or " + r.tt.GRPC
	case r.tt.Socket != "":
		return "unix:" + r.tt.Socket
	}
	return r.tt.GRPC
}

// envoyPathPrefix is where tokentailor's HTTP listener answers Envoy's
// http_service (extauthz/httpauthz.EnvoyPrefix; not imported, to keep this
// package free of tokentailor's server code).
const envoyPathPrefix = "/envoy"

func (r *refs) httpService(hs *extauthzv3.HttpService, at string) {
	r.httpMode = true
	if hs.GetPathPrefix() != envoyPathPrefix {
		r.fail(at+".path_prefix", ErrAuthzSettings, "is %q; tokentailor answers Envoy's http_service under %q", hs.GetPathPrefix(), envoyPathPrefix)
	}
	if hs.GetServerUri().GetTimeout() == nil {
		r.fail(at+".server_uri.timeout", ErrAuthzSettings, "set an explicit timeout")
	}
	ok := false
	for _, m := range hs.GetAuthorizationResponse().GetAllowedUpstreamHeaders().GetPatterns() {
		if m.GetExact() == "authorization" || (m.GetIgnoreCase() && strings.EqualFold(m.GetExact(), "authorization")) {
			ok = true
		}
	}
	if !ok {
		r.fail(at+".authorization_response.allowed_upstream_headers", ErrAuthzSettings,
			"must match authorization exactly, or the narrowed token never reaches the upstream")
	}
	cat := at + ".server_uri.cluster"
	c := r.cluster(hs.GetServerUri().GetCluster(), cat)
	if c == nil || r.tt.HTTP == "" {
		return
	}
	cat = fmt.Sprintf("static_resources.clusters[%d]", r.index[c.GetName()])
	n := 0
	for i, le := range c.GetLoadAssignment().GetEndpoints() {
		for j, lb := range le.GetLbEndpoints() {
			n++
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			hp := net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10))
			if hp != r.tt.HTTP {
				r.fail(fmt.Sprintf("%s.load_assignment.endpoints[%d].lb_endpoints[%d].endpoint.address", cat, i, j), ErrAuthzCluster,
					"%s is not where tokentailor's HTTP listener is (%s)", hp, r.tt.HTTP)
			}
		}
	}
	if n == 0 {
		r.fail(cat+".load_assignment", ErrAuthzCluster, "no endpoints; tokentailor's HTTP listener is %s", r.tt.HTTP)
	}
}
