package inject

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
)

// updateOf returns the injected-pod UPDATE fixture with patch (RFC 6902, on
// request.object) applied, i.e. the update a client asked for.
func updateOf(t *testing.T, patch string) []byte {
	t.Helper()
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(readFixture(t, "review-update-injected.json"), &review); err != nil {
		t.Fatal(err)
	}
	if patch != "" {
		p, err := jsonpatch.DecodePatch([]byte(patch))
		if err != nil {
			t.Fatal(err)
		}
		obj, err := p.Apply(review.Request.Object.Raw)
		if err != nil {
			t.Fatalf("applying %s: %v", patch, err)
		}
		review.Request.Object.Raw = obj
	}
	body, err := json.Marshal(review)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func TestGuardUpdateOfInjectedPod(t *testing.T) {
	tests := []struct {
		name       string
		patch      string
		wantDenied bool
		wantInMsg  string
	}{
		// Legitimate updates of an injected pod.
		{name: "no change"},
		{name: "label added", patch: `[{"op":"add","path":"/metadata/labels/team","value":"shop"}]`},
		{name: "label removed", patch: `[{"op":"remove","path":"/metadata/labels/pod-template-hash"}]`},
		{name: "unrelated annotation added", patch: `[{"op":"add","path":"/metadata/annotations/example.com~1owner","value":"shop"}]`},
		{name: "finalizer added", patch: `[{"op":"add","path":"/metadata/finalizers","value":["example.com/cleanup"]}]`},
		{name: "orphaned by its ReplicaSet", patch: `[{"op":"remove","path":"/metadata/ownerReferences"}]`},
		{name: "app image changed", patch: `[{"op":"replace","path":"/spec/containers/0/image","value":"registry.example/shop/orders:1.4.3"}]`},
		{name: "toleration added", patch: `[{"op":"add","path":"/spec/tolerations/-","value":{"key":"example.com/drain","operator":"Exists","effect":"NoExecute"}}]`},

		// What would let Envoy start without ext_authz, or swap a sidecar.
		{name: "bootstrap removed", patch: `[{"op":"remove","path":"/metadata/annotations/tokentailor.io~1envoy-config"}]`,
			wantDenied: true, wantInMsg: "annotation " + AnnotationEnvoyConfig + " removed"},
		{name: "bootstrap rewritten", patch: `[{"op":"replace","path":"/metadata/annotations/tokentailor.io~1envoy-config","value":"admin: {}\n"}]`,
			wantDenied: true, wantInMsg: "annotation " + AnnotationEnvoyConfig + " changed"},
		{name: "all annotations dropped", patch: `[{"op":"remove","path":"/metadata/annotations"}]`,
			wantDenied: true, wantInMsg: AnnotationEnvoyConfig},
		{name: "status removed", patch: `[{"op":"remove","path":"/metadata/annotations/tokentailor.io~1status"}]`,
			wantDenied: true, wantInMsg: "annotation " + AnnotationStatus + " removed"},
		{name: "inject turned off", patch: `[{"op":"replace","path":"/metadata/annotations/tokentailor.io~1inject","value":"false"}]`,
			wantDenied: true, wantInMsg: AnnotationInject},
		{name: "tokentailor annotation added", patch: `[{"op":"add","path":"/metadata/annotations/tokentailor.io~1config","value":"other"}]`,
			wantDenied: true, wantInMsg: "annotation " + AnnotationConfig + " added"},
		{name: "Envoy image swapped", patch: `[{"op":"replace","path":"/spec/containers/1/image","value":"registry.example/passthrough:1"}]`,
			wantDenied: true, wantInMsg: "container " + ProxyContainer + " changed"},
		{name: "tokentailor image swapped", patch: `[{"op":"replace","path":"/spec/containers/2/image","value":"registry.example/allow-all:1"}]`,
			wantDenied: true, wantInMsg: "container " + AuthzContainer + " changed"},
		{name: "field unknown to the Pod type added to a sidecar", patch: `[{"op":"add","path":"/spec/containers/1/futureField","value":true}]`,
			wantDenied: true, wantInMsg: "container " + ProxyContainer + " changed"},
		{name: "sidecar removed", patch: `[{"op":"remove","path":"/spec/containers/2"}]`,
			wantDenied: true, wantInMsg: "container " + AuthzContainer + " removed"},
		{name: "bootstrap volume pointed elsewhere", patch: `[{"op":"replace","path":"/spec/volumes/2/downwardAPI/items/0/fieldRef/fieldPath","value":"metadata.annotations['example.com/envoy']"}]`,
			wantDenied: true, wantInMsg: "volume " + volumeEnvoyConfig + " changed"},
	}
	h := newTestHandler(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := updateOf(t, tt.patch)
			// The validating webhook decides; the mutating path (should an
			// UPDATE be routed there) decides the same.
			for _, answer := range []struct {
				path   string
				review func([]byte) (*admissionv1.AdmissionReview, error)
			}{{path: ValidatePath, review: h.Validate}, {path: MutatePath, review: h.Review}} {
				out, err := answer.review(body)
				if err != nil {
					t.Fatalf("%s: %v", answer.path, err)
				}
				r := out.Response
				if r.Patch != nil {
					t.Errorf("%s: an update got a patch: %s", answer.path, r.Patch)
				}
				if r.Allowed == tt.wantDenied {
					t.Fatalf("%s: allowed = %v, want %v (%+v)", answer.path, r.Allowed, !tt.wantDenied, r.Result)
				}
				if tt.wantDenied && (r.Result == nil || r.Result.Code != http.StatusForbidden || !strings.Contains(r.Result.Message, tt.wantInMsg)) {
					t.Errorf("%s: denial = %+v, want 403 naming %q", answer.path, r.Result, tt.wantInMsg)
				}
			}
			var review admissionv1.AdmissionReview
			if err := json.Unmarshal(body, &review); err != nil {
				t.Fatal(err)
			}
			err := Guard(review.Request.OldObject.Raw, review.Request.Object.Raw)
			if got := errors.Is(err, ErrInjectionChanged); got != tt.wantDenied {
				t.Errorf("Guard = %v, want ErrInjectionChanged %v", err, tt.wantDenied)
			}
		})
	}
}

func TestValidateFixtures(t *testing.T) {
	tests := []struct {
		name       string
		fixture    string
		wantDenied bool
	}{
		{name: "update stripping the bootstrap", fixture: "review-update-strip-bootstrap.json", wantDenied: true},
		{name: "update of an injected pod, no change", fixture: "review-update-injected.json"},
		{name: "update of a pod never injected", fixture: "review-update.json"},
		{name: "delete of an injected pod", fixture: "review-delete-injected.json"},
		{name: "create is the mutating webhook's", fixture: "review-annotated.json"},
		{name: "create with the status preset", fixture: "review-create-status-preset.json"},
		{name: "status subresource", fixture: "review-subresource.json"},
		{name: "not a pod", fixture: "review-deployment.json"},
	}
	h := newTestHandler(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := serve(t, h, http.MethodPost, ValidatePath, "application/json", readFixture(t, tt.fixture))
			if rec.Code != http.StatusOK {
				t.Fatalf("HTTP %d: %s", rec.Code, rec.Body.String())
			}
			var out admissionv1.AdmissionReview
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
				t.Fatal(err)
			}
			if out.Response == nil || out.Response.Allowed == tt.wantDenied || out.Response.Patch != nil {
				t.Errorf("response = %+v, want allowed %v without patch", out.Response, !tt.wantDenied)
			}
		})
	}
}

func TestValidateMalformedUpdate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(r *admissionv1.AdmissionRequest)
	}{
		{name: "no oldObject", mutate: func(r *admissionv1.AdmissionRequest) { r.OldObject.Raw = nil }},
		{name: "no object", mutate: func(r *admissionv1.AdmissionRequest) { r.Object.Raw = nil }},
		{name: "oldObject not a pod", mutate: func(r *admissionv1.AdmissionRequest) { r.OldObject.Raw = []byte(`{"spec":[]}`) }},
		{name: "object not a pod", mutate: func(r *admissionv1.AdmissionRequest) { r.Object.Raw = []byte(`{"metadata":{"annotations":[]}}`) }},
	}
	h := newTestHandler(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var review admissionv1.AdmissionReview
			if err := json.Unmarshal(readFixture(t, "review-update-injected.json"), &review); err != nil {
				t.Fatal(err)
			}
			tt.mutate(review.Request)
			body, _ := json.Marshal(review)
			if out, err := h.Validate(body); !errors.Is(err, ErrMalformedReview) {
				t.Fatalf("Validate = %+v, %v; want ErrMalformedReview", out, err)
			}
			// Answered 400: with failurePolicy Fail the update is refused.
			if rec := serve(t, h, http.MethodPost, ValidatePath, "application/json", body); rec.Code != http.StatusBadRequest {
				t.Errorf("HTTP %d, want 400", rec.Code)
			}
		})
	}
}
