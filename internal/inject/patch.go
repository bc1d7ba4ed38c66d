package inject

import (
	"encoding/json"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// PatchOp is one RFC 6902 JSON Patch operation.
type PatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// CreatePatch returns the JSON Patch that turns the JSON document from into
// to: objects are compared key by key, arrays element by element when
// their lengths match, extended with adds when to only appends to from,
// and replaced whole otherwise.
func CreatePatch(from, to []byte) ([]PatchOp, error) {
	var a, b any
	if err := json.Unmarshal(from, &a); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(to, &b); err != nil {
		return nil, err
	}
	var ops []PatchOp
	diff("", a, b, &ops)
	return ops, nil
}

func diff(path string, a, b any, ops *[]PatchOp) {
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok {
			break
		}
		keys := make([]string, 0, len(av)+len(bv))
		for k := range av {
			keys = append(keys, k)
		}
		for k := range bv {
			if _, ok := av[k]; !ok {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			p := path + "/" + escapePointer(k)
			x, inA := av[k]
			y, inB := bv[k]
			switch {
			case !inB:
				*ops = append(*ops, PatchOp{Op: "remove", Path: p})
			case !inA:
				*ops = append(*ops, PatchOp{Op: "add", Path: p, Value: y})
			default:
				diff(p, x, y, ops)
			}
		}
		return
	case []any:
		bv, ok := b.([]any)
		if !ok {
			break
		}
		switch {
		case len(av) == len(bv):
			for i := range av {
				diff(path+"/"+strconv.Itoa(i), av[i], bv[i], ops)
			}
			return
		case len(bv) > len(av) && reflect.DeepEqual(av, bv[:len(av)]):
			for i := len(av); i < len(bv); i++ {
				*ops = append(*ops, PatchOp{Op: "add", Path: path + "/" + strconv.Itoa(i), Value: bv[i]})
			}
			return
		}
	}
	if !reflect.DeepEqual(a, b) {
		*ops = append(*ops, PatchOp{Op: "replace", Path: path, Value: b})
	}
}

// escapePointer escapes a key for a JSON Pointer (RFC 6901).
func escapePointer(k string) string {
	return strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1")
}
