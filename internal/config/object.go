// Package config is Skein's configuration model: Istio and Kubernetes
// resources as typed objects, the schema of every kind Skein understands, and
// loading/validation of multi-document YAML. It has no dependency on how
// objects are stored or served.
package config

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
)

// GVK identifies a kind at one API version, as written in apiVersion/kind.
type GVK struct {
	Group   string
	Version string
	Kind    string
}

// APIVersion renders group/version the way YAML spells it ("v1" for core).
func (g GVK) APIVersion() string {
	if g.Group == "" {
		return g.Version
	}
	return g.Group + "/" + g.Version
}

// Meta is the subset of Kubernetes ObjectMeta that Skein keeps.
type Meta struct {
	Name              string            `json:"name"`
	Namespace         string            `json:"namespace,omitempty"`
	Labels            map[string]string `json:"labels,omitempty"`
	Annotations       map[string]string `json:"annotations,omitempty"`
	ResourceVersion   string            `json:"resourceVersion,omitempty"`
	Generation        int64             `json:"generation,omitempty"`
	CreationTimestamp time.Time         `json:"creationTimestamp,omitempty"`
}

// Object is one stored resource. Spec holds the typed body:
//   - Istio kinds: the istio.io/api proto message (always the v1alpha3 Go
//     type for networking, since v1beta1/v1 are aliases of it).
//   - Kubernetes kinds: the whole k8s.io/api object (*corev1.Service, ...),
//     whose ObjectMeta is kept in sync with Meta.
type Object struct {
	GVK  GVK
	Meta Meta
	Spec any
	// Status is opaque to Skein's translation; kept for round-tripping.
	Status map[string]any
}

// Key names an object independent of API version.
type Key struct {
	Kind      string `json:"kind"` // Kind, e.g. "VirtualService"
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

func (k Key) String() string {
	if k.Namespace == "" {
		return k.Kind + "/" + k.Name
	}
	return k.Kind + "/" + k.Namespace + "/" + k.Name
}

// Key returns the object's version-independent key.
func (o *Object) Key() Key {
	return Key{Kind: keyKind(o.GVK.Group, o.GVK.Kind), Namespace: o.Meta.Namespace, Name: o.Meta.Name}
}

// ProtoSpec returns Spec as a proto message (Istio kinds) or nil.
func (o *Object) ProtoSpec() proto.Message {
	m, _ := o.Spec.(proto.Message)
	return m
}

// FieldError locates a problem in user input: the file and the document
// within it, the resource, and the path of the offending field.
type FieldError struct {
	File     string // "-" for stdin
	Document int    // 1-based index of the YAML document in File
	Kind     string
	Name     string
	Field    string // e.g. "spec.http[0].route[0].destination.host"
	Message  string
}

func (e *FieldError) Error() string {
	loc := e.File
	if loc == "" {
		loc = "<input>"
	}
	if e.Document > 0 {
		loc = fmt.Sprintf("%s (document %d)", loc, e.Document)
	}
	res := ""
	if e.Kind != "" {
		res = " " + e.Kind
		if e.Name != "" {
			res += "/" + e.Name
		}
	}
	field := ""
	if e.Field != "" {
		field = " " + e.Field
	}
	if res == "" && field == "" {
		return loc + ": " + e.Message
	}
	return fmt.Sprintf("%s:%s%s: %s", loc, res, field, e.Message)
}
