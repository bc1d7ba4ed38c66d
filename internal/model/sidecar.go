package model

import (
	"strings"

	networking "istio.io/api/networking/v1alpha3"
)

// A Sidecar's egress hosts ("ns/dnsName") limit which services a sidecar
// gets outbound config (clusters, route virtual hosts, endpoints,
// listeners) for, as in Istio: at 1000 services, a workload that calls
// three of them should not hold config for all. They are compiled once per
// push (NewPushContext) and bound to a proxy's namespace by EgressScope.

// compiledEgress is one Sidecar's egress section.
type compiledEgress struct {
	listeners []egressListener
}

type egressListener struct {
	port  uint32 // 0: every port
	hosts []egressHost
}

// egressHost is one "namespace/dnsName" entry.
type egressHost struct {
	// namespace is a namespace name, "*" (any), "." (the proxy's) or "~"
	// (none).
	namespace string
	// host is "*", "*.suffix" or a hostname.
	host string
}

func compileEgress(sc *networking.Sidecar) *compiledEgress {
	if len(sc.GetEgress()) == 0 {
		return nil // Istio's default egress: everything in the mesh
	}
	ce := &compiledEgress{}
	for _, l := range sc.GetEgress() {
		el := egressListener{port: l.GetPort().GetNumber()}
		for _, h := range l.GetHosts() {
			ns, host, ok := strings.Cut(h, "/")
			if !ok {
				// Istio's validation requires "ns/host"; a bare host is
				// read as any namespace rather than dropped.
				ns, host = "*", h
			}
			el.hosts = append(el.hosts, egressHost{namespace: ns, host: host})
		}
		ce.listeners = append(ce.listeners, el)
	}
	return ce
}

// EgressScope is what one proxy's Sidecar lets it see; nil sees everything.
type EgressScope struct {
	namespace string // the proxy's, for "."
	egress    *compiledEgress
	// destinations are the hostnames VirtualServices in scope route to:
	// Istio imports them too, so a route never names a missing cluster.
	destinations map[string]bool
}

// EgressScope returns p's scope from the Sidecar that applies to it
// (SidecarFor); nil when none applies, it has no egress, or p is not a
// sidecar.
func (pc *PushContext) EgressScope(p *Proxy) *EgressScope {
	if p.Type != SidecarProxy {
		return nil
	}
	sc := pc.SidecarFor(p)
	if sc == nil || pc.egress[sc] == nil {
		return nil
	}
	es := &EgressScope{namespace: p.Namespace, egress: pc.egress[sc], destinations: map[string]bool{}}
	for _, o := range pc.MeshVirtualServices(p.Namespace) {
		vs := o.Spec.(*networking.VirtualService)
		if !es.anyHost(o.Meta.Namespace, vs.GetHosts()) {
			continue
		}
		for _, d := range virtualServiceDestinations(vs) {
			es.destinations[pc.ResolveHost(d, o.Meta.Namespace)] = true
		}
	}
	return es
}

func virtualServiceDestinations(vs *networking.VirtualService) []string {
	var out []string
	for _, r := range vs.GetHttp() {
		for _, d := range r.GetRoute() {
			out = append(out, d.GetDestination().GetHost())
		}
		if m := r.GetMirror(); m != nil {
			out = append(out, m.GetHost())
		}
		for _, m := range r.GetMirrors() {
			out = append(out, m.GetDestination().GetHost())
		}
	}
	for _, r := range vs.GetTcp() {
		for _, d := range r.GetRoute() {
			out = append(out, d.GetDestination().GetHost())
		}
	}
	for _, r := range vs.GetTls() {
		for _, d := range r.GetRoute() {
			out = append(out, d.GetDestination().GetHost())
		}
	}
	return out
}

// anyHost reports whether any of hosts, of config in namespace ns, is
// imported by some egress listener.
func (es *EgressScope) anyHost(ns string, hosts []string) bool {
	for _, l := range es.egress.listeners {
		for _, h := range hosts {
			if es.listenerImports(l, ns, h) {
				return true
			}
		}
	}
	return false
}

func (es *EgressScope) listenerImports(l egressListener, ns, hostname string) bool {
	for _, eh := range l.hosts {
		switch eh.namespace {
		case "~":
			continue
		case "*":
		case ".":
			if ns != es.namespace {
				continue
			}
		default:
			if ns != eh.namespace {
				continue
			}
		}
		if egressHostMatches(eh.host, hostname) {
			return true
		}
	}
	return false
}

// egressHostMatches matches an egress dnsName against a hostname; a
// wildcard hostname (a ServiceEntry's "*.example.com") matches a pattern
// that covers it.
func egressHostMatches(pattern, hostname string) bool {
	switch {
	case pattern == "*":
		return true
	case strings.HasPrefix(pattern, "*."):
		suffix := pattern[1:]
		return strings.HasSuffix(hostname, suffix) || strings.HasPrefix(hostname, "*.") && strings.HasSuffix(hostname[1:], suffix)
	}
	return pattern == hostname
}

// Includes reports whether the proxy gets svc's clusters and endpoints (on
// every port, as in Istio): an egress listener imports it, or a
// VirtualService in scope routes to it.
func (es *EgressScope) Includes(svc *Service) bool {
	if es == nil || es.destinations[svc.Hostname] {
		return true
	}
	for _, l := range es.egress.listeners {
		if es.listenerImports(l, svc.Namespace, svc.Hostname) {
			return true
		}
	}
	return false
}

// IncludesPort reports whether the proxy gets outbound listener and route
// config for svc on port: an egress listener on that port, or on every
// port, imports it.
func (es *EgressScope) IncludesPort(svc *Service, port uint32) bool {
	if es == nil {
		return true
	}
	for _, l := range es.egress.listeners {
		if (l.port == 0 || l.port == port) && es.listenerImports(l, svc.Namespace, svc.Hostname) {
			return true
		}
	}
	return false
}

// HasEgressScopes reports whether any Sidecar limits egress, so that
// VirtualServices (whose destinations a scope imports) can change which
// clusters a proxy gets.
func (pc *PushContext) HasEgressScopes() bool {
	for _, ce := range pc.egress {
		if ce != nil {
			return true
		}
	}
	return false
}
