package k8s

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	releasev1 "helm.sh/helm/v4/pkg/release/v1"
	releaseutil "helm.sh/helm/v4/pkg/release/v1/util"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/tokentailor/tokentailor/k8s/inject"
)

// chartDir is the Helm chart; see k8s/README.md, section "Helm".
const chartDir = "helm/tokentailor"

// kubeVersion is the Kubernetes release the chart is rendered for (that of
// the project's k8s.io modules).
const kubeVersion = "v1.37.2"

// errRender marks a chart that Helm refused to render (schema, template).
var errRender = errors.New("helm refused to render the chart")

// renderChart renders the chart exactly as `helm template` does (Helm's
// install action in client-only dry-run: values coalesced, checked against
// values.schema.json, templates rendered and sorted in install order) and
// returns each object's YAML.
func renderChart(t *testing.T, ch *chartv2.Chart, release, namespace string, values map[string]any) ([]string, error) {
	t.Helper()
	install := action.NewInstall(action.NewConfiguration())
	install.DryRunStrategy = action.DryRunClient
	install.ReleaseName = release
	install.Namespace = namespace
	install.Replace = true
	// As `helm template --kube-version`: Helm's built-in default (1.20) is
	// older than the chart's kubeVersion.
	kv, err := common.ParseKubeVersion(kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	install.KubeVersion = kv
	rel, err := install.Run(ch, values)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errRender, err)
	}
	r, ok := rel.(*releasev1.Release)
	if !ok {
		t.Fatalf("install returned %T, want *release.Release", rel)
	}
	if len(r.Hooks) != 0 {
		t.Fatalf("the chart has %d hooks; hooks escape these tests", len(r.Hooks))
	}
	docs := releaseutil.SplitManifests(r.Manifest)
	keys := slices.Sorted(maps.Keys(docs))
	var out []string
	for _, k := range keys {
		if strings.TrimSpace(docs[k]) != "" {
			out = append(out, docs[k])
		}
	}
	return out, nil
}

func loadChart(t *testing.T) *chartv2.Chart {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// certManagerCertificate mirrors the cert-manager.io/v1 Certificate fields
// the chart sets; decoding refuses any other field. (cert-manager's Go module
// is not a dependency of this project.)
type certManagerCertificate struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace"`
		Labels    map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		SecretName  string   `json:"secretName"`
		DNSNames    []string `json:"dnsNames"`
		Duration    string   `json:"duration"`
		RenewBefore string   `json:"renewBefore"`
		PrivateKey  struct {
			Algorithm      string `json:"algorithm"`
			Size           int    `json:"size"`
			RotationPolicy string `json:"rotationPolicy"`
		} `json:"privateKey"`
		IssuerRef struct {
			Name  string `json:"name"`
			Kind  string `json:"kind"`
			Group string `json:"group,omitempty"`
		} `json:"issuerRef"`
		SelfSigned *struct{} `json:"selfSigned"`
	} `json:"spec"`
}

// rendered is one chart rendering, decoded strictly.
type rendered struct {
	objects      map[string]runtime.Object // kind/namespace/name → object
	certificates map[string]certManagerCertificate
	issuers      []string
}

func objectKey(kind, namespace, name string) string { return kind + "/" + namespace + "/" + name }

// decodeRendered decodes every document strictly: Kubernetes kinds with the
// client-go scheme (unknown or duplicate fields fail), cert-manager's kinds
// into certManagerCertificate.
func decodeRendered(t *testing.T, docs []string) rendered {
	t.Helper()
	r := rendered{objects: map[string]runtime.Object{}, certificates: map[string]certManagerCertificate{}}
	for i, doc := range docs {
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name, Namespace string
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			t.Fatalf("document %d: %v\n%s", i, err, doc)
		}
		where := fmt.Sprintf("chart document %d (%s %s)", i, head.Kind, head.Metadata.Name)
		if head.APIVersion == "cert-manager.io/v1" {
			var c certManagerCertificate
			if err := yaml.UnmarshalStrict([]byte(doc), &c); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			switch head.Kind {
			case "Certificate":
				r.certificates[c.Metadata.Name] = c
			case "Issuer":
				if c.Spec.SelfSigned == nil {
					t.Fatalf("%s: an Issuer that is not selfSigned", where)
				}
				r.issuers = append(r.issuers, c.Metadata.Name)
			default:
				t.Fatalf("%s: unexpected cert-manager kind", where)
			}
			continue
		}
		obj := decodeStrict(t, where, []byte(doc))
		if d, ok := obj.(*appsv1.Deployment); ok {
			checkPodSpec(t, where, &d.Spec.Template.Spec)
		}
		r.objects[objectKey(head.Kind, head.Metadata.Namespace, head.Metadata.Name)] = obj
	}
	return r
}

func kustomizeObjects(t *testing.T, dir string) map[string]runtime.Object {
	t.Helper()
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]runtime.Object{}
	for _, r := range m.Resources() {
		doc, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		out[objectKey(r.GetKind(), r.GetNamespace(), r.GetName())] = decodeStrict(t, dir+": "+r.CurId().String(), doc)
	}
	return out
}

// plain turns a typed object into plain JSON values, with its metadata
// labels taken out and returned apart.
func plain(t *testing.T, obj runtime.Object) (map[string]any, map[string]any) {
	t.Helper()
	b, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	collapseCEL(m)
	var labels map[string]any
	if md, ok := m["metadata"].(map[string]any); ok {
		labels, _ = md["labels"].(map[string]any)
		delete(md, "labels")
	}
	return m, labels
}

// collapseCEL writes every CEL "expression" (matchConditions) with its runs
// of white space as one space: CEL ignores them, and kustomize's YAML reader
// and Helm's fold a ">-" block with more-indented lines differently.
func collapseCEL(v any) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && k == "expression" {
				v[k] = strings.Join(strings.Fields(s), " ")
				continue
			}
			collapseCEL(x)
		}
	case []any:
		for _, x := range v {
			collapseCEL(x)
		}
	}
}

// diffObjects compares a kustomize object with the chart's field by field;
// the chart may add labels to an object's metadata (Helm's conventional
// ones) but must keep every kustomize label.
func diffObjects(t *testing.T, kustomized, charted runtime.Object) string {
	t.Helper()
	want, wantLabels := plain(t, kustomized)
	got, gotLabels := plain(t, charted)
	var missing []string
	for k, v := range wantLabels {
		if gotLabels[k] != v {
			missing = append(missing, fmt.Sprintf("label %s=%v", k, v))
		}
	}
	slices.Sort(missing)
	return strings.Join(missing, "\n") + cmp.Diff(want, got)
}

// TestChartRendersWhatKustomizeRenders renders the chart with the values that
// match a kustomize root and requires every object of that root, field by
// field (webhook rules, failurePolicy, namespace and object selectors,
// sideEffects, timeouts, the injector's flags and env, the pod's security
// context, the PDB, the NetworkPolicy...), and nothing else but the objects
// the chart makes in place of a hand-made step.
func TestChartRendersWhatKustomizeRenders(t *testing.T) {
	ch := loadChart(t)
	tests := []struct {
		name      string
		kustomize string
		values    map[string]any
		// chartOnly are objects the chart adds for a step the kustomize
		// user does by hand (k8s/README.md, step 2).
		chartOnly []string
		// kustomizeOnly are objects Helm leaves to `helm install
		// --create-namespace` (the chart's README says how to label it).
		kustomizeOnly []string
	}{
		{
			name:          "defaults = overlays/production with cert-manager",
			kustomize:     "overlays/production",
			values:        nil,
			chartOnly:     []string{"Certificate tokentailor-webhook", "Issuer tokentailor-webhook-selfsigned"},
			kustomizeOnly: []string{objectKey("Namespace", "", "tokentailor-system")},
		},
		{
			name:      "existing Secret, no caBundle = base/webhook",
			kustomize: "base/webhook",
			values: map[string]any{
				"replicaCount": 1,
				"image":        map[string]any{"repository": "tokentailor", "tag": "latest"},
				"certManager":  map[string]any{"enabled": false},
				"tls":          map[string]any{"existingSecret": "tokentailor-webhook-tls"},
			},
			kustomizeOnly: []string{objectKey("Namespace", "", "tokentailor-system")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			docs, err := renderChart(t, ch, "tokentailor", "tokentailor-system", tt.values)
			if err != nil {
				t.Fatal(err)
			}
			got := decodeRendered(t, docs)
			want := kustomizeObjects(t, tt.kustomize)
			for key, w := range want {
				if slices.Contains(tt.kustomizeOnly, key) {
					continue
				}
				g, ok := got.objects[key]
				if !ok {
					t.Errorf("the chart lacks %s that %s installs: add it to %s/templates", key, tt.kustomize, chartDir)
					continue
				}
				if d := diffObjects(t, w, g); d != "" {
					t.Errorf("%s differs between %s (-) and the chart (+):\n%s", key, tt.kustomize, d)
				}
			}
			var extra []string
			for key := range got.objects {
				if _, ok := want[key]; !ok {
					extra = append(extra, key)
				}
			}
			for name := range got.certificates {
				extra = append(extra, "Certificate "+name)
			}
			for _, name := range got.issuers {
				extra = append(extra, "Issuer "+name)
			}
			slices.Sort(extra)
			if !slices.Equal(extra, tt.chartOnly) {
				t.Errorf("objects only the chart installs = %q, want %q", extra, tt.chartOnly)
			}
		})
	}
}

// webhookOf returns the MutatingWebhookConfiguration of a rendering.
func webhookOf(t *testing.T, r rendered) *admissionv1.MutatingWebhookConfiguration {
	t.Helper()
	var found *admissionv1.MutatingWebhookConfiguration
	for _, o := range r.objects {
		if w, ok := o.(*admissionv1.MutatingWebhookConfiguration); ok {
			if found != nil {
				t.Fatal("two MutatingWebhookConfigurations")
			}
			found = w
		}
	}
	if found == nil || len(found.Webhooks) != 1 {
		t.Fatalf("want one MutatingWebhookConfiguration with one webhook, got %+v", found)
	}
	return found
}

// guardOf returns the ValidatingWebhookConfiguration of a rendering.
func guardOf(t *testing.T, r rendered) *admissionv1.ValidatingWebhookConfiguration {
	t.Helper()
	for _, o := range r.objects {
		if w, ok := o.(*admissionv1.ValidatingWebhookConfiguration); ok && len(w.Webhooks) == 1 {
			return w
		}
	}
	t.Fatal("no ValidatingWebhookConfiguration with one webhook")
	return nil
}

func deploymentOf(t *testing.T, r rendered) *appsv1.Deployment {
	t.Helper()
	for _, o := range r.objects {
		if d, ok := o.(*appsv1.Deployment); ok {
			return d
		}
	}
	t.Fatal("no Deployment")
	return nil
}

// TestChartValueSets renders the chart with value sets the kustomize
// manifests have no counterpart for, and checks that each value arrives.
func TestChartValueSets(t *testing.T) {
	ch := loadChart(t)
	policy := mustRead(t, "overlays/dev/tokentailor.yaml")
	tests := []struct {
		name      string
		release   string
		namespace string
		values    map[string]any
		check     func(t *testing.T, r rendered)
	}{
		{
			name: "cert-manager off: Helm generates a CA and a serving certificate", release: "tokentailor", namespace: "tokentailor-system",
			values: map[string]any{"certManager": map[string]any{"enabled": false}},
			check: func(t *testing.T, r rendered) {
				w := webhookOf(t, r)
				if len(w.Annotations) != 0 {
					t.Errorf("annotations %v: no cert-manager CA injection without cert-manager", w.Annotations)
				}
				s, ok := r.objects[objectKey("Secret", "tokentailor-system", "tokentailor-webhook-tls")].(*corev1.Secret)
				if !ok || s.Type != corev1.SecretTypeTLS {
					t.Fatalf("no kubernetes.io/tls Secret tokentailor-webhook-tls: %v", r.objects)
				}
				if !slices.Equal(w.Webhooks[0].ClientConfig.CABundle, s.Data["ca.crt"]) ||
					!slices.Equal(guardOf(t, r).Webhooks[0].ClientConfig.CABundle, s.Data["ca.crt"]) {
					t.Fatal("a caBundle is not the generated CA")
				}
				verifyServing(t, s.Data["ca.crt"], s.Data["tls.crt"], "tokentailor-webhook.tokentailor-system.svc")
				if len(r.certificates) != 0 || len(r.issuers) != 0 {
					t.Error("cert-manager objects rendered with certManager.enabled false")
				}
			},
		},
		{
			name: "other release and namespace: every name and reference follows", release: "authz", namespace: "platform",
			values: map[string]any{"certManager": map[string]any{"issuerRef": map[string]any{"name": "corp-ca", "kind": "ClusterIssuer"}}},
			check: func(t *testing.T, r rendered) {
				w := webhookOf(t, r)
				if w.Name != "authz-tokentailor-sidecar-injector" {
					t.Errorf("webhook configuration %q", w.Name)
				}
				svc := w.Webhooks[0].ClientConfig.Service
				if svc == nil || svc.Name != "authz-tokentailor-webhook" || svc.Namespace != "platform" {
					t.Errorf("clientConfig.service %+v", svc)
				}
				if _, ok := r.objects[objectKey("Service", "platform", "authz-tokentailor-webhook")]; !ok {
					t.Error("the Service the webhook calls is not rendered")
				}
				g := guardOf(t, r)
				if g.Name != "authz-tokentailor-injection-guard" || g.Webhooks[0].ClientConfig.Service.Namespace != "platform" ||
					!slices.Contains(g.Webhooks[0].NamespaceSelector.MatchExpressions[0].Values, "platform") {
					t.Errorf("guard %s: %+v", g.Name, g.Webhooks[0])
				}
				for _, a := range []map[string]string{w.Annotations, g.Annotations} {
					if got := a["cert-manager.io/inject-ca-from"]; got != "platform/authz-tokentailor-webhook" {
						t.Errorf("inject-ca-from %q", got)
					}
				}
				var own bool
				for _, e := range w.Webhooks[0].NamespaceSelector.MatchExpressions {
					own = own || (e.Key == "kubernetes.io/metadata.name" && slices.Contains(e.Values, "platform"))
				}
				if !own {
					t.Error("the webhook's own namespace is not excluded from injection")
				}
				c, ok := r.certificates["authz-tokentailor-webhook"]
				if !ok || c.Spec.IssuerRef.Name != "corp-ca" || c.Spec.IssuerRef.Kind != "ClusterIssuer" ||
					!slices.Equal(c.Spec.DNSNames, []string{"authz-tokentailor-webhook.platform.svc"}) {
					t.Errorf("certificate %+v", c)
				}
				if len(r.issuers) != 0 {
					t.Errorf("a self-signed Issuer beside issuerRef: %v", r.issuers)
				}
				d := deploymentOf(t, r)
				if v := d.Spec.Template.Spec.Volumes[0].Secret.SecretName; v != c.Spec.SecretName {
					t.Errorf("the pod mounts %q, cert-manager writes %q", v, c.Spec.SecretName)
				}
			},
		},
		{
			name: "custom images, resources, injection defaults and a sample policy", release: "tokentailor", namespace: "tokentailor-system",
			values: map[string]any{
				"image":     map[string]any{"repository": "registry.example.com/tt", "tag": "v9.9.9", "pullPolicy": "Always"},
				"sidecars":  map[string]any{"envoyImage": "envoyproxy/envoy:distroless-v1.37.1", "configMap": "authz-policy", "signingKeySecret": "authz-key"},
				"resources": map[string]any{"requests": map[string]any{"cpu": "100m", "memory": "64Mi"}, "limits": map[string]any{"cpu": "1", "memory": "256Mi"}},
				"webhook":   map[string]any{"timeoutSeconds": 10},
				"policies":  []any{map[string]any{"namespace": "shop", "config": string(policy)}},
			},
			check: func(t *testing.T, r rendered) {
				c := deploymentOf(t, r).Spec.Template.Spec.Containers[0]
				if c.Image != "registry.example.com/tt:v9.9.9" || c.ImagePullPolicy != corev1.PullAlways {
					t.Errorf("image %s %s", c.Image, c.ImagePullPolicy)
				}
				for _, arg := range []string{"-tokentailor-image=registry.example.com/tt:v9.9.9", "-envoy-image=envoyproxy/envoy:distroless-v1.37.1",
					"-config-map=authz-policy", "-signing-key-secret=authz-key"} {
					if !slices.Contains(c.Args, arg) {
						t.Errorf("args %q lack %s", c.Args, arg)
					}
				}
				if c.Resources.Limits.Memory().String() != "256Mi" || c.Resources.Requests.Cpu().String() != "100m" {
					t.Errorf("resources %+v", c.Resources)
				}
				if got, guard := *webhookOf(t, r).Webhooks[0].TimeoutSeconds, *guardOf(t, r).Webhooks[0].TimeoutSeconds; got != 10 || guard != 10 {
					t.Errorf("timeoutSeconds %d and %d, want 10", got, guard)
				}
				cm, ok := r.objects[objectKey("ConfigMap", "shop", inject.DefaultConfigMap)].(*corev1.ConfigMap)
				if !ok {
					t.Fatal("no sample policy ConfigMap in shop")
				}
				checkTokentailorConfig(t, "policy ConfigMap", []byte(cm.Data[inject.ConfigKey]))
			},
		},
		{
			name: "PDB and NetworkPolicy off", release: "tokentailor", namespace: "tokentailor-system",
			values: map[string]any{"podDisruptionBudget": map[string]any{"enabled": false}, "networkPolicy": map[string]any{"enabled": false}},
			check: func(t *testing.T, r rendered) {
				for key := range r.objects {
					if strings.HasPrefix(key, "PodDisruptionBudget/") || strings.HasPrefix(key, "NetworkPolicy/") {
						t.Errorf("%s rendered although disabled", key)
					}
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			docs, err := renderChart(t, ch, tt.release, tt.namespace, tt.values)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, decodeRendered(t, docs))
		})
	}
}

// verifyServing checks that the serving certificate chains to the CA for the
// name the API server dials.
func verifyServing(t *testing.T, caPEM, certPEM []byte, dnsName string) {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.crt holds no PEM certificate")
	}
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatal("tls.crt holds no PEM block")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: dnsName, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Fatalf("serving certificate for %s: %v", dnsName, err)
	}
}

// TestChartSchemaRefusesBadValues feeds values.schema.json one mistake at a
// time; each must stop the rendering and name the offending value.
func TestChartSchemaRefusesBadValues(t *testing.T) {
	ch := loadChart(t)
	tests := []struct {
		name     string
		values   map[string]any
		wantPath string
	}{
		{name: "unknown top-level key", values: map[string]any{"replicas": 2}, wantPath: "replicas"},
		{name: "misspelt nested key", values: map[string]any{"image": map[string]any{"repository": "x", "tags": "v1"}}, wantPath: "tags"},
		{name: "no replica", values: map[string]any{"replicaCount": 0}, wantPath: "/replicaCount"},
		{name: "webhook timeout beyond the API server's 30s", values: map[string]any{"webhook": map[string]any{"timeoutSeconds": 31}}, wantPath: "/webhook/timeoutSeconds"},
		{name: "envoy image without tag", values: map[string]any{"sidecars": map[string]any{"envoyImage": "envoyproxy/envoy"}}, wantPath: "/sidecars/envoyImage"},
		{name: "bad pull policy", values: map[string]any{"image": map[string]any{"repository": "x", "pullPolicy": "Sometimes"}}, wantPath: "/image/pullPolicy"},
		{name: "cpu not a quantity", values: map[string]any{"resources": map[string]any{"requests": map[string]any{"cpu": "lots", "memory": "1Mi"}, "limits": map[string]any{"memory": "1Mi"}}}, wantPath: "/resources/requests"},
		{name: "no memory limit", values: map[string]any{"resources": map[string]any{"requests": map[string]any{"cpu": "1m", "memory": "1Mi"}, "limits": map[string]any{"memory": nil}}}, wantPath: "/resources/limits"},
		{name: "caBundle not base64 PEM", values: map[string]any{"tls": map[string]any{"caBundle": base64.StdEncoding.EncodeToString([]byte("not pem"))}}, wantPath: "/tls/caBundle"},
		{name: "policy without namespace", values: map[string]any{"policies": []any{map[string]any{"config": "listen: {}"}}}, wantPath: "/policies/0"},
		{name: "issuerRef kind without name", values: map[string]any{"certManager": map[string]any{"issuerRef": map[string]any{"kind": "ClusterIssuer"}}}, wantPath: "/certManager/issuerRef"},
		{name: "certManager.enabled as a string", values: map[string]any{"certManager": map[string]any{"enabled": "false"}}, wantPath: "/certManager/enabled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := renderChart(t, ch, "tokentailor", "tokentailor-system", tt.values)
			if !errors.Is(err, errRender) {
				t.Fatalf("rendered, want the schema to refuse it")
			}
			if !strings.Contains(err.Error(), "schema") || !strings.Contains(err.Error(), tt.wantPath) {
				t.Fatalf("error does not name %s: %v", tt.wantPath, err)
			}
		})
	}
}

// TestChartLint runs `helm lint`'s rules (Chart.yaml, values against the
// schema, templates rendered and parsed) and fails on any warning.
func TestChartLint(t *testing.T) {
	kv, err := common.ParseKubeVersion(kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	result := lint.RunAll(chartDir, nil, "tokentailor-system", lint.WithKubeVersion(kv))
	if len(result.Messages) == 0 && result.HighestSeverity != support.InfoSev {
		t.Fatalf("helm lint: severity %d without messages", result.HighestSeverity)
	}
	for _, m := range result.Messages {
		if m.Severity >= support.WarningSev {
			t.Errorf("helm lint: %s", m.Error())
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
