package analyze

import (
	"fmt"
	"sort"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

func pathIndex(field string, i int) string { return field + "[" + strconv.Itoa(i) + "]" }

// deploymentServiceAnalyzer: IST0116 when the Services selecting one
// Deployment use a port with different protocols, IST0137 when they map
// one targetPort to different ports.
func deploymentServiceAnalyzer(c *context) {
	for _, e := range c.in.List("Deployment") {
		d, ok := e.Obj.Spec.(*appsv1.Deployment)
		if !ok || systemNamespaces[e.Obj.Meta.Namespace] {
			continue
		}
		podLabels := labels.Set(d.Spec.Template.Labels)
		protocols := map[int32]map[string][]string{} // port -> protocol -> services
		targets := map[string]map[int32][]string{}   // targetPort -> port -> services
		for _, se := range c.in.List("Service") {
			svc, ok := se.Obj.Spec.(*corev1.Service)
			if !ok || se.Obj.Meta.Namespace != e.Obj.Meta.Namespace || len(svc.Spec.Selector) == 0 ||
				!labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
				continue
			}
			for _, p := range svc.Spec.Ports {
				proto := portProtocol(p)
				if proto == "" {
					proto = "tcp" // what Istio assumes for an unnamed port
				}
				if protocols[p.Port] == nil {
					protocols[p.Port] = map[string][]string{}
				}
				protocols[p.Port][proto] = append(protocols[p.Port][proto], se.Obj.Meta.Name)
				tp := p.TargetPort.String()
				if p.TargetPort.IntVal == 0 && p.TargetPort.StrVal == "" {
					tp = strconv.Itoa(int(p.Port))
				}
				if targets[tp] == nil {
					targets[tp] = map[int32][]string{}
				}
				targets[tp][p.Port] = append(targets[tp][p.Port], se.Obj.Meta.Name)
			}
		}
		for _, port := range sortedInt32(protocols) {
			if len(protocols[port]) < 2 {
				continue
			}
			var svcs []string
			for _, names := range protocols[port] {
				svcs = append(svcs, names...)
			}
			sort.Strings(svcs)
			c.report(DeploymentAssociatedToMultipleSvc, e, "metadata", e.Obj.Meta.Name, port, svcs)
		}
		tps := make([]string, 0, len(targets))
		for tp := range targets {
			tps = append(tps, tp)
		}
		sort.Strings(tps)
		for _, tp := range tps {
			if len(targets[tp]) < 2 {
				continue
			}
			var svcs []string
			var ports []int32
			for _, port := range sortedInt32(targets[tp]) {
				ports = append(ports, port)
				svcs = append(svcs, targets[tp][port]...)
			}
			sort.Strings(svcs)
			c.report(DeploymentConflictingPorts, e, "metadata", e.Obj.Meta.Name, svcs, tp, ports)
		}
	}
}

func sortedInt32[V any](m map[int32]V) []int32 {
	out := make([]int32, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// applicationUIDAnalyzer: IST0144 for pods and Deployments whose
// application runs as UID 1337, the sidecar's.
func applicationUIDAnalyzer(c *context) {
	check := func(e *Entry, spec *corev1.PodSpec, base string) {
		if sc := spec.SecurityContext; sc != nil && sc.RunAsUser != nil && *sc.RunAsUser == 1337 {
			c.report(InvalidApplicationUID, e, base+".securityContext.runAsUser")
			return
		}
		for i, ct := range spec.Containers {
			if ct.Name == "istio-proxy" {
				continue
			}
			if sc := ct.SecurityContext; sc != nil && sc.RunAsUser != nil && *sc.RunAsUser == 1337 {
				c.report(InvalidApplicationUID, e, fmt.Sprintf("%s.containers[%d].securityContext.runAsUser", base, i))
				return
			}
		}
	}
	for _, e := range c.in.List("Pod") {
		if p, ok := e.Obj.Spec.(*corev1.Pod); ok {
			check(e, &p.Spec, "spec")
		}
	}
	for _, e := range c.in.List("Deployment") {
		if d, ok := e.Obj.Spec.(*appsv1.Deployment); ok {
			check(e, &d.Spec.Template.Spec, "spec.template.spec")
		}
	}
}
