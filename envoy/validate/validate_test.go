package validate_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokentailor/tokentailor/envoy/validate"
)

// fixtureTT is what testdata/valid.yaml agrees with.
var fixtureTT = validate.Tokentailor{Socket: "/run/tt.sock", Routes: []string{"orders"}}

var sentinels = []error{
	validate.ErrSyntax, validate.ErrInvalid, validate.ErrUnknownCluster,
	validate.ErrRouterNotLast, validate.ErrFailOpen, validate.ErrAuthzSettings,
	validate.ErrAuthzCluster, validate.ErrUnknownRoute, validate.ErrUnknownFilter,
	validate.ErrUnchecked, validate.ErrAdminExposed, validate.ErrIgnored,
}

const (
	hcm      = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config(envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager)"
	authz    = hcm + ".http_filters[0].typed_config(envoy.extensions.filters.http.ext_authz.v3.ExtAuthz)"
	route0   = hcm + ".route_config.virtual_hosts[0].routes[0]"
	perRoute = ".typed_per_filter_config[envoy.filters.http.ext_authz]"
)

func read(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFileValid(t *testing.T) {
	b, err := validate.File(read(t, "valid.yaml"), fixtureTT)
	if err != nil {
		t.Fatalf("File(valid.yaml) = %v", err)
	}
	if got := b.GetStaticResources().GetListeners()[0].GetName(); got != "inbound" {
		t.Errorf("listener name = %q, want inbound", got)
	}
}

// Each fixture is valid.yaml with one mistake; the error must wrap the
// sentinel for that mistake, no unexpected other one, and name the place.
func TestFileRejects(t *testing.T) {
	tests := []struct {
		file    string
		wantErr error
		also    []error // further sentinels the same mistake legitimately causes
		wantAt  string  // the place the message must name
	}{
		{file: "typo_field.yaml", wantErr: validate.ErrSyntax, wantAt: authz + ".faliure_mode_allow"},
		{file: "bad_enum.yaml", wantErr: validate.ErrSyntax, wantAt: hcm + ".codec_type"},
		{file: "unknown_type.yaml", wantErr: validate.ErrSyntax, wantAt: hcm + ".http_filters[1].typed_config.@type"},
		{file: "not_yaml.yaml", wantErr: validate.ErrSyntax, wantAt: "yaml"},
		{file: "empty_authz_cluster.yaml", wantErr: validate.ErrInvalid, wantAt: authz + ": ", also: []error{validate.ErrUnknownCluster}},
		{file: "per_route_empty.yaml", wantErr: validate.ErrInvalid, wantAt: hcm + ".route_config.virtual_hosts[0].routes[1]" + perRoute + "(envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute)"},
		{file: "per_route_disabled_false.yaml", wantErr: validate.ErrInvalid, wantAt: hcm + ".route_config.virtual_hosts[0].routes[1]" + perRoute + ".disabled"},
		{file: "http2_zero_streams.yaml", wantErr: validate.ErrInvalid, wantAt: "static_resources.clusters[1].typed_extension_protocol_options[envoy.extensions.upstreams.http.v3.HttpProtocolOptions](envoy.extensions.upstreams.http.v3.HttpProtocolOptions)"},
		{file: "dangling_route_cluster.yaml", wantErr: validate.ErrUnknownCluster, wantAt: route0 + ".route.cluster"},
		{file: "dangling_authz_cluster.yaml", wantErr: validate.ErrUnknownCluster, wantAt: authz + ".grpc_service.envoy_grpc.cluster_name"},
		{file: "router_not_last.yaml", wantErr: validate.ErrRouterNotLast, wantAt: hcm + ".http_filters[0]"},
		{file: "fail_open.yaml", wantErr: validate.ErrFailOpen, wantAt: authz + ".failure_mode_allow"},
		{file: "no_status_on_error.yaml", wantErr: validate.ErrAuthzSettings, wantAt: authz + ".status_on_error"},
		{file: "no_timeout.yaml", wantErr: validate.ErrAuthzSettings, wantAt: authz + ".grpc_service.timeout"},
		{file: "with_request_body.yaml", wantErr: validate.ErrAuthzSettings, wantAt: authz + ".with_request_body"},
		{file: "no_http2.yaml", wantErr: validate.ErrAuthzCluster, wantAt: "static_resources.clusters[1].typed_extension_protocol_options"},
		{file: "wrong_socket.yaml", wantErr: validate.ErrAuthzCluster, wantAt: "static_resources.clusters[1].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address"},
		{file: "unknown_route.yaml", wantErr: validate.ErrUnknownRoute, wantAt: route0 + perRoute + ".check_settings.context_extensions[route]"},
		{file: "per_route_wrong_key.yaml", wantErr: validate.ErrUnknownFilter, wantAt: route0 + ".typed_per_filter_config[envoy.filters.http.extauthz]"},
		{file: "admin_exposed.yaml", wantErr: validate.ErrAdminExposed, wantAt: "admin.address.socket_address.address"},
		{file: "no_ext_authz.yaml", wantErr: validate.ErrUnchecked, wantAt: route0, also: []error{validate.ErrUnknownFilter}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			_, err := validate.File(read(t, tt.file), fixtureTT)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("File() = %v, want %v", err, tt.wantErr)
			}
			for _, s := range sentinels {
				if s != tt.wantErr && errors.Is(err, s) && !containsErr(tt.also, s) {
					t.Errorf("File() also wraps %v: %v", s, err)
				}
			}
			if !strings.Contains(err.Error(), tt.wantAt) {
				t.Errorf("File() = %v\nwant it to name %s", err, tt.wantAt)
			}
		})
	}
}

func containsErr(list []error, e error) bool {
	for _, x := range list {
		if x == e {
			return true
		}
	}
	return false
}

// The http_service variant: Envoy asks tokentailor's HTTP listener.
func TestHTTPService(t *testing.T) {
	httpTT := validate.Tokentailor{HTTP: "127.0.0.1:9192", Routes: []string{"orders"}}
	tests := []struct {
		file    string
		tt      validate.Tokentailor
		wantErr error
		wantAt  string
	}{
		{file: "valid_http.yaml", tt: httpTT},
		{file: "valid_http.yaml", tt: validate.Tokentailor{HTTP: "127.0.0.1:9999"}, wantErr: validate.ErrAuthzCluster,
			wantAt: "static_resources.clusters[1].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address"},
		{file: "http_wrong_prefix.yaml", tt: httpTT, wantErr: validate.ErrAuthzSettings, wantAt: authz + ".http_service.path_prefix"},
		{file: "http_no_upstream_headers.yaml", tt: httpTT, wantErr: validate.ErrAuthzSettings,
			wantAt: authz + ".http_service.authorization_response.allowed_upstream_headers"},
		{file: "http_context_extensions.yaml", tt: httpTT, wantErr: validate.ErrIgnored,
			wantAt: route0 + perRoute + ".check_settings.context_extensions"},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			_, err := validate.File(read(t, tc.file), tc.tt)
			if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Fatalf("File() = %v, want %v", err, tc.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), tc.wantAt) {
				t.Errorf("File() = %v\nwant it to name %s", err, tc.wantAt)
			}
		})
	}
}

// ValidateAll alone misses a rule broken inside a typed_config; Deep finds it.
func TestDeepEntersAny(t *testing.T) {
	tests := []struct {
		file string
	}{
		{file: "empty_authz_cluster.yaml"},
		{file: "per_route_empty.yaml"},
		{file: "http2_zero_streams.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, err := validate.Parse(read(t, tt.file))
			if err != nil {
				t.Fatalf("Parse() = %v", err)
			}
			if err := b.ValidateAll(); err != nil {
				t.Fatalf("ValidateAll() = %v; the fixture should break a rule only inside an Any", err)
			}
			if err := validate.Deep(b); !errors.Is(err, validate.ErrInvalid) {
				t.Errorf("Deep() = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestRefsOptionalChecks(t *testing.T) {
	b, err := validate.Parse(read(t, "unknown_route.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		tt      validate.Tokentailor
		wantErr error
	}{
		{name: "routes nil skips route names", tt: validate.Tokentailor{Socket: "/run/tt.sock"}},
		{name: "no address skips the endpoint check", tt: validate.Tokentailor{Routes: []string{"order"}}},
		{name: "another context key finds no route name", tt: validate.Tokentailor{Socket: "/run/tt.sock", Routes: []string{}, ContextKey: "policy"}},
		{name: "TCP only: a socket endpoint is wrong", tt: validate.Tokentailor{GRPC: "127.0.0.1:9191", Routes: []string{"order"}}, wantErr: validate.ErrAuthzCluster},
		{name: "empty route list: every name is unknown", tt: validate.Tokentailor{Socket: "/run/tt.sock", Routes: []string{}}, wantErr: validate.ErrUnknownRoute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := validate.Refs(b, tt.tt)
			if tt.wantErr == nil && err != nil {
				t.Fatalf("Refs() = %v, want nil", err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("Refs() = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// FuzzFile: whatever the bytes, File neither panics nor fails without one
// of the sentinels, and returns a bootstrap exactly when it returns no error.
func FuzzFile(f *testing.F) {
	for _, dir := range []string{"testdata", ".."} {
		names, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
		if err != nil {
			f.Fatal(err)
		}
		for _, n := range names {
			b, err := os.ReadFile(n)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		b, err := validate.File(in, fixtureTT)
		if (b == nil) == (err == nil) {
			t.Fatalf("File() = %v, %v: want exactly one of bootstrap and error", b, err)
		}
		if err == nil {
			return
		}
		for _, s := range sentinels {
			if errors.Is(err, s) {
				return
			}
		}
		t.Fatalf("File() = %v wraps no sentinel", err)
	})
}
