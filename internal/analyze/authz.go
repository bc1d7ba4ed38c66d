package analyze

import (
	"fmt"
	"strings"

	security "istio.io/api/security/v1beta1"
)

// authzAnalyzer: IST0127 for AuthorizationPolicies that select no
// workload, IST0101 "namespace" for source namespaces that do not exist.
func authzAnalyzer(c *context) {
	known := c.namespaces()
	for _, e := range c.in.List("AuthorizationPolicy") {
		ap, ok := e.Obj.Spec.(*security.AuthorizationPolicy)
		if !ok {
			continue
		}
		ns := e.Obj.Meta.Namespace
		if ap.GetTargetRef() == nil && len(ap.GetTargetRefs()) == 0 {
			sel := ap.GetSelector().GetMatchLabels()
			scope := ns
			if ns == c.rootNS {
				scope = "" // mesh-wide
			}
			if len(c.selected(scope, sel)) == 0 {
				c.report(NoMatchingWorkloadsFound, e, "spec.selector", selectorString(sel))
			}
		}
		for i, r := range ap.GetRules() {
			for j, f := range r.GetFrom() {
				src := f.GetSource()
				base := fmt.Sprintf("spec.rules[%d].from[%d].source", i, j)
				for k, n := range src.GetNamespaces() {
					if !namespaceExists(known, n) {
						c.report(ReferencedResourceNotFound, e, fmt.Sprintf("%s.namespaces[%d]", base, k), "namespace", n)
					}
				}
				for k, n := range src.GetNotNamespaces() {
					if !namespaceExists(known, n) {
						c.report(ReferencedResourceNotFound, e, fmt.Sprintf("%s.notNamespaces[%d]", base, k), "namespace", n)
					}
				}
			}
		}
	}
}

// namespaceExists matches Istio's namespace patterns: exact, "*",
// "prefix*" and "*suffix".
func namespaceExists(known map[string]bool, pattern string) bool {
	if pattern == "*" || known[pattern] {
		return true
	}
	for n := range known {
		switch {
		case strings.HasSuffix(pattern, "*") && strings.HasPrefix(n, strings.TrimSuffix(pattern, "*")):
			return true
		case strings.HasPrefix(pattern, "*") && strings.HasSuffix(n, strings.TrimPrefix(pattern, "*")):
			return true
		}
	}
	return false
}
