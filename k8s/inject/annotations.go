package inject

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/tokentailor/tokentailor/envoy"
)

// Annotations read and written by the webhook.
const (
	// AnnotationInject opts a pod in: "true" injects, "false" (or absent) leaves
	// the pod alone; any other value is denied.
	AnnotationInject = "tokentailor.io/inject"
	// AnnotationPort is the port the app listens on (1-65535); Envoy sends the
	// checked traffic to 127.0.0.1:<port>. When absent, the only declared
	// containerPort of the pod is used.
	AnnotationPort = "tokentailor.io/port"
	// AnnotationConfig names the ConfigMap holding tokentailor's config (key
	// config.yaml): the policy for this app. Default: Options.DefaultConfigMap.
	AnnotationConfig = "tokentailor.io/config"
	// AnnotationSigningKey names the Secret holding the signing key (key
	// signing.pem). Default: Options.DefaultSigningKeySecret.
	AnnotationSigningKey = "tokentailor.io/signing-key-secret"
	// AnnotationStatus is set to StatusInjected on every injected pod.
	AnnotationStatus = "tokentailor.io/status"
	// AnnotationEnvoyConfig holds the rendered Envoy bootstrap; a downward API
	// volume turns it into the file Envoy reads.
	AnnotationEnvoyConfig = "tokentailor.io/envoy-config"

	// StatusInjected is the value of AnnotationStatus after injection.
	StatusInjected = "injected"
)

// Names and paths of what the webhook adds to a pod.
const (
	// ProxyContainer is the Envoy sidecar's container name.
	ProxyContainer = "tokentailor-proxy"
	// AuthzContainer is the tokentailor sidecar's container name.
	AuthzContainer = "tokentailor"

	// ConfigKey is the key of tokentailor's config in the policy ConfigMap.
	ConfigKey = "config.yaml"
	// SigningKeyKey is the key of the PEM signing key in the Secret.
	SigningKeyKey = "signing.pem"

	// ConfigPath is where tokentailor reads its config in the pod.
	ConfigPath = "/etc/tokentailor/config/" + ConfigKey
	// SigningKeyPath is where the signing key is mounted in the pod; the policy
	// ConfigMap's mint.keys[].file must name it.
	SigningKeyPath = "/etc/tokentailor/keys/" + SigningKeyKey
	// EnvoyConfigPath is where Envoy reads its bootstrap in the pod.
	EnvoyConfigPath = "/etc/envoy/envoy.yaml"
	// SocketDir is the directory shared by both sidecars for the ext_authz socket.
	SocketDir = "/run/tokentailor"

	// AdminPort is tokentailor's admin port (/readyz, /.well-known/jwks.json);
	// in Kubernetes its config must bind it on 0.0.0.0 so the kubelet can probe it.
	AdminPort = 9090
)

// Errors of the webhook. Match them with errors.Is.
var (
	// ErrMalformedReview: the request body is not a usable admission.k8s.io/v1
	// AdmissionReview (answered with HTTP 400).
	ErrMalformedReview = errors.New("malformed AdmissionReview")
	// ErrInvalidAnnotation: an annotated pod carries a bad tokentailor.io/*
	// value (the pod is denied).
	ErrInvalidAnnotation = errors.New("invalid annotation")
	// ErrInvalidOptions: the webhook's own options are unusable.
	ErrInvalidOptions = errors.New("invalid inject options")
)

// reservedPorts are taken by the sidecars in the pod's network namespace.
var reservedPorts = map[int32]string{
	envoy.InboundPort: "Envoy's inbound listener",
	envoy.AdminPort:   "Envoy's admin",
	envoy.ReadyPort:   "Envoy's readiness listener",
	AdminPort:         "tokentailor's admin",
}

// wantsInjection reports whether the pod's annotations ask for injection.
func wantsInjection(ann map[string]string) (bool, error) {
	v, ok := ann[AnnotationInject]
	if !ok {
		return false, nil
	}
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true":
		return true, nil
	case "false", "":
		return false, nil
	}
	return false, fmt.Errorf("%w: %s: %q is neither \"true\" nor \"false\"", ErrInvalidAnnotation, AnnotationInject, v)
}

// settings are the per-pod values read from the annotations.
type settings struct {
	appPort       int32
	configMap     string
	signingSecret string
}

// readSettings validates every tokentailor.io/* annotation of an opted-in pod.
// ports are the containerPorts the pod declares, used when no port is annotated.
func readSettings(ann map[string]string, ports []int32, o Options) (settings, error) {
	s := settings{configMap: o.DefaultConfigMap, signingSecret: o.DefaultSigningKeySecret}
	if v, ok := ann[AnnotationPort]; ok {
		p, err := strconv.ParseInt(strings.TrimSpace(v), 10, 32)
		if err != nil || p < 1 || p > 65535 {
			return s, fmt.Errorf("%w: %s: %q is not a port number (1-65535)", ErrInvalidAnnotation, AnnotationPort, v)
		}
		s.appPort = int32(p)
	} else {
		switch len(ports) {
		case 1:
			s.appPort = ports[0]
		case 0:
			return s, fmt.Errorf("%w: %s is missing and the pod declares no containerPort: set it to the app's port", ErrInvalidAnnotation, AnnotationPort)
		default:
			return s, fmt.Errorf("%w: %s is missing and the pod declares %d containerPorts: set it to the app's port", ErrInvalidAnnotation, AnnotationPort, len(ports))
		}
	}
	if what, taken := reservedPorts[s.appPort]; taken {
		return s, fmt.Errorf("%w: %s: port %d is %s in the injected pod: move the app to another port", ErrInvalidAnnotation, AnnotationPort, s.appPort, what)
	}
	for _, a := range []struct {
		key string
		dst *string
	}{
		{key: AnnotationConfig, dst: &s.configMap},
		{key: AnnotationSigningKey, dst: &s.signingSecret},
	} {
		v, ok := ann[a.key]
		if !ok {
			continue
		}
		if errs := validation.IsDNS1123Subdomain(v); len(errs) > 0 {
			return s, fmt.Errorf("%w: %s: %q is not a valid object name: %s", ErrInvalidAnnotation, a.key, v, strings.Join(errs, "; "))
		}
		*a.dst = v
	}
	return s, nil
}
