package authzfilter

import (
	"errors"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tokentailor/tokentailor/envoy"
	"github.com/tokentailor/tokentailor/envoy/validate"
)

func TestLoadSidecar(t *testing.T) {
	s, err := Load(envoy.Sidecar(), envoy.InboundListener)
	if err != nil {
		t.Fatal(err)
	}
	f := s.Filter
	if f.Name != "envoy.filters.http.ext_authz" || f.Cluster != envoy.AuthzCluster || f.Timeout != time.Second ||
		f.StatusOnError != 503 || f.FailureModeAllow || !f.ValidateMutations || f.MaxRequestHeadersKB != 60 {
		t.Errorf("filter = %+v", f)
	}
	if got, want := s.Clusters[envoy.AuthzCluster], (Endpoint{Network: "unix", Address: envoy.AuthzSocket}); got != want {
		t.Errorf("authz endpoint = %+v, want %+v", got, want)
	}
	if got := s.Clusters[envoy.AppCluster].Address; got != "127.0.0.1:3000" {
		t.Errorf("app endpoint = %q", got)
	}
	if !s.NormalizePath || !s.MergeSlashes || !s.UseRemoteAddress {
		t.Errorf("hcm flags = %v %v %v", s.NormalizePath, s.MergeSlashes, s.UseRemoteAddress)
	}
	tests := []struct {
		name         string
		method, path string
		wantRoute    string
		wantCluster  string
		wantStatus   int
		wantDisabled bool
		wantExt      map[string]string
	}{
		{name: "health endpoint unchecked", method: "GET", path: "/healthz", wantRoute: "healthz", wantCluster: "app", wantDisabled: true, wantExt: map[string]string{}},
		{name: "read", method: "GET", path: "/orders/7?x=1", wantRoute: "orders-read", wantCluster: "app", wantExt: map[string]string{"route": "orders-read"}},
		{name: "head is a read", method: "HEAD", path: "/orders", wantRoute: "orders-read", wantCluster: "app", wantExt: map[string]string{"route": "orders-read"}},
		{name: "write", method: "DELETE", path: "/orders/7", wantRoute: "orders-write", wantCluster: "app", wantExt: map[string]string{"route": "orders-write"}},
		{name: "regex is a full match", method: "GETX", path: "/orders", wantRoute: "not-found", wantStatus: 404, wantDisabled: true, wantExt: map[string]string{}},
		{name: "segment boundary", method: "GET", path: "/ordersx", wantRoute: "not-found", wantStatus: 404, wantDisabled: true, wantExt: map[string]string{}},
		{name: "docs", method: "GET", path: "/docs/a", wantRoute: "docs", wantCluster: "app", wantExt: map[string]string{"route": "docs"}},
		{name: "healthz is an exact path", method: "GET", path: "/healthz/x", wantRoute: "not-found", wantStatus: 404, wantDisabled: true, wantExt: map[string]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, ok := s.Match(tt.method, "app.example.com:8080", tt.path, http.Header{})
			if !ok {
				t.Fatal("no route")
			}
			if r.Name != tt.wantRoute || r.Cluster != tt.wantCluster || r.DirectStatus != tt.wantStatus || r.Disabled != tt.wantDisabled {
				t.Errorf("route = %+v", r)
			}
			if d := cmp.Diff(tt.wantExt, r.ContextExtensions); d != "" {
				t.Errorf("context extensions (-want +got):\n%s", d)
			}
		})
	}
}

func TestLoadGateway(t *testing.T) {
	s, err := Load(envoy.Gateway(), envoy.InboundListener)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"orders", "billing", "profile"} {
		r, ok := s.Match("GET", "edge", "/"+name+"/1", nil)
		if !ok || r.Cluster != name || r.ContextExtensions["route"] != name || r.Disabled {
			t.Errorf("%s: route = %+v, %v", name, r, ok)
		}
	}
	if got := s.Clusters[envoy.AuthzCluster]; got.GRPCTarget() != envoy.AuthzTCPAddr {
		t.Errorf("authz target = %q", got.GRPCTarget())
	}
}

func TestLoadErrors(t *testing.T) {
	perRoute, err := os.ReadFile("testdata/vhost_per_route.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		yaml     []byte
		listener string
		wantErr  error
	}{
		{name: "unknown listener", yaml: envoy.Sidecar(), listener: "nope", wantErr: ErrConfig},
		{name: "listener without ext_authz", yaml: envoy.Sidecar(), listener: envoy.ReadyListener, wantErr: ErrConfig},
		{name: "not a bootstrap", yaml: []byte("admin: [1"), listener: "inbound", wantErr: validate.ErrSyntax},
		{name: "virtual host and route configs merge", yaml: perRoute, listener: "inbound"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(tt.yaml, tt.listener)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Errorf("Load err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestPerRouteMerge(t *testing.T) {
	y, err := os.ReadFile("testdata/vhost_per_route.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, err := Load(y, "inbound")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, host, path string
		wantVH           string
		wantExt          map[string]string
		wantDisabled     bool
	}{
		{name: "route overrides the vhost per key", host: "api.example.com", path: "/a", wantVH: "api",
			wantExt: map[string]string{"route": "a", "tenant": "t1"}},
		{name: "vhost only", host: "api.example.com", path: "/b", wantVH: "api",
			wantExt: map[string]string{"route": "vh", "tenant": "t1"}},
		{name: "route disables", host: "api.example.com", path: "/off", wantVH: "api", wantDisabled: true,
			wantExt: map[string]string{"route": "vh", "tenant": "t1"}},
		{name: "suffix wildcard beats catch-all", host: "x.internal", path: "/a", wantVH: "internal",
			wantExt: map[string]string{}},
		{name: "header match", host: "other", path: "/h", wantVH: "any", wantExt: map[string]string{"route": "h"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{"X-Flag": {"on"}}
			r, ok := s.Match("GET", tt.host, tt.path, h)
			if !ok {
				t.Fatal("no route")
			}
			if vh := s.virtualHost(tt.host); vh.Name != tt.wantVH {
				t.Errorf("virtual host = %q, want %q", vh.Name, tt.wantVH)
			}
			if r.Disabled != tt.wantDisabled {
				t.Errorf("disabled = %v", r.Disabled)
			}
			if d := cmp.Diff(tt.wantExt, r.ContextExtensions); d != "" {
				t.Errorf("context extensions (-want +got):\n%s", d)
			}
		})
	}
	if _, ok := s.Match("GET", "other", "/h", http.Header{}); ok {
		t.Error("header-matched route matched without the header")
	}
}
