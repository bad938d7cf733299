package authzfilter

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
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
