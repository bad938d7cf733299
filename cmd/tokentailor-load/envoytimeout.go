package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	envoyconfig "github.com/tokentailor/tokentailor/envoy"
	"github.com/tokentailor/tokentailor/envoy/validate"
)

// errNoExtAuthz is returned when a bootstrap has no ext_authz filter.
var errNoExtAuthz = errors.New("no ext_authz filter with a grpc_service")

// envoyTimeout returns the ext_authz timeout of an Envoy bootstrap: the
// first ext_authz HTTP filter's grpc_service.timeout, or Envoy's default of
// 200 ms when it is unset. path "" reads the embedded envoy/sidecar.yaml.
func envoyTimeout(path string) (time.Duration, string, error) {
	raw, name := envoyconfig.Sidecar(), "envoy/sidecar.yaml"
	if path != "" {
		var err error
		if raw, err = os.ReadFile(path); err != nil {
			return 0, "", err
		}
		name = path
	}
	b, err := validate.Parse(raw)
	if err != nil {
		return 0, "", fmt.Errorf("%s: %w", name, err)
	}
	for _, l := range b.GetStaticResources().GetListeners() {
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				hcm := &hcmv3.HttpConnectionManager{}
				if f.GetTypedConfig().UnmarshalTo(hcm) != nil {
					continue
				}
				for _, hf := range hcm.GetHttpFilters() {
					ea := &extauthzv3.ExtAuthz{}
					if hf.GetTypedConfig().UnmarshalTo(ea) != nil || ea.GetGrpcService() == nil {
						continue
					}
					if t := ea.GetGrpcService().GetTimeout(); t != nil {
						return t.AsDuration(), name, nil
					}
					return 200 * time.Millisecond, name, nil
				}
			}
		}
	}
	return 0, "", fmt.Errorf("%s: %w", name, errNoExtAuthz)
}
