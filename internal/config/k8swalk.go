package config

import (
	"encoding"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strings"
	"sync"
)

// goFields maps the JSON names of a struct type (embedded and `,inline`
// structs flattened) to their field types.
type goFields struct {
	byName map[string]reflect.Type
	names  []string
}

var goFieldsCache sync.Map // reflect.Type → *goFields

func fieldsOf(t reflect.Type) *goFields {
	if f, ok := goFieldsCache.Load(t); ok {
		return f.(*goFields)
	}
	f := &goFields{byName: map[string]reflect.Type{}}
	collectFields(t, f)
	for n := range f.byName {
		f.names = append(f.names, n)
	}
	goFieldsCache.Store(t, f)
	return f
}

func collectFields(t reflect.Type, into *goFields) {
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		tag := sf.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		ft := sf.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		inline := (sf.Anonymous && name == "") || strings.Contains(","+opts+",", ",inline,")
		if inline && ft.Kind() == reflect.Struct {
			collectFields(ft, into)
			continue
		}
		if !sf.IsExported() {
			continue
		}
		if name == "" {
			name = sf.Name
		}
		into.byName[name] = sf.Type
	}
}

var (
	jsonUnmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// goWalker checks a decoded JSON value against a Go type the way the
// Kubernetes API server would (field names are case-sensitive, unknown
// fields are errors), collecting every problem with its field path. The
// actual decoding is left to sigs.k8s.io/yaml's strict mode; the walker
// only exists to say where a problem is.
type goWalker struct {
	errs []issue
}

func (w *goWalker) errorf(path, format string, args ...any) {
	w.errs = append(w.errs, issue{path, fmt.Sprintf(format, args...)})
}

func (w *goWalker) walk(t reflect.Type, v any, path string) {
	if v == nil {
		return // JSON null leaves the zero value
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	// Types with their own JSON form (Quantity, IntOrString, Time, ...)
	// check themselves during decoding.
	pt := reflect.PointerTo(t)
	if pt.Implements(jsonUnmarshalerType) || pt.Implements(textUnmarshalerType) {
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			w.errorf(path, "expected an object, got %s", describeJSON(v))
			return
		}
		fields := fieldsOf(t)
		for _, k := range slices.Sorted(maps.Keys(obj)) {
			ft, ok := fields.byName[k]
			if !ok {
				w.errorf(joinPath(path, k), "unknown field %q%s", k, suggest(k, fields.names))
				continue
			}
			w.walk(ft, obj[k], joinPath(path, k))
		}
	case reflect.Map:
		obj, ok := v.(map[string]any)
		if !ok {
			w.errorf(path, "expected a map, got %s", describeJSON(v))
			return
		}
		for _, k := range slices.Sorted(maps.Keys(obj)) {
			w.walk(t.Elem(), obj[k], fmt.Sprintf("%s[%s]", path, k))
		}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			if _, ok := v.(string); !ok {
				w.errorf(path, "expected a base64 string, got %s", describeJSON(v))
			}
			return
		}
		list, ok := v.([]any)
		if !ok {
			w.errorf(path, "expected a list, got %s", describeJSON(v))
			return
		}
		for i, item := range list {
			w.walk(t.Elem(), item, fmt.Sprintf("%s[%d]", path, i))
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			w.errorf(path, "expected a string, got %s", describeJSON(v))
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			w.errorf(path, "expected a boolean, got %s", describeJSON(v))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		bits := t.Bits()
		w.integer(v, path, -math.Pow(2, float64(bits-1)), math.Pow(2, float64(bits-1))-1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		w.integer(v, path, 0, math.Pow(2, float64(t.Bits()))-1)
	case reflect.Float32, reflect.Float64:
		if _, ok := jsonFloat(v); !ok {
			w.errorf(path, "expected a number, got %s", describeJSON(v))
		}
	}
}

func (w *goWalker) integer(v any, path string, lo, hi float64) {
	if _, isString := v.(string); isString {
		// Unlike protojson, Kubernetes does not accept quoted integers.
		w.errorf(path, "expected an integer, got %s", describeJSON(v))
		return
	}
	if _, ok := jsonInteger(v, lo, hi); !ok {
		w.errorf(path, "expected an integer, got %s", describeJSON(v))
	}
}
