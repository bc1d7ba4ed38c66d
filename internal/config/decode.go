package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

// Decode turns one Kubernetes-style document (as produced by Encode, or
// parsed from JSON/YAML) into an Object. It is the inverse of Encode and
// applies the same checks as loading a file, except that namespace
// defaulting and semantic validation are left to the caller.
func Decode(doc map[string]any) (*Object, error) {
	objs, _, errs := decodeDocument(docContext{}, doc)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(objs) != 1 {
		return nil, fmt.Errorf("expected a single object, got a list of %d", len(objs))
	}
	return objs[0], nil
}

// Encode renders obj as a Kubernetes-style document: apiVersion, kind,
// metadata, spec (protojson's camelCase, durations as "<seconds>s") and
// status. Kubernetes kinds render as their k8s.io/api JSON.
func Encode(obj *Object) (map[string]any, error) {
	if obj == nil {
		return nil, errors.New("encode: nil object")
	}
	if _, ok := SchemaForGVK(obj.GVK.APIVersion(), obj.GVK.Kind); !ok {
		return nil, fmt.Errorf("encode %s: unknown apiVersion %q / kind %q", obj.Key(), obj.GVK.APIVersion(), obj.GVK.Kind)
	}
	switch spec := obj.Spec.(type) {
	case proto.Message:
		b, err := protojson.Marshal(spec)
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", obj.Key(), err)
		}
		specDoc, err := decodeJSONObject(b)
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", obj.Key(), err)
		}
		doc := map[string]any{
			"apiVersion": obj.GVK.APIVersion(),
			"kind":       obj.GVK.Kind,
			"metadata":   encodeMeta(obj.Meta),
			"spec":       specDoc,
		}
		if obj.Status != nil {
			doc["status"] = copyJSONValue(obj.Status)
		}
		return doc, nil
	case runtime.Object:
		cp := obj.DeepCopy()
		cp.SyncMeta()
		b, err := json.Marshal(cp.Spec)
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", obj.Key(), err)
		}
		doc, err := decodeJSONObject(b)
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", obj.Key(), err)
		}
		doc["apiVersion"] = obj.GVK.APIVersion()
		doc["kind"] = obj.GVK.Kind
		if md, ok := doc["metadata"].(map[string]any); ok && md["creationTimestamp"] == nil {
			delete(md, "creationTimestamp") // metav1.Time renders zero as null
		}
		return doc, nil
	default:
		return nil, fmt.Errorf("encode %s: unsupported spec type %T", obj.Key(), obj.Spec)
	}
}

func encodeMeta(m Meta) map[string]any {
	md := map[string]any{"name": m.Name}
	if m.Namespace != "" {
		md["namespace"] = m.Namespace
	}
	if len(m.Labels) > 0 {
		md["labels"] = stringMap(m.Labels)
	}
	if len(m.Annotations) > 0 {
		md["annotations"] = stringMap(m.Annotations)
	}
	if m.ResourceVersion != "" {
		md["resourceVersion"] = m.ResourceVersion
	}
	if m.Generation != 0 {
		md["generation"] = json.Number(fmt.Sprint(m.Generation))
	}
	if !m.CreationTimestamp.IsZero() {
		md["creationTimestamp"] = m.CreationTimestamp.UTC().Format(time.RFC3339)
	}
	return md
}

func stringMap(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// decodeDocument decodes one document, which may be a List of objects.
func decodeDocument(ctx docContext, doc map[string]any) ([]*Object, []Warning, []error) {
	ctx.kind, _ = doc["kind"].(string)
	ctx.name = ""
	if md, ok := doc["metadata"].(map[string]any); ok {
		ctx.name, _ = md["name"].(string)
	}
	apiVersion, errA := requiredString(ctx, doc, "apiVersion")
	kind, errK := requiredString(ctx, doc, "kind")
	if errA != nil || errK != nil {
		return nil, nil, nonNil(errA, errK)
	}
	schema, known := SchemaForGVK(apiVersion, kind)
	if kind == "List" || (!known && strings.HasSuffix(kind, "List")) {
		return decodeList(ctx, doc)
	}
	if !known {
		return nil, nil, []error{unknownKind(ctx, apiVersion, kind)}
	}
	gvk := GVK{Kind: kind, Version: apiVersion}
	if i := strings.LastIndexByte(apiVersion, '/'); i >= 0 {
		gvk.Group, gvk.Version = apiVersion[:i], apiVersion[i+1:]
	}
	if schema.IsIstio() {
		return decodeIstio(ctx, schema, gvk, doc)
	}
	return decodeKube(ctx, schema, gvk, doc)
}

func decodeList(ctx docContext, doc map[string]any) ([]*Object, []Warning, []error) {
	items, ok := doc["items"].([]any)
	if !ok && doc["items"] != nil {
		return nil, nil, []error{ctx.fieldError("items", "expected a list, got %s", describeJSON(doc["items"]))}
	}
	var (
		objs  []*Object
		warns []Warning
		errs  []error
	)
	for i, item := range items {
		itemCtx := ctx
		itemCtx.prefix = ctx.prefix + fmt.Sprintf("items[%d].", i)
		m, ok := item.(map[string]any)
		if !ok {
			errs = append(errs, itemCtx.fieldError("", "expected an object, got %s", describeJSON(item)))
			continue
		}
		o, w, e := decodeDocument(itemCtx, m)
		objs, warns, errs = append(objs, o...), append(warns, w...), append(errs, e...)
	}
	return objs, warns, errs
}

var istioTopLevel = []string{"apiVersion", "kind", "metadata", "spec", "status"}

func decodeIstio(ctx docContext, schema *Schema, gvk GVK, doc map[string]any) ([]*Object, []Warning, []error) {
	var (
		errs  []error
		warns []Warning
	)
	for _, k := range slices.Sorted(maps.Keys(doc)) {
		if !contains(istioTopLevel, k) {
			errs = append(errs, ctx.fieldError(k, "unknown field %q%s", k, suggest(k, istioTopLevel)))
		}
	}
	meta, metaErrs := decodeMeta(ctx, doc["metadata"])
	errs = append(errs, metaErrs...)

	specDoc, ok := doc["spec"].(map[string]any)
	if !ok && doc["spec"] != nil {
		errs = append(errs, ctx.fieldError("spec", "expected an object, got %s", describeJSON(doc["spec"])))
	}
	if specDoc == nil {
		if schema.specRequired() && doc["spec"] == nil {
			errs = append(errs, ctx.fieldError("spec", "Required value"))
		}
		specDoc = map[string]any{}
	}
	errs = append(errs, presentButEmpty(ctx, schema.Kind, specDoc)...)
	if schema.Kind == "VirtualService" {
		var w *Warning
		specDoc, w = repairSingularHost(ctx, specDoc)
		if w != nil {
			warns = append(warns, *w)
		}
	}
	walker := &protoWalker{}
	spec := schema.NewSpec().(proto.Message)
	normalized := walker.message(spec.ProtoReflect().Descriptor(), specDoc, "spec")
	for _, is := range walker.errs {
		errs = append(errs, ctx.fieldError(is.field, "%s", is.message))
	}
	for _, is := range walker.warns {
		warns = append(warns, ctx.warning(is.field, "%s", is.message))
	}
	var status map[string]any
	if s, ok := doc["status"].(map[string]any); ok {
		status = s
	} else if doc["status"] != nil {
		errs = append(errs, ctx.fieldError("status", "expected an object, got %s", describeJSON(doc["status"])))
	}
	if len(errs) > 0 {
		return nil, warns, errs
	}
	b, err := json.Marshal(normalized)
	if err == nil {
		err = protojson.UnmarshalOptions{DiscardUnknown: false}.Unmarshal(b, spec)
	}
	if err != nil {
		// The walker should have caught everything protojson rejects; this
		// is the backstop, so keep protojson's own words.
		return nil, warns, []error{ctx.fieldError("spec", "%s", strings.TrimPrefix(err.Error(), "proto: "))}
	}
	return []*Object{{GVK: gvk, Meta: meta, Spec: spec, Status: status}}, warns, nil
}

// repairSingularHost accepts `host: reviews` in a VirtualService spec, a
// mistake in a tutorial our users copy, as `hosts: [reviews]`.
func repairSingularHost(ctx docContext, spec map[string]any) (map[string]any, *Warning) {
	host, ok := spec["host"].(string)
	if _, hasHosts := spec["hosts"]; !ok || hasHosts {
		return spec, nil
	}
	fixed := make(map[string]any, len(spec))
	for k, v := range spec {
		if k != "host" {
			fixed[k] = v
		}
	}
	fixed["hosts"] = []any{host}
	w := ctx.warning("spec.host", "VirtualService has no field \"host\"; treating \"host: %s\" as \"hosts: [%s]\" (write hosts: as a list)", host, host)
	return fixed, &w
}

var objectMetaType = reflect.TypeFor[metav1.ObjectMeta]()

func decodeMeta(ctx docContext, v any) (Meta, []error) {
	if v == nil {
		return Meta{}, []error{ctx.fieldError("metadata.name", "required field is missing")}
	}
	walker := &goWalker{}
	walker.walk(objectMetaType, v, "metadata")
	if len(walker.errs) > 0 {
		return Meta{}, issuesToErrors(ctx, walker.errs)
	}
	var om metav1.ObjectMeta
	b, err := json.Marshal(v)
	if err == nil {
		err = json.Unmarshal(b, &om)
	}
	if err != nil {
		return Meta{}, []error{ctx.fieldError("metadata", "%v", err)}
	}
	meta := metaFromObjectMeta(&om)
	if meta.Name == "" {
		return meta, []error{ctx.fieldError("metadata.name", "required field is missing")}
	}
	return meta, nil
}

func metaFromObjectMeta(om metav1.Object) Meta {
	return Meta{
		Name:              om.GetName(),
		Namespace:         om.GetNamespace(),
		Labels:            om.GetLabels(),
		Annotations:       om.GetAnnotations(),
		ResourceVersion:   om.GetResourceVersion(),
		Generation:        om.GetGeneration(),
		CreationTimestamp: om.GetCreationTimestamp().Time.UTC(), // metav1.Time decodes to Local
	}
}

func decodeKube(ctx docContext, schema *Schema, gvk GVK, doc map[string]any) ([]*Object, []Warning, []error) {
	spec := schema.NewSpec()
	walker := &goWalker{}
	walker.walk(reflect.TypeOf(spec), doc, "")
	if len(walker.errs) > 0 {
		return nil, nil, issuesToErrors(ctx, walker.errs)
	}
	b, err := json.Marshal(doc)
	if err == nil {
		err = yaml.UnmarshalStrict(b, spec)
	}
	if err != nil {
		msg := err.Error()
		for _, p := range []string{"error unmarshaling JSON: ", "while decoding JSON: ", "json: "} {
			msg = strings.TrimPrefix(msg, p)
		}
		return nil, nil, []error{ctx.fieldError("", "%s", msg)}
	}
	meta := metaFromObjectMeta(spec.(metav1.Object))
	if meta.Name == "" {
		return nil, nil, []error{ctx.fieldError("metadata.name", "required field is missing")}
	}
	return []*Object{{GVK: gvk, Meta: meta, Spec: spec}}, nil, nil
}

func requiredString(ctx docContext, doc map[string]any, key string) (string, error) {
	v, present := doc[key]
	s, ok := v.(string)
	switch {
	case !present || v == nil || (ok && s == ""):
		return "", ctx.fieldError(key, "required field is missing")
	case !ok:
		return "", ctx.fieldError(key, "expected a string, got %s", describeJSON(v))
	}
	return s, nil
}

// unknownKind explains why an apiVersion/kind pair has no schema: a known
// kind at a wrong version, a misspelt kind, or something Skein lacks.
func unknownKind(ctx docContext, apiVersion, kind string) error {
	var versions, kinds []string
	for _, s := range Schemas {
		kinds = append(kinds, s.Kind)
		if s.Kind == kind {
			for _, v := range s.Versions {
				versions = append(versions, GVK{Group: s.Group, Version: v}.APIVersion())
			}
		}
	}
	if len(versions) > 0 {
		return ctx.fieldError("apiVersion", "unknown apiVersion %q for kind %s (want one of %s)", apiVersion, kind, strings.Join(versions, ", "))
	}
	return ctx.fieldError("kind", "unknown kind %q in apiVersion %q%s", kind, apiVersion, suggest(kind, kinds))
}

func issuesToErrors(ctx docContext, issues []issue) []error {
	errs := make([]error, len(issues))
	for i, is := range issues {
		errs[i] = ctx.fieldError(is.field, "%s", is.message)
	}
	return errs
}

func nonNil(errs ...error) []error {
	var out []error
	for _, e := range errs {
		if e != nil {
			out = append(out, e)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// decodeJSONObject parses b keeping numbers exact (json.Number), so int64
// values survive a round trip.
func decodeJSONObject(b []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	return m, nil
}

// copyJSONValue deep-copies a decoded JSON value.
func copyJSONValue[T any](v T) T {
	return any(copyAny(v)).(T)
}

func copyAny(v any) any {
	switch x := v.(type) {
	case map[string]any:
		if x == nil {
			return x
		}
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = copyAny(e)
		}
		return out
	case []any:
		if x == nil {
			return x
		}
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = copyAny(e)
		}
		return out
	}
	return v
}
