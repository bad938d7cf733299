// Package k8s holds tokentailor's Kubernetes manifests (a kustomize base and
// overlays, see README.md) and their tests: every YAML file and every
// kustomize build decodes strictly into typed objects, and the sidecar
// injection webhook (package inject) is tested against a real kube-apiserver
// with envtest when .ci/build-envtest.sh has built one.
package k8s
