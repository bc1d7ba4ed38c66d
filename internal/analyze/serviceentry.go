package analyze

import (
	"strings"

	networking "istio.io/api/networking/v1alpha3"
)

// serviceEntryAnalyzer: IST0134 for a ServiceEntry without addresses
// whose ports are TCP or unset.
func serviceEntryAnalyzer(c *context) {
	for _, e := range c.in.List("ServiceEntry") {
		se, ok := e.Obj.Spec.(*networking.ServiceEntry)
		if !ok || len(se.GetAddresses()) > 0 {
			continue
		}
		for _, p := range se.GetPorts() {
			if pr := strings.ToUpper(p.GetProtocol()); pr == "" || pr == "TCP" {
				c.report(ServiceEntryAddressesRequired, e, "spec.ports")
				break
			}
		}
	}
}

// workloadEntryAnalyzer: IST0101 "service account" for a WorkloadEntry
// whose service account is not in its namespace, when the input holds
// that namespace's service accounts at all.
func workloadEntryAnalyzer(c *context) {
	hasSA := map[string]bool{}
	for _, e := range c.in.List("ServiceAccount") {
		hasSA[e.Obj.Meta.Namespace] = true
	}
	for _, e := range c.in.List("WorkloadEntry") {
		we, ok := e.Obj.Spec.(*networking.WorkloadEntry)
		if !ok || we.GetServiceAccount() == "" || !hasSA[e.Obj.Meta.Namespace] {
			continue
		}
		if _, ok := c.in.Get("ServiceAccount", e.Obj.Meta.Namespace, we.GetServiceAccount()); !ok {
			c.report(ReferencedResourceNotFound, e, "spec.serviceAccount", "service account", we.GetServiceAccount())
		}
	}
}
