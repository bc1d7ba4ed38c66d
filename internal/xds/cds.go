package xds

import (
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/skein-mesh/skein/internal/model"
)

// defaultConnectTimeout is Istio's mesh-wide connectTimeout default.
const defaultConnectTimeout = 10 * time.Second

// buildOutboundClusters makes, for every service port visible to the proxy,
// the whole-service cluster and one cluster per DestinationRule subset.
func (g *generator) buildOutboundClusters() []*clusterv3.Cluster {
	var out []*clusterv3.Cluster
	for _, svc := range g.pc.Registry.Services() {
		drObj := g.pc.DestinationRule(g.proxy.Namespace, svc)
		var dr *networking.DestinationRule
		if drObj != nil {
			dr = drObj.Spec.(*networking.DestinationRule)
		}
		for _, port := range svc.Ports {
			policy := portPolicy(dr.GetTrafficPolicy(), port.Port)
			out = append(out, g.outboundCluster(svc, port, "", policy))
			for _, ss := range dr.GetSubsets() {
				sp := mergePolicy(policy, portPolicy(ss.GetTrafficPolicy(), port.Port))
				out = append(out, g.outboundCluster(svc, port, ss.GetName(), sp))
			}
		}
	}
	return out
}

func (g *generator) outboundCluster(svc *model.Service, port model.Port, subset string, policy *networking.TrafficPolicy) *clusterv3.Cluster {
	name := OutboundCluster(port.Port, subset, svc.Hostname)
	c := &clusterv3.Cluster{
		Name:           name,
		ConnectTimeout: durationpb.New(defaultConnectTimeout),
		LbPolicy:       clusterv3.Cluster_ROUND_ROBIN,
	}
	switch svc.Resolution {
	case model.ClientSideLB:
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}
		c.EdsClusterConfig = &clusterv3.Cluster_EdsClusterConfig{ServiceName: name, EdsConfig: adsConfigSource()}
		g.edsClusters = append(g.edsClusters, edsRef{cluster: name, svc: svc, port: port, subset: subset})
	case model.DNSLB:
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS}
		c.LoadAssignment = g.loadAssignment(name, svc, port, subset)
	case model.Passthrough:
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST}
		c.LbPolicy = clusterv3.Cluster_CLUSTER_PROVIDED
	}
	g.applyTrafficPolicy(c, policy)
	setProtocolOptions(c, port.Protocol.IsHTTP2(), policy.GetConnectionPool().GetHttp())
	g.applyUpstreamTLS(c, svc, port, policy)
	return c
}

func adsConfigSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

// setProtocolOptions sets the upstream HTTP protocol options: HTTP/2 for
// h2/gRPC ports, and the per-connection limits of the connection pool.
func setProtocolOptions(c *clusterv3.Cluster, http2 bool, pool *networking.ConnectionPoolSettings_HTTPSettings) {
	opts := &httpv3.HttpProtocolOptions{}
	set := false
	if http2 {
		opts.UpstreamProtocolOptions = &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{
			ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
					Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
				},
			},
		}
		set = true
	}
	if v := pool.GetMaxRequestsPerConnection(); v > 0 {
		opts.CommonHttpProtocolOptions = &corev3.HttpProtocolOptions{MaxRequestsPerConnection: wrapperspb.UInt32(uint32(v))}
		set = true
	}
	if d := pool.GetIdleTimeout(); d != nil {
		if opts.CommonHttpProtocolOptions == nil {
			opts.CommonHttpProtocolOptions = &corev3.HttpProtocolOptions{}
		}
		opts.CommonHttpProtocolOptions.IdleTimeout = d
		set = true
	}
	if !set {
		return
	}
	if opts.UpstreamProtocolOptions == nil {
		opts.UpstreamProtocolOptions = &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{
			ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{
					HttpProtocolOptions: &corev3.Http1ProtocolOptions{},
				},
			},
		}
	}
	c.TypedExtensionProtocolOptions = map[string]*anypb.Any{HTTPProtocolOptions: mustAny(opts)}
}

// portPolicy returns the traffic policy for one port: the rule-level policy
// overlaid with the matching portLevelSettings entry.
func portPolicy(tp *networking.TrafficPolicy, port uint32) *networking.TrafficPolicy {
	if tp == nil {
		return nil
	}
	for _, pl := range tp.GetPortLevelSettings() {
		if pl.GetPort().GetNumber() == port {
			return mergePolicy(tp, &networking.TrafficPolicy{
				LoadBalancer: pl.GetLoadBalancer(), ConnectionPool: pl.GetConnectionPool(),
				OutlierDetection: pl.GetOutlierDetection(), Tls: pl.GetTls(),
			})
		}
	}
	return tp
}

// mergePolicy overlays the non-empty parts of top onto base, as Istio does
// for subset and port-level policies.
func mergePolicy(base, top *networking.TrafficPolicy) *networking.TrafficPolicy {
	if top == nil {
		return base
	}
	if base == nil {
		return top
	}
	out := &networking.TrafficPolicy{
		LoadBalancer: base.GetLoadBalancer(), ConnectionPool: base.GetConnectionPool(),
		OutlierDetection: base.GetOutlierDetection(), Tls: base.GetTls(),
	}
	if top.GetLoadBalancer() != nil {
		out.LoadBalancer = top.GetLoadBalancer()
	}
	if top.GetConnectionPool() != nil {
		out.ConnectionPool = top.GetConnectionPool()
	}
	if top.GetOutlierDetection() != nil {
		out.OutlierDetection = top.GetOutlierDetection()
	}
	if top.GetTls() != nil {
		out.Tls = top.GetTls()
	}
	return out
}

// applyTrafficPolicy translates a DestinationRule traffic policy onto a cluster.
func (g *generator) applyTrafficPolicy(c *clusterv3.Cluster, tp *networking.TrafficPolicy) {
	if tp == nil {
		return
	}
	switch tp.GetLoadBalancer().GetSimple() {
	case networking.LoadBalancerSettings_LEAST_REQUEST:
		c.LbPolicy = clusterv3.Cluster_LEAST_REQUEST
	case networking.LoadBalancerSettings_RANDOM:
		c.LbPolicy = clusterv3.Cluster_RANDOM
	case networking.LoadBalancerSettings_PASSTHROUGH:
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST}
		c.LbPolicy = clusterv3.Cluster_CLUSTER_PROVIDED
		c.EdsClusterConfig = nil
	}
	if ch := tp.GetLoadBalancer().GetConsistentHash(); ch != nil {
		g.warnf("cluster %s: loadBalancer.consistentHash is not supported yet; using round robin", c.Name)
	}
	if cp := tp.GetConnectionPool(); cp != nil {
		applyConnectionPool(c, cp)
	}
	if od := tp.GetOutlierDetection(); od != nil {
		c.OutlierDetection = outlierDetection(od)
		if v := od.GetMinHealthPercent(); v > 0 {
			c.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{HealthyPanicThreshold: &typev3.Percent{Value: float64(v)}}
		}
	}
	if tp.GetTls() != nil {
		g.warnf("cluster %s: trafficPolicy.tls is not supported yet", c.Name)
	}
}

func applyConnectionPool(c *clusterv3.Cluster, cp *networking.ConnectionPoolSettings) {
	th := &clusterv3.CircuitBreakers_Thresholds{}
	set := false
	if v := cp.GetTcp().GetMaxConnections(); v > 0 {
		th.MaxConnections, set = wrapperspb.UInt32(uint32(v)), true
	}
	if v := cp.GetHttp().GetHttp1MaxPendingRequests(); v > 0 {
		th.MaxPendingRequests, set = wrapperspb.UInt32(uint32(v)), true
	}
	if v := cp.GetHttp().GetHttp2MaxRequests(); v > 0 {
		th.MaxRequests, set = wrapperspb.UInt32(uint32(v)), true
	}
	if v := cp.GetHttp().GetMaxRetries(); v > 0 {
		th.MaxRetries, set = wrapperspb.UInt32(uint32(v)), true
	}
	if set {
		c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{th}}
	}
	if d := cp.GetTcp().GetConnectTimeout(); d != nil {
		c.ConnectTimeout = d
	}
}

func outlierDetection(od *networking.OutlierDetection) *clusterv3.OutlierDetection {
	out := &clusterv3.OutlierDetection{
		Interval:         od.GetInterval(),
		BaseEjectionTime: od.GetBaseEjectionTime(),
		// Istio turns the 5xx check off unless consecutive5xxErrors is set.
		EnforcingConsecutive_5Xx: wrapperspb.UInt32(0),
	}
	if v := od.GetMaxEjectionPercent(); v > 0 {
		out.MaxEjectionPercent = wrapperspb.UInt32(uint32(v))
	}
	if v := od.GetConsecutive_5XxErrors(); v != nil && v.GetValue() > 0 {
		out.Consecutive_5Xx = wrapperspb.UInt32(v.GetValue())
		out.EnforcingConsecutive_5Xx = wrapperspb.UInt32(100)
	}
	// The deprecated consecutiveErrors counts gateway errors (502/503/504).
	gw := od.GetConsecutiveGatewayErrors().GetValue()
	if gw == 0 && od.GetConsecutiveErrors() > 0 {
		gw = uint32(od.GetConsecutiveErrors())
	}
	if gw > 0 {
		out.ConsecutiveGatewayFailure = wrapperspb.UInt32(gw)
		out.EnforcingConsecutiveGatewayFailure = wrapperspb.UInt32(100)
	}
	return out
}

// loadAssignment builds endpoints for a service port, filtered by the subset's labels.
func (g *generator) loadAssignment(name string, svc *model.Service, port model.Port, subset string) *endpointv3.ClusterLoadAssignment {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	labels := g.subsetLabels(svc, subset)
	var lbs []*endpointv3.LbEndpoint
	for _, ep := range g.pc.Registry.Endpoints(svc.Hostname, port.Port) {
		if !model.LabelsMatch(labels, ep.Labels) {
			continue
		}
		lb := &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: socketAddress(ep.Address, ep.Port),
			}},
			HealthStatus: corev3.HealthStatus_HEALTHY,
			Metadata:     g.endpointMetadata(ep),
		}
		if ep.Weight > 0 {
			lb.LoadBalancingWeight = wrapperspb.UInt32(ep.Weight)
		}
		lbs = append(lbs, lb)
	}
	if len(lbs) > 0 {
		cla.Endpoints = []*endpointv3.LocalityLbEndpoints{{LbEndpoints: lbs}}
	}
	return cla
}

func (g *generator) subsetLabels(svc *model.Service, subset string) map[string]string {
	if subset == "" {
		return nil
	}
	drObj := g.pc.DestinationRule(g.proxy.Namespace, svc)
	if drObj == nil {
		return nil
	}
	for _, ss := range drObj.Spec.(*networking.DestinationRule).GetSubsets() {
		if ss.GetName() == subset {
			return ss.GetLabels()
		}
	}
	return nil
}

func socketAddress(addr string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       addr,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// buildInboundClusters makes inbound|port|| for each port the proxy's own
// workload serves, delivering to the app.
func (g *generator) buildInboundClusters(ports []inboundPort) []*clusterv3.Cluster {
	appIP := g.proxy.AppIP
	if appIP == "" {
		appIP = "127.0.0.1"
	}
	var out []*clusterv3.Cluster
	for _, ip := range ports {
		name := InboundCluster(ip.target)
		c := &clusterv3.Cluster{
			Name:                 name,
			ConnectTimeout:       durationpb.New(defaultConnectTimeout),
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
			LbPolicy:             clusterv3.Cluster_CLUSTER_PROVIDED,
			LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
				LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{
					Endpoint: &endpointv3.Endpoint{Address: socketAddress(appIP, ip.target)}}}},
			}}},
		}
		c.LbPolicy = clusterv3.Cluster_ROUND_ROBIN
		setProtocolOptions(c, ip.protocol.IsHTTP2(), nil)
		out = append(out, c)
	}
	return out
}

// wellKnownClusters are Istio's passthrough and black-hole clusters.
func wellKnownClusters(p *model.Proxy) []*clusterv3.Cluster {
	var out []*clusterv3.Cluster
	if p.Type == model.SidecarProxy {
		out = append(out, &clusterv3.Cluster{
			Name:                 InboundPassthroughCluster,
			ConnectTimeout:       durationpb.New(defaultConnectTimeout),
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
			LbPolicy:             clusterv3.Cluster_CLUSTER_PROVIDED,
		})
	}
	return append(out,
		&clusterv3.Cluster{
			Name:                 PassthroughCluster,
			ConnectTimeout:       durationpb.New(defaultConnectTimeout),
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
			LbPolicy:             clusterv3.Cluster_CLUSTER_PROVIDED,
		},
		&clusterv3.Cluster{
			Name:                 BlackHoleCluster,
			ConnectTimeout:       durationpb.New(defaultConnectTimeout),
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		},
	)
}
