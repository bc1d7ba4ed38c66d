package analyze

import (
	"fmt"
	"sort"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
)

// routeDest is one destination of a VirtualService and its field path.
type routeDest struct {
	d      *networking.Destination
	path   string // of the destination
	mirror bool
}

func destinations(vs *networking.VirtualService) []routeDest {
	var out []routeDest
	for i, r := range vs.GetHttp() {
		for j, rd := range r.GetRoute() {
			out = append(out, routeDest{d: rd.GetDestination(), path: fmt.Sprintf("spec.http[%d].route[%d].destination", i, j)})
		}
		if m := r.GetMirror(); m != nil {
			out = append(out, routeDest{d: m, path: fmt.Sprintf("spec.http[%d].mirror", i), mirror: true})
		}
		for j, m := range r.GetMirrors() {
			out = append(out, routeDest{d: m.GetDestination(), path: fmt.Sprintf("spec.http[%d].mirrors[%d].destination", i, j), mirror: true})
		}
	}
	for i, r := range vs.GetTcp() {
		for j, rd := range r.GetRoute() {
			out = append(out, routeDest{d: rd.GetDestination(), path: fmt.Sprintf("spec.tcp[%d].route[%d].destination", i, j)})
		}
	}
	for i, r := range vs.GetTls() {
		for j, rd := range r.GetRoute() {
			out = append(out, routeDest{d: rd.GetDestination(), path: fmt.Sprintf("spec.tls[%d].route[%d].destination", i, j)})
		}
	}
	var kept []routeDest
	for _, d := range out {
		if d.d != nil {
			kept = append(kept, d)
		}
	}
	return kept
}

// destinationHostAnalyzer: IST0101 for unknown hosts and ports, IST0112
// for a multi-port service routed to without a port.
func destinationHostAnalyzer(c *context) {
	for _, e := range c.in.List("VirtualService") {
		vs, ok := e.Obj.Spec.(*networking.VirtualService)
		if !ok {
			continue
		}
		for _, rd := range destinations(vs) {
			host := rd.d.GetHost()
			si := c.lookupService(e.Obj.Meta.Namespace, host)
			if si == nil {
				ref := "host"
				if rd.mirror {
					ref = "mirror host"
				}
				c.report(ReferencedResourceNotFound, e, rd.path+".host", ref, host)
				continue
			}
			if rd.d.GetPort() == nil {
				if len(si.ports) > 1 {
					ports := make([]int, len(si.ports))
					for i, p := range si.ports {
						ports[i] = int(p)
					}
					c.report(VSDestinationPortSelectorRequired, e, rd.path+".host", host, ports)
				}
				continue
			}
			found := false
			for _, p := range si.ports {
				found = found || p == rd.d.GetPort().GetNumber()
			}
			if !found && len(si.ports) > 0 {
				c.report(ReferencedResourceNotFound, e, rd.path+".port", "host:port", fmt.Sprintf("%s:%d", host, rd.d.GetPort().GetNumber()))
			}
		}
		ingressSubsetAnalyzer(c, e, vs)
	}
}

// ingressSubsetAnalyzer: IST0140. A VirtualService bound to gateways
// that routes to a host without a subset, while another VirtualService
// picks subsets of that host for its own traffic: those subset rules do
// not apply to the gateway's requests. Hosts compare as written, as Istio
// compares them.
func ingressSubsetAnalyzer(c *context, e *Entry, vs *networking.VirtualService) {
	if len(vs.GetGateways()) == 0 {
		return
	}
	for i, r := range vs.GetHttp() {
		for j, rd := range r.GetRoute() {
			d := rd.GetDestination()
			if d == nil || d.GetSubset() != "" {
				continue
			}
			for _, other := range c.in.List("VirtualService") {
				ovs, ok := other.Obj.Spec.(*networking.VirtualService)
				if ok && routesOwnHostToSubset(ovs, d.GetHost()) {
					c.report(IngressRouteRulesNotAffected, e, fmt.Sprintf("spec.http[%d].route[%d].destination.host", i, j),
						other.Obj.Meta.Namespace+"/"+other.Obj.Meta.Name, e.Obj.Meta.Namespace+"/"+e.Obj.Meta.Name)
				}
			}
		}
	}
}

// routesOwnHostToSubset reports whether vs routes host, one of its own
// hosts, to a subset.
func routesOwnHostToSubset(vs *networking.VirtualService, host string) bool {
	own := false
	for _, h := range vs.GetHosts() {
		own = own || h == host
	}
	if !own {
		return false
	}
	for _, r := range vs.GetHttp() {
		for _, rd := range r.GetRoute() {
			if rd.GetDestination().GetHost() == host && rd.GetDestination().GetSubset() != "" {
				return true
			}
		}
	}
	return false
}

func appliesToMesh(vs *networking.VirtualService) bool {
	if len(vs.GetGateways()) == 0 {
		return true
	}
	for _, g := range vs.GetGateways() {
		if g == "mesh" {
			return true
		}
	}
	return false
}

// destinationSubsetAnalyzer: IST0101 "host+subset" when no visible
// DestinationRule for the host defines the subset.
func destinationSubsetAnalyzer(c *context) {
	type drInfo struct {
		ns       string
		exportTo []string
		subsets  map[string]bool
	}
	byHost := map[string][]drInfo{}
	for _, e := range c.in.List("DestinationRule") {
		dr, ok := e.Obj.Spec.(*networking.DestinationRule)
		if !ok {
			continue
		}
		info := drInfo{ns: e.Obj.Meta.Namespace, exportTo: dr.GetExportTo(), subsets: map[string]bool{}}
		for _, s := range dr.GetSubsets() {
			info.subsets[s.GetName()] = true
		}
		h := fqdn(e.Obj.Meta.Namespace, dr.GetHost())
		byHost[h] = append(byHost[h], info)
	}
	for _, e := range c.in.List("VirtualService") {
		vs, ok := e.Obj.Spec.(*networking.VirtualService)
		if !ok {
			continue
		}
		ns := e.Obj.Meta.Namespace
		for _, rd := range destinations(vs) {
			subset := rd.d.GetSubset()
			if subset == "" {
				continue
			}
			h := fqdn(ns, rd.d.GetHost())
			found := false
			for pattern, list := range byHost {
				if !hostMatches(pattern, h) {
					continue
				}
				for _, dr := range list {
					visible := dr.ns == ns || dr.ns == c.rootNS || exportedTo(dr.exportTo, dr.ns, ns)
					found = found || (visible && dr.subsets[subset])
				}
			}
			if !found {
				c.report(ReferencedResourceNotFound, e, rd.path+".subset", "host+subset in destinationrule", rd.d.GetHost()+"+"+subset)
			}
		}
	}
}

// vsGatewayAnalyzer: IST0101 for unknown gateways, IST0132 for a
// VirtualService none of whose hosts a referenced gateway serves.
func vsGatewayAnalyzer(c *context) {
	for _, e := range c.in.List("VirtualService") {
		vs, ok := e.Obj.Spec.(*networking.VirtualService)
		if !ok {
			continue
		}
		ns := e.Obj.Meta.Namespace
		for i, g := range vs.GetGateways() {
			if g == "mesh" {
				continue
			}
			gwNS, gwName := ns, g
			if j := strings.IndexByte(g, '/'); j >= 0 {
				gwNS, gwName = g[:j], g[j+1:]
			} else if j := strings.IndexByte(g, '.'); j >= 0 { // "name.namespace[.svc.cluster.local]"
				gwName, gwNS = g[:j], strings.SplitN(g[j+1:], ".", 2)[0]
			}
			gwe, ok := c.in.Get("Gateway", gwNS, gwName)
			if !ok {
				c.report(ReferencedResourceNotFound, e, fmt.Sprintf("spec.gateways[%d]", i), "gateway", g)
				continue
			}
			gw, ok := gwe.Obj.Spec.(*networking.Gateway)
			if !ok {
				continue
			}
			if !vsHostInGateway(ns, vs.GetHosts(), gwNS, gw) {
				c.report(VSHostNotFoundInGateway, e, fmt.Sprintf("spec.gateways[%d]", i), vs.GetHosts(), ns+"/"+e.Obj.Meta.Name, gwNS+"/"+gwName)
			}
		}
	}
}

// vsHostInGateway reports whether any VirtualService host is served by a
// server of the gateway, honouring "ns/host" and "./host" server hosts.
func vsHostInGateway(vsNS string, vsHosts []string, gwNS string, gw *networking.Gateway) bool {
	for _, s := range gw.GetServers() {
		for _, sh := range s.GetHosts() {
			hostNS, host := "*", sh
			if i := strings.IndexByte(sh, '/'); i >= 0 {
				hostNS, host = sh[:i], sh[i+1:]
			}
			if hostNS == "." {
				hostNS = gwNS
			}
			if hostNS != "*" && hostNS != vsNS {
				continue
			}
			for _, vh := range vsHosts {
				if hostsOverlap(host, vh) {
					return true
				}
			}
		}
	}
	return false
}

// conflictingMeshGatewayHostsAnalyzer: IST0109 when VirtualServices bound
// to the mesh gateway define the same host and can see each other.
func conflictingMeshGatewayHostsAnalyzer(c *context) {
	byHost := map[string][]vsRef{}
	for _, e := range c.in.List("VirtualService") {
		vs, ok := e.Obj.Spec.(*networking.VirtualService)
		if !ok || !appliesToMesh(vs) {
			continue
		}
		seen := map[string]bool{}
		for _, h := range vs.GetHosts() {
			f := fqdn(e.Obj.Meta.Namespace, h)
			if !seen[f] {
				seen[f] = true
				byHost[f] = append(byHost[f], vsRef{e, vs.GetExportTo()})
			}
		}
	}
	hosts := make([]string, 0, len(byHost))
	for h := range byHost {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	for _, h := range hosts {
		refs := byHost[h]
		if len(refs) < 2 {
			continue
		}
		for _, r := range refs {
			var names []string
			for _, o := range refs {
				if o.e == r.e || !exportsOverlap(r, o) {
					continue
				}
				names = append(names, o.e.Obj.Meta.Namespace+"/"+o.e.Obj.Meta.Name)
			}
			if len(names) == 0 {
				continue
			}
			names = append(names, r.e.Obj.Meta.Namespace+"/"+r.e.Obj.Meta.Name)
			c.report(ConflictingMeshGatewayVSHosts, r.e, "spec.hosts", joinNames(names), h)
		}
	}
}

type vsRef struct {
	e        *Entry
	exportTo []string
}

// exportsOverlap reports whether some namespace sees both VirtualServices.
func exportsOverlap(a, b vsRef) bool {
	nsA, nsB := a.e.Obj.Meta.Namespace, b.e.Obj.Meta.Namespace
	candidates := append([]string{nsA, nsB}, append(a.exportTo, b.exportTo...)...)
	for _, ns := range candidates {
		if ns == "*" || ns == "." {
			continue
		}
		if exportedTo(a.exportTo, nsA, ns) && exportedTo(b.exportTo, nsB, ns) {
			return true
		}
	}
	return isAll(a.exportTo) && isAll(b.exportTo)
}

func isAll(exportTo []string) bool {
	if len(exportTo) == 0 {
		return true
	}
	for _, x := range exportTo {
		if x == "*" {
			return true
		}
	}
	return false
}
