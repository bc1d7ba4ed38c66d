package analyze

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
)

// injectionAnalyzer: IST0102 for namespaces without an injection label,
// IST0123 for namespaces with both, IST0103 for pods of injected
// namespaces that run without the proxy.
func injectionAnalyzer(c *context) {
	injected := map[string]bool{}
	for _, e := range c.in.List("Namespace") {
		ns := e.Obj.Meta.Name
		if systemNamespaces[ns] {
			continue
		}
		inj, hasInj := e.Obj.Meta.Labels["istio-injection"]
		_, hasRev := e.Obj.Meta.Labels["istio.io/rev"]
		switch {
		case hasInj && hasRev:
			c.report(NamespaceMultipleInjectionLabels, e, "metadata.labels", []string{"istio-injection", "istio.io/rev"})
		case !hasInj && !hasRev:
			c.report(NamespaceNotInjected, e, "metadata", ns, ns)
		}
		injected[ns] = (hasInj && inj == "enabled") || (!hasInj && hasRev)
	}
	for _, e := range c.in.List("Pod") {
		pod, ok := e.Obj.Spec.(*corev1.Pod)
		if !ok || !injected[e.Obj.Meta.Namespace] {
			continue
		}
		if e.Obj.Meta.Labels["sidecar.istio.io/inject"] == "false" || e.Obj.Meta.Annotations["sidecar.istio.io/inject"] == "false" || pod.Spec.HostNetwork {
			continue
		}
		has := false
		for _, ct := range append(append([]corev1.Container(nil), pod.Spec.Containers...), pod.Spec.InitContainers...) {
			has = has || ct.Name == "istio-proxy"
		}
		if !has {
			c.report(PodMissingProxy, e, "spec.containers", fmt.Sprintf("%s.%s", e.Obj.Meta.Name, e.Obj.Meta.Namespace))
		}
	}
}
