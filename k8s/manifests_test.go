package k8s

import (
	"bytes"
	"encoding/json"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/tokentailor/tokentailor/envoy"
	"github.com/tokentailor/tokentailor/envoy/validate"
	"github.com/tokentailor/tokentailor/extauthz/config"
	"github.com/tokentailor/tokentailor/k8s/inject"
)

var update = flag.Bool("update", false, "regenerate base/sample-app/envoy.yaml and overlays/gateway/envoy-gateway.yaml from envoy/")

// kustomizations are every kustomize root under k8s/.
var kustomizations = []string{"base/webhook", "base/sample-app", "overlays/dev", "overlays/production"}

const generatedHeader = "# GENERATED from envoy/sidecar.yaml by `go test ./k8s -run TestSampleEnvoyConfigIsGenerated -update`. DO NOT EDIT.\n"

var strict = kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme.Scheme, scheme.Scheme,
	kjson.SerializerOptions{Yaml: true, Strict: true})

// decodeStrict decodes one Kubernetes object, failing on unknown or
// duplicate fields and unknown kinds.
func decodeStrict(t *testing.T, where string, doc []byte) runtime.Object {
	t.Helper()
	obj, _, err := strict.Decode(doc, nil, nil)
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	return obj
}

func TestSampleEnvoyConfigIsGenerated(t *testing.T) {
	want, err := inject.RenderEnvoy(envoy.Sidecar(), envoy.AppPort)
	if err != nil {
		t.Fatal(err)
	}
	want = append([]byte(generatedHeader), want...)
	checkGenerated(t, filepath.Join("base", "sample-app", "envoy.yaml"), want, "envoy/sidecar.yaml")
}

// checkGenerated fails when the file at path is not want (generated from
// source); with -update it writes want there first.
func checkGenerated(t *testing.T, path string, want []byte, source string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs from %s: run go test ./k8s -run %s -update", path, source, t.Name())
	}
}

// TestEveryYAMLFile decodes every YAML file under k8s/ on its own, by what it is.
func TestEveryYAMLFile(t *testing.T) {
	n := 0
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && (path == "helm" || path == "istio" || path == gatewayDir) {
			return fs.SkipDir // templates, Istio kinds, the gateway overlay: helm_test.go, istio_test.go, gateway_test.go
		}
		if err != nil || d.IsDir() || !(strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			return err
		}
		if strings.Contains(path, "testdata") {
			return nil
		}
		n++
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		switch base := filepath.Base(path); {
		case base == "kustomization.yaml":
			var k types.Kustomization
			if err := yaml.UnmarshalStrict(data, &k); err != nil {
				t.Errorf("%s: %v", path, err)
			}
		case base == "envoy.yaml":
			if _, err := validate.File(data, validate.Tokentailor{Socket: envoy.AuthzSocket}); err != nil {
				t.Errorf("%s: %v", path, err)
			}
		case base == "tokentailor.yaml":
			checkTokentailorConfig(t, path, data)
		default:
			for i, doc := range bytes.Split(data, []byte("\n---\n")) {
				decodeStrict(t, path+" document "+string(rune('0'+i)), doc)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 15 {
		t.Fatalf("found %d YAML files, expected the whole tree", n)
	}
}

// checkTokentailorConfig loads a tokentailor config strictly and checks it
// fits the pod: the socket Envoy dials, an admin the kubelet can probe, keys
// where the Secret is mounted.
func checkTokentailorConfig(t *testing.T, where string, data []byte) {
	t.Helper()
	c, err := config.Parse(data, "/etc/tokentailor/config")
	if err != nil {
		t.Errorf("%s: %v", where, err)
		return
	}
	if c.Listen.Socket != envoy.AuthzSocket {
		t.Errorf("%s: listen.socket = %q, Envoy dials %q", where, c.Listen.Socket, envoy.AuthzSocket)
	}
	if c.Listen.Admin != "0.0.0.0:9090" {
		t.Errorf("%s: listen.admin = %q, want 0.0.0.0:9090 for probes and the JWKS Service", where, c.Listen.Admin)
	}
	for _, k := range c.Mint.Keys {
		if !strings.HasPrefix(k.File, "/etc/tokentailor/keys/") {
			t.Errorf("%s: key file %q is outside the Secret mount", where, k.File)
		}
	}
}

func TestKustomizeBuilds(t *testing.T) {
	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
			m, err := k.Run(filesys.MakeFsOnDisk(), dir)
			if err != nil {
				t.Fatal(err)
			}
			if m.Size() == 0 {
				t.Fatal("empty build")
			}
			for _, r := range m.Resources() {
				doc, err := r.AsYAML()
				if err != nil {
					t.Fatal(err)
				}
				where := dir + ": " + r.CurId().String()
				obj := decodeStrict(t, where, doc)
				switch o := obj.(type) {
				case *appsv1.Deployment:
					checkPodSpec(t, where, &o.Spec.Template.Spec)
				case *corev1.ConfigMap:
					if c, ok := o.Data[inject.ConfigKey]; ok {
						checkTokentailorConfig(t, where, []byte(c))
					}
					if c, ok := o.Data["envoy.yaml"]; ok {
						if _, err := validate.File([]byte(c), validate.Tokentailor{Socket: envoy.AuthzSocket}); err != nil {
							t.Errorf("%s: %v", where, err)
						}
					}
				case *corev1.Service:
					for _, p := range o.Spec.Ports {
						if slices.Contains([]string{"app", "3000"}, p.TargetPort.String()) {
							t.Errorf("%s: Service targets the app's port, bypassing the sidecar", where)
						}
					}
				}
			}
		})
	}
}

// checkPodSpec holds every container to the security baseline.
func checkPodSpec(t *testing.T, where string, spec *corev1.PodSpec) {
	t.Helper()
	for _, c := range spec.Containers {
		sc := c.SecurityContext
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) ||
			sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			got, _ := json.Marshal(sc)
			t.Errorf("%s: container %s security context %s: want no privilege escalation, drop ALL, read-only root", where, c.Name, got)
		}
		nonRoot := (sc != nil && sc.RunAsNonRoot != nil && *sc.RunAsNonRoot) ||
			(spec.SecurityContext != nil && spec.SecurityContext.RunAsNonRoot != nil && *spec.SecurityContext.RunAsNonRoot)
		if !nonRoot {
			t.Errorf("%s: container %s may run as root", where, c.Name)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s: container %s lacks requests/limits", where, c.Name)
		}
		if c.ReadinessProbe == nil && c.Name != "app" {
			t.Errorf("%s: container %s has no readiness probe", where, c.Name)
		}
	}
}
