package inject

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/tokentailor/tokentailor/envoy"
	"github.com/tokentailor/tokentailor/envoy/validate"
)

func newTestHandler(t *testing.T) *Handler {
	t.Helper()
	h, err := NewHandler(Options{
		Namespace:        "tokentailor-system",
		EnvoyImage:       "envoy:test",
		TokentailorImage: "tokentailor:test",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// strictPod decodes a pod rejecting unknown fields, so a patch that writes
// anything the Pod type does not know fails.
func strictPod(t *testing.T, raw []byte) *corev1.Pod {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var pod corev1.Pod
	if err := dec.Decode(&pod); err != nil {
		t.Fatalf("patched pod does not decode strictly: %v", err)
	}
	return &pod
}

// applyReview runs the fixture through the handler and returns the request's
// pod before and after the answer's patch.
func applyReview(t *testing.T, h *Handler, body []byte) (*admissionv1.AdmissionReview, []byte, []byte) {
	t.Helper()
	out, err := h.Review(body)
	if err != nil {
		t.Fatalf("Review: %v", err)
	}
	var in admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &in); err != nil {
		t.Fatal(err)
	}
	if out.Response == nil || out.Response.UID != in.Request.UID {
		t.Fatalf("response UID = %+v, want %q", out.Response, in.Request.UID)
	}
	if out.APIVersion != "admission.k8s.io/v1" || out.Kind != "AdmissionReview" {
		t.Fatalf("response type = %s/%s", out.APIVersion, out.Kind)
	}
	orig := in.Request.Object.Raw
	if out.Response.Patch == nil {
		return out, orig, orig
	}
	if out.Response.PatchType == nil || *out.Response.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatalf("patchType = %v, want JSONPatch", out.Response.PatchType)
	}
	patch, err := jsonpatch.DecodePatch(out.Response.Patch)
	if err != nil {
		t.Fatalf("decoding patch: %v", err)
	}
	patched, err := patch.Apply(orig)
	if err != nil {
		t.Fatalf("applying patch: %v", err)
	}
	return out, orig, patched
}

func container(pod *corev1.Pod, name string) *corev1.Container {
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i]
		}
	}
	return nil
}

func volume(pod *corev1.Pod, name string) *corev1.Volume {
	for i := range pod.Spec.Volumes {
		if pod.Spec.Volumes[i].Name == name {
			return &pod.Spec.Volumes[i]
		}
	}
	return nil
}

func TestReviewInjects(t *testing.T) {
	tests := []struct {
		name          string
		fixture       string
		wantAppPort   uint32
		wantConfigMap string
		wantSecret    string
		wantVolumes   int
	}{
		{name: "annotated pod with service account volume", fixture: "review-annotated.json",
			wantAppPort: 3000, wantConfigMap: DefaultConfigMap, wantSecret: DefaultSigningKeySecret, wantVolumes: 5},
		{name: "port from the only containerPort, named config and key, no volumes", fixture: "review-annotated-no-volumes.json",
			wantAppPort: 8081, wantConfigMap: "orders-policy", wantSecret: "orders-signing-key", wantVolumes: 4},
		{name: "created with the status annotation preset", fixture: "review-create-status-preset.json",
			wantAppPort: 3000, wantConfigMap: DefaultConfigMap, wantSecret: DefaultSigningKeySecret, wantVolumes: 5},
		{name: "created with a look-alike sidecar, bootstrap and volume", fixture: "review-create-lookalike-sidecar.json",
			wantAppPort: 3000, wantConfigMap: DefaultConfigMap, wantSecret: DefaultSigningKeySecret, wantVolumes: 5},
	}
	h := newTestHandler(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, origRaw, patchedRaw := applyReview(t, h, readFixture(t, tt.fixture))
			if !out.Response.Allowed || out.Response.Patch == nil {
				t.Fatalf("want allowed with patch, got %+v", out.Response)
			}
			orig, pod := strictPod(t, origRaw), strictPod(t, patchedRaw)

			// The app is untouched and stays first; a look-alike sidecar is
			// replaced, never kept next to the real one.
			if len(pod.Spec.Containers) != 3 {
				t.Fatalf("containers = %d, want 3", len(pod.Spec.Containers))
			}
			app, _ := json.Marshal(orig.Spec.Containers[0])
			gotApp, _ := json.Marshal(pod.Spec.Containers[0])
			if !bytes.Equal(app, gotApp) {
				t.Errorf("app container changed:\n%s\n%s", app, gotApp)
			}
			if len(pod.Spec.Volumes) != tt.wantVolumes {
				t.Errorf("volumes = %d, want %d", len(pod.Spec.Volumes), tt.wantVolumes)
			}
			if pod.Annotations[AnnotationStatus] != StatusInjected {
				t.Errorf("status annotation = %q", pod.Annotations[AnnotationStatus])
			}
			for k, v := range orig.Annotations {
				if k == AnnotationStatus || k == AnnotationEnvoyConfig {
					continue // never trusted on CREATE
				}
				if pod.Annotations[k] != v {
					t.Errorf("annotation %s changed to %q", k, pod.Annotations[k])
				}
			}

			proxy, authz := container(pod, ProxyContainer), container(pod, AuthzContainer)
			if proxy == nil || authz == nil {
				t.Fatal("sidecar containers missing")
			}
			if proxy.Image != "envoy:test" || authz.Image != "tokentailor:test" {
				t.Errorf("images = %q, %q", proxy.Image, authz.Image)
			}
			if l := proxy.Lifecycle; l == nil || l.PreStop == nil || l.PreStop.Sleep == nil || l.PreStop.Sleep.Seconds != ProxyPreStopSeconds {
				t.Errorf("envoy lifecycle = %+v, want a preStop sleep of %d s", l, ProxyPreStopSeconds)
			}
			if g := pod.Spec.TerminationGracePeriodSeconds; g == nil || *g < MinTerminationGracePeriodSeconds {
				t.Errorf("terminationGracePeriodSeconds = %v, want ≥ %d", g, MinTerminationGracePeriodSeconds)
			}
			if og := orig.Spec.TerminationGracePeriodSeconds; og != nil && *og >= MinTerminationGracePeriodSeconds && *pod.Spec.TerminationGracePeriodSeconds != *og {
				t.Errorf("terminationGracePeriodSeconds %d lowered to %d", *og, *pod.Spec.TerminationGracePeriodSeconds)
			}
			if !slices.Contains(proxy.Ports, corev1.ContainerPort{Name: "tt-envoy", ContainerPort: envoy.InboundPort, Protocol: corev1.ProtocolTCP}) {
				t.Errorf("envoy ports = %+v", proxy.Ports)
			}
			if got := proxy.ReadinessProbe.HTTPGet; got == nil || got.Path != envoy.ReadyPath || got.Port.IntValue() != envoy.ReadyPort {
				t.Errorf("envoy readiness probe = %+v", proxy.ReadinessProbe)
			}
			if got := authz.ReadinessProbe.HTTPGet; got == nil || got.Path != "/readyz" || got.Port.IntValue() != AdminPort {
				t.Errorf("tokentailor readiness probe = %+v", authz.ReadinessProbe)
			}
			if !slices.Equal(authz.Args, []string{"serve", "-config", ConfigPath}) {
				t.Errorf("tokentailor args = %q", authz.Args)
			}
			if len(authz.Env) != 1 || authz.Env[0].Name != "GOMEMLIMIT" || authz.Env[0].ValueFrom == nil ||
				authz.Env[0].ValueFrom.ResourceFieldRef == nil || authz.Env[0].ValueFrom.ResourceFieldRef.Resource != "limits.memory" {
				t.Errorf("tokentailor env = %+v, want GOMEMLIMIT from limits.memory", authz.Env)
			}
			for _, c := range []*corev1.Container{proxy, authz} {
				sc := c.SecurityContext
				if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
					sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
					t.Errorf("%s security context = %+v", c.Name, sc)
				}
				if c.Resources.Limits.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero() {
					t.Errorf("%s resources = %+v", c.Name, c.Resources)
				}
				mounted := false
				for _, m := range c.VolumeMounts {
					if m.Name == volumeSocket && m.MountPath == SocketDir {
						mounted = true
					}
					if volume(pod, m.Name) == nil {
						t.Errorf("%s mounts missing volume %q", c.Name, m.Name)
					}
				}
				if !mounted {
					t.Errorf("%s does not mount the socket dir", c.Name)
				}
			}
			for _, m := range authz.VolumeMounts {
				if m.Name != volumeSocket && !m.ReadOnly {
					t.Errorf("tokentailor mount %s is writable", m.Name)
				}
			}
			if v := volume(pod, volumeConfig); v == nil || v.ConfigMap == nil || v.ConfigMap.Name != tt.wantConfigMap {
				t.Errorf("config volume = %+v, want ConfigMap %q", v, tt.wantConfigMap)
			}
			if v := volume(pod, volumeSigningKey); v == nil || v.Secret == nil || v.Secret.SecretName != tt.wantSecret {
				t.Errorf("key volume = %+v, want Secret %q", v, tt.wantSecret)
			}
			v := volume(pod, volumeEnvoyConfig)
			if v == nil || v.DownwardAPI == nil || len(v.DownwardAPI.Items) != 1 ||
				v.DownwardAPI.Items[0].FieldRef.FieldPath != "metadata.annotations['"+AnnotationEnvoyConfig+"']" {
				t.Fatalf("envoy config volume = %+v", v)
			}

			// The injected bootstrap is valid and points at the app's port.
			b, err := validate.File([]byte(pod.Annotations[AnnotationEnvoyConfig]), validate.Tokentailor{Socket: envoy.AuthzSocket})
			if err != nil {
				t.Fatalf("injected Envoy config invalid: %v", err)
			}
			var port uint32
			for _, c := range b.GetStaticResources().GetClusters() {
				if c.GetName() == envoy.AppCluster {
					port = c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetPortValue()
				}
			}
			if port != tt.wantAppPort {
				t.Errorf("app cluster port = %d, want %d", port, tt.wantAppPort)
			}

			// Idempotent: the injected pod created again comes out the same.
			var review admissionv1.AdmissionReview
			if err := json.Unmarshal(readFixture(t, tt.fixture), &review); err != nil {
				t.Fatal(err)
			}
			review.Request.Object.Raw = patchedRaw
			again, _ := json.Marshal(review)
			out2, _, patchedTwice := applyReview(t, h, again)
			if !out2.Response.Allowed {
				t.Fatalf("second review denied: %+v", out2.Response.Result)
			}
			if !jsonpatch.Equal(patchedRaw, patchedTwice) {
				t.Errorf("injecting twice differs from injecting once:\n%s\n%s", patchedRaw, patchedTwice)
			}
		})
	}
}

func TestReviewLeavesAlone(t *testing.T) {
	tests := []struct {
		name    string
		fixture string
	}{
		{name: "no annotation", fixture: "review-plain.json"},
		{name: "own namespace", fixture: "review-own-namespace.json"},
		{name: "update", fixture: "review-update.json"},
		{name: "subresource", fixture: "review-subresource.json"},
		{name: "not a pod", fixture: "review-deployment.json"},
	}
	h := newTestHandler(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, _ := applyReview(t, h, readFixture(t, tt.fixture))
			if !out.Response.Allowed || out.Response.Patch != nil || out.Response.Result != nil {
				t.Errorf("want allowed unchanged, got %+v", out.Response)
			}
		})
	}
}

func TestReviewAnnotations(t *testing.T) {
	tests := []struct {
		name           string
		annotations    map[string]string
		ports          []int32
		volumes        []string
		initContainers []string
		wantDenied     bool
		wantPatch      bool
		wantInMsg      string
	}{
		{name: "inject false", annotations: map[string]string{AnnotationInject: "false"}},
		{name: "inject TRUE", annotations: map[string]string{AnnotationInject: "TRUE", AnnotationPort: "3000"}, wantPatch: true},
		{name: "inject yes", annotations: map[string]string{AnnotationInject: "yes"}, wantDenied: true, wantInMsg: AnnotationInject},
		{name: "port not a number", annotations: map[string]string{AnnotationInject: "true", AnnotationPort: "http"}, wantDenied: true, wantInMsg: AnnotationPort},
		{name: "port zero", annotations: map[string]string{AnnotationInject: "true", AnnotationPort: "0"}, wantDenied: true, wantInMsg: AnnotationPort},
		{name: "port too large", annotations: map[string]string{AnnotationInject: "true", AnnotationPort: "65536"}, wantDenied: true, wantInMsg: AnnotationPort},
		{name: "port is Envoy's", annotations: map[string]string{AnnotationInject: "true", AnnotationPort: "8080"}, wantDenied: true, wantInMsg: "Envoy's inbound"},
		{name: "port is tokentailor admin", annotations: map[string]string{AnnotationInject: "true", AnnotationPort: "9090"}, wantDenied: true, wantInMsg: "tokentailor's admin"},
		{name: "no port, no containerPort", annotations: map[string]string{AnnotationInject: "true"}, ports: []int32{}, wantDenied: true, wantInMsg: AnnotationPort},
		{name: "no port, two containerPorts", annotations: map[string]string{AnnotationInject: "true"}, ports: []int32{3000, 3001}, wantDenied: true, wantInMsg: AnnotationPort},
		{name: "app declares Envoy's port", annotations: map[string]string{AnnotationInject: "true", AnnotationPort: "3000"}, ports: []int32{3000, 8080}, wantDenied: true, wantInMsg: "8080"},
		{name: "bad ConfigMap name", annotations: map[string]string{AnnotationInject: "true", AnnotationPort: "3000", AnnotationConfig: "Orders_Policy"}, wantDenied: true, wantInMsg: AnnotationConfig},
		{name: "bad Secret name", annotations: map[string]string{AnnotationInject: "true", AnnotationPort: "3000", AnnotationSigningKey: "-key"}, wantDenied: true, wantInMsg: AnnotationSigningKey},
		{name: "reserved volume name", annotations: map[string]string{AnnotationInject: "true", AnnotationPort: "3000"}, volumes: []string{"tokentailor-extra"}, wantDenied: true, wantInMsg: "tokentailor-extra"},
		{name: "sidecar volume name is replaced", annotations: map[string]string{AnnotationInject: "true", AnnotationPort: "3000"}, volumes: []string{"tokentailor-run"}, wantPatch: true},
		// The status annotation is the creator's word, not the webhook's.
		{name: "marked injected, bad port", annotations: map[string]string{AnnotationInject: "true", AnnotationStatus: StatusInjected, AnnotationPort: "bad"}, wantDenied: true, wantInMsg: AnnotationPort},
		{name: "marked injected", annotations: map[string]string{AnnotationInject: "true", AnnotationStatus: StatusInjected, AnnotationPort: "3000"}, wantPatch: true},
		{name: "bootstrap preset", annotations: map[string]string{AnnotationInject: "true", AnnotationEnvoyConfig: "admin: {}", AnnotationPort: "3000"}, wantPatch: true},
		{name: "marked injected, not opted in", annotations: map[string]string{AnnotationStatus: StatusInjected}},
		{name: "reserved init container name", annotations: map[string]string{AnnotationInject: "true", AnnotationPort: "3000"}, initContainers: []string{ProxyContainer}, wantDenied: true, wantInMsg: ProxyContainer},
	}
	h := newTestHandler(t)
	base := readFixture(t, "review-annotated.json")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var review admissionv1.AdmissionReview
			if err := json.Unmarshal(base, &review); err != nil {
				t.Fatal(err)
			}
			var pod corev1.Pod
			if err := json.Unmarshal(review.Request.Object.Raw, &pod); err != nil {
				t.Fatal(err)
			}
			pod.Annotations = tt.annotations
			if tt.ports != nil {
				pod.Spec.Containers[0].Ports = nil
				for _, p := range tt.ports {
					pod.Spec.Containers[0].Ports = append(pod.Spec.Containers[0].Ports, corev1.ContainerPort{ContainerPort: p})
				}
			}
			for _, v := range tt.volumes {
				pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: v})
			}
			for _, c := range tt.initContainers {
				pod.Spec.InitContainers = append(pod.Spec.InitContainers, corev1.Container{Name: c, Image: "registry.example/init:1"})
			}
			raw, _ := json.Marshal(&pod)
			review.Request.Object.Raw = raw
			body, _ := json.Marshal(review)

			out, _, patched := applyReview(t, h, body)
			r := out.Response
			if r.Allowed == tt.wantDenied {
				t.Fatalf("allowed = %v, want %v (%+v)", r.Allowed, !tt.wantDenied, r.Result)
			}
			if tt.wantDenied {
				if r.Result == nil || r.Result.Code != http.StatusUnprocessableEntity || !strings.Contains(r.Result.Message, tt.wantInMsg) {
					t.Errorf("denial = %+v, want 422 naming %q", r.Result, tt.wantInMsg)
				}
				if r.Patch != nil {
					t.Error("denial carries a patch")
				}
				// The same decision through the Go API wraps the sentinel.
				if _, err := h.injector.Patch(&pod); !errors.Is(err, ErrInvalidAnnotation) {
					t.Errorf("Patch error = %v, want ErrInvalidAnnotation", err)
				}
				return
			}
			if (r.Patch != nil) != tt.wantPatch {
				t.Errorf("patch = %s, want patch %v", r.Patch, tt.wantPatch)
			}
			if tt.wantPatch {
				p := strictPod(t, patched)
				if p.Annotations[AnnotationStatus] != StatusInjected || container(p, ProxyContainer) == nil {
					t.Errorf("patched pod not injected: annotations %v", p.Annotations)
				}
				if _, err := validate.File([]byte(p.Annotations[AnnotationEnvoyConfig]), validate.Tokentailor{Socket: envoy.AuthzSocket}); err != nil {
					t.Errorf("bootstrap: %v", err)
				}
			}
		})
	}
}

func TestReviewMalformed(t *testing.T) {
	tests := []struct {
		name    string
		fixture string
	}{
		{name: "not JSON", fixture: "malformed-not-json.json"},
		{name: "v1beta1", fixture: "malformed-v1beta1.json"},
		{name: "no request", fixture: "malformed-no-request.json"},
		{name: "no uid", fixture: "malformed-no-uid.json"},
		{name: "object not a pod", fixture: "malformed-object.json"},
		{name: "no object", fixture: "malformed-no-object.json"},
	}
	h := newTestHandler(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := readFixture(t, tt.fixture)
			if out, err := h.Review(body); !errors.Is(err, ErrMalformedReview) {
				t.Fatalf("Review = %+v, %v; want ErrMalformedReview", out, err)
			}
			rec := serve(t, h, http.MethodPost, MutatePath, "application/json", body)
			if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), ErrMalformedReview.Error()) {
				t.Errorf("HTTP %d %q, want 400 saying %q", rec.Code, rec.Body.String(), ErrMalformedReview)
			}
		})
	}
}

func FuzzReview(f *testing.F) {
	entries, err := os.ReadDir("testdata")
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".json") {
			f.Add(readFixture(f, e.Name()))
		}
	}
	h, err := NewHandler(Options{Namespace: "tokentailor-system"}, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		// The validating path never patches and fails only on a malformed review.
		if v, err := h.Validate(body); err != nil && !errors.Is(err, ErrMalformedReview) {
			t.Fatalf("Validate error %v does not wrap ErrMalformedReview", err)
		} else if err == nil && v.Response.Patch != nil {
			t.Fatal("Validate returned a patch")
		}
		out, err := h.Review(body)
		if err != nil {
			if !errors.Is(err, ErrMalformedReview) {
				t.Fatalf("error %v does not wrap ErrMalformedReview", err)
			}
			return
		}
		var in admissionv1.AdmissionReview
		if err := json.Unmarshal(body, &in); err != nil {
			t.Fatalf("accepted a body that is not JSON: %v", err)
		}
		if out.Response.UID != in.Request.UID {
			t.Fatalf("response UID %q, want %q", out.Response.UID, in.Request.UID)
		}
		if out.Response.Patch != nil {
			patch, err := jsonpatch.DecodePatch(out.Response.Patch)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := patch.Apply(in.Request.Object.Raw); err != nil {
				t.Fatalf("patch does not apply: %v", err)
			}
		}
	})
}
