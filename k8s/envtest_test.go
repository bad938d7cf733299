package k8s

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/tokentailor/tokentailor/envoy"
	"github.com/tokentailor/tokentailor/envoy/validate"
	"github.com/tokentailor/tokentailor/k8s/inject"
)

// envtestAssets finds kube-apiserver and etcd built by .ci/build-envtest.sh:
// KUBEBUILDER_ASSETS, else TOKENTAILOR_ENVTEST_DIR, else
// ~/.cache/tokentailor/envtest. It returns "" when either binary is absent.
func envtestAssets() string {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		dir = os.Getenv("TOKENTAILOR_ENVTEST_DIR")
	}
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		dir = filepath.Join(home, ".cache", "tokentailor", "envtest")
	}
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if fi, err := os.Stat(filepath.Join(dir, bin)); err != nil || fi.IsDir() {
			return ""
		}
	}
	return dir
}

// TestWebhookAgainstAPIServer registers both webhooks exactly as
// base/webhook/{mutating,validating}webhookconfiguration.yaml declare them
// (selectors, matchConditions, failurePolicy, ...) with a real kube-apiserver,
// creates pods through it and updates injected ones.
func TestWebhookAgainstAPIServer(t *testing.T) {
	assets := envtestAssets()
	if assets == "" {
		t.Skip("envtest binaries (kube-apiserver, etcd) not found: run `bash .ci/build-envtest.sh` " +
			"(builds them into ~/.cache/tokentailor/envtest) or set KUBEBUILDER_ASSETS")
	}
	data, err := os.ReadFile(filepath.Join("base", "webhook", "mutatingwebhookconfiguration.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	mwc, ok := decodeStrict(t, "mutatingwebhookconfiguration.yaml", data).(*admissionregv1.MutatingWebhookConfiguration)
	if !ok {
		t.Fatal("not a MutatingWebhookConfiguration")
	}
	vwc := readValidating(t)

	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		WebhookInstallOptions: envtest.WebhookInstallOptions{
			MutatingWebhooks:   []*admissionregv1.MutatingWebhookConfiguration{mwc},
			ValidatingWebhooks: []*admissionregv1.ValidatingWebhookConfiguration{vwc},
		},
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting envtest from %s: %v", assets, err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stopping envtest: %v", err)
		}
	})

	// Serve the webhook where envtest pointed the API server, with its certificate.
	wio := &env.WebhookInstallOptions
	ln, err := net.Listen("tcp", net.JoinHostPort(wio.LocalServingHost, strconv.Itoa(wio.LocalServingPort)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() {
		served <- inject.Serve(ctx, ln, inject.Options{
			CertFile:         filepath.Join(wio.LocalServingCertDir, "tls.crt"),
			KeyFile:          filepath.Join(wio.LocalServingCertDir, "tls.key"),
			Namespace:        "tokentailor-system",
			EnvoyImage:       "envoy:test",
			TokentailorImage: "tokentailor:test",
		}, nil)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("webhook: %v", err)
		}
	})

	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for name, labels := range map[string]map[string]string{
		"shop":               {"tokentailor.io/injection": "enabled"},
		"tokentailor-system": {"tokentailor.io/injection": "enabled"},
		"elsewhere":          nil,
	} {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
		if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		name          string
		namespace     string
		annotations   map[string]string
		wantInjected  bool
		wantCreateErr bool
	}{
		{name: "annotated", namespace: "shop", annotations: map[string]string{inject.AnnotationInject: "true", inject.AnnotationPort: "3000"}, wantInjected: true},
		{name: "plain", namespace: "shop"},
		{name: "annotated outside opted-in namespaces", namespace: "elsewhere", annotations: map[string]string{inject.AnnotationInject: "true"}},
		{name: "annotated in the webhook's namespace", namespace: "tokentailor-system", annotations: map[string]string{inject.AnnotationInject: "true"}},
		{name: "bad port", namespace: "shop", annotations: map[string]string{inject.AnnotationInject: "true", inject.AnnotationPort: "http"}, wantCreateErr: true},
		// The status annotation is the creator's word: injected all the same.
		{name: "status annotation preset", namespace: "shop", annotations: map[string]string{
			inject.AnnotationInject: "true", inject.AnnotationPort: "3000",
			inject.AnnotationStatus: inject.StatusInjected, inject.AnnotationEnvoyConfig: "admin: {}\n",
		}, wantInjected: true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: "app-" + strconv.Itoa(i), Namespace: tt.namespace, Annotations: tt.annotations},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "app", Image: "registry.example/app:1",
					Ports: []corev1.ContainerPort{{ContainerPort: 3000}},
				}}},
			}
			// Retry briefly: the API server may not reach the webhook at once.
			var got *corev1.Pod
			var err error
			for range 50 {
				got, err = cs.CoreV1().Pods(tt.namespace).Create(ctx, pod, metav1.CreateOptions{})
				if err == nil || tt.wantCreateErr {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			if tt.wantCreateErr {
				// The denial must be the webhook's, naming the annotation, not
				// a failure to reach it.
				if err == nil || !strings.Contains(err.Error(), inject.AnnotationPort) {
					t.Fatalf("create = %v, want the webhook's denial naming %s", err, inject.AnnotationPort)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.wantInjected {
				if len(got.Spec.Containers) != 1 || got.Annotations[inject.AnnotationStatus] != "" {
					t.Errorf("pod was mutated: %d containers, annotations %v", len(got.Spec.Containers), got.Annotations)
				}
				return
			}
			names := []string{}
			for _, c := range got.Spec.Containers {
				names = append(names, c.Name)
			}
			if len(names) != 3 || names[0] != "app" || names[1] != inject.ProxyContainer || names[2] != inject.AuthzContainer {
				t.Errorf("containers = %v", names)
			}
			if _, err := validate.File([]byte(got.Annotations[inject.AnnotationEnvoyConfig]), validate.Tokentailor{Socket: envoy.AuthzSocket}); err != nil {
				t.Errorf("stored Envoy config: %v", err)
			}
			if g := got.Spec.TerminationGracePeriodSeconds; g == nil || *g < inject.MinTerminationGracePeriodSeconds {
				t.Errorf("terminationGracePeriodSeconds = %v, want ≥ %d", g, inject.MinTerminationGracePeriodSeconds)
			}
		})
	}

	t.Run("updates of an injected pod", func(t *testing.T) {
		testGuardedUpdates(ctx, t, cs)
	})
}

// testGuardedUpdates injects a pod through the API server, then sends it
// updates: those that would strip or swap what injection added must be
// refused by the API server (the validating webhook), the rest must pass.
func testGuardedUpdates(ctx context.Context, t *testing.T, cs kubernetes.Interface) {
	pods := cs.CoreV1().Pods("shop")
	pod, err := pods.Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "guarded", Annotations: map[string]string{inject.AnnotationInject: "true"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: "registry.example/app:1",
			Ports: []corev1.ContainerPort{{ContainerPort: 3000}},
		}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bootstrap := pod.Annotations[inject.AnnotationEnvoyConfig]
	if bootstrap == "" || len(pod.Spec.Containers) != 3 {
		t.Fatalf("pod not injected: %d containers", len(pod.Spec.Containers))
	}
	// A pod that was never injected: its updates never reach the webhook.
	if _, err := pods.Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "unguarded"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		pod       string
		patchType types.PatchType
		patch     string
		wantErr   string // "" when the update must pass
	}{
		{name: "label added", pod: "guarded", patchType: types.MergePatchType, patch: `{"metadata":{"labels":{"team":"shop"}}}`},
		{name: "unrelated annotation added", pod: "guarded", patchType: types.MergePatchType, patch: `{"metadata":{"annotations":{"example.com/owner":"shop"}}}`},
		{name: "app image changed", pod: "guarded", patchType: types.JSONPatchType, patch: `[{"op":"replace","path":"/spec/containers/0/image","value":"registry.example/app:2"}]`},
		{name: "bootstrap removed", pod: "guarded", patchType: types.JSONPatchType,
			patch: `[{"op":"remove","path":"/metadata/annotations/tokentailor.io~1envoy-config"}]`, wantErr: inject.AnnotationEnvoyConfig + " removed"},
		{name: "bootstrap rewritten", pod: "guarded", patchType: types.MergePatchType,
			patch: `{"metadata":{"annotations":{"tokentailor.io/envoy-config":"admin: {}\n"}}}`, wantErr: inject.AnnotationEnvoyConfig + " changed"},
		{name: "status removed", pod: "guarded", patchType: types.MergePatchType,
			patch: `{"metadata":{"annotations":{"tokentailor.io/status":null}}}`, wantErr: inject.AnnotationStatus + " removed"},
		{name: "Envoy image swapped", pod: "guarded", patchType: types.JSONPatchType,
			patch: `[{"op":"replace","path":"/spec/containers/1/image","value":"registry.example/passthrough:1"}]`, wantErr: inject.ProxyContainer + " changed"},
		{name: "never-injected pod takes any annotation", pod: "unguarded", patchType: types.MergePatchType,
			patch: `{"metadata":{"annotations":{"tokentailor.io/envoy-config":"admin: {}\n"}}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := pods.Patch(ctx, tt.pod, tt.patchType, []byte(tt.patch), metav1.PatchOptions{})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("update refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "tokentailor") {
				t.Fatalf("update = %v, want the webhook's denial naming %q", err, tt.wantErr)
			}
		})
	}

	got, err := pods.Get(ctx, "guarded", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Annotations[inject.AnnotationEnvoyConfig] != bootstrap || got.Spec.Containers[1].Image != "envoy:test" {
		t.Errorf("a refused update changed the pod: image %q, bootstrap kept %v",
			got.Spec.Containers[1].Image, got.Annotations[inject.AnnotationEnvoyConfig] == bootstrap)
	}
	if got.Labels["team"] != "shop" || got.Spec.Containers[0].Image != "registry.example/app:2" {
		t.Errorf("an allowed update did not land: labels %v, app image %q", got.Labels, got.Spec.Containers[0].Image)
	}
	// The kubelet writes status through the subresource: never guarded.
	got.Status.Conditions = append(got.Status.Conditions, corev1.PodCondition{Type: "example.com/Checked", Status: corev1.ConditionTrue})
	if _, err := pods.UpdateStatus(ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Errorf("status update: %v", err)
	}
	if err := pods.Delete(ctx, "guarded", metav1.DeleteOptions{}); err != nil {
		t.Errorf("delete: %v", err)
	}
}
