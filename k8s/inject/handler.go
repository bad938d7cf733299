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

// URL paths of the webhook.
const (
	// MutatePath answers the mutating webhook (pod CREATE: injection).
	MutatePath = "/mutate"
	// ValidatePath answers the validating webhook (pod UPDATE: the injected
	// sidecars, their annotations and volumes cannot change).
	ValidatePath = "/validate"
)

var podResource = metav1.GroupVersionResource{Version: "v1", Resource: "pods"}

// Handler answers AdmissionReviews for pods (POST MutatePath and
// ValidatePath) and liveness (GET /healthz). Create it with NewHandler.
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
	case MutatePath, ValidatePath:
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
	answer := h.Review
	if r.URL.Path == ValidatePath {
		answer = h.Validate
	}
	review, err := answer(body)
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

// Review answers one AdmissionReview sent to MutatePath (the request body)
// with the response review. A pod CREATE that opts in gets a JSON patch, or a
// denial naming a bad annotation; a pod UPDATE that would change an injected
// pod's sidecars is denied (see Guard); everything else is allowed unchanged.
// An unusable review fails with ErrMalformedReview.
func (h *Handler) Review(body []byte) (*admissionv1.AdmissionReview, error) {
	return h.review(body, true)
}

// Validate answers one AdmissionReview sent to ValidatePath: a pod UPDATE
// that would change an injected pod's sidecars, their annotations or volumes
// is denied (see Guard); everything else is allowed. It never returns a
// patch. An unusable review fails with ErrMalformedReview.
func (h *Handler) Validate(body []byte) (*admissionv1.AdmissionReview, error) {
	return h.review(body, false)
}

// review decodes the envelope and dispatches on the operation; mutate says
// whether a CREATE may be patched.
func (h *Handler) review(body []byte, mutate bool) (*admissionv1.AdmissionReview, error) {
	req, err := decodeReview(body)
	if err != nil {
		return nil, err
	}
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	out := &admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "AdmissionReview"},
		Response: resp,
	}
	if req.Resource != podResource || req.SubResource != "" {
		return out, nil
	}
	switch {
	case req.Operation == admissionv1.Update:
		return out, h.guard(req, resp)
	case req.Operation == admissionv1.Create && mutate:
		return out, h.inject(req, resp)
	}
	return out, nil
}

// guard denies an UPDATE that changes what injection put into a pod.
func (h *Handler) guard(req *admissionv1.AdmissionRequest, resp *admissionv1.AdmissionResponse) error {
	if len(req.Object.Raw) == 0 || len(req.OldObject.Raw) == 0 {
		return fmt.Errorf("%w: request.object and request.oldObject are required for a pod UPDATE", ErrMalformedReview)
	}
	err := Guard(req.OldObject.Raw, req.Object.Raw)
	switch {
	case errors.Is(err, ErrMalformedReview):
		return err
	case err != nil:
		h.logger.Warn("denied update of an injected pod", "namespace", req.Namespace, "pod", req.Name,
			"user", req.UserInfo.Username, "err", err)
		resp.Allowed = false
		resp.Result = &metav1.Status{
			Status:  metav1.StatusFailure,
			Reason:  metav1.StatusReasonForbidden,
			Code:    http.StatusForbidden,
			Message: "tokentailor: " + err.Error() + "; delete the pod and let its controller create a new one instead",
		}
	}
	return nil
}

// inject answers a pod CREATE: a patch adding the sidecars, a denial naming a
// bad annotation, or nothing for a pod that does not opt in.
func (h *Handler) inject(req *admissionv1.AdmissionRequest, resp *admissionv1.AdmissionResponse) error {
	if h.injector.opts.Namespace != "" && req.Namespace == h.injector.opts.Namespace {
		return nil
	}
	if len(req.Object.Raw) == 0 {
		return fmt.Errorf("%w: request.object is empty for a pod CREATE", ErrMalformedReview)
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return fmt.Errorf("%w: request.object is not a Pod: %v", ErrMalformedReview, err)
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
		return nil
	case err != nil:
		h.logger.Error("injecting pod", "namespace", req.Namespace, "pod", name, "err", err)
		resp.Allowed = false
		resp.Result = &metav1.Status{
			Status:  metav1.StatusFailure,
			Reason:  metav1.StatusReasonInternalError,
			Code:    http.StatusInternalServerError,
			Message: "tokentailor sidecar injection failed: " + err.Error(),
		}
		return nil
	case len(ops) == 0:
		return nil
	}
	patch, err := json.Marshal(ops)
	if err != nil {
		return fmt.Errorf("encoding patch: %w", err)
	}
	pt := admissionv1.PatchTypeJSONPatch
	resp.Patch, resp.PatchType = patch, &pt
	h.logger.Info("injected sidecars", "namespace", req.Namespace, "pod", name)
	return nil
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
