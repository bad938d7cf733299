// Package inject is tokentailor's sidecar injection webhook: a mutating
// admission webhook (admission.k8s.io/v1) that adds the Envoy and tokentailor
// sidecars to every pod annotated tokentailor.io/inject: "true".
//
// The app keeps its container, image and port. The webhook adds:
//   - container "tokentailor-proxy": Envoy, listening on :8080 (the only port a
//     Service should target) and :9902 (readiness), with the bootstrap rendered
//     from envoy/sidecar.yaml (package envoy) with the app cluster pointed
//     at 127.0.0.1:<tokentailor.io/port>. The bootstrap travels in the pod
//     annotation tokentailor.io/envoy-config and reaches Envoy as a file through
//     a downward API volume, so there is no second copy of the template and no
//     object to create (sideEffects: None);
//   - container "tokentailor": `tokentailor serve` with the policy ConfigMap
//     (tokentailor.io/config) and the signing-key Secret
//     (tokentailor.io/signing-key-secret) mounted read-only;
//   - an emptyDir shared by both for the ext_authz unix socket.
//
// The answer is a JSON patch of "add" operations ("replace" only for a
// container or volume the pod already has under a sidecar's name), so fields
// of the pod this package's Kubernetes types don't know are never touched.
// Nothing the pod brings on CREATE is trusted: a preset
// tokentailor.io/status, bootstrap or look-alike sidecar is overwritten, so
// injecting an injected pod yields the same pod. A pod without the
// annotation, a pod in the webhook's own namespace and every other object are
// allowed unchanged. An annotated pod with a bad annotation value is denied
// with a message naming the annotation. A malformed AdmissionReview is
// answered 400 with a message saying what is wrong.
//
// The validating webhook (ValidatePath, see Guard) denies every UPDATE that
// would change what injection put into a pod: its tokentailor.io/*
// annotations (Envoy reads the bootstrap at every start), the sidecar
// containers (images are mutable) and their volumes. Legitimate updates
// (labels, other annotations, finalizers, the app's image) pass.
//
// Run serves the webhook over TLS with the certificate and key read from files
// (a Secret or cert-manager) and reloaded when they change.
package inject
