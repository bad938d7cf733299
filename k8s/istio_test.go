package k8s

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	securityv1beta1 "istio.io/api/security/v1beta1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/tokentailor/tokentailor/extauthz/config"
)

// istioDir is the Istio example; see k8s/README.md, section "Istio".
const istioDir = "istio"

// errIstio marks an Istio example that is malformed or inconsistent.
var errIstio = errors.New("istio example")

// strictJSON decodes JSON into v, refusing unknown fields.
func strictJSON(data []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

// istioObject is a Kubernetes object whose spec is an istio.io/api message.
type istioObject struct {
	APIVersion string          `json:"apiVersion"`
	Kind       string          `json:"kind"`
	Metadata   json.RawMessage `json:"metadata"`
	Spec       json.RawMessage `json:"spec"`
}

// decodeMeshConfig reads meshconfig.yaml (an IstioOperator) and decodes
// spec.meshConfig strictly into Istio's MeshConfig: unknown fields, bad enums
// and bad durations fail.
func decodeMeshConfig(data []byte) (*meshv1alpha1.MeshConfig, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("%w: meshconfig: %w", errIstio, err)
	}
	var op istioObject
	if err := strictJSON(js, &op); err != nil {
		return nil, fmt.Errorf("%w: meshconfig: %w", errIstio, err)
	}
	if op.APIVersion != "install.istio.io/v1alpha1" || op.Kind != "IstioOperator" {
		return nil, fmt.Errorf("%w: meshconfig: %s %s, want an install.istio.io/v1alpha1 IstioOperator", errIstio, op.APIVersion, op.Kind)
	}
	var spec struct {
		MeshConfig json.RawMessage `json:"meshConfig"`
	}
	if err := strictJSON(op.Spec, &spec); err != nil {
		return nil, fmt.Errorf("%w: meshconfig spec: %w", errIstio, err)
	}
	var mc meshv1alpha1.MeshConfig
	if err := protojson.Unmarshal(spec.MeshConfig, &mc); err != nil {
		return nil, fmt.Errorf("%w: meshConfig: %w", errIstio, err)
	}
	return &mc, nil
}

// decodeAuthorizationPolicy decodes an AuthorizationPolicy's spec strictly
// into Istio's message (the v1 and v1beta1 APIs share it).
func decodeAuthorizationPolicy(data []byte) (*securityv1beta1.AuthorizationPolicy, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errIstio, err)
	}
	var obj istioObject
	if err := strictJSON(js, &obj); err != nil {
		return nil, fmt.Errorf("%w: AuthorizationPolicy: %w", errIstio, err)
	}
	if obj.APIVersion != "security.istio.io/v1" || obj.Kind != "AuthorizationPolicy" {
		return nil, fmt.Errorf("%w: %s %s, want a security.istio.io/v1 AuthorizationPolicy", errIstio, obj.APIVersion, obj.Kind)
	}
	var ap securityv1beta1.AuthorizationPolicy
	if err := protojson.Unmarshal(obj.Spec, &ap); err != nil {
		return nil, fmt.Errorf("%w: AuthorizationPolicy spec: %w", errIstio, err)
	}
	return &ap, nil
}

// istioExample is k8s/istio/ read and decoded.
type istioExample struct {
	mesh      *meshv1alpha1.MeshConfig
	policies  []*securityv1beta1.AuthorizationPolicy
	services  []*corev1.Service
	pods      []*appsv1.Deployment
	tokentail *config.Config
}

// maxIssuerCallsInARow is how many issuer calls one Check may make one after
// the other, each bounded by http_timeout: a key fetch or an introspection,
// tokentailor's own actor token, the exchange.
const maxIssuerCallsInARow = 3

// checkIstio holds the example to what makes it work: the provider the
// policy names exists and is a gRPC ext_authz provider that fails closed,
// points at the Service and port tokentailor serves gRPC on, waits longer
// than tokentailor's own issuer deadlines, paths are normalized, and every
// route of tokentailor's config says which requests it takes (Istio sends no
// context_extensions).
func checkIstio(ex istioExample) error {
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{errIstio}, a...)...))
	}
	providers := map[string]*meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationGrpcProvider{}
	for _, p := range ex.mesh.GetExtensionProviders() {
		if g := p.GetEnvoyExtAuthzGrpc(); g != nil {
			providers[p.GetName()] = g
		}
	}
	if len(ex.policies) == 0 {
		bad("no AuthorizationPolicy")
	}
	for _, ap := range ex.policies {
		if ap.GetAction() != securityv1beta1.AuthorizationPolicy_CUSTOM {
			bad("AuthorizationPolicy action %s, want CUSTOM", ap.GetAction())
		}
		if len(ap.GetRules()) == 0 {
			bad("AuthorizationPolicy without rules matches no request")
		}
		if _, ok := providers[ap.GetProvider().GetName()]; !ok {
			bad("AuthorizationPolicy names provider %q, not an envoyExtAuthzGrpc provider of meshConfig", ap.GetProvider().GetName())
		}
	}
	if n := ex.mesh.GetPathNormalization().GetNormalization(); n != meshv1alpha1.MeshConfig_ProxyPathNormalization_MERGE_SLASHES {
		bad("pathNormalization %s, want MERGE_SLASHES (normalize_path and merge_slashes, as envoy/sidecar.yaml)", n)
	}
	_, grpcPort, err := net.SplitHostPort(ex.tokentail.Listen.GRPC)
	if err != nil {
		bad("tokentailor listen.grpc %q: %v", ex.tokentail.Listen.GRPC, err)
	}
	var slowest time.Duration
	for _, is := range ex.tokentail.Issuers {
		slowest = max(slowest, is.HTTPTimeout.Duration)
	}
	for name, g := range providers {
		if g.GetFailOpen() {
			bad("provider %s: failOpen true lets requests through when tokentailor fails", name)
		}
		if s, _ := strconv.Atoi(g.GetStatusOnError()); s < 500 || s > 599 {
			bad("provider %s: statusOnError %q, want a 5xx (tokentailor unavailable is not the client's fault)", name, g.GetStatusOnError())
		}
		if g.GetIncludeRequestBodyInCheck() != nil {
			bad("provider %s: tokentailor decides on headers alone; do not send the body", name)
		}
		if g.GetTimeout() == nil {
			bad("provider %s: no timeout (Istio's default is 600s)", name)
		} else if d := g.GetTimeout().AsDuration(); d <= maxIssuerCallsInARow*slowest {
			bad("provider %s: timeout %s is not above %d × tokentailor's http_timeout %s", name, d, maxIssuerCallsInARow, slowest)
		}
		if !servesGRPC(ex, g.GetService(), g.GetPort(), grpcPort) {
			bad("provider %s: %s:%d is no Service port of the example reaching tokentailor's gRPC port %s", name, g.GetService(), g.GetPort(), grpcPort)
		}
	}
	for i, r := range ex.tokentail.Routes {
		if r.Match == nil || len(r.Match.Hosts) == 0 || (r.Match.Path == "" && r.Match.PathPrefix == "") {
			bad("routes[%d] %s: Istio names no route, so each needs match hosts and a path", i, r.Name)
		}
	}
	return errors.Join(errs...)
}

// servesGRPC reports whether host:port is a Service of the example whose
// port is marked gRPC and leads to the container port tokentailor listens on.
func servesGRPC(ex istioExample, host string, port uint32, listenPort string) bool {
	for _, s := range ex.services {
		if host != s.Name+"."+s.Namespace+".svc.cluster.local" {
			continue
		}
		for _, p := range s.Spec.Ports {
			if uint32(p.Port) != port || p.AppProtocol == nil || *p.AppProtocol != "grpc" {
				continue
			}
			for _, d := range ex.pods {
				for _, c := range d.Spec.Template.Spec.Containers {
					for _, cp := range c.Ports {
						if (cp.Name == p.TargetPort.String() || strconv.Itoa(int(cp.ContainerPort)) == p.TargetPort.String()) &&
							strconv.Itoa(int(cp.ContainerPort)) == listenPort {
							return true
						}
					}
				}
			}
		}
	}
	return false
}

// readIstioExample decodes every file of k8s/istio/ strictly: the mesh
// config and AuthorizationPolicies into istio.io/api messages, the
// kustomize build's Kubernetes objects with the client-go scheme, and
// tokentailor's config with its own loader. meshYAML replaces
// meshconfig.yaml when set.
func readIstioExample(t *testing.T, meshYAML []byte) (istioExample, error) {
	t.Helper()
	var ex istioExample
	if meshYAML == nil {
		meshYAML = mustRead(t, filepath.Join(istioDir, "meshconfig.yaml"))
	}
	mc, err := decodeMeshConfig(meshYAML)
	if err != nil {
		return ex, err
	}
	ex.mesh = mc
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), istioDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range m.Resources() {
		doc, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		where := istioDir + ": " + r.CurId().String()
		if r.GetKind() == "AuthorizationPolicy" {
			ap, err := decodeAuthorizationPolicy(doc)
			if err != nil {
				return ex, fmt.Errorf("%s: %w", where, err)
			}
			ex.policies = append(ex.policies, ap)
			continue
		}
		switch o := decodeStrict(t, where, doc).(type) {
		case *corev1.Service:
			ex.services = append(ex.services, o)
		case *appsv1.Deployment:
			checkPodSpec(t, where, &o.Spec.Template.Spec)
			ex.pods = append(ex.pods, o)
		case *corev1.ConfigMap:
			c, err := config.Parse([]byte(o.Data["config.yaml"]), "/etc/tokentailor/config")
			if err != nil {
				return ex, fmt.Errorf("%s: %w", where, err)
			}
			ex.tokentail = c
		}
	}
	if ex.tokentail == nil {
		t.Fatal("the Istio example installs no tokentailor config")
	}
	return ex, nil
}

func TestIstioExample(t *testing.T) {
	ex, err := readIstioExample(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkIstio(ex); err != nil {
		t.Fatal(err)
	}
	// Every YAML file of the directory is part of what the test read.
	entries, err := os.ReadDir(istioDir)
	if err != nil {
		t.Fatal(err)
	}
	kust := string(mustRead(t, filepath.Join(istioDir, "kustomization.yaml")))
	for _, e := range entries {
		if n := e.Name(); n != "kustomization.yaml" && n != "meshconfig.yaml" && !strings.Contains(kust, n) {
			t.Errorf("%s/%s is not in the kustomization, so no test reads it", istioDir, n)
		}
	}
}

// TestIstioExampleCatchesMistakes changes the mesh config one mistake at a
// time: each must be refused, by Istio's types or by checkIstio.
func TestIstioExampleCatchesMistakes(t *testing.T) {
	orig := string(mustRead(t, filepath.Join(istioDir, "meshconfig.yaml")))
	tests := []struct {
		name     string
		old, new string
		wantText string
	}{
		{name: "misspelt field", old: "failOpen: false", new: "failopen: false", wantText: "failopen"},
		{name: "unknown enum", old: "normalization: MERGE_SLASHES", new: "normalization: MERGE", wantText: "MERGE"},
		{name: "fails open", old: "failOpen: false", new: "failOpen: true", wantText: "failOpen true"},
		{name: "timeout under tokentailor's deadlines", old: "timeout: 3.5s", new: "timeout: 2s", wantText: "timeout 2s"},
		{name: "bad duration", old: "timeout: 3.5s", new: "timeout: 3.5", wantText: "3.5"},
		{name: "wrong port", old: "port: 9191", new: "port: 9090", wantText: "no Service port"},
		{name: "wrong service", old: "service: tokentailor.tokentailor.svc.cluster.local", new: "service: tokentailor.default.svc.cluster.local", wantText: "no Service port"},
		{name: "no path normalization", old: "normalization: MERGE_SLASHES", new: "normalization: NONE", wantText: "pathNormalization"},
		{name: "renamed provider", old: "- name: tokentailor\n", new: "- name: authz\n", wantText: `names provider "tokentailor"`},
		{name: "status 403 on error", old: `statusOnError: "503"`, new: `statusOnError: "403"`, wantText: "statusOnError"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(orig, tt.old) {
				t.Fatalf("meshconfig.yaml no longer holds %q", tt.old)
			}
			ex, err := readIstioExample(t, []byte(strings.Replace(orig, tt.old, tt.new, 1)))
			if err == nil {
				err = checkIstio(ex)
			}
			if !errors.Is(err, errIstio) || !strings.Contains(err.Error(), tt.wantText) {
				t.Fatalf("error %v, want one naming %q", err, tt.wantText)
			}
		})
	}
}
