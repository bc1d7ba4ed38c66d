package analyze

import (
	"strings"

	networking "istio.io/api/networking/v1alpha3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// context is what analyzers share: the input, indexes built once, and
// the messages reported so far.
type context struct {
	in       *Input
	rootNS   string
	msgs     []Message
	services map[string][]*serviceInfo // FQDN -> services (k8s and ServiceEntry)
	wildSE   []*serviceInfo            // ServiceEntries with wildcard hosts
	work     []workload
}

// serviceInfo is a service as the mesh sees it: a Kubernetes Service or
// one host of a ServiceEntry.
type serviceInfo struct {
	host      string
	namespace string
	ports     []uint32
	exportTo  []string
}

// workload is a pod, or a Deployment's pod template, that selectors can match.
type workload struct {
	namespace string
	name      string
	labels    map[string]string
	entry     *Entry
}

func newContext(in *Input, rootNS string) *context {
	c := &context{in: in, rootNS: rootNS, services: map[string][]*serviceInfo{}}
	for _, e := range in.List("Service") {
		svc, ok := e.Obj.Spec.(*corev1.Service)
		if !ok {
			continue
		}
		si := &serviceInfo{host: e.Obj.Meta.Name + "." + e.Obj.Meta.Namespace + ".svc.cluster.local", namespace: e.Obj.Meta.Namespace}
		for _, p := range svc.Spec.Ports {
			si.ports = append(si.ports, uint32(p.Port))
		}
		if v := e.Obj.Meta.Annotations["networking.istio.io/exportTo"]; v != "" {
			for _, s := range strings.Split(v, ",") {
				si.exportTo = append(si.exportTo, strings.TrimSpace(s))
			}
		}
		c.services[si.host] = append(c.services[si.host], si)
	}
	for _, e := range in.List("ServiceEntry") {
		se, ok := e.Obj.Spec.(*networking.ServiceEntry)
		if !ok {
			continue
		}
		for _, h := range se.GetHosts() {
			si := &serviceInfo{host: h, namespace: e.Obj.Meta.Namespace, exportTo: se.GetExportTo()}
			for _, p := range se.GetPorts() {
				si.ports = append(si.ports, p.GetNumber())
			}
			if strings.HasPrefix(h, "*") {
				c.wildSE = append(c.wildSE, si)
			} else {
				c.services[h] = append(c.services[h], si)
			}
		}
	}
	for _, e := range in.List("Pod") {
		c.work = append(c.work, workload{e.Obj.Meta.Namespace, e.Obj.Meta.Name, e.Obj.Meta.Labels, e})
	}
	for _, e := range in.List("Deployment") {
		if d, ok := e.Obj.Spec.(*appsv1.Deployment); ok {
			c.work = append(c.work, workload{e.Obj.Meta.Namespace, e.Obj.Meta.Name, d.Spec.Template.Labels, e})
		}
	}
	return c
}

// report records a message about e, located at the field path when the
// file has it.
func (c *context) report(t *MessageType, e *Entry, path string, params ...any) {
	m := Message{Type: t, Params: params}
	if e != nil {
		m.Resource = e.Res
		m.Line = e.Res.FieldLine(path)
	}
	c.msgs = append(c.msgs, m)
}

// fqdn resolves a short host name relative to namespace, as Istio does:
// names without a dot are Kubernetes services of that namespace.
func fqdn(namespace, host string) string {
	if strings.Contains(host, ".") || strings.HasPrefix(host, "*") {
		return host
	}
	return host + "." + namespace + ".svc.cluster.local"
}

// exportedTo reports whether an object of namespace ns exported with
// exportTo is visible from namespace from.
func exportedTo(exportTo []string, ns, from string) bool {
	if len(exportTo) == 0 {
		return true
	}
	for _, x := range exportTo {
		if x == "*" || x == from || (x == "." && ns == from) {
			return true
		}
	}
	return false
}

// lookupService finds the service host names from namespace from, or nil.
func (c *context) lookupService(from, host string) *serviceInfo {
	h := fqdn(from, host)
	for _, si := range c.services[h] {
		if exportedTo(si.exportTo, si.namespace, from) {
			return si
		}
	}
	for _, si := range c.wildSE {
		if hostMatches(si.host, h) && exportedTo(si.exportTo, si.namespace, from) {
			return si
		}
	}
	if strings.HasPrefix(h, "*") { // a wildcard destination matches any service under it
		for name, list := range c.services {
			if hostMatches(h, name) {
				for _, si := range list {
					if exportedTo(si.exportTo, si.namespace, from) {
						return si
					}
				}
			}
		}
	}
	return nil
}

// hostMatches reports whether pattern ("*.example.com", "*" or a plain
// host) covers host.
func hostMatches(pattern, host string) bool {
	if pattern == "*" || pattern == host {
		return true
	}
	if strings.HasPrefix(pattern, "*") {
		return strings.HasSuffix(host, pattern[1:])
	}
	return false
}

// hostsOverlap reports whether two host patterns can match one name.
func hostsOverlap(a, b string) bool { return hostMatches(a, b) || hostMatches(b, a) }

// selected returns the workloads of namespace ("" for all) matched by sel.
func (c *context) selected(namespace string, sel map[string]string) []workload {
	s := labels.SelectorFromSet(sel)
	var out []workload
	for _, w := range c.work {
		if (namespace == "" || w.namespace == namespace) && s.Matches(labels.Set(w.labels)) {
			out = append(out, w)
		}
	}
	return out
}

// selectorString renders labels as Kubernetes prints a selector ("app=a,v=1").
func selectorString(sel map[string]string) string { return labels.SelectorFromSet(sel).String() }

// namespaces is every namespace known to the input: Namespace objects
// and the namespaces objects live in.
func (c *context) namespaces() map[string]bool {
	out := map[string]bool{}
	for _, e := range c.in.List("Namespace") {
		out[e.Obj.Meta.Name] = true
	}
	for _, e := range c.in.byKey {
		if e.Obj.Meta.Namespace != "" {
			out[e.Obj.Meta.Namespace] = true
		}
	}
	return out
}

// systemNamespaces are skipped by the injection and port-name checks, as
// istioctl skips them.
var systemNamespaces = map[string]bool{
	"kube-system": true, "kube-public": true, "kube-node-lease": true, "local-path-storage": true, "istio-system": true,
}
