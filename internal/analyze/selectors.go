package analyze

import (
	"sort"

	networking "istio.io/api/networking/v1alpha3"
	telemetry "istio.io/api/telemetry/v1alpha1"
)

// selectorTypes are the message types of one selector-scoped kind.
type selectorTypes struct {
	conflicting, multipleDefault *MessageType
}

// scopedSelectors checks a kind whose objects apply per namespace, either
// to selected workloads or (without selector) namespace-wide: IST0101
// "selector" for selectors matching nothing, a conflict message for a
// workload selected twice, and one for several namespace-wide objects.
func scopedSelectors(c *context, kind string, selectorOf func(*Entry) (map[string]string, bool), t selectorTypes) {
	noSelector := map[string][]*Entry{}
	podOwners := map[string][]*Entry{} // "ns/pod" -> objects selecting it
	var podOrder []string
	for _, e := range c.in.List(kind) {
		sel, ok := selectorOf(e)
		if !ok {
			continue
		}
		ns := e.Obj.Meta.Namespace
		if len(sel) == 0 {
			noSelector[ns] = append(noSelector[ns], e)
			continue
		}
		pods := c.selected(ns, sel)
		if len(pods) == 0 {
			c.report(ReferencedResourceNotFound, e, "spec", "selector", selectorString(sel))
			continue
		}
		for _, p := range pods {
			k := p.namespace + "/" + p.name
			if podOwners[k] == nil {
				podOrder = append(podOrder, k)
			}
			podOwners[k] = append(podOwners[k], e)
		}
	}
	for _, k := range podOrder {
		owners := podOwners[k]
		if len(owners) < 2 {
			continue
		}
		names := make([]string, len(owners))
		for i, o := range owners {
			names[i] = o.Obj.Meta.Name
		}
		sort.Strings(names)
		ns, pod := splitKey(k)
		for _, o := range owners {
			c.report(t.conflicting, o, "spec", names, ns, pod)
		}
	}
	for _, ns := range sortedEntryKeys(noSelector) {
		list := noSelector[ns]
		if len(list) < 2 {
			continue
		}
		names := make([]string, len(list))
		for i, o := range list {
			names[i] = o.Obj.Meta.Name
		}
		sort.Strings(names)
		for _, o := range list {
			c.report(t.multipleDefault, o, "spec", names, ns)
		}
	}
}

func splitKey(k string) (string, string) {
	for i := 0; i < len(k); i++ {
		if k[i] == '/' {
			return k[:i], k[i+1:]
		}
	}
	return "", k
}

func sortedEntryKeys(m map[string][]*Entry) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// sidecarSelectorAnalyzer: IST0101, IST0110 and IST0111 for Sidecars.
func sidecarSelectorAnalyzer(c *context) {
	scopedSelectors(c, "Sidecar", func(e *Entry) (map[string]string, bool) {
		sc, ok := e.Obj.Spec.(*networking.Sidecar)
		return sc.GetWorkloadSelector().GetLabels(), ok
	}, selectorTypes{ConflictingSidecarWorkloadSelector, MultipleSidecarsWithoutSelectors})
}

// telemetryAnalyzer: IST0101, IST0159 and IST0160 for Telemetry
// selectors, and IST0157 for mesh-wide Telemetry with empty providers.
func telemetryAnalyzer(c *context) {
	scopedSelectors(c, "Telemetry", func(e *Entry) (map[string]string, bool) {
		t, ok := e.Obj.Spec.(*telemetry.Telemetry)
		return t.GetSelector().GetMatchLabels(), ok
	}, selectorTypes{ConflictingTelemetrySelectors, MultipleTelemetriesWithoutSelector})
	for _, e := range c.in.List("Telemetry") {
		t, ok := e.Obj.Spec.(*telemetry.Telemetry)
		if !ok || e.Obj.Meta.Namespace != c.rootNS {
			continue
		}
		empty := false
		for _, a := range t.GetAccessLogging() {
			empty = empty || (len(a.GetProviders()) == 0 && a.GetDisabled() == nil)
		}
		for _, tr := range t.GetTracing() {
			empty = empty || (len(tr.GetProviders()) == 0 && tr.GetDisableSpanReporting() == nil)
		}
		if empty {
			c.report(InvalidTelemetryProvider, e, "spec", e.Obj.Meta.Name, e.Obj.Meta.Namespace)
		}
	}
}
