package analyze

import (
	"sort"
	"strconv"
	"strings"

	"istio.io/api/annotation"
	appsv1 "k8s.io/api/apps/v1"
)

// istioAnnotations indexes Istio's annotation catalogue by name.
var istioAnnotations = func() map[string]*annotation.Instance {
	out := map[string]*annotation.Instance{}
	for _, a := range annotation.AllResourceAnnotations() {
		out[a.Name] = a
	}
	return out
}()

// deprecationNotes say what replaces a deprecated annotation.
var deprecationNotes = map[string]string{
	annotation.SidecarInject.Name: ` in favor of the "sidecar.istio.io/inject" label`,
}

// annotationValidators check values of annotations whose syntax is fixed.
var annotationValidators = map[string]func(string) string{
	annotation.SidecarInterceptionMode.Name: func(v string) string {
		switch v {
		case "REDIRECT", "TPROXY", "NONE":
			return ""
		}
		return "unknown interception mode " + strconv.Quote(v) + ", expected REDIRECT, TPROXY or NONE"
	},
	annotation.SidecarTrafficIncludeInboundPorts.Name:         portList,
	annotation.SidecarTrafficExcludeInboundPorts.Name:         portList,
	annotation.SidecarTrafficExcludeOutboundPorts.Name:        portList,
	annotation.SidecarStatusPort.Name:                         singlePort,
	annotation.SidecarStatusReadinessInitialDelaySeconds.Name: nonNegativeInt,
	annotation.SidecarStatusReadinessPeriodSeconds.Name:       nonNegativeInt,
	annotation.SidecarStatusReadinessFailureThreshold.Name:    nonNegativeInt,
}

func portList(v string) string {
	if v == "*" || strings.TrimSpace(v) == "" {
		return ""
	}
	for _, p := range strings.Split(v, ",") {
		if msg := singlePort(strings.TrimSpace(p)); msg != "" {
			return msg
		}
	}
	return ""
}

func singlePort(v string) string {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > 65535 {
		return "port " + strconv.Quote(v) + " is not a number between 0 and 65535"
	}
	return ""
}

func nonNegativeInt(v string) string {
	if n, err := strconv.Atoi(v); err != nil || n < 0 {
		return strconv.Quote(v) + " is not a non-negative integer"
	}
	return ""
}

// annotationsAnalyzer: IST0108 unknown, IST0107 misplaced, IST0135
// deprecated and IST0125 invalid Istio annotations on Pods, Services,
// Namespaces and Deployments (whose pod template counts as a Pod).
func annotationsAnalyzer(c *context) {
	for _, kind := range []string{"Namespace", "Service", "Pod", "Deployment"} {
		for _, e := range c.in.List(kind) {
			checkAnnotations(c, e, kind, e.Obj.Meta.Annotations, "metadata.annotations")
			if d, ok := e.Obj.Spec.(*appsv1.Deployment); ok {
				checkAnnotations(c, e, "Pod", d.Spec.Template.Annotations, "spec.template.metadata.annotations")
			}
		}
	}
}

func checkAnnotations(c *context, e *Entry, kind string, anns map[string]string, base string) {
	names := make([]string, 0, len(anns))
	for n := range anns {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		if !isIstioAnnotation(name) {
			continue
		}
		path := base + "." + name
		def, ok := istioAnnotations[name]
		if !ok {
			c.report(UnknownAnnotation, e, path, name)
			continue
		}
		if def.Deprecated {
			c.report(DeprecatedAnnotation, e, path, name, deprecationNotes[name])
		}
		if !appliesTo(def, kind) {
			var kinds []string
			for _, r := range def.Resources {
				kinds = append(kinds, r.String())
			}
			c.report(MisplacedAnnotation, e, path, name, strings.Join(kinds, ", "))
			continue
		}
		if check := annotationValidators[name]; check != nil {
			if problem := check(anns[name]); problem != "" {
				c.report(InvalidAnnotation, e, path, name, problem)
			}
		}
	}
}

// isIstioAnnotation: the annotation's domain is istio.io or a subdomain,
// the domains Istio's catalogue owns.
func isIstioAnnotation(name string) bool {
	i := strings.IndexByte(name, '/')
	if i < 0 {
		return false
	}
	domain := name[:i]
	return domain == "istio.io" || strings.HasSuffix(domain, ".istio.io")
}

func appliesTo(def *annotation.Instance, kind string) bool {
	if len(def.Resources) == 0 {
		return true
	}
	for _, r := range def.Resources {
		if r.String() == kind || r == annotation.Any {
			return true
		}
	}
	return false
}
