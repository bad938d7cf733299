// Package e2e holds the end-to-end journey tests of tokentailor:
//
//	client → Envoy's ext_authz filter → tokentailor (the real binary) → an unmodified app
//
// The default run needs no Docker and no Envoy: the Envoy hop is played by
// envoy/authzfilter.Proxy, a Go model of Envoy's gRPC ext_authz filter
// written from Envoy's documented rules and source (see its package doc for
// what it models and what not), configured from the very bootstraps in
// envoy/ (sidecar.yaml, gateway.yaml). TestMain builds cmd/tokentailor; each
// test starts it with a config generated from docs/examples/ (issuer pointed
// at an authorization-server double, socket and ports moved to temporary
// paths and free loopback ports) and waits for its /readyz.
//
// When an Envoy binary is available (ENVOY_BIN, or envoy on PATH), the same
// journeys also run through a real Envoy started with envoy/'s bootstraps
// rewritten for the temporary ports and socket; otherwise those subtests
// skip and say so.
//
// The Kubernetes journey lives in e2e/kind/.
package e2e
