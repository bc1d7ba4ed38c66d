package xds

import (
	"fmt"
	"sort"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/skein-mesh/skein/internal/model"
)

// inboundPort is one port the proxy's own workload serves.
type inboundPort struct {
	target   uint32
	protocol model.Protocol
}

// inboundPorts lists the target ports of every service endpoint at the
// proxy's IP, deduplicated and sorted.
func (g *generator) inboundPorts() []inboundPort {
	seen := map[uint32]inboundPort{}
	for _, ep := range g.pc.Registry.InstancesAt(g.proxy.IP) {
		if ep.Namespace != g.proxy.Namespace {
			continue
		}
		proto := model.ProtocolUnsupported
		if svc := g.pc.Registry.Service(ep.Hostname); svc != nil {
			if sp, ok := svc.PortByNumber(ep.ServicePort); ok {
				proto = sp.Protocol
			}
		}
		if prev, ok := seen[ep.Port]; !ok || prev.protocol == model.ProtocolUnsupported {
			seen[ep.Port] = inboundPort{target: ep.Port, protocol: proto}
		}
	}
	out := make([]inboundPort, 0, len(seen))
	for _, p := range seen {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].target < out[j].target })
	return out
}

// buildSidecarListeners returns virtualOutbound, one outbound listener per
// HTTP service port, and virtualInbound with a chain per inbound port.
func (g *generator) buildSidecarListeners(inbound []inboundPort) []*listenerv3.Listener {
	out := []*listenerv3.Listener{{
		Name:             VirtualOutboundListener,
		Address:          socketAddress("0.0.0.0", VirtualOutboundPort),
		UseOriginalDst:   wrapperspb.Bool(true),
		TrafficDirection: corev3.TrafficDirection_OUTBOUND,
		FilterChains:     []*listenerv3.FilterChain{g.outboundCatchAllChain()}, // egress.go
	}}
	for _, port := range g.outboundHTTPPorts() {
		out = append(out, &listenerv3.Listener{
			Name:             OutboundListener(port),
			Address:          socketAddress("0.0.0.0", port),
			BindToPort:       wrapperspb.Bool(false),
			TrafficDirection: corev3.TrafficDirection_OUTBOUND,
			FilterChains: []*listenerv3.FilterChain{{
				Filters: []*listenerv3.Filter{hcmFilter(g.withTelemetry(&hcmv3.HttpConnectionManager{
					StatPrefix: fmt.Sprintf("outbound_0.0.0.0_%d", port),
					RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
						RouteConfigName: OutboundRoute(port), ConfigSource: adsConfigSource(),
					}},
					HttpFilters: g.outboundHTTPFilters(),
				}, hcmOutbound))},
			}},
		})
		g.routeNames = append(g.routeNames, OutboundRoute(port))
	}
	out = g.addOutboundTCPListeners(out) // tcp.go
	vin := &listenerv3.Listener{
		Name:             VirtualInboundListener,
		Address:          socketAddress("0.0.0.0", VirtualInboundPort),
		TrafficDirection: corev3.TrafficDirection_INBOUND,
		ListenerFilters:  inboundListenerFilters(),
	}
	for _, ip := range inbound {
		vin.FilterChains = append(vin.FilterChains, g.inboundChains(ip, g.inboundFilters(ip))...)
	}
	vin.FilterChains = append(vin.FilterChains, tcpProxyChain(InboundPassthroughFilterChain, InboundPassthroughCluster, InboundPassthroughCluster))
	return append(out, vin)
}

// inboundFilters returns the network filters serving one inbound port:
// the metadata exchange and authorization for TCP, then an HTTP connection manager (with
// authentication and authorization filters) or a tcp_proxy to the app.
func (g *generator) inboundFilters(ip inboundPort) []*listenerv3.Filter {
	if !ip.protocol.IsHTTP() {
		tp := &tcpv3.TcpProxy{StatPrefix: InboundCluster(ip.target), ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: InboundCluster(ip.target)}}
		fs := append([]*listenerv3.Filter{metadataExchangeFilter()}, g.inboundNetworkFilters(ip)...) // tcp.go
		return append(fs, g.tcpStatsFilter(ip.target, hcmInbound),
			&listenerv3.Filter{Name: TCPProxy, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(tp)}})
	}
	return []*listenerv3.Filter{hcmFilter(g.withTelemetry(&hcmv3.HttpConnectionManager{
		StatPrefix: fmt.Sprintf("inbound_0.0.0.0_%d", ip.target),
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name: InboundCluster(ip.target),
			VirtualHosts: []*routev3.VirtualHost{{
				Name:    fmt.Sprintf("inbound|http|%d", ip.target),
				Domains: []string{"*"},
				Routes: []*routev3.Route{{
					Name:  "default",
					Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
					Action: &routev3.Route_Route{Route: &routev3.RouteAction{
						ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: InboundCluster(ip.target)},
						Timeout:          durationpb.New(0),
					}},
				}},
			}},
		}},
		HttpFilters: g.inboundHTTPFilters(ip),
	}, hcmInbound))}
}

// outboundHTTPPorts lists the distinct HTTP service ports in the mesh.
func (g *generator) outboundHTTPPorts() []uint32 {
	seen := map[uint32]bool{}
	var ports []uint32
	for _, svc := range g.pc.Registry.Services() {
		for _, p := range svc.Ports {
			if p.Protocol.IsHTTP() && !seen[p.Port] && g.scope().IncludesPort(svc, p.Port) {
				seen[p.Port] = true
				ports = append(ports, p.Port)
			}
		}
	}
	sort.Slice(ports, func(i, j int) bool { return ports[i] < ports[j] })
	return ports
}

// hcmFilter wraps an HTTP connection manager as a network filter, ending
// its HTTP filters (set by the caller) with the router.
func hcmFilter(hcm *hcmv3.HttpConnectionManager) *listenerv3.Filter {
	hcm.CodecType = hcmv3.HttpConnectionManager_AUTO
	hcm.HttpFilters = append(hcm.HttpFilters, &hcmv3.HttpFilter{
		Name:       RouterFilter,
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})},
	})
	hcm.UseRemoteAddress = wrapperspb.Bool(false)
	return &listenerv3.Filter{Name: HTTPConnectionManager, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(hcm)}}
}

func tcpProxyChain(name, cluster, statPrefix string) *listenerv3.FilterChain {
	tp := &tcpv3.TcpProxy{StatPrefix: statPrefix, ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: cluster}}
	return &listenerv3.FilterChain{
		Name:    name,
		Filters: []*listenerv3.Filter{{Name: TCPProxy, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(tp)}}},
	}
}
