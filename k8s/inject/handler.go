package inject

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MaxReviewBytes bounds the AdmissionReview body read (the API server's own
// request limit is 3 MiB).
const MaxReviewBytes = 4 << 20

// MutatePath is the URL path the webhook answers on.
const MutatePath = "/mutate"

var podResource = metav1.GroupVersionResource{Version: "v1", Resource: "pods"}

// Handler answers AdmissionReviews for pods (POST MutatePath) and liveness
// (GET /healthz). Create it with NewHandler.
type Handler struct {
	injector *Injector
	logger   *slog.Logger
}

var _ http.Handler = (*Handler)(nil)

// NewHandler returns the webhook's HTTP handler. logger may be nil.
func NewHandler(opts Options, logger *slog.Logger) (*Handler, error) {
	in, err := NewInjector(opts)
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{injector: in, logger: logger}, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/healthz":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
		return
	case MutatePath:
	default:
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed: POST an admission.k8s.io/v1 AdmissionReview", http.StatusMethodNotAllowed)
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		http.Error(w, fmt.Sprintf("%v: Content-Type must be application/json", ErrMalformedReview), http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxReviewBytes+1))
	if err != nil {
		http.Error(w, fmt.Sprintf("%v: reading body: %v", ErrMalformedReview, err), http.StatusBadRequest)
		return
	}
	if len(body) > MaxReviewBytes {
		http.Error(w, fmt.Sprintf("%v: body larger than %d bytes", ErrMalformedReview, MaxReviewBytes), http.StatusRequestEntityTooLarge)
		return
	}
	review, err := h.Review(body)
	if err != nil {
		h.logger.Warn("rejected admission review", "err", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	out, err := json.Marshal(review)
	if err != nil {
		h.logger.Error("encoding admission review", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

// Review answers one AdmissionReview (the request body) with the response
// review. Pods that don't concern the webhook are allowed unchanged; an
// opted-in pod gets a JSON patch, or a denial naming a bad annotation. An
// unusable review fails with ErrMalformedReview.
func (h *Handler) Review(body []byte) (*admissionv1.AdmissionReview, error) {
	req, err := decodeReview(body)
	if err != nil {
		return nil, err
	}
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	out := &admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "AdmissionReview"},
		Response: resp,
	}
	if req.Resource != podResource || req.SubResource != "" || req.Operation != admissionv1.Create {
		return out, nil
	}
	if h.injector.opts.Namespace != "" && req.Namespace == h.injector.opts.Namespace {
		return out, nil
	}
	if len(req.Object.Raw) == 0 {
		return nil, fmt.Errorf("%w: request.object is empty for a pod CREATE", ErrMalformedReview)
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return nil, fmt.Errorf("%w: request.object is not a Pod: %v", ErrMalformedReview, err)
	}
	ops, err := h.injector.Patch(&pod)
	name := podName(&pod)
	switch {
	case errors.Is(err, ErrInvalidAnnotation):
		h.logger.Info("denied pod", "namespace", req.Namespace, "pod", name, "err", err)
		resp.Allowed = false
		resp.Result = &metav1.Status{
			Status:  metav1.StatusFailure,
			Reason:  metav1.StatusReasonInvalid,
			Code:    http.StatusUnprocessableEntity,
			Message: "tokentailor sidecar injection: " + err.Error(),
		}
		return out, nil
	case err != nil:
		h.logger.Error("injecting pod", "namespace", req.Namespace, "pod", name, "err", err)
		resp.Allowed = false
		resp.Result = &metav1.Status{
			Status:  metav1.StatusFailure,
			Reason:  metav1.StatusReasonInternalError,
			Code:    http.StatusInternalServerError,
			Message: "tokentailor sidecar injection failed: " + err.Error(),
		}
		return out, nil
	case len(ops) == 0:
		return out, nil
	}
	patch, err := json.Marshal(ops)
	if err != nil {
		return nil, fmt.Errorf("encoding patch: %w", err)
	}
	pt := admissionv1.PatchTypeJSONPatch
	resp.Patch, resp.PatchType = patch, &pt
	h.logger.Info("injected sidecars", "namespace", req.Namespace, "pod", name)
	return out, nil
}

// decodeReview parses and checks the envelope of an AdmissionReview.
func decodeReview(body []byte) (*admissionv1.AdmissionRequest, error) {
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil {
		return nil, fmt.Errorf("%w: not JSON of an AdmissionReview: %v", ErrMalformedReview, err)
	}
	if review.APIVersion != admissionv1.SchemeGroupVersion.String() || review.Kind != "AdmissionReview" {
		return nil, fmt.Errorf("%w: apiVersion/kind is %q/%q, want %q/%q (set admissionReviewVersions: [v1])",
			ErrMalformedReview, review.APIVersion, review.Kind, admissionv1.SchemeGroupVersion.String(), "AdmissionReview")
	}
	if review.Request == nil {
		return nil, fmt.Errorf("%w: request is missing", ErrMalformedReview)
	}
	if review.Request.UID == "" {
		return nil, fmt.Errorf("%w: request.uid is empty", ErrMalformedReview)
	}
	return review.Request, nil
}

// podName names a pod for logs (a pod created by a controller may only have
// generateName at admission).
func podName(p *corev1.Pod) string {
	if p.Name != "" {
		return p.Name
	}
	return p.GenerateName + "*"
}
