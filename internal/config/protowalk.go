package config

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

// protoWalker checks a decoded JSON value against a proto message descriptor
// before protojson sees it, for two reasons: protojson's errors carry no field
// path, and Istio accepts Go-style durations ("5m", "100ms") that protojson
// rejects. The walker returns a copy of the value with every
// google.protobuf.Duration rewritten to protojson's "<seconds>s" form.
type protoWalker struct {
	errs  []issue
	warns []issue
}

func (w *protoWalker) errorf(path, format string, args ...any) {
	w.errs = append(w.errs, issue{path, fmt.Sprintf(format, args...)})
}

func (w *protoWalker) warnf(path, format string, args ...any) {
	w.warns = append(w.warns, issue{path, fmt.Sprintf(format, args...)})
}

// message walks v as the JSON form of a message of type md.
func (w *protoWalker) message(md protoreflect.MessageDescriptor, v any, path string) any {
	if v == nil {
		return nil
	}
	if out, handled := w.wellKnown(md, v, path); handled {
		return out
	}
	obj, ok := v.(map[string]any)
	if !ok {
		w.errorf(path, "expected an object, got %s", describeJSON(v))
		return v
	}
	out := make(map[string]any, len(obj))
	oneofSeen := map[protoreflect.FullName]string{}
	for _, key := range slices.Sorted(maps.Keys(obj)) {
		val := obj[key]
		child := joinPath(path, key)
		fd := md.Fields().ByJSONName(key)
		if fd == nil {
			fd = md.Fields().ByName(protoreflect.Name(key))
		}
		if fd == nil {
			w.errorf(child, "unknown field %q%s", key, suggest(key, jsonNames(md)))
			continue
		}
		if opts, ok := fd.Options().(*descriptorpb.FieldOptions); ok && opts.GetDeprecated() {
			w.warnf(child, "field %q is deprecated", key)
		}
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() && val != nil {
			if prev, dup := oneofSeen[od.FullName()]; dup {
				w.errorf(child, "only one of %s may be set (%q is set too)", oneofNames(od), prev)
			}
			oneofSeen[od.FullName()] = key
		}
		out[key] = w.field(fd, val, child)
	}
	return out
}

// field walks the value of one field, honouring its cardinality.
func (w *protoWalker) field(fd protoreflect.FieldDescriptor, v any, path string) any {
	if v == nil {
		return nil
	}
	switch {
	case fd.IsMap():
		obj, ok := v.(map[string]any)
		if !ok {
			w.errorf(path, "expected a map, got %s", describeJSON(v))
			return v
		}
		out := make(map[string]any, len(obj))
		for _, k := range slices.Sorted(maps.Keys(obj)) {
			out[k] = w.single(fd.MapValue(), obj[k], fmt.Sprintf("%s[%s]", path, k))
		}
		return out
	case fd.IsList():
		list, ok := v.([]any)
		if !ok {
			w.errorf(path, "expected a list, got %s", describeJSON(v))
			return v
		}
		out := make([]any, len(list))
		for i, item := range list {
			out[i] = w.single(fd, item, fmt.Sprintf("%s[%d]", path, i))
		}
		return out
	default:
		return w.single(fd, v, path)
	}
}

// single walks one scalar or message value of fd's kind.
func (w *protoWalker) single(fd protoreflect.FieldDescriptor, v any, path string) any {
	if v == nil {
		return nil
	}
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return w.message(fd.Message(), v, path)
	case protoreflect.EnumKind:
		w.enum(fd.Enum(), v, path)
	default:
		w.scalar(fd.Kind(), v, path)
	}
	return v
}

func (w *protoWalker) enum(ed protoreflect.EnumDescriptor, v any, path string) {
	var evd protoreflect.EnumValueDescriptor
	switch x := v.(type) {
	case string:
		evd = ed.Values().ByName(protoreflect.Name(x))
		if evd == nil {
			w.errorf(path, "invalid value %q (want one of %s)", x, enumNames(ed))
			return
		}
	default:
		n, ok := jsonInteger(v, math.MinInt32, math.MaxInt32)
		if !ok {
			w.errorf(path, "expected one of %s, got %s", enumNames(ed), describeJSON(v))
			return
		}
		evd = ed.Values().ByNumber(protoreflect.EnumNumber(n))
		if evd == nil {
			w.errorf(path, "invalid value %d (want one of %s)", n, enumNames(ed))
			return
		}
	}
	if opts, ok := evd.Options().(*descriptorpb.EnumValueOptions); ok && opts.GetDeprecated() {
		w.warnf(path, "value %s is deprecated", evd.Name())
	}
}

func (w *protoWalker) scalar(kind protoreflect.Kind, v any, path string) {
	switch kind {
	case protoreflect.BoolKind:
		if _, ok := v.(bool); !ok {
			w.errorf(path, "expected a boolean, got %s", describeJSON(v))
		}
	case protoreflect.StringKind, protoreflect.BytesKind:
		if _, ok := v.(string); !ok {
			w.errorf(path, "expected a string, got %s", describeJSON(v))
		}
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		w.integer(v, path, math.MinInt32, math.MaxInt32)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		w.integer(v, path, 0, math.MaxUint32)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		w.integer(v, path, math.MinInt64, math.MaxInt64)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		w.integer(v, path, 0, math.MaxInt64)
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		if _, ok := jsonFloat(v); !ok {
			w.errorf(path, "expected a number, got %s", describeJSON(v))
		}
	}
}

func (w *protoWalker) integer(v any, path string, lo, hi float64) {
	if _, ok := jsonInteger(v, lo, hi); !ok {
		if f, isNum := jsonFloat(v); isNum && f == math.Trunc(f) {
			w.errorf(path, "%s is out of range", describeJSON(v))
			return
		}
		w.errorf(path, "expected an integer, got %s", describeJSON(v))
	}
}

// wellKnown handles the google.protobuf types whose JSON form is not an
// object of their fields.
func (w *protoWalker) wellKnown(md protoreflect.MessageDescriptor, v any, path string) (any, bool) {
	switch md.FullName() {
	case "google.protobuf.Duration":
		return w.duration(v, path), true
	case "google.protobuf.Struct":
		if _, ok := v.(map[string]any); !ok {
			w.errorf(path, "expected an object, got %s", describeJSON(v))
		}
		return v, true
	case "google.protobuf.ListValue":
		if _, ok := v.([]any); !ok {
			w.errorf(path, "expected a list, got %s", describeJSON(v))
		}
		return v, true
	case "google.protobuf.Value", "google.protobuf.Any", "google.protobuf.FieldMask":
		// Free-form (or type-URL driven): protojson checks these itself.
		return v, true
	case "google.protobuf.Timestamp":
		if _, ok := v.(string); !ok {
			w.errorf(path, "expected an RFC 3339 timestamp string, got %s", describeJSON(v))
		}
		return v, true
	case "google.protobuf.BoolValue", "google.protobuf.StringValue", "google.protobuf.BytesValue",
		"google.protobuf.Int32Value", "google.protobuf.UInt32Value", "google.protobuf.Int64Value",
		"google.protobuf.UInt64Value", "google.protobuf.FloatValue", "google.protobuf.DoubleValue":
		w.scalar(md.Fields().ByName("value").Kind(), v, path)
		return v, true
	}
	return nil, false
}

// duration accepts what Istio users write (any Go duration: "5m", "1h30m",
// "100ms", "1.5s") and returns protojson's form ("300s", "0.100s").
func (w *protoWalker) duration(v any, path string) any {
	s, ok := v.(string)
	if !ok {
		w.errorf(path, "invalid duration %s: write it as a string with a unit, like \"10s\", \"100ms\" or \"5m\"", describeJSON(v))
		return v
	}
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		w.errorf(path, "invalid duration %q: write a number with a unit, like \"10s\", \"100ms\" or \"5m\"", s)
		return v
	}
	if d < 0 {
		w.errorf(path, "invalid duration %q: must not be negative", s)
		return v
	}
	return protoDurationString(d)
}

// protoDurationString renders d as protojson's Duration: seconds with up to
// nine fractional digits.
func protoDurationString(d time.Duration) string {
	secs := int64(d / time.Second)
	nanos := int64(d % time.Second)
	if nanos == 0 {
		return strconv.FormatInt(secs, 10) + "s"
	}
	frac := strings.TrimRight(fmt.Sprintf("%09d", nanos), "0")
	return strconv.FormatInt(secs, 10) + "." + frac + "s"
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func jsonNames(md protoreflect.MessageDescriptor) []string {
	names := make([]string, 0, md.Fields().Len())
	for i := 0; i < md.Fields().Len(); i++ {
		names = append(names, md.Fields().Get(i).JSONName())
	}
	return names
}

func oneofNames(od protoreflect.OneofDescriptor) string {
	names := make([]string, 0, od.Fields().Len())
	for i := 0; i < od.Fields().Len(); i++ {
		names = append(names, od.Fields().Get(i).JSONName())
	}
	return strings.Join(names, ", ")
}

func enumNames(ed protoreflect.EnumDescriptor) string {
	names := make([]string, 0, ed.Values().Len())
	for i := 0; i < ed.Values().Len(); i++ {
		names = append(names, string(ed.Values().Get(i).Name()))
	}
	return strings.Join(names, ", ")
}

// jsonFloat returns v as a float when it is a JSON number (or a Go number
// placed in a document by code rather than by a decoder).
func jsonFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	case float64:
		return x, true
	case float32:
		return float64(x), true
	case int:
		return float64(x), true
	case int32:
		return float64(x), true
	case int64:
		return float64(x), true
	case uint32:
		return float64(x), true
	case uint64:
		return float64(x), true
	}
	return 0, false
}

// jsonInteger returns v as an integer within [lo, hi]. Like protojson it also
// accepts integers written as strings.
func jsonInteger(v any, lo, hi float64) (int64, bool) {
	if s, ok := v.(string); ok {
		v = json.Number(s)
	}
	if n, ok := v.(json.Number); ok {
		if i, err := n.Int64(); err == nil {
			return i, float64(i) >= lo && float64(i) <= hi
		}
		if u, err := strconv.ParseUint(string(n), 10, 64); err == nil {
			return int64(u), float64(u) >= lo && float64(u) <= hi
		}
	}
	f, ok := jsonFloat(v)
	if !ok || f != math.Trunc(f) || f < lo || f > hi {
		return 0, false
	}
	return int64(f), true
}

// describeJSON names a JSON value's type (and the value, when short) for
// error messages.
func describeJSON(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		if len(x) > 40 {
			x = x[:40] + "..."
		}
		return fmt.Sprintf("string %q", x)
	case bool:
		return fmt.Sprintf("boolean %t", x)
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	}
	if f, ok := jsonFloat(v); ok {
		return fmt.Sprintf("number %v", strconv.FormatFloat(f, 'g', -1, 64))
	}
	return fmt.Sprintf("%T", v)
}
