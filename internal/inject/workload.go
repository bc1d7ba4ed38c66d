package inject

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// templatePaths are where each workload kind keeps its pod template (a Pod
// is its own template).
var templatePaths = map[string][]string{
	"Pod":                   nil,
	"Deployment":            {"spec", "template"},
	"ReplicaSet":            {"spec", "template"},
	"ReplicationController": {"spec", "template"},
	"StatefulSet":           {"spec", "template"},
	"DaemonSet":             {"spec", "template"},
	"Job":                   {"spec", "template"},
	"CronJob":               {"spec", "jobTemplate", "spec", "template"},
}

// IsWorkload reports whether kind carries a pod template Object injects.
func IsWorkload(kind string) bool {
	_, ok := templatePaths[kind]
	return ok
}

// Pod injects a Pod in place (what the admission webhook does). Its
// workload name comes from its controller: a ReplicaSet's pods belong to
// the Deployment the ReplicaSet is named after, as in Istio.
func Pod(pod *corev1.Pod, namespaceLabels map[string]string, params Params) (Mode, error) {
	t := &corev1.PodTemplateSpec{ObjectMeta: pod.ObjectMeta, Spec: pod.Spec}
	ns := firstNonEmpty(pod.Namespace, "default")
	target := Target{Namespace: ns, NamespaceLabels: namespaceLabels}
	target.WorkloadName, target.WorkloadKind, target.WorkloadAPIVersion = podWorkload(pod)
	mode, err := Template(t, target, params)
	if err != nil {
		return None, fmt.Errorf("pod %s/%s: %w", ns, firstNonEmpty(pod.Name, pod.GenerateName), err)
	}
	pod.ObjectMeta, pod.Spec = t.ObjectMeta, t.Spec
	return mode, nil
}

// podWorkload derives a pod's workload from its controller reference.
func podWorkload(pod *corev1.Pod) (name, kind, apiVersion string) {
	for _, o := range pod.OwnerReferences {
		if o.Controller == nil || !*o.Controller {
			continue
		}
		switch o.Kind {
		case "ReplicaSet":
			if h := pod.Labels["pod-template-hash"]; h != "" {
				if d, ok := strings.CutSuffix(o.Name, "-"+h); ok {
					return d, "Deployment", "apps/v1"
				}
			}
		}
		return o.Name, o.Kind, o.APIVersion
	}
	name = pod.Name
	if name == "" {
		name = strings.TrimSuffix(pod.GenerateName, "-")
	}
	return name, "Pod", "v1"
}

// Object injects the pod template of one workload document (Pod,
// Deployment, ReplicaSet, ReplicationController, StatefulSet, DaemonSet,
// Job, CronJob) in place; other kinds are left alone (None). Fields of the
// document outside the pod template are untouched. defaultNamespace is used
// when the document names none.
func Object(obj map[string]any, namespaceLabels map[string]string, defaultNamespace string, params Params) (Mode, error) {
	kind, _ := obj["kind"].(string)
	path, ok := templatePaths[kind]
	if !ok {
		return None, nil
	}
	meta, _ := obj["metadata"].(map[string]any)
	name, _ := meta["name"].(string)
	ns, _ := meta["namespace"].(string)
	if ns == "" {
		ns = firstNonEmpty(defaultNamespace, "default")
	}
	where := fmt.Sprintf("%s %s/%s", kind, ns, name)

	if kind == "Pod" {
		pod := &corev1.Pod{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj, pod); err != nil {
			return None, fmt.Errorf("%s: %v", where, err)
		}
		mode, err := Pod(pod, namespaceLabels, params)
		if err != nil || mode == None {
			return mode, err
		}
		out, err := runtime.DefaultUnstructuredConverter.ToUnstructured(pod)
		if err != nil {
			return None, fmt.Errorf("%s: %v", where, err)
		}
		// Only what injection touches is written back: status and other
		// fields stay as the document had them.
		cleanMeta(out)
		obj["metadata"], obj["spec"] = out["metadata"], out["spec"]
		return mode, nil
	}

	parent := obj
	for _, p := range path[:len(path)-1] {
		next, ok := parent[p].(map[string]any)
		if !ok {
			return None, fmt.Errorf("%s: %s: missing or not an object", where, strings.Join(path, "."))
		}
		parent = next
	}
	last := path[len(path)-1]
	raw, ok := parent[last].(map[string]any)
	if !ok {
		return None, fmt.Errorf("%s: %s: missing or not an object", where, strings.Join(path, "."))
	}
	t := &corev1.PodTemplateSpec{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, t); err != nil {
		return None, fmt.Errorf("%s: %s: %v", where, strings.Join(path, "."), err)
	}
	apiVersion, _ := obj["apiVersion"].(string)
	target := Target{Namespace: ns, NamespaceLabels: namespaceLabels, WorkloadName: name, WorkloadKind: kind, WorkloadAPIVersion: apiVersion}
	mode, err := Template(t, target, params)
	if err != nil {
		return None, fmt.Errorf("%s: %s: %w", where, strings.Join(path, "."), err)
	}
	if mode == None {
		return None, nil
	}
	out, err := runtime.DefaultUnstructuredConverter.ToUnstructured(t)
	if err != nil {
		return None, fmt.Errorf("%s: %v", where, err)
	}
	cleanMeta(out)
	parent[last] = out
	return mode, nil
}

// cleanMeta drops the null creationTimestamp the typed round trip adds.
func cleanMeta(obj map[string]any) {
	if m, ok := obj["metadata"].(map[string]any); ok {
		if ts, ok := m["creationTimestamp"]; ok && ts == nil {
			delete(m, "creationTimestamp")
		}
	}
}
