// Package envoy holds tokentailor's Envoy bootstraps, embedded so that
// tests, the end-to-end harness and the Kubernetes injection webhook use the
// very files a user copies from envoy/.
//
// Every file is a complete Envoy v3 bootstrap, proven valid by this package's
// tests with package envoy/validate. The names below (clusters, listeners,
// ports) are the handles a program uses to adapt a file, e.g. the webhook
// rewriting the app port or the socket path of the sidecar bootstrap.
package envoy

import (
	"embed"
	"io/fs"
)

// Handles into the embedded bootstraps. The tests check each against the files.
const (
	// AppCluster is the static cluster for the app next to the sidecar
	// (127.0.0.1:AppPort in sidecar*.yaml).
	AppCluster = "app"
	// AuthzCluster is the static HTTP/2 cluster for tokentailor's ext_authz
	// gRPC server, named by the ext_authz filter's grpc_service.
	AuthzCluster = "tokentailor"
	// InboundListener is the listener that carries the app's traffic.
	InboundListener = "inbound"
	// ReadyListener is the listener that answers Envoy's own readiness probe.
	ReadyListener = "ready"
	// ContextKey is the context_extensions key that names tokentailor's route.
	ContextKey = "route"

	// InboundPort is the inbound listener's port (bound on 0.0.0.0).
	InboundPort = 8080
	// AppPort is the app's port on 127.0.0.1 in the sidecar bootstraps.
	AppPort = 3000
	// AdminPort is Envoy's admin port, bound on 127.0.0.1 only.
	AdminPort = 9901
	// ReadyPort is the readiness listener's port (bound on 0.0.0.0).
	ReadyPort = 9902
	// ReadyPath is the path that answers 200 while Envoy is up and not draining.
	ReadyPath = "/ready"
	// AuthzSocket is the unix socket tokentailor listens on in sidecar.yaml.
	AuthzSocket = "/run/tokentailor/ext_authz.sock"
	// AuthzTCPAddr is tokentailor's TCP address in sidecar-tcp.yaml and gateway.yaml.
	AuthzTCPAddr = "127.0.0.1:9191"
	// AuthzHTTPAddr is tokentailor's HTTP authorization listener in
	// sidecar-http.yaml (listen.http).
	AuthzHTTPAddr = "127.0.0.1:9192"
)

//go:embed sidecar.yaml
var sidecar []byte

//go:embed sidecar-tcp.yaml
var sidecarTCP []byte

//go:embed sidecar-mtls.yaml
var sidecarMTLS []byte

//go:embed sidecar-http.yaml
var sidecarHTTP []byte

//go:embed gateway.yaml
var gateway []byte

//go:embed *.yaml
var files embed.FS

// Sidecar returns a copy of sidecar.yaml: the sidecar bootstrap with
// tokentailor on the unix socket AuthzSocket. It is the template for injected
// sidecars.
func Sidecar() []byte { return clone(sidecar) }

// SidecarTCP returns a copy of sidecar-tcp.yaml: sidecar.yaml with
// tokentailor on AuthzTCPAddr instead of the unix socket.
func SidecarTCP() []byte { return clone(sidecarTCP) }

// SidecarMTLS returns a copy of sidecar-mtls.yaml: sidecar.yaml with the
// inbound listener requiring client certificates from /etc/envoy/tls/.
func SidecarMTLS() []byte { return clone(sidecarMTLS) }

// SidecarHTTP returns a copy of sidecar-http.yaml: the sidecar asking
// tokentailor's HTTP authorization listener (ext_authz http_service) at
// AuthzHTTPAddr instead of its gRPC service.
func SidecarHTTP() []byte { return clone(sidecarHTTP) }

// Gateway returns a copy of gateway.yaml: the edge proxy routing /orders,
// /billing and /profile to 127.0.0.1:3001-3003, tokentailor on AuthzTCPAddr.
func Gateway() []byte { return clone(gateway) }

// Files returns every embedded bootstrap (*.yaml), by file name.
func Files() fs.FS { return files }

func clone(b []byte) []byte { return append([]byte(nil), b...) }
