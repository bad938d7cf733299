package k8s

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/tokentailor/tokentailor/envoy"
	"github.com/tokentailor/tokentailor/envoy/validate"
	"github.com/tokentailor/tokentailor/extauthz/config"
)

// gatewayDir is the gateway overlay: tokentailor replicas behind the gateway
// Envoys of envoy/gateway.yaml, sharing Redis. See k8s/README.md, "Gateway".
var gatewayDir = filepath.Join("overlays", "gateway")

// The gateway Envoy reaches tokentailor through the overlay's headless
// Service; these are the handles gateway_test.go and the generated bootstrap
// agree on.
const (
	gatewayNamespace = "tokentailor"
	gatewayService   = "tokentailor-gateway"
	// gatewayHealthInterval and gatewayHealthTimeout are the Envoy active
	// gRPC health check of the tokentailor cluster: a draining replica says
	// NOT_SERVING and is out of rotation within interval + timeout.
	gatewayHealthInterval = time.Second
	gatewayHealthTimeout  = 500 * time.Millisecond
	// gatewayDNSRefresh is how often the Envoys re-resolve the Service.
	gatewayDNSRefresh = 2 * time.Second
)

const gatewayGeneratedHeader = "# GENERATED from envoy/gateway.yaml by `go test ./k8s -run TestGatewayEnvoyIsGenerated -update`. DO NOT EDIT.\n" +
	"# The tokentailor cluster resolves the overlay's headless Service (every ready replica)\n" +
	"# and health-checks each replica over gRPC, so a draining one leaves at once.\n"

// gatewayAuthzAddr is host:port of the headless Service, as the Envoys dial it.
func gatewayAuthzAddr() string {
	_, port, _ := net.SplitHostPort(envoy.AuthzTCPAddr)
	return net.JoinHostPort(gatewayService+"."+gatewayNamespace+".svc.cluster.local", port)
}

// renderGatewayEnvoy turns envoy/gateway.yaml into the bootstrap for
// Kubernetes: its tokentailor cluster, STATIC on 127.0.0.1, becomes
// STRICT_DNS on the headless Service with an active gRPC health check.
func renderGatewayEnvoy(template []byte) ([]byte, error) {
	var root map[string]any
	if err := yaml.Unmarshal(template, &root); err != nil {
		return nil, err
	}
	sr, _ := root["static_resources"].(map[string]any)
	clusters, _ := sr["clusters"].([]any)
	found := 0
	for _, c := range clusters {
		m, ok := c.(map[string]any)
		if !ok || m["name"] != envoy.AuthzCluster {
			continue
		}
		found++
		host, port, _ := net.SplitHostPort(gatewayAuthzAddr())
		p, _ := strconv.Atoi(port)
		m["type"] = "STRICT_DNS"
		m["dns_lookup_family"] = "V4_PREFERRED"
		m["dns_refresh_rate"] = protoDuration(gatewayDNSRefresh)
		m["load_assignment"] = map[string]any{
			"cluster_name": envoy.AuthzCluster,
			"endpoints": []any{map[string]any{"lb_endpoints": []any{map[string]any{"endpoint": map[string]any{
				"address": map[string]any{"socket_address": map[string]any{"address": host, "port_value": p}},
			}}}}},
		}
		m["health_checks"] = []any{map[string]any{
			"timeout":             protoDuration(gatewayHealthTimeout),
			"interval":            protoDuration(gatewayHealthInterval),
			"unhealthy_threshold": 1,
			"healthy_threshold":   1,
			"grpc_health_check":   map[string]any{},
		}}
	}
	if found != 1 {
		return nil, fmt.Errorf("envoy/gateway.yaml: %d clusters named %q, want 1", found, envoy.AuthzCluster)
	}
	out, err := yaml.Marshal(root)
	if err != nil {
		return nil, err
	}
	return append([]byte(gatewayGeneratedHeader), out...), nil
}

// protoDuration writes d as protobuf JSON does ("0.5s").
func protoDuration(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s"
}

func TestGatewayEnvoyIsGenerated(t *testing.T) {
	want, err := renderGatewayEnvoy(envoy.Gateway())
	if err != nil {
		t.Fatal(err)
	}
	checkGenerated(t, filepath.Join(gatewayDir, "envoy-gateway.yaml"), want, "envoy/gateway.yaml")
}

// gatewayBuild is the overlay built by kustomize, decoded strictly.
type gatewayBuild struct {
	deployments []*appsv1.Deployment
	services    []*corev1.Service
	pdbs        []*policyv1.PodDisruptionBudget
	configMaps  map[string]*corev1.ConfigMap
}

func buildGateway(t *testing.T) gatewayBuild {
	t.Helper()
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), gatewayDir)
	if err != nil {
		t.Fatal(err)
	}
	b := gatewayBuild{configMaps: map[string]*corev1.ConfigMap{}}
	for _, r := range m.Resources() {
		doc, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		where := gatewayDir + ": " + r.CurId().String()
		switch o := decodeStrict(t, where, doc).(type) {
		case *appsv1.Deployment:
			checkPodSpec(t, where, &o.Spec.Template.Spec)
			b.deployments = append(b.deployments, o)
		case *corev1.Service:
			b.services = append(b.services, o)
		case *policyv1.PodDisruptionBudget:
			b.pdbs = append(b.pdbs, o)
		case *corev1.ConfigMap:
			b.configMaps[o.Name] = o
		case *corev1.Namespace:
		default:
			t.Errorf("%s: unexpected kind %T", where, o)
		}
	}
	if len(b.deployments) != 1 || len(b.pdbs) != 1 {
		t.Fatalf("want one Deployment and one PodDisruptionBudget, got %d and %d", len(b.deployments), len(b.pdbs))
	}
	return b
}

// generated returns the ConfigMap kustomize generated as name (with its
// content hash appended).
func (b gatewayBuild) generated(t *testing.T, name string) *corev1.ConfigMap {
	t.Helper()
	for n, cm := range b.configMaps {
		if n == name || (strings.HasPrefix(n, name+"-") && !strings.Contains(n[len(name)+1:], "-")) {
			return cm
		}
	}
	t.Fatalf("no ConfigMap %s in the build", name)
	return nil
}

// TestGatewayOverlay checks that the overlay's objects hold together: the
// replicas and their budget, the Services and the ports they reach, the
// config every replica loads (valid, and every file it reads mounted), the
// Envoy bootstrap that reaches them, and the drain relations.
func TestGatewayOverlay(t *testing.T) {
	b := buildGateway(t)
	d := b.deployments[0]
	pod := &d.Spec.Template.Spec
	podLabels := labels.Set(d.Spec.Template.Labels)
	if d.Namespace != gatewayNamespace {
		t.Errorf("Deployment in namespace %q, the Envoy bootstrap dials %q", d.Namespace, gatewayNamespace)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		t.Fatalf("replicas unset or below 2: want at least 2")
	}
	replicas := int(*d.Spec.Replicas)

	t.Run("disruption budget", func(t *testing.T) {
		p := b.pdbs[0]
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err != nil || !sel.Matches(podLabels) {
			t.Fatalf("PodDisruptionBudget selector %v does not select the Deployment's pods (%v)", p.Spec.Selector, err)
		}
		if p.Spec.MaxUnavailable == nil || p.Spec.MaxUnavailable.IntValue() < 1 || p.Spec.MaxUnavailable.IntValue() >= replicas {
			t.Errorf("maxUnavailable %v: want at least 1 (drains can proceed) and fewer than the %d replicas", p.Spec.MaxUnavailable, replicas)
		}
		if ru := d.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
			t.Error("rolling update may take replicas down before new ones are ready: want maxUnavailable 0")
		}
	})

	c := &pod.Containers[0]
	cmData := b.generated(t, "tokentailor-gateway-config")
	cfg, err := config.Parse([]byte(cmData.Data["config.yaml"]), "/etc/tokentailor/config")
	if err != nil {
		t.Fatalf("config.yaml: %v", err)
	}
	containerPort := func(name string) int32 {
		for _, p := range c.Ports {
			if p.Name == name {
				return p.ContainerPort
			}
		}
		t.Fatalf("container has no port %q", name)
		return 0
	}
	listenPort := func(field, addr string) int32 {
		_, p, err := net.SplitHostPort(addr)
		n, err2 := strconv.Atoi(p)
		if err != nil || err2 != nil {
			t.Fatalf("%s %q is not host:port", field, addr)
		}
		return int32(n)
	}

	t.Run("ports and probes", func(t *testing.T) {
		if got, want := listenPort("listen.grpc", cfg.Listen.GRPC), containerPort("grpc"); got != want {
			t.Errorf("listen.grpc port %d, container port grpc %d", got, want)
		}
		if got, want := listenPort("listen.admin", cfg.Listen.Admin), containerPort("admin"); got != want {
			t.Errorf("listen.admin port %d, container port admin %d", got, want)
		}
		for name, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
			if p == nil || p.HTTPGet == nil || p.HTTPGet.Port.String() != "admin" {
				t.Errorf("%s probe must GET the admin port", name)
			}
		}
		if c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe.HTTPGet.Path != "/healthz" {
			t.Errorf("probes %s and %s, want /readyz and /healthz", c.ReadinessProbe.HTTPGet.Path, c.LivenessProbe.HTTPGet.Path)
		}
	})

	t.Run("services", func(t *testing.T) {
		var headless *corev1.Service
		for _, s := range b.services {
			if !labels.SelectorFromSet(s.Spec.Selector).Matches(podLabels) || len(s.Spec.Selector) == 0 {
				t.Errorf("Service %s does not select the Deployment's pods", s.Name)
			}
			for _, p := range s.Spec.Ports {
				if p.TargetPort.Type != intstr.String || (p.TargetPort.StrVal != "grpc" && p.TargetPort.StrVal != "admin") {
					t.Errorf("Service %s port %s targets %s, want the named port grpc or admin", s.Name, p.Name, p.TargetPort.String())
				}
			}
			if s.Name == gatewayService {
				headless = s
			}
		}
		if headless == nil {
			t.Fatalf("no Service %s", gatewayService)
		}
		if headless.Spec.ClusterIP != corev1.ClusterIPNone {
			t.Error("the gRPC Service must be headless: Envoy's STRICT_DNS cluster balances per request over every replica")
		}
		_, port, _ := net.SplitHostPort(gatewayAuthzAddr())
		if len(headless.Spec.Ports) != 1 || strconv.Itoa(int(headless.Spec.Ports[0].Port)) != port ||
			headless.Spec.Ports[0].TargetPort.StrVal != "grpc" {
			t.Errorf("Service %s ports %v: want %s → grpc", gatewayService, headless.Spec.Ports, port)
		}
		if _, want, _ := net.SplitHostPort(envoy.AuthzTCPAddr); port != want {
			t.Errorf("Service port %s, envoy/gateway.yaml dials %s", port, want)
		}
	})

	t.Run("files and secrets", func(t *testing.T) {
		files := cfg.Files()
		if cfg.SharedCache == nil || cfg.SharedCache.Password == nil || cfg.SharedCache.Password.File == "" || cfg.SharedCache.KeySecret.File == "" {
			t.Fatal("the gateway config must carry shared_cache with its password and key_secret from files")
		}
		files = append(files, "/etc/tokentailor/config/config.yaml")
		readme, err := os.ReadFile("README.md")
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			vol, rel := mountedVolume(pod, c, f)
			if vol == nil {
				t.Errorf("%s is read by tokentailor but no volume is mounted there", f)
				continue
			}
			switch {
			case vol.ConfigMap != nil:
				cm, ok := b.configMaps[vol.ConfigMap.Name]
				if !ok {
					t.Errorf("%s: volume %s names ConfigMap %s, not in the build", f, vol.Name, vol.ConfigMap.Name)
				} else if _, ok := cm.Data[rel]; !ok {
					t.Errorf("%s: ConfigMap %s has no key %s", f, cm.Name, rel)
				}
			case vol.Secret != nil:
				if !slices.ContainsFunc(vol.Secret.Items, func(k corev1.KeyToPath) bool { return k.Path == rel }) {
					t.Errorf("%s: Secret volume %s lists no item with path %s", f, vol.Name, rel)
				}
				// The Secret is created by hand: README must say how, with the key the volume reads.
				for _, it := range vol.Secret.Items {
					re := regexp.MustCompile(`create secret generic ` + regexp.QuoteMeta(vol.Secret.SecretName) + ` [^\n]*--from-(file|literal)=` + regexp.QuoteMeta(it.Key) + `=`)
					if !re.Match(readme) {
						t.Errorf("k8s/README.md does not show how to create Secret %s with key %s", vol.Secret.SecretName, it.Key)
					}
				}
			default:
				t.Errorf("%s: volume %s is neither a ConfigMap nor a Secret", f, vol.Name)
			}
		}
	})

	t.Run("envoy bootstrap", func(t *testing.T) {
		cm := b.generated(t, "tokentailor-gateway-envoy")
		routes := make([]string, 0, len(cfg.Routes))
		for _, r := range cfg.Routes {
			routes = append(routes, r.Name)
		}
		if _, err := validate.File([]byte(cm.Data["envoy.yaml"]), validate.Tokentailor{GRPC: gatewayAuthzAddr(), Routes: routes}); err != nil {
			t.Error(err)
		}
	})

	t.Run("drain", func(t *testing.T) {
		drain, grace := cfg.Listen.Drain.Duration, cfg.Listen.ShutdownGrace.Duration
		authzTimeout := extAuthzTimeout(t, []byte(b.generated(t, "tokentailor-gateway-envoy").Data["envoy.yaml"]))
		// The Envoys stop sending new Checks to a draining replica (health
		// NOT_SERVING) before it stops accepting them.
		if out := gatewayHealthInterval + gatewayHealthTimeout; out >= drain {
			t.Errorf("Envoy needs %v to see a replica drain, longer than listen.drain %v", out, drain)
		}
		if p := c.ReadinessProbe; time.Duration(p.PeriodSeconds*p.FailureThreshold)*time.Second >= drain {
			t.Errorf("readiness probe takes %ds to see the drain, longer than listen.drain %v", p.PeriodSeconds*p.FailureThreshold, drain)
		}
		// A Check accepted in the last instant of the drain runs to its ext_authz timeout.
		if authzTimeout > grace {
			t.Errorf("Envoy's ext_authz timeout %v exceeds listen.shutdown_grace %v", authzTimeout, grace)
		}
		g := pod.TerminationGracePeriodSeconds
		if g == nil || time.Duration(*g)*time.Second <= drain+grace {
			t.Errorf("terminationGracePeriodSeconds unset or not above listen.drain + shutdown_grace %v", drain+grace)
		}
		if preStopSleep(c) != 0 {
			t.Error("tokentailor needs no preStop sleep: its drain keeps answering while Envoys move away")
		}
	})
}

// mountedVolume finds the volume mounted over file in container c, and the
// file's path inside it.
func mountedVolume(pod *corev1.PodSpec, c *corev1.Container, file string) (*corev1.Volume, string) {
	for _, m := range c.VolumeMounts {
		rel, ok := strings.CutPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/")
		if !ok {
			continue
		}
		for i := range pod.Volumes {
			if pod.Volumes[i].Name == m.Name {
				return &pod.Volumes[i], rel
			}
		}
	}
	return nil, ""
}
