package inject

import (
	"fmt"

	"sigs.k8s.io/yaml"

	"github.com/tokentailor/tokentailor/envoy"
)

// RenderEnvoy returns the Envoy bootstrap template (envoy/sidecar.yaml, or
// another bootstrap of the same shape) with every endpoint of the cluster
// envoy.AppCluster sent to port appPort. The template is parsed into a
// generic tree and only that port is changed, so the injected config and the
// file a user copies cannot drift apart. It fails when the template has no such
// cluster or the cluster has no socket_address endpoint.
func RenderEnvoy(template []byte, appPort int32) ([]byte, error) {
	if appPort < 1 || appPort > 65535 {
		return nil, fmt.Errorf("app port %d out of range 1-65535", appPort)
	}
	var root map[string]any
	if err := yaml.Unmarshal(template, &root); err != nil {
		return nil, fmt.Errorf("envoy template: %w", err)
	}
	sr, _ := root["static_resources"].(map[string]any)
	clusters, _ := sr["clusters"].([]any)
	var app map[string]any
	for _, c := range clusters {
		if m, ok := c.(map[string]any); ok && m["name"] == envoy.AppCluster {
			if app != nil {
				return nil, fmt.Errorf("envoy template: cluster %q defined twice", envoy.AppCluster)
			}
			app = m
		}
	}
	if app == nil {
		return nil, fmt.Errorf("envoy template: static_resources.clusters has no cluster %q", envoy.AppCluster)
	}
	la, _ := app["load_assignment"].(map[string]any)
	endpoints, _ := la["endpoints"].([]any)
	changed := 0
	for _, e := range endpoints {
		em, _ := e.(map[string]any)
		lbs, _ := em["lb_endpoints"].([]any)
		for _, lb := range lbs {
			lbm, _ := lb.(map[string]any)
			ep, _ := lbm["endpoint"].(map[string]any)
			addr, _ := ep["address"].(map[string]any)
			sa, ok := addr["socket_address"].(map[string]any)
			if !ok {
				continue
			}
			sa["port_value"] = appPort
			changed++
		}
	}
	if changed == 0 {
		return nil, fmt.Errorf("envoy template: cluster %q has no socket_address endpoint to point at the app", envoy.AppCluster)
	}
	out, err := yaml.Marshal(root)
	if err != nil {
		return nil, fmt.Errorf("envoy template: %w", err)
	}
	return out, nil
}
