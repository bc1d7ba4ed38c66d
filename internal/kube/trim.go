package kube

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/cache"

	"github.com/skein-mesh/skein/internal/config"
)

// lastApplied is kubectl's copy of the whole object in an annotation:
// nothing downstream reads it and it doubles an object's size.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// trim returns the informer transform for s: it runs before objects enter
// the informer cache, so what it drops is never held in memory twice.
func (m *Mirror) trim(s *config.Schema) cache.TransformFunc {
	return func(obj any) (any, error) {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return obj, nil
		}
		u.SetManagedFields(nil)
		if a := u.GetAnnotations(); a[lastApplied] != "" {
			delete(a, lastApplied)
			if len(a) == 0 {
				a = nil
			}
			u.SetAnnotations(a)
		}
		if s.Kind == "Secret" && !hasTLSMaterial(u) {
			// Keep only the key: a Secret nobody here reads costs its name.
			unstructured.RemoveNestedField(u.Object, "data")
			unstructured.RemoveNestedField(u.Object, "stringData")
		}
		return u, nil
	}
}

// trimCRD keeps what the mirror reads from a CRD (group, plural, served
// versions): Istio's CRDs carry megabytes of OpenAPI schema.
func trimCRD(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	group, _, _ := unstructured.NestedString(u.Object, "spec", "group")
	plural, _, _ := unstructured.NestedString(u.Object, "spec", "names", "plural")
	kind, _, _ := unstructured.NestedString(u.Object, "spec", "names", "kind")
	versions, _, _ := unstructured.NestedSlice(u.Object, "spec", "versions")
	slim := make([]any, 0, len(versions))
	for _, v := range versions {
		vm, _ := v.(map[string]any)
		slim = append(slim, map[string]any{"name": vm["name"], "served": vm["served"]})
	}
	out := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": u.GetAPIVersion(),
		"kind":       u.GetKind(),
		"metadata": map[string]any{
			"name":            u.GetName(),
			"resourceVersion": u.GetResourceVersion(),
			"uid":             string(u.GetUID()),
		},
		"spec": map[string]any{
			"group":    group,
			"names":    map[string]any{"plural": plural, "kind": kind},
			"versions": slim,
		},
	}}
	if crdEstablished(u) { // what the mirror waits for before watching the kind
		out.Object["status"] = map[string]any{"conditions": []any{map[string]any{"type": "Established", "status": "True"}}}
	}
	return out, nil
}
