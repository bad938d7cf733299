package inject

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/tokentailor/tokentailor/envoy"
)

// Names of the volumes the webhook adds.
const (
	volumeSocket      = "tokentailor-run"
	volumeEnvoyConfig = "tokentailor-envoy-config"
	volumeConfig      = "tokentailor-config"
	volumeSigningKey  = "tokentailor-signing-key"
)

// PatchOperation is one RFC 6902 JSON patch operation. The webhook emits
// "add", and "replace" for a container or volume the pod already has under a
// sidecar's name.
type PatchOperation struct {
	// Op is the operation ("add" or "replace").
	Op string `json:"op"`
	// Path is the JSON pointer (RFC 6901) of the target.
	Path string `json:"path"`
	// Value is the added value.
	Value any `json:"value,omitempty"`
}

// Injected reports whether the pod carries any mark of tokentailor's
// injection: the status or bootstrap annotation, or a container named like a
// sidecar. An UPDATE of such a pod may not change what injection put there
// (see Guard). A CREATE never trusts these marks: whoever creates the pod
// writes them, so Patch injects over them.
func Injected(pod *corev1.Pod) bool {
	if _, ok := pod.Annotations[AnnotationStatus]; ok {
		return true
	}
	if _, ok := pod.Annotations[AnnotationEnvoyConfig]; ok {
		return true
	}
	for _, cs := range [][]corev1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
		for _, c := range cs {
			if isSidecar(c.Name) {
				return true
			}
		}
	}
	return false
}

// isSidecar reports whether name is one of the injected containers' names.
func isSidecar(name string) bool {
	return name == ProxyContainer || name == AuthzContainer
}

// isSidecarVolume reports whether name is one of the injected volumes' names.
func isSidecarVolume(name string) bool {
	return slices.Contains(sidecarVolumes, name)
}

// sidecarVolumes are the names of the volumes the webhook adds.
var sidecarVolumes = []string{volumeSocket, volumeEnvoyConfig, volumeConfig, volumeSigningKey}

// Patch returns the JSON patch that injects the sidecars into pod on CREATE,
// or nil when the pod is not opted in. What the pod already carries under
// the sidecars' names (the status and bootstrap annotations, containers
// tokentailor-proxy and tokentailor, volumes tokentailor-run, ...) is
// overwritten with what this webhook renders, never trusted: a pod created
// with tokentailor.io/status: injected, or with a look-alike sidecar, still
// gets the real ones. Running Patch on its own output therefore yields the
// same pod (idempotent). A bad annotation, or a sidecar name used where the
// webhook cannot replace it (an init container, an unknown tokentailor-*
// volume), fails with ErrInvalidAnnotation.
func (in *Injector) Patch(pod *corev1.Pod) ([]PatchOperation, error) {
	want, err := wantsInjection(pod.Annotations)
	if err != nil || !want {
		return nil, err
	}
	var ports []int32
	for _, c := range pod.Spec.Containers {
		if isSidecar(c.Name) {
			continue
		}
		for _, p := range c.Ports {
			if !slices.Contains(ports, p.ContainerPort) {
				ports = append(ports, p.ContainerPort)
			}
		}
	}
	s, err := readSettings(pod.Annotations, ports, in.opts)
	if err != nil {
		return nil, err
	}
	if err := checkNameClashes(pod); err != nil {
		return nil, err
	}
	envoyYAML, err := RenderEnvoy(in.opts.EnvoyTemplate, s.appPort)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}

	var ops []PatchOperation
	if pod.Annotations == nil {
		ops = append(ops, PatchOperation{Op: "add", Path: "/metadata/annotations", Value: map[string]string{}})
	}
	// "add" on an existing member replaces it (RFC 6902 §4.1): a preset
	// status or bootstrap is overwritten.
	ops = append(ops,
		PatchOperation{Op: "add", Path: "/metadata/annotations/" + escapePointer(AnnotationEnvoyConfig), Value: string(envoyYAML)},
		PatchOperation{Op: "add", Path: "/metadata/annotations/" + escapePointer(AnnotationStatus), Value: StatusInjected},
	)
	for _, c := range in.containers() {
		i := slices.IndexFunc(pod.Spec.Containers, func(x corev1.Container) bool { return x.Name == c.Name })
		if i >= 0 {
			ops = append(ops, PatchOperation{Op: "replace", Path: fmt.Sprintf("/spec/containers/%d", i), Value: c})
		} else {
			ops = append(ops, PatchOperation{Op: "add", Path: "/spec/containers/-", Value: c})
		}
	}
	vols := volumes(s)
	if len(pod.Spec.Volumes) == 0 {
		ops = append(ops, PatchOperation{Op: "add", Path: "/spec/volumes", Value: vols})
	} else {
		for _, v := range vols {
			i := slices.IndexFunc(pod.Spec.Volumes, func(x corev1.Volume) bool { return x.Name == v.Name })
			if i >= 0 {
				ops = append(ops, PatchOperation{Op: "replace", Path: fmt.Sprintf("/spec/volumes/%d", i), Value: v})
			} else {
				ops = append(ops, PatchOperation{Op: "add", Path: "/spec/volumes/-", Value: v})
			}
		}
	}
	// The sidecars' drain must fit in the pod's grace period (see
	// MinTerminationGracePeriodSeconds); a longer one is the app's choice.
	if g := pod.Spec.TerminationGracePeriodSeconds; g == nil || *g < MinTerminationGracePeriodSeconds {
		ops = append(ops, PatchOperation{Op: "add", Path: "/spec/terminationGracePeriodSeconds", Value: MinTerminationGracePeriodSeconds})
	}
	return ops, nil
}

// checkNameClashes refuses a pod whose own volumes, containers or ports
// collide with the sidecars' in a way Patch cannot overwrite (the API server
// would reject the patched pod with a less clear message, or a look-alike
// would survive next to the real sidecars).
func checkNameClashes(pod *corev1.Pod) error {
	for _, v := range pod.Spec.Volumes {
		if strings.HasPrefix(v.Name, "tokentailor-") && !isSidecarVolume(v.Name) {
			return fmt.Errorf("%w: the pod already has a volume named %q: names starting with tokentailor- are reserved for the sidecars", ErrInvalidAnnotation, v.Name)
		}
	}
	for _, c := range pod.Spec.InitContainers {
		if isSidecar(c.Name) {
			return fmt.Errorf("%w: the pod has an init container named %q: the name is reserved for the sidecars", ErrInvalidAnnotation, c.Name)
		}
	}
	for _, c := range pod.Spec.EphemeralContainers {
		if isSidecar(c.Name) {
			return fmt.Errorf("%w: the pod has an ephemeral container named %q: the name is reserved for the sidecars", ErrInvalidAnnotation, c.Name)
		}
	}
	for _, c := range pod.Spec.Containers {
		if isSidecar(c.Name) {
			continue
		}
		for _, p := range c.Ports {
			if what, taken := reservedPorts[p.ContainerPort]; taken {
				return fmt.Errorf("%w: container %q declares port %d, which is %s in the injected pod", ErrInvalidAnnotation, c.Name, p.ContainerPort, what)
			}
		}
	}
	return nil
}

// escapePointer escapes a JSON pointer reference token (RFC 6901).
func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// restricted is the container security context of both sidecars: non-root,
// no privilege escalation, every capability dropped, read-only root.
func restricted() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		RunAsNonRoot:             ptr.To(true),
		RunAsUser:                ptr.To[int64](65532),
		RunAsGroup:               ptr.To[int64](65532),
		AllowPrivilegeEscalation: ptr.To(false),
		ReadOnlyRootFilesystem:   ptr.To(true),
		Privileged:               ptr.To(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

func resources(cpuReq, memReq, cpuLim, memLim string) corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse(cpuReq),
			corev1.ResourceMemory: resource.MustParse(memReq),
		},
		Limits: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse(cpuLim),
			corev1.ResourceMemory: resource.MustParse(memLim),
		},
	}
}

// containers are the two sidecars, Envoy first.
func (in *Injector) containers() []corev1.Container {
	envoy := corev1.Container{
		Name:  ProxyContainer,
		Image: in.opts.EnvoyImage,
		Args: []string{
			"--config-path", EnvoyConfigPath,
			"--disable-hot-restart",
			"--log-level", "info",
		},
		Ports: []corev1.ContainerPort{
			{Name: "tt-envoy", ContainerPort: envoy.InboundPort, Protocol: corev1.ProtocolTCP},
			{Name: "tt-envoy-ready", ContainerPort: envoy.ReadyPort, Protocol: corev1.ProtocolTCP},
		},
		ReadinessProbe: &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: envoy.ReadyPath, Port: intstr.FromInt32(envoy.ReadyPort),
			}},
			PeriodSeconds: 5, FailureThreshold: 3, TimeoutSeconds: 2,
		},
		LivenessProbe: &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{
				Port: intstr.FromInt32(envoy.InboundPort),
			}},
			InitialDelaySeconds: 10, PeriodSeconds: 10, FailureThreshold: 3, TimeoutSeconds: 2,
		},
		// Keep taking traffic while the pod's endpoints are withdrawn; the
		// image has no shell, hence the kubelet's own sleep (see drain.go).
		Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{
			Sleep: &corev1.SleepAction{Seconds: ProxyPreStopSeconds},
		}},
		Resources:       resources("50m", "64Mi", "1", "256Mi"),
		SecurityContext: restricted(),
		VolumeMounts: []corev1.VolumeMount{
			{Name: volumeEnvoyConfig, MountPath: "/etc/envoy", ReadOnly: true},
			{Name: volumeSocket, MountPath: SocketDir},
		},
	}
	authz := corev1.Container{
		Name:  AuthzContainer,
		Image: in.opts.TokentailorImage,
		Args:  []string{"serve", "-config", ConfigPath},
		Ports: []corev1.ContainerPort{
			{Name: "tt-admin", ContainerPort: AdminPort, Protocol: corev1.ProtocolTCP},
		},
		ReadinessProbe: &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: "/readyz", Port: intstr.FromInt32(AdminPort),
			}},
			PeriodSeconds: 5, FailureThreshold: 3, TimeoutSeconds: 2,
		},
		// Go's soft memory limit follows the container's limit, so the GC
		// works harder before the kernel's OOM killer has to.
		Env: []corev1.EnvVar{{Name: "GOMEMLIMIT", ValueFrom: &corev1.EnvVarSource{
			ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.memory"},
		}}},
		// No preStop: on SIGTERM tokentailor itself drains (listen.drain),
		// answering Envoy until Envoy has stopped (see drain.go).
		Resources:       resources("50m", "32Mi", "1", "128Mi"),
		SecurityContext: restricted(),
		VolumeMounts: []corev1.VolumeMount{
			{Name: volumeConfig, MountPath: "/etc/tokentailor/config", ReadOnly: true},
			{Name: volumeSigningKey, MountPath: "/etc/tokentailor/keys", ReadOnly: true},
			{Name: volumeSocket, MountPath: SocketDir},
		},
	}
	return []corev1.Container{envoy, authz}
}

// volumes are the sidecars' volumes for one pod's settings.
func volumes(s settings) []corev1.Volume {
	return []corev1.Volume{
		{Name: volumeSocket, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
			SizeLimit: ptr.To(resource.MustParse("1Mi")),
		}}},
		{Name: volumeEnvoyConfig, VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
			Items: []corev1.DownwardAPIVolumeFile{{
				Path:     "envoy.yaml",
				FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations['" + AnnotationEnvoyConfig + "']"},
			}},
			DefaultMode: ptr.To[int32](0o444),
		}}},
		{Name: volumeConfig, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: s.configMap},
			Items:                []corev1.KeyToPath{{Key: ConfigKey, Path: ConfigKey}},
			DefaultMode:          ptr.To[int32](0o444),
		}}},
		// Every key of the Secret (signing.pem, and e.g. a client secret the
		// config names) is readable by the non-root sidecar user (no fsGroup
		// is imposed on the app's pod) and mounted into the tokentailor
		// container only.
		{Name: volumeSigningKey, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName:  s.signingSecret,
			DefaultMode: ptr.To[int32](0o444),
		}}},
	}
}
