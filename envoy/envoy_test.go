package envoy_test

import (
	"bytes"
	"io/fs"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	healthcheckv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/health_check/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/google/go-cmp/cmp"
	"github.com/tokentailor/tokentailor/envoy"
	"github.com/tokentailor/tokentailor/envoy/validate"
	"github.com/tokentailor/tokentailor/extauthz/config"
)

// bootstraps pairs every file in envoy/ with tokentailor's example config it
// must agree with.
var bootstraps = []struct {
	file    string
	get     func() []byte
	example string // in docs/examples/
	// http: ext_authz uses http_service; tokentailor matches routes itself.
	http bool
}{
	{file: "sidecar.yaml", get: envoy.Sidecar, example: "tokentailor-sidecar.yaml"},
	{file: "sidecar-tcp.yaml", get: envoy.SidecarTCP, example: "tokentailor-sidecar.yaml"},
	{file: "sidecar-mtls.yaml", get: envoy.SidecarMTLS, example: "tokentailor-sidecar.yaml"},
	{file: "sidecar-http.yaml", get: envoy.SidecarHTTP, example: "tokentailor-sidecar.yaml", http: true},
	{file: "gateway.yaml", get: envoy.Gateway, example: "tokentailor-gateway.yaml"},
}

// tokentailor loads a tokentailor example config as the validator's expectation.
func tokentailor(t *testing.T, example string) validate.Tokentailor {
	t.Helper()
	cfg, err := config.Load(filepath.Join("..", "docs", "examples", example))
	if err != nil {
		t.Fatalf("config.Load(%s) = %v", example, err)
	}
	tt := validate.Tokentailor{Socket: cfg.Listen.Socket, GRPC: cfg.Listen.GRPC, Routes: []string{}, ContextKey: envoy.ContextKey}
	for _, r := range cfg.Routes {
		tt.Routes = append(tt.Routes, r.Name)
	}
	return tt
}

func parse(t *testing.T, y []byte) *bootstrapv3.Bootstrap {
	t.Helper()
	b, err := validate.Parse(y)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Every YAML in envoy/ is a valid bootstrap that agrees with tokentailor's config.
func TestBootstrapsValid(t *testing.T) {
	names, err := fs.Glob(envoy.Files(), "*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var covered []string
	for _, bs := range bootstraps {
		covered = append(covered, bs.file)
	}
	for _, n := range names {
		if !slices.Contains(covered, n) {
			t.Errorf("%s is embedded but not checked here: add it to bootstraps", n)
		}
	}
	for _, bs := range bootstraps {
		t.Run(bs.file, func(t *testing.T) {
			raw, err := fs.ReadFile(envoy.Files(), bs.file)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(raw, bs.get()) {
				t.Fatalf("accessor does not return %s", bs.file)
			}
			tt := tokentailor(t, bs.example)
			if bs.http {
				// The example serves gRPC only; this bootstrap asks the HTTP
				// listener the README tells it to turn on.
				tt.HTTP, tt.Socket, tt.GRPC = envoy.AuthzHTTPAddr, "", ""
			}
			b, err := validate.File(raw, tt)
			if err != nil {
				t.Fatalf("validate.File(%s):\n%v", bs.file, err)
			}
			if bs.http {
				return // no context_extensions: routes are matched by tokentailor
			}
			// The other direction: each tokentailor route is reachable.
			named := contextRoutes(t, b)
			for _, r := range tt.Routes {
				if !slices.Contains(named, r) {
					t.Errorf("tokentailor route %q is named by no Envoy route", r)
				}
			}
		})
	}
}

// inboundRoutes returns the routes of the inbound listener's connection manager
// and the name of its ext_authz filter.
func inboundRoutes(t *testing.T, b *bootstrapv3.Bootstrap) ([]*routev3.Route, string) {
	t.Helper()
	l := listener(t, b, envoy.InboundListener)
	h := hcm(t, l)
	authz := ""
	for _, f := range h.GetHttpFilters() {
		if f.GetTypedConfig().MessageIs(&extauthzv3.ExtAuthz{}) {
			authz = f.GetName()
		}
	}
	var routes []*routev3.Route
	for _, vh := range h.GetRouteConfig().GetVirtualHosts() {
		routes = append(routes, vh.GetRoutes()...)
	}
	return routes, authz
}

func perRoute(t *testing.T, r *routev3.Route, filter string) *extauthzv3.ExtAuthzPerRoute {
	t.Helper()
	a, ok := r.GetTypedPerFilterConfig()[filter]
	if !ok {
		return nil
	}
	pr := &extauthzv3.ExtAuthzPerRoute{}
	if err := a.UnmarshalTo(pr); err != nil {
		t.Fatal(err)
	}
	return pr
}

func contextRoutes(t *testing.T, b *bootstrapv3.Bootstrap) []string {
	t.Helper()
	routes, authz := inboundRoutes(t, b)
	var names []string
	for _, r := range routes {
		if n, ok := perRoute(t, r, authz).GetCheckSettings().GetContextExtensions()[envoy.ContextKey]; ok {
			names = append(names, n)
		}
	}
	return names
}

// Nothing reaches an upstream unchecked but the app's /healthz, and every
// checked route tells tokentailor its policy.
func TestEveryForwardedRouteIsChecked(t *testing.T) {
	for _, bs := range bootstraps {
		t.Run(bs.file, func(t *testing.T) {
			routes, authz := inboundRoutes(t, parse(t, bs.get()))
			for _, r := range routes {
				if r.GetRoute() == nil {
					continue // direct_response: nothing forwarded
				}
				pr := perRoute(t, r, authz)
				switch {
				case pr.GetDisabled():
					if r.GetMatch().GetPath() != "/healthz" {
						t.Errorf("route %q forwards without a check", r.GetName())
					}
				case bs.http:
					// http_service sends no context_extensions: checked, and
					// tokentailor matches the route itself.
				case pr.GetCheckSettings().GetContextExtensions()[envoy.ContextKey] == "":
					t.Errorf("route %q does not name its tokentailor route", r.GetName())
				}
			}
		})
	}
}

func listener(t *testing.T, b *bootstrapv3.Bootstrap, name string) *listenerv3.Listener {
	t.Helper()
	for _, l := range b.GetStaticResources().GetListeners() {
		if l.GetName() == name {
			return l
		}
	}
	t.Fatalf("no listener %q", name)
	return nil
}

func hcm(t *testing.T, l *listenerv3.Listener) *hcmv3.HttpConnectionManager {
	t.Helper()
	h := &hcmv3.HttpConnectionManager{}
	if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(h); err != nil {
		t.Fatal(err)
	}
	return h
}

func cluster(t *testing.T, b *bootstrapv3.Bootstrap, name string) *clusterv3.Cluster {
	t.Helper()
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() == name {
			return c
		}
	}
	t.Fatalf("no cluster %q", name)
	return nil
}

func endpoint(t *testing.T, b *bootstrapv3.Bootstrap, clusterName string) *corev3.Address {
	t.Helper()
	return cluster(t, b, clusterName).GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress()
}

func hostPort(a *corev3.Address) string {
	sa := a.GetSocketAddress()
	return net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10))
}

// The exported handles are what the files say, so programs that adapt a
// bootstrap (the Kubernetes webhook) find what they look for.
func TestHandles(t *testing.T) {
	port := func(p int) string { return strconv.Itoa(p) }
	sidecar := parse(t, envoy.Sidecar())
	tests := []struct {
		name string
		got  string
		want string
	}{
		{name: "admin", got: hostPort(sidecar.GetAdmin().GetAddress()), want: "127.0.0.1:" + port(envoy.AdminPort)},
		{name: "inbound", got: hostPort(listener(t, sidecar, envoy.InboundListener).GetAddress()), want: "0.0.0.0:" + port(envoy.InboundPort)},
		{name: "ready", got: hostPort(listener(t, sidecar, envoy.ReadyListener).GetAddress()), want: "0.0.0.0:" + port(envoy.ReadyPort)},
		{name: "app", got: hostPort(endpoint(t, sidecar, envoy.AppCluster)), want: "127.0.0.1:" + port(envoy.AppPort)},
		{name: "socket", got: endpoint(t, sidecar, envoy.AuthzCluster).GetPipe().GetPath(), want: envoy.AuthzSocket},
		{name: "tcp", got: hostPort(endpoint(t, parse(t, envoy.SidecarTCP()), envoy.AuthzCluster)), want: envoy.AuthzTCPAddr},
		{name: "http", got: hostPort(endpoint(t, parse(t, envoy.SidecarHTTP()), envoy.AuthzCluster)), want: envoy.AuthzHTTPAddr},
		{name: "gateway tcp", got: hostPort(endpoint(t, parse(t, envoy.Gateway()), envoy.AuthzCluster)), want: envoy.AuthzTCPAddr},
		{name: "ready path", got: readyPath(t, listener(t, sidecar, envoy.ReadyListener)), want: envoy.ReadyPath},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
}

func readyPath(t *testing.T, l *listenerv3.Listener) string {
	t.Helper()
	hc := &healthcheckv3.HealthCheck{}
	if err := hcm(t, l).GetHttpFilters()[0].GetTypedConfig().UnmarshalTo(hc); err != nil {
		t.Fatal(err)
	}
	return hc.GetHeaders()[0].GetStringMatch().GetExact()
}

// The variants differ from sidecar.yaml only as their headers say.
func TestVariantsDifferOnlyAsDocumented(t *testing.T) {
	tests := []struct {
		name  string
		get   func() []byte
		undo  func(t *testing.T, variant *bootstrapv3.Bootstrap) // turns the variant back into sidecar.yaml
		check func(t *testing.T, variant *bootstrapv3.Bootstrap)
	}{
		{
			name: "tcp",
			get:  envoy.SidecarTCP,
			undo: func(t *testing.T, v *bootstrapv3.Bootstrap) {
				c := cluster(t, v, envoy.AuthzCluster)
				c.LoadAssignment = proto.Clone(cluster(t, parse(t, envoy.Sidecar()), envoy.AuthzCluster).GetLoadAssignment()).(*endpointv3.ClusterLoadAssignment)
			},
		},
		{
			name: "mtls",
			get:  envoy.SidecarMTLS,
			undo: func(t *testing.T, v *bootstrapv3.Bootstrap) {
				listener(t, v, envoy.InboundListener).GetFilterChains()[0].TransportSocket = nil
			},
			check: func(t *testing.T, v *bootstrapv3.Bootstrap) {
				tls := &tlsv3.DownstreamTlsContext{}
				ts := listener(t, v, envoy.InboundListener).GetFilterChains()[0].GetTransportSocket()
				if err := ts.GetTypedConfig().UnmarshalTo(tls); err != nil {
					t.Fatal(err)
				}
				if !tls.GetRequireClientCertificate().GetValue() {
					t.Error("mTLS variant does not require a client certificate")
				}
				// RFC 8705 certificate-bound tokens (extauthz/mtls) need the
				// client certificate in the CheckRequest's source.certificate.
				for _, f := range hcm(t, listener(t, v, envoy.InboundListener)).GetHttpFilters() {
					az := &extauthzv3.ExtAuthz{}
					if f.GetTypedConfig().UnmarshalTo(az) == nil && !az.GetIncludePeerCertificate() {
						t.Error("mTLS variant's ext_authz does not send the client certificate (include_peer_certificate)")
					}
				}
			},
		},
	}
	want := parse(t, envoy.Sidecar())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := parse(t, tt.get())
			if tt.check != nil {
				tt.check(t, v)
			}
			tt.undo(t, v)
			if diff := cmp.Diff(want, v, protocmp.Transform()); diff != "" {
				t.Errorf("differs from sidecar.yaml beyond the documented change (-sidecar +variant):\n%s", diff)
			}
		})
	}
}

func TestAccessorsReturnCopies(t *testing.T) {
	for _, bs := range bootstraps {
		t.Run(bs.file, func(t *testing.T) {
			a := bs.get()
			a[0] ^= 0xff
			if bytes.Equal(a, bs.get()) {
				t.Error("a caller's change reached the embedded file")
			}
		})
	}
}
