package xds

import (
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	networking "istio.io/api/networking/v1alpha3"
)

// Names of the catch-all virtual hosts and filter chains, as Istio spells
// them (util.PassthroughRouteName, util.BlackHoleRouteName).
const (
	allowAnyRoute        = "allow_any"
	blockAllRoute        = "block_all"
	BlackHoleFilterChain = "BlackHoleFilterChain"
)

// registryOnlyStatus is what Istio answers an HTTP request for a host
// outside the registry under REGISTRY_ONLY: the block_all virtual host's
// direct response.
const registryOnlyStatus = 502

// outboundTrafficMode is the proxy's outboundTrafficPolicy: the Sidecar
// resource that applies to the workload (one selecting it, else its
// namespace's default, else the root namespace's), else the mesh config.
// ALLOW_ANY is Istio's default.
func (g *generator) outboundTrafficMode() networking.OutboundTrafficPolicy_Mode {
	if sc := g.pc.SidecarFor(g.proxy); sc != nil && sc.GetOutboundTrafficPolicy() != nil {
		return sc.GetOutboundTrafficPolicy().GetMode()
	}
	mesh, _ := g.pc.MeshConfig() // a broken mesh config is warned about elsewhere; defaults apply
	// REGISTRY_ONLY is the enum's zero value: only an explicit policy selects it.
	if p := mesh.GetOutboundTrafficPolicy(); p != nil && p.GetMode() == meshv1alpha1.MeshConfig_OutboundTrafficPolicy_REGISTRY_ONLY {
		return networking.OutboundTrafficPolicy_REGISTRY_ONLY
	}
	return networking.OutboundTrafficPolicy_ALLOW_ANY
}

// catchAllVirtualHost is the last virtual host of every sidecar outbound
// route: unknown hosts go to PassthroughCluster (ALLOW_ANY) or get a 502
// (REGISTRY_ONLY), as Istio's BuildCatchAllVirtualHost does.
func (g *generator) catchAllVirtualHost() *routev3.VirtualHost {
	if g.outboundTrafficMode() == networking.OutboundTrafficPolicy_REGISTRY_ONLY {
		return &routev3.VirtualHost{
			Name:    blockAllRoute,
			Domains: []string{"*"},
			Routes: []*routev3.Route{{
				Name:   blockAllRoute,
				Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: registryOnlyStatus}},
			}},
		}
	}
	return &routev3.VirtualHost{
		Name:    allowAnyRoute,
		Domains: []string{"*"},
		Routes: []*routev3.Route{{
			Name:   allowAnyRoute,
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: PassthroughCluster}, Timeout: durationpb.New(0)}},
		}},
	}
}

// outboundCatchAllChain is virtualOutbound's chain for traffic to ports no
// outbound listener serves: a tcp_proxy to PassthroughCluster, or to
// BlackHoleCluster (no endpoints: the connection is refused) under
// REGISTRY_ONLY.
func (g *generator) outboundCatchAllChain() *listenerv3.FilterChain {
	if g.outboundTrafficMode() == networking.OutboundTrafficPolicy_REGISTRY_ONLY {
		return tcpProxyChain(BlackHoleFilterChain, BlackHoleCluster, BlackHoleCluster)
	}
	return tcpProxyChain(PassthroughFilterChain, PassthroughCluster, PassthroughCluster)
}
