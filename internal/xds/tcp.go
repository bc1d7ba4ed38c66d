package xds

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	udpav1 "github.com/cncf/xds/go/udpa/type/v1"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/skein-mesh/skein/internal/config"
	"github.com/skein-mesh/skein/internal/model"
)

// OutboundHostsMetadata is the filter chain metadata namespace that names
// the destination hosts of an outbound TCP chain ({"hosts": [...]}). Istio
// gives each TCP service its own <serviceIP>_<port> listener and the
// original destination IP picks it; local mode has no service IPs, so the
// proxy's forward proxy matches the host of the CONNECT (or absolute-form)
// target against these names instead.
const OutboundHostsMetadata = "skein.io/outbound"

// addOutboundTCPListeners adds, for every TCP service port (Istio's tcp,
// tls, https, mongo, mysql, redis protocols), a filter chain to the
// outbound listener 0.0.0.0_<port>: one chain per service, matched by
// destination host, running tcp_proxy to the service's cluster or to the
// clusters its VirtualService tcp route picks. A port that also has HTTP
// services keeps its connection manager chain for every other host.
func (g *generator) addOutboundTCPListeners(out []*listenerv3.Listener) []*listenerv3.Listener {
	chains := map[uint32][]*listenerv3.FilterChain{}
	var ports []uint32
	vsList := g.pc.MeshVirtualServices(g.proxy.Namespace)
	for _, svc := range g.pc.Registry.Services() {
		for _, sp := range svc.Ports {
			if sp.Protocol.IsHTTP() || !g.scope().IncludesPort(svc, sp.Port) {
				continue
			}
			if _, seen := chains[sp.Port]; !seen {
				ports = append(ports, sp.Port)
			}
			chains[sp.Port] = append(chains[sp.Port], g.outboundTCPChains(vsList, svc, sp)...)
		}
	}
	sort.Slice(ports, func(i, j int) bool { return ports[i] < ports[j] })
	byName := map[string]*listenerv3.Listener{}
	for _, l := range out {
		byName[l.GetName()] = l
	}
	for _, port := range ports {
		if l := byName[OutboundListener(port)]; l != nil {
			l.FilterChains = append(l.FilterChains, chains[port]...)
			continue
		}
		out = append(out, &listenerv3.Listener{
			Name:             OutboundListener(port),
			Address:          socketAddress("0.0.0.0", port),
			BindToPort:       wrapperspb.Bool(false),
			TrafficDirection: corev3.TrafficDirection_OUTBOUND,
			FilterChains:     chains[port],
		})
	}
	return out
}

// outboundTCPChains are the chains of one TCP service port: for TLS ports,
// one per sniHosts of the VirtualService tls routes that apply (chosen by
// SNI), then the service's chain (its tcp route, else its cluster).
func (g *generator) outboundTCPChains(vsList []*config.Object, svc *model.Service, sp model.Port) []*listenerv3.FilterChain {
	cluster := OutboundCluster(sp.Port, "", svc.Hostname)
	ctx := routeContext{gateway: "mesh", port: sp.Port, listenPort: sp.Port}
	vsObj := g.virtualServiceFor(vsList, svc.Hostname)
	var out []*listenerv3.FilterChain
	if vsObj != nil && (sp.Protocol == model.ProtocolTLS || sp.Protocol == model.ProtocolHTTPS) {
		out = g.tlsRouteChains(vsObj, svc, sp, ctx)
	}
	tp := &tcpv3.TcpProxy{StatPrefix: cluster, ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: cluster}}
	if vsObj != nil {
		g.applyTCPRoute(tp, vsObj, ctx)
	}
	return append(out, g.tcpChain(cluster, svc, sp, nil, tp))
}

// tlsRouteChains translates a VirtualService's tls routes for one service
// port: every applying match becomes a chain with server_names = sniHosts
// (the first route claiming a set of names wins, as Istio keeps the first).
func (g *generator) tlsRouteChains(vsObj *config.Object, svc *model.Service, sp model.Port, ctx routeContext) []*listenerv3.FilterChain {
	vs := vsObj.Spec.(*networking.VirtualService)
	where := fmt.Sprintf("VirtualService %s/%s", vsObj.Meta.Namespace, vsObj.Meta.Name)
	var out []*listenerv3.FilterChain
	seen := map[string]bool{}
	for i, tr := range vs.GetTls() {
		for j, m := range tr.GetMatch() {
			at := fmt.Sprintf("%s tls[%d].match[%d]", where, i, j)
			if len(m.GetDestinationSubnets()) > 0 {
				g.warnf("%s.destinationSubnets is not supported; the match is ignored", at)
				continue
			}
			if !g.matchApplies(&networking.HTTPMatchRequest{Port: m.GetPort(), Gateways: m.GetGateways(),
				SourceLabels: m.GetSourceLabels(), SourceNamespace: m.GetSourceNamespace()}, vsObj.Meta.Namespace, ctx) {
				continue
			}
			snis := slices.Clone(m.GetSniHosts())
			sort.Strings(snis)
			if len(snis) == 0 || seen[strings.Join(snis, ",")] {
				continue
			}
			seen[strings.Join(snis, ",")] = true
			tp := &tcpv3.TcpProxy{StatPrefix: OutboundCluster(sp.Port, "", svc.Hostname)}
			if !g.setRouteClusters(tp, vsObj, tr.GetRoute(), ctx, fmt.Sprintf("%s tls[%d]", where, i)) {
				continue
			}
			out = append(out, g.tcpChain(fmt.Sprintf("%s|sni:%s", OutboundCluster(sp.Port, "", svc.Hostname), strings.Join(snis, ",")), svc, sp,
				&listenerv3.FilterChainMatch{ServerNames: snis}, tp))
		}
	}
	return out
}

// tcpChain wraps tp (after istio.stats) in a chain for svc's hosts.
func (g *generator) tcpChain(name string, svc *model.Service, sp model.Port, match *listenerv3.FilterChainMatch, tp *tcpv3.TcpProxy) *listenerv3.FilterChain {
	hosts := g.serviceDomains(svc, sp.Port)
	values := make([]*structpb.Value, len(hosts))
	for i, h := range hosts {
		values[i] = structpb.NewStringValue(h)
	}
	return &listenerv3.FilterChain{
		Name:             name,
		FilterChainMatch: match,
		Metadata: &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
			OutboundHostsMetadata: {Fields: map[string]*structpb.Value{"hosts": structpb.NewListValue(&structpb.ListValue{Values: values})}},
		}},
		Filters: []*listenerv3.Filter{
			g.tcpStatsFilter(sp.Port, hcmOutbound),
			{Name: TCPProxy, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(tp)}},
		},
	}
}

// Istio's TCP metadata exchange: on mesh mTLS connections that negotiate
// ALPN "istio-peer-exchange", the two sidecars swap node metadata before
// the application's bytes, so TCP metrics know both workloads.
const (
	MetadataExchangeFilter   = "istio.metadata_exchange"
	MetadataExchangeTypeURL  = "type.googleapis.com/envoy.tcp.metadataexchange.config.MetadataExchange"
	MetadataExchangeProtocol = "istio-peer-exchange"
)

// metadataExchangeConfig is the filter's config, the same for the inbound
// network filter and the outbound cluster filter.
func metadataExchangeConfig() *anypb.Any {
	value := &structpb.Struct{Fields: map[string]*structpb.Value{"protocol": structpb.NewStringValue(MetadataExchangeProtocol)}}
	return mustAny(&udpav1.TypedStruct{TypeUrl: MetadataExchangeTypeURL, Value: value})
}

// metadataExchangeFilter leads an inbound TCP chain's network filters.
func metadataExchangeFilter() *listenerv3.Filter {
	return &listenerv3.Filter{Name: MetadataExchangeFilter, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: metadataExchangeConfig()}}
}

// tcpStatsFilter is istio.stats as a network filter before tcp_proxy:
// Istio's TCP metrics (istio_tcp_connections_opened_total, ..._closed_total,
// istio_tcp_received_bytes_total, istio_tcp_sent_bytes_total). Its config
// carries the Telemetry metric overrides for this side (as the connection
// managers' does), the proxyStatsMatcher and, inbound, the port's services.
func (g *generator) tcpStatsFilter(port uint32, kind hcmKind) *listenerv3.Filter {
	cfg := map[string]any{"stats_matcher": g.statsMatcher()}
	if metrics := g.metricOverrides(kind); len(metrics) > 0 {
		cfg["metrics"] = metrics
	}
	if kind == hcmInbound {
		if svcs := g.inboundServices(fmt.Sprintf("inbound_0.0.0.0_%d", port)); len(svcs) > 0 {
			cfg["inbound_services"] = toAny(svcs)
		}
	}
	value, err := structpb.NewStruct(cfg)
	if err != nil {
		// Every value above is JSON-shaped; this is a programming error.
		panic(fmt.Sprintf("istio.stats config for port %d: %v", port, err))
	}
	return &listenerv3.Filter{
		Name:       IstioStatsFilter,
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(&udpav1.TypedStruct{TypeUrl: IstioStatsTypeURL, Value: value})},
	}
}

// applyTCPRoute sets tp's cluster or weighted_clusters from the first tcp
// route of a VirtualService whose match applies to this proxy and port
// (Istio's first-match order); without one tp keeps the service's cluster.
func (g *generator) applyTCPRoute(tp *tcpv3.TcpProxy, vsObj *config.Object, ctx routeContext) {
	vs := vsObj.Spec.(*networking.VirtualService)
	where := fmt.Sprintf("VirtualService %s/%s", vsObj.Meta.Namespace, vsObj.Meta.Name)
	for i, tr := range vs.GetTcp() {
		if g.tcpMatchApplies(tr.GetMatch(), vsObj.Meta.Namespace, ctx, fmt.Sprintf("%s tcp[%d]", where, i)) {
			g.setRouteClusters(tp, vsObj, tr.GetRoute(), ctx, fmt.Sprintf("%s tcp[%d]", where, i))
			return
		}
	}
}

// setRouteClusters points tp at a route's destinations: one cluster, or
// weighted_clusters when several have weight. False (tp unchanged) when
// the route has no usable destination.
func (g *generator) setRouteClusters(tp *tcpv3.TcpProxy, vsObj *config.Object, routes []*networking.RouteDestination, ctx routeContext, where string) bool {
	if len(routes) == 0 {
		g.warnf("%s: no route", where)
		return false
	}
	wc := &tcpv3.TcpProxy_WeightedCluster{}
	for j, rd := range routes {
		if rd.GetWeight() == 0 && len(routes) > 1 {
			continue // Istio drops zero-weight destinations
		}
		wc.Clusters = append(wc.Clusters, &tcpv3.TcpProxy_WeightedCluster_ClusterWeight{
			Name:   g.destinationCluster(vsObj, rd.GetDestination(), ctx, fmt.Sprintf("%s.route[%d]", where, j)),
			Weight: uint32(max(rd.GetWeight(), 1)),
		})
	}
	switch len(wc.Clusters) {
	case 0:
		g.warnf("%s: every route has weight 0", where)
		return false
	case 1:
		tp.ClusterSpecifier = &tcpv3.TcpProxy_Cluster{Cluster: wc.Clusters[0].Name}
	default:
		tp.ClusterSpecifier = &tcpv3.TcpProxy_WeightedClusters{WeightedClusters: wc}
	}
	return true
}

// tcpMatchApplies: a tcp route applies when it has no match or any of its
// matches applies (port, gateways, sourceLabels, sourceNamespace — the
// same attributes an http match filters on).
func (g *generator) tcpMatchApplies(ms []*networking.L4MatchAttributes, vsNamespace string, ctx routeContext, where string) bool {
	if len(ms) == 0 {
		return true
	}
	for j, m := range ms {
		if len(m.GetDestinationSubnets()) > 0 {
			// Local mode has no destination IPs to compare with.
			g.warnf("%s.match[%d].destinationSubnets is not supported; the match is ignored", where, j)
			continue
		}
		if g.matchApplies(&networking.HTTPMatchRequest{
			Port:            m.GetPort(),
			Gateways:        m.GetGateways(),
			SourceLabels:    m.GetSourceLabels(),
			SourceNamespace: m.GetSourceNamespace(),
		}, vsNamespace, ctx) {
			return true
		}
	}
	return false
}
