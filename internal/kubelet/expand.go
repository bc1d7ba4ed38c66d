package kubelet

import "strings"

// ExpandVars expands $(NAME) references the way Kubernetes does in a
// container's command, args and env values: a defined variable is replaced
// by its value, an undefined one is left exactly as written, "$$" is an
// escaped "$" (so "$$(NAME)" yields the literal "$(NAME)"), and any other
// "$" — including an unterminated "$(" — is kept.
func ExpandVars(s string, lookup func(name string) (string, bool)) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := lookup(name); ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

// EnvLookup adapts an ordered variable list (later entries win) to ExpandVars.
func EnvLookup(vars []EnvVar) func(string) (string, bool) {
	return func(name string) (string, bool) {
		for i := len(vars) - 1; i >= 0; i-- {
			if vars[i].Name == name {
				return vars[i].Value, true
			}
		}
		return "", false
	}
}
