package inject

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// ErrInjectionChanged: a pod UPDATE would change what injection put into the
// pod (the update is denied).
var ErrInjectionChanged = errors.New("the sidecar injection of a pod cannot be changed")

// annotationPrefix marks every annotation tokentailor reads or writes.
const annotationPrefix = "tokentailor.io/"

// guardedPod is the part of a pod Guard compares. Containers and volumes stay
// generic JSON so that a change in a field this package's Kubernetes types
// don't know is still seen.
type guardedPod struct {
	Metadata struct {
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Spec struct {
		Containers     []map[string]any `json:"containers"`
		InitContainers []map[string]any `json:"initContainers"`
		Volumes        []map[string]any `json:"volumes"`
	} `json:"spec"`
}

// Guard checks a pod UPDATE (the old and new pod as JSON). When the old pod is
// injected (see Injected), the update may not add, change or remove any
// tokentailor.io/* annotation (the Envoy bootstrap reaches Envoy from
// tokentailor.io/envoy-config through a downward API volume at its next
// start), nor change the sidecar containers (a container's image is mutable)
// or their volumes. Anything else (labels, other annotations, finalizers,
// owner references) may change. It fails with ErrInjectionChanged naming
// what changed, or ErrMalformedReview when either pod is not JSON of a Pod.
func Guard(oldRaw, newRaw []byte) error {
	var oldPod corev1.Pod
	if err := json.Unmarshal(oldRaw, &oldPod); err != nil {
		return fmt.Errorf("%w: request.oldObject is not a Pod: %v", ErrMalformedReview, err)
	}
	if !Injected(&oldPod) {
		return nil
	}
	var o, n guardedPod
	if err := json.Unmarshal(oldRaw, &o); err != nil {
		return fmt.Errorf("%w: request.oldObject is not a Pod: %v", ErrMalformedReview, err)
	}
	if err := json.Unmarshal(newRaw, &n); err != nil {
		return fmt.Errorf("%w: request.object is not a Pod: %v", ErrMalformedReview, err)
	}
	var changed []string
	for _, k := range unionKeys(o.Metadata.Annotations, n.Metadata.Annotations) {
		if !strings.HasPrefix(k, annotationPrefix) {
			continue
		}
		ov, inOld := o.Metadata.Annotations[k]
		nv, inNew := n.Metadata.Annotations[k]
		switch {
		case inOld && !inNew:
			changed = append(changed, "annotation "+k+" removed")
		case !inOld && inNew:
			changed = append(changed, "annotation "+k+" added")
		case ov != nv:
			changed = append(changed, "annotation "+k+" changed")
		}
	}
	changed = append(changed, diffNamed("container", o.Spec.Containers, n.Spec.Containers, isSidecar)...)
	changed = append(changed, diffNamed("init container", o.Spec.InitContainers, n.Spec.InitContainers, isSidecar)...)
	changed = append(changed, diffNamed("volume", o.Spec.Volumes, n.Spec.Volumes, func(name string) bool {
		return strings.HasPrefix(name, "tokentailor-")
	})...)
	if len(changed) > 0 {
		return fmt.Errorf("%w: %s", ErrInjectionChanged, strings.Join(changed, ", "))
	}
	return nil
}

// diffNamed lists the items (by .name) selected by guarded that were added,
// removed or changed between oldItems and newItems.
func diffNamed(kind string, oldItems, newItems []map[string]any, guarded func(string) bool) []string {
	byName := func(items []map[string]any) map[string]map[string]any {
		m := map[string]map[string]any{}
		for _, it := range items {
			if name, _ := it["name"].(string); guarded(name) {
				m[name] = it
			}
		}
		return m
	}
	o, n := byName(oldItems), byName(newItems)
	var changed []string
	for _, name := range unionKeys(o, n) {
		ov, inOld := o[name]
		nv, inNew := n[name]
		switch {
		case inOld && !inNew:
			changed = append(changed, kind+" "+name+" removed")
		case !inOld && inNew:
			changed = append(changed, kind+" "+name+" added")
		case !reflect.DeepEqual(ov, nv):
			changed = append(changed, kind+" "+name+" changed")
		}
	}
	return changed
}

// unionKeys returns the keys of a and b, sorted.
func unionKeys[V any](a, b map[string]V) []string {
	keys := make([]string, 0, len(a)+len(b))
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}
