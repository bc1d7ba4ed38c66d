package config

import (
	"bytes"
	"encoding/json"
	"maps"
	"reflect"

	"google.golang.org/protobuf/proto"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8sschema "k8s.io/apimachinery/pkg/runtime/schema"
)

// DeepCopy returns a copy of o sharing no mutable state with it.
func (o *Object) DeepCopy() *Object {
	if o == nil {
		return nil
	}
	c := *o
	c.Meta.Labels = maps.Clone(o.Meta.Labels)
	c.Meta.Annotations = maps.Clone(o.Meta.Annotations)
	switch s := o.Spec.(type) {
	case proto.Message:
		c.Spec = proto.Clone(s)
	case runtime.Object:
		c.Spec = s.DeepCopyObject()
	}
	c.Status = copyJSONValue(o.Status)
	return &c
}

// SyncMeta copies Meta (and GVK) into the ObjectMeta/TypeMeta of a
// Kubernetes kind's Spec, so code reading the k8s.io/api object sees what
// the store assigned. It does nothing for Istio kinds.
func (o *Object) SyncMeta() {
	mo, ok := o.Spec.(metav1.Object)
	if !ok {
		return
	}
	mo.SetName(o.Meta.Name)
	mo.SetNamespace(o.Meta.Namespace)
	mo.SetLabels(o.Meta.Labels)
	mo.SetAnnotations(o.Meta.Annotations)
	mo.SetResourceVersion(o.Meta.ResourceVersion)
	mo.SetGeneration(o.Meta.Generation)
	mo.SetCreationTimestamp(metav1.NewTime(o.Meta.CreationTimestamp))
	if ro, ok := o.Spec.(runtime.Object); ok {
		ro.GetObjectKind().SetGroupVersionKind(schemaGVK(o.GVK))
	}
}

// SpecEqual reports whether a and b are the same kind with semantically
// equal bodies: proto.Equal for Istio kinds; for Kubernetes kinds, equal
// JSON ignoring apiVersion, kind, metadata and status. Metadata such as
// resourceVersion or labels never makes two specs differ.
func SpecEqual(a, b *Object) bool {
	if a == nil || b == nil || a.GVK.Kind != b.GVK.Kind {
		return a == b
	}
	pa, okA := a.Spec.(proto.Message)
	pb, okB := b.Spec.(proto.Message)
	if okA || okB {
		return okA && okB && proto.Equal(pa, pb)
	}
	da, errA := kubeBody(a.Spec)
	db, errB := kubeBody(b.Spec)
	return errA == nil && errB == nil && reflect.DeepEqual(da["body"], db["body"])
}

// ContentEqual reports whether applying b over a would change anything a
// user can see: the spec, labels, annotations or status. Store-assigned
// fields (resourceVersion, generation, creationTimestamp) are ignored.
func ContentEqual(a, b *Object) bool {
	if !SpecEqual(a, b) || a == nil {
		return a == b
	}
	if !maps.Equal(a.Meta.Labels, b.Meta.Labels) || !maps.Equal(a.Meta.Annotations, b.Meta.Annotations) {
		return false
	}
	return jsonEqual(statusOf(a), statusOf(b))
}

// kubeBody splits a Kubernetes object's JSON into what SpecEqual compares
// ("body": everything but apiVersion, kind, metadata, status) and "status".
func kubeBody(spec any) (map[string]any, error) {
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	doc, err := decodeJSONObject(b)
	if err != nil {
		return nil, err
	}
	status := doc["status"]
	for _, k := range []string{"apiVersion", "kind", "metadata", "status"} {
		delete(doc, k)
	}
	return map[string]any{"body": doc, "status": status}, nil
}

func statusOf(o *Object) any {
	if _, ok := o.Spec.(proto.Message); ok {
		if len(o.Status) == 0 {
			return nil
		}
		return o.Status
	}
	parts, err := kubeBody(o.Spec)
	if err != nil {
		return nil
	}
	return parts["status"]
}

func jsonEqual(a, b any) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && bytes.Equal(ja, jb)
}

func schemaGVK(g GVK) k8sschema.GroupVersionKind {
	return k8sschema.GroupVersionKind{Group: g.Group, Version: g.Version, Kind: g.Kind}
}
