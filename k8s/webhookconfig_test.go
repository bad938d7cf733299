package k8s

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	admissionregv1 "k8s.io/api/admissionregistration/v1"

	"github.com/tokentailor/tokentailor/k8s/inject"
)

func readMutating(t *testing.T) *admissionregv1.MutatingWebhookConfiguration {
	t.Helper()
	path := filepath.Join("base", "webhook", "mutatingwebhookconfiguration.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, ok := decodeStrict(t, path, data).(*admissionregv1.MutatingWebhookConfiguration)
	if !ok {
		t.Fatalf("%s is not a MutatingWebhookConfiguration", path)
	}
	return c
}

func readValidating(t *testing.T) *admissionregv1.ValidatingWebhookConfiguration {
	t.Helper()
	path := filepath.Join("base", "webhook", "validatingwebhookconfiguration.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, ok := decodeStrict(t, path, data).(*admissionregv1.ValidatingWebhookConfiguration)
	if !ok {
		t.Fatalf("%s is not a ValidatingWebhookConfiguration", path)
	}
	return c
}

// onlyPods checks that rules name exactly the core pods resource (no
// subresource: the kubelet's pods/status never reaches the webhook) for
// exactly ops.
func onlyPods(t *testing.T, where string, rules []admissionregv1.RuleWithOperations, ops ...admissionregv1.OperationType) {
	t.Helper()
	if len(rules) != 1 {
		t.Fatalf("%s: %d rules, want 1", where, len(rules))
	}
	r := rules[0]
	if !slices.Equal(r.Operations, ops) || !slices.Equal(r.APIGroups, []string{""}) ||
		!slices.Equal(r.APIVersions, []string{"v1"}) || !slices.Equal(r.Resources, []string{"pods"}) {
		t.Errorf("%s: rule %+v, want %v of core/v1 pods only", where, r, ops)
	}
}

func TestWebhookConfigurations(t *testing.T) {
	m := readMutating(t)
	if len(m.Webhooks) != 1 {
		t.Fatalf("mutating: %d webhooks, want 1", len(m.Webhooks))
	}
	mw := m.Webhooks[0]
	onlyPods(t, "mutating", mw.Rules, admissionregv1.Create)
	if p := mw.ClientConfig.Service; p == nil || p.Path == nil || *p.Path != inject.MutatePath {
		t.Errorf("mutating: service %+v, want path %s", p, inject.MutatePath)
	}

	v := readValidating(t)
	if len(v.Webhooks) != 1 {
		t.Fatalf("validating: %d webhooks, want 1", len(v.Webhooks))
	}
	vw := v.Webhooks[0]
	// UPDATE only: CREATE is the mutating webhook's, and DELETE must never
	// depend on the webhook.
	onlyPods(t, "validating", vw.Rules, admissionregv1.Update)
	if p := vw.ClientConfig.Service; p == nil || p.Path == nil || *p.Path != inject.ValidatePath ||
		mw.ClientConfig.Service == nil || p.Name != mw.ClientConfig.Service.Name || p.Namespace != mw.ClientConfig.Service.Namespace {
		t.Errorf("validating: service %+v, want the webhook's Service, path %s", p, inject.ValidatePath)
	}
	if vw.FailurePolicy == nil || *vw.FailurePolicy != admissionregv1.Fail {
		t.Error("validating: failurePolicy must be Fail: a webhook outage must not open injected pods to stripping")
	}
	if vw.SideEffects == nil || *vw.SideEffects != admissionregv1.SideEffectClassNone {
		t.Error("validating: sideEffects must be None")
	}
	if !slices.Equal(vw.AdmissionReviewVersions, []string{"v1"}) {
		t.Errorf("validating: admissionReviewVersions %v, want [v1]", vw.AdmissionReviewVersions)
	}
	// Labels are mutable: an objectSelector would let an update that first
	// changes a label escape the guard; which pods are guarded is decided on
	// the old object by matchConditions instead.
	if vw.ObjectSelector != nil && (len(vw.ObjectSelector.MatchLabels) > 0 || len(vw.ObjectSelector.MatchExpressions) > 0) {
		t.Errorf("validating: objectSelector %+v: labels can be patched away", vw.ObjectSelector)
	}
	// Unlabelling a namespace must not unguard the pods injected in it.
	if ns := vw.NamespaceSelector; ns != nil {
		if len(ns.MatchLabels) > 0 {
			t.Errorf("validating: namespaceSelector matchLabels %v", ns.MatchLabels)
		}
		for _, e := range ns.MatchExpressions {
			if e.Key != "kubernetes.io/metadata.name" {
				t.Errorf("validating: namespaceSelector depends on the mutable label %q", e.Key)
			}
		}
	}
	if len(vw.MatchConditions) != 1 {
		t.Fatalf("validating: %d matchConditions, want 1", len(vw.MatchConditions))
	}
	expr := vw.MatchConditions[0].Expression
	for _, want := range []string{"oldObject", inject.AnnotationStatus, inject.AnnotationEnvoyConfig, inject.ProxyContainer, "'" + inject.AuthzContainer + "'"} {
		if !strings.Contains(expr, want) {
			t.Errorf("validating: matchCondition %q does not test %s (the test of inject.Injected)", expr, want)
		}
	}
}
