package xds

import (
	"slices"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/skein-mesh/skein/internal/model"
)

// --- clusters ---

func clusterMatches(c *clusterv3.Cluster, m *networking.EnvoyFilter_ClusterMatch) bool {
	if m == nil {
		return true
	}
	if m.GetName() != "" && m.GetName() != c.GetName() {
		return false
	}
	if m.GetPortNumber() == 0 && m.GetService() == "" && m.GetSubset() == "" {
		return true
	}
	port, subset, host, ok := ParseOutboundCluster(c.GetName())
	if !ok {
		return false
	}
	return (m.GetPortNumber() == 0 || m.GetPortNumber() == port) &&
		(m.GetService() == "" || m.GetService() == host) &&
		(m.GetSubset() == "" || m.GetSubset() == subset)
}

func (g *generator) patchClusters(res *Resources, p *model.EnvoyFilterPatch) {
	inboundCluster := func(c *clusterv3.Cluster) bool { return strings.HasPrefix(c.GetName(), "inbound|") }
	if p.Operation == networking.EnvoyFilter_Patch_ADD {
		add := proto.Clone(p.Value).(*clusterv3.Cluster)
		if !g.contextMatches(p, inboundCluster(add)) {
			return
		}
		if slices.ContainsFunc(res.Clusters, func(c *clusterv3.Cluster) bool { return c.GetName() == add.GetName() }) {
			g.patchWarnf(p, "cluster %q already exists; ADD ignored", add.GetName())
			return
		}
		res.Clusters = append(res.Clusters, add)
		return
	}
	var kept []*clusterv3.Cluster
	for _, c := range res.Clusters {
		if g.contextMatches(p, inboundCluster(c)) && clusterMatches(c, p.Match.GetCluster()) {
			if p.Operation == networking.EnvoyFilter_Patch_REMOVE {
				continue
			}
			proto.Merge(c, p.Value)
		}
		kept = append(kept, c)
	}
	res.Clusters = kept
}

// --- references ---

// reconcileReferences keeps the resource set consistent after patching,
// as the snapshot cache requires: route configurations and endpoints no
// listener or cluster refers to any more are dropped; an EDS cluster a
// patch added gets its endpoints (none when it names no known service);
// an RDS name a patch introduced gets an empty route configuration.
func (g *generator) reconcileReferences(res *Resources) {
	wantRoutes := map[string]bool{}
	var routeOrder []string
	for _, l := range res.Listeners {
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				if n := unpackHCM(f).GetRds().GetRouteConfigName(); n != "" && !wantRoutes[n] {
					wantRoutes[n] = true
					routeOrder = append(routeOrder, n)
				}
			}
		}
	}
	have := map[string]bool{}
	var routes []*routev3.RouteConfiguration
	for _, rc := range res.Routes {
		if wantRoutes[rc.GetName()] {
			have[rc.GetName()] = true
			routes = append(routes, rc)
		}
	}
	for _, n := range routeOrder {
		if !have[n] {
			g.warnf("EnvoyFilter: listeners refer to route configuration %q, which no config defines; it is sent empty", n)
			routes = append(routes, &routev3.RouteConfiguration{Name: n})
		}
	}
	res.Routes = routes

	wantEDS := map[string]bool{}
	var edsOrder []string
	for _, c := range res.Clusters {
		if c.GetType() != clusterv3.Cluster_EDS {
			continue
		}
		n := c.GetName()
		if sn := c.GetEdsClusterConfig().GetServiceName(); sn != "" {
			n = sn
		}
		if !wantEDS[n] {
			wantEDS[n] = true
			edsOrder = append(edsOrder, n)
		}
	}
	haveEDS := map[string]bool{}
	var eps []*endpointv3.ClusterLoadAssignment
	for _, cla := range res.Endpoints {
		if wantEDS[cla.GetClusterName()] {
			haveEDS[cla.GetClusterName()] = true
			eps = append(eps, cla)
		}
	}
	for _, n := range edsOrder {
		if haveEDS[n] {
			continue
		}
		cla := &endpointv3.ClusterLoadAssignment{ClusterName: n}
		if port, subset, host, ok := ParseOutboundCluster(n); ok {
			if svc := g.pc.Registry.Service(host); svc != nil {
				if sp, ok := svc.PortByNumber(port); ok {
					cla = g.loadAssignment(n, svc, sp, subset)
				}
			}
		}
		eps = append(eps, cla)
	}
	res.Endpoints = eps
}
