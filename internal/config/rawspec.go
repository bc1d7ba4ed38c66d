package config

// Some of Istio's CRD constraints are about what the YAML says, which the
// decoded proto no longer shows: a required spec, an empty map where one
// must have entries, an empty string where one must have characters
// (proto3 cannot tell "" from unset).

// specRequired lists the kinds whose CRD requires a spec.
func (s *Schema) specRequired() bool {
	switch s.Kind {
	case "ServiceEntry", "WorkloadEntry", "WorkloadGroup", "WasmPlugin", "TrafficExtension":
		return true
	}
	return false
}

// nonEmptyFields are, per kind, the top-level spec fields that, when
// present, must be a non-empty map (minProperties: 1) or string
// (minLength: 1).
var nonEmptyFields = map[string][]string{
	"PeerAuthentication": {"portLevelMtls"},
	"WasmPlugin":         {"imagePullSecret", "pluginName", "url"},
}

func presentButEmpty(ctx docContext, kind string, spec map[string]any) []error {
	var errs []error
	for _, field := range nonEmptyFields[kind] {
		val, ok := spec[field]
		if !ok {
			continue
		}
		f := "spec." + field
		switch x := val.(type) {
		case map[string]any:
			if len(x) == 0 {
				errs = append(errs, ctx.fieldError(f, "%s in body should have at least 1 properties", f))
			}
		case string:
			if x == "" {
				errs = append(errs, ctx.fieldError(f, "%s in body should be at least 1 chars long", f))
			}
		case nil:
			errs = append(errs, ctx.fieldError(f, "%s in body must be of type %s: \"null\"", f, fieldType(kind, field)))
		}
	}
	return errs
}

func fieldType(kind, field string) string {
	if kind == "PeerAuthentication" {
		return "object"
	}
	return "string"
}
