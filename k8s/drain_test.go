package k8s

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/tokentailor/tokentailor/envoy"
	"github.com/tokentailor/tokentailor/envoy/validate"
	"github.com/tokentailor/tokentailor/extauthz/config"
	"github.com/tokentailor/tokentailor/k8s/inject"
)

// extAuthzTimeout is the longest ext_authz gRPC timeout of an Envoy bootstrap:
// how long after its last accepted request Envoy may still start waiting for
// a Check.
func extAuthzTimeout(t *testing.T, bootstrap []byte) time.Duration {
	t.Helper()
	b, err := validate.Parse(bootstrap)
	if err != nil {
		t.Fatal(err)
	}
	var longest time.Duration
	for _, l := range b.GetStaticResources().GetListeners() {
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				var hcm hcmv3.HttpConnectionManager
				if f.GetTypedConfig().UnmarshalTo(&hcm) != nil {
					continue
				}
				for _, hf := range hcm.GetHttpFilters() {
					var ea extauthzv3.ExtAuthz
					if hf.GetTypedConfig().UnmarshalTo(&ea) != nil {
						continue
					}
					longest = max(longest, ea.GetGrpcService().GetTimeout().AsDuration())
				}
			}
		}
	}
	if longest == 0 {
		t.Fatal("bootstrap has no ext_authz filter with a timeout")
	}
	return longest
}

func preStopSleep(c *corev1.Container) time.Duration {
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
		return 0
	}
	return time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
}

// TestDrainFitsInjectedPod: tokentailor answers Checks until Envoy cannot ask
// any more, and the pod's grace period lets both finish.
func TestDrainFitsInjectedPod(t *testing.T) {
	authzTimeout := extAuthzTimeout(t, envoy.Sidecar())
	proxyStop := time.Duration(inject.ProxyPreStopSeconds) * time.Second
	if proxyStop+authzTimeout > inject.TokentailorDrain {
		t.Errorf("Envoy's preStop %v + ext_authz timeout %v outlast tokentailor's drain %v: Checks would be refused while Envoy still serves",
			proxyStop, authzTimeout, inject.TokentailorDrain)
	}
	if proxyStop == 0 {
		t.Error("Envoy has no preStop: it stops before Services stop sending to the pod")
	}
	if inject.TokentailorShutdownGrace != config.DefaultShutdownGrace {
		t.Errorf("inject assumes listen.shutdown_grace %v, the config default is %v", inject.TokentailorShutdownGrace, config.DefaultShutdownGrace)
	}
	grace := time.Duration(inject.MinTerminationGracePeriodSeconds) * time.Second
	if need := max(proxyStop, inject.TokentailorDrain+inject.TokentailorShutdownGrace); grace <= need {
		t.Errorf("minimum terminationGracePeriodSeconds %v does not exceed the drain %v", grace, need)
	}
}

// TestDrainFitsManifests checks the same relations in the written-out
// Deployments: the sample app's sidecars and the webhook itself.
func TestDrainFitsManifests(t *testing.T) {
	deployment := func(path string) *appsv1.Deployment {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		d, ok := decodeStrict(t, path, data).(*appsv1.Deployment)
		if !ok {
			t.Fatalf("%s is not a Deployment", path)
		}
		return d
	}
	grace := func(d *appsv1.Deployment) time.Duration {
		g := d.Spec.Template.Spec.TerminationGracePeriodSeconds
		if g == nil {
			t.Fatalf("%s: terminationGracePeriodSeconds unset", d.Name)
		}
		return time.Duration(*g) * time.Second
	}
	containerNamed := func(d *appsv1.Deployment, name string) *corev1.Container {
		for i := range d.Spec.Template.Spec.Containers {
			if c := &d.Spec.Template.Spec.Containers[i]; c.Name == name {
				return c
			}
		}
		t.Fatalf("%s has no container %q", d.Name, name)
		return nil
	}

	app := deployment(filepath.Join("base", "sample-app", "deployment.yaml"))
	envoyYAML, err := os.ReadFile(filepath.Join("base", "sample-app", "envoy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	envoyStop := preStopSleep(containerNamed(app, "envoy"))
	if envoyStop == 0 {
		t.Error("sample app: Envoy has no preStop sleep")
	}
	if got := envoyStop + extAuthzTimeout(t, envoyYAML); got > inject.TokentailorDrain {
		t.Errorf("sample app: Envoy's preStop + ext_authz timeout = %v > tokentailor's drain %v", got, inject.TokentailorDrain)
	}
	if s := preStopSleep(containerNamed(app, "tokentailor")); s != 0 {
		t.Errorf("sample app: tokentailor's preStop %v delays its own drain past Envoy's", s)
	}
	if g, need := grace(app), max(envoyStop, inject.TokentailorDrain+config.DefaultShutdownGrace); g <= need {
		t.Errorf("sample app: terminationGracePeriodSeconds %v does not exceed the drain %v", g, need)
	}

	wh := deployment(filepath.Join("base", "webhook", "deployment.yaml"))
	whStop := preStopSleep(containerNamed(wh, "webhook"))
	if whStop == 0 {
		t.Error("webhook: no preStop sleep: with failurePolicy Fail, API server calls during its rollout fail")
	}
	if g := grace(wh); g <= whStop+inject.ShutdownGrace {
		t.Errorf("webhook: terminationGracePeriodSeconds %v does not exceed preStop %v + shutdown grace %v", g, whStop, inject.ShutdownGrace)
	}
}
