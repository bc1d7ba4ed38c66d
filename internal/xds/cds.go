package xds

import (
	"math"
	"slices"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/skein-mesh/skein/internal/config"
	"github.com/skein-mesh/skein/internal/model"
)

// defaultConnectTimeout is Istio's mesh-wide connectTimeout default.
const defaultConnectTimeout = 10 * time.Second

// buildOutboundClusters makes, for every service port visible to the proxy,
// the whole-service cluster and one cluster per DestinationRule subset.
func (g *generator) buildOutboundClusters() []*clusterv3.Cluster {
	var out []*clusterv3.Cluster
	for _, svc := range g.scopedServices() {
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
	setProtocolOptions(c, port.Protocol.IsHTTP2() || upgradeToH2(port, policy), policy.GetConnectionPool().GetHttp())
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

// upgradeToH2 reports whether connectionPool.http.h2UpgradePolicy UPGRADE
// asks for HTTP/2 to an HTTP/1.1 port's endpoints, as Istio does.
func upgradeToH2(port model.Port, tp *networking.TrafficPolicy) bool {
	return port.Protocol.IsHTTP() && tp.GetConnectionPool().GetHttp().GetH2UpgradePolicy() == networking.ConnectionPoolSettings_HTTPSettings_UPGRADE
}

// applyTrafficPolicy translates a DestinationRule traffic policy onto a cluster.
func (g *generator) applyTrafficPolicy(c *clusterv3.Cluster, tp *networking.TrafficPolicy) {
	if tp == nil {
		return
	}
	g.applyLoadBalancer(c, tp.GetLoadBalancer())
	if cp := tp.GetConnectionPool(); cp != nil {
		g.applyConnectionPool(c, cp)
	}
	if od := tp.GetOutlierDetection(); od != nil {
		c.OutlierDetection = outlierDetection(od)
		// Istio always sets the panic threshold with outlier detection:
		// minHealthPercent 0 (the default) turns Envoy's 50% panic mode off,
		// which rarely fits services with few pods.
		c.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{HealthyPanicThreshold: &typev3.Percent{Value: float64(od.GetMinHealthPercent())}}
	}
	// trafficPolicy.tls is applied by applyUpstreamTLS (mtls.go).
}

func (g *generator) applyLoadBalancer(c *clusterv3.Cluster, lb *networking.LoadBalancerSettings) {
	if lb == nil {
		return
	}
	switch lb.GetSimple() {
	case networking.LoadBalancerSettings_LEAST_REQUEST:
		c.LbPolicy = clusterv3.Cluster_LEAST_REQUEST
	case networking.LoadBalancerSettings_RANDOM:
		c.LbPolicy = clusterv3.Cluster_RANDOM
	case networking.LoadBalancerSettings_ROUND_ROBIN:
		c.LbPolicy = clusterv3.Cluster_ROUND_ROBIN
	case networking.LoadBalancerSettings_PASSTHROUGH:
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST}
		c.LbPolicy = clusterv3.Cluster_CLUSTER_PROVIDED
		c.EdsClusterConfig = nil
		c.LoadAssignment = nil
	}
	if ch := lb.GetConsistentHash(); ch != nil {
		switch {
		case ch.GetMaglev() != nil:
			c.LbPolicy = clusterv3.Cluster_MAGLEV
			if n := ch.GetMaglev().GetTableSize(); n > 0 {
				c.LbConfig = &clusterv3.Cluster_MaglevLbConfig_{MaglevLbConfig: &clusterv3.Cluster_MaglevLbConfig{TableSize: wrapperspb.UInt64(n)}}
			}
		case ch.GetRingHash() != nil:
			c.LbPolicy = clusterv3.Cluster_RING_HASH
			if n := ch.GetRingHash().GetMinimumRingSize(); n > 0 {
				c.LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{MinimumRingSize: wrapperspb.UInt64(n)}}
			}
		default:
			// The deprecated minimumRingSize, with Envoy's 1024 when unset.
			n := ch.GetMinimumRingSize()
			if n == 0 {
				n = 1024
			}
			c.LbPolicy = clusterv3.Cluster_RING_HASH
			c.LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{MinimumRingSize: wrapperspb.UInt64(n)}}
		}
	}
	if lb.GetWarmupDurationSecs() != nil {
		g.warnf("cluster %s: loadBalancer.warmupDurationSecs is not supported yet; ignored", c.Name)
	}
	if lb.GetLocalityLbSetting() != nil {
		g.warnf("cluster %s: loadBalancer.localityLbSetting is not supported yet; ignored", c.Name)
	}
}

// hashPolicy is the route hash_policy Istio puts on routes to a cluster
// whose policy uses consistentHash (nil otherwise).
func hashPolicy(lb *networking.LoadBalancerSettings) []*routev3.RouteAction_HashPolicy {
	ch := lb.GetConsistentHash()
	if ch == nil {
		return nil
	}
	var p *routev3.RouteAction_HashPolicy
	switch {
	case ch.GetHttpHeaderName() != "":
		p = &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{
			Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: ch.GetHttpHeaderName()}}}
	case ch.GetHttpCookie() != nil:
		ck := ch.GetHttpCookie()
		p = &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_Cookie_{
			Cookie: &routev3.RouteAction_HashPolicy_Cookie{Name: ck.GetName(), Path: ck.GetPath(), Ttl: ck.GetTtl()}}}
	case ch.GetUseSourceIp():
		p = &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_ConnectionProperties_{
			ConnectionProperties: &routev3.RouteAction_HashPolicy_ConnectionProperties{SourceIp: true}}}
	case ch.GetHttpQueryParameterName() != "":
		p = &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_QueryParameter_{
			QueryParameter: &routev3.RouteAction_HashPolicy_QueryParameter{Name: ch.GetHttpQueryParameterName()}}}
	default:
		return nil
	}
	return []*routev3.RouteAction_HashPolicy{p}
}

// routeHashPolicy is the hash policy of a route's destinations: Istio's
// consistentHash from the DestinationRule of each destination's host, port
// and subset. Weighted destinations get one only if they all agree.
func (g *generator) routeHashPolicy(vsObj *config.Object, dests []*networking.HTTPRouteDestination) []*routev3.RouteAction_HashPolicy {
	var out []*routev3.RouteAction_HashPolicy
	for i, d := range dests {
		if d.GetWeight() == 0 && len(dests) > 1 {
			continue
		}
		hp := g.destinationHashPolicy(vsObj, d.GetDestination())
		if i > 0 && !slices.EqualFunc(hp, out, func(a, b *routev3.RouteAction_HashPolicy) bool { return proto.Equal(a, b) }) {
			return nil
		}
		out = hp
	}
	return out
}

// destinationHashPolicy is the hash policy for one route destination.
func (g *generator) destinationHashPolicy(vsObj *config.Object, d *networking.Destination) []*routev3.RouteAction_HashPolicy {
	svc := g.pc.Registry.Service(g.pc.ResolveHost(d.GetHost(), vsObj.Meta.Namespace))
	if svc == nil {
		return nil
	}
	port := d.GetPort().GetNumber()
	if port == 0 && len(svc.Ports) > 0 {
		port = svc.Ports[0].Port
	}
	return g.subsetHashPolicy(svc, port, d.GetSubset())
}

// serviceHashPolicy is the hash policy of the default route to a service port.
func (g *generator) serviceHashPolicy(svc *model.Service, port uint32) []*routev3.RouteAction_HashPolicy {
	return g.subsetHashPolicy(svc, port, "")
}

func (g *generator) subsetHashPolicy(svc *model.Service, port uint32, subset string) []*routev3.RouteAction_HashPolicy {
	drObj := g.pc.DestinationRule(g.proxy.Namespace, svc)
	if drObj == nil {
		return nil
	}
	dr := drObj.Spec.(*networking.DestinationRule)
	policy := portPolicy(dr.GetTrafficPolicy(), port)
	for _, ss := range dr.GetSubsets() {
		if subset != "" && ss.GetName() == subset {
			policy = mergePolicy(policy, portPolicy(ss.GetTrafficPolicy(), port))
		}
	}
	return hashPolicy(policy.GetLoadBalancer())
}

// istioMaxThreshold is what Istio sets for every circuit breaker limit a
// DestinationRule leaves unset: effectively no limit.
const istioMaxThreshold = math.MaxUint32

func (g *generator) applyConnectionPool(c *clusterv3.Cluster, cp *networking.ConnectionPoolSettings) {
	th := &clusterv3.CircuitBreakers_Thresholds{
		MaxConnections:     wrapperspb.UInt32(istioMaxThreshold),
		MaxPendingRequests: wrapperspb.UInt32(istioMaxThreshold),
		MaxRequests:        wrapperspb.UInt32(istioMaxThreshold),
		MaxRetries:         wrapperspb.UInt32(istioMaxThreshold),
		TrackRemaining:     true,
	}
	if v := cp.GetTcp().GetMaxConnections(); v > 0 {
		th.MaxConnections = wrapperspb.UInt32(uint32(v))
	}
	if v := cp.GetHttp().GetHttp1MaxPendingRequests(); v > 0 {
		th.MaxPendingRequests = wrapperspb.UInt32(uint32(v))
	}
	if v := cp.GetHttp().GetHttp2MaxRequests(); v > 0 {
		th.MaxRequests = wrapperspb.UInt32(uint32(v))
	}
	if v := cp.GetHttp().GetMaxRetries(); v > 0 {
		th.MaxRetries = wrapperspb.UInt32(uint32(v))
	}
	c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{th}}
	if d := cp.GetTcp().GetConnectTimeout(); d != nil {
		c.ConnectTimeout = d
	}
	if ka := cp.GetTcp().GetTcpKeepalive(); ka != nil {
		tk := &corev3.TcpKeepalive{}
		if ka.GetProbes() > 0 {
			tk.KeepaliveProbes = wrapperspb.UInt32(ka.GetProbes())
		}
		if t := ka.GetTime(); t != nil {
			tk.KeepaliveTime = wrapperspb.UInt32(uint32(t.AsDuration().Seconds()))
		}
		if t := ka.GetInterval(); t != nil {
			tk.KeepaliveInterval = wrapperspb.UInt32(uint32(t.AsDuration().Seconds()))
		}
		c.UpstreamConnectionOptions = &clusterv3.UpstreamConnectionOptions{TcpKeepalive: tk}
	}
	if cp.GetTcp().GetIdleTimeout() != nil {
		g.warnf("cluster %s: connectionPool.tcp.idleTimeout is not supported yet; ignored", c.Name)
	}
	if cp.GetTcp().GetMaxConnectionDuration() != nil {
		g.warnf("cluster %s: connectionPool.tcp.maxConnectionDuration is not supported yet; ignored", c.Name)
	}
}

// outlierDetection follows Istio: the consecutive-error checks Envoy
// implements by default stay at Envoy's defaults unless set, success-rate
// detection is off, and the deprecated consecutiveErrors counts gateway
// errors (502, 503, 504) only.
func outlierDetection(od *networking.OutlierDetection) *clusterv3.OutlierDetection {
	out := &clusterv3.OutlierDetection{
		Interval:             od.GetInterval(),
		BaseEjectionTime:     od.GetBaseEjectionTime(),
		EnforcingSuccessRate: wrapperspb.UInt32(0),
	}
	if v := od.GetMaxEjectionPercent(); v > 0 {
		out.MaxEjectionPercent = wrapperspb.UInt32(uint32(v))
	}
	if od.GetConsecutiveErrors() > 0 && od.GetConsecutive_5XxErrors() == nil && od.GetConsecutiveGatewayErrors() == nil {
		out.ConsecutiveGatewayFailure = wrapperspb.UInt32(uint32(od.GetConsecutiveErrors()))
		out.EnforcingConsecutiveGatewayFailure = wrapperspb.UInt32(100)
		out.EnforcingConsecutive_5Xx = wrapperspb.UInt32(0)
	}
	if v := od.GetConsecutive_5XxErrors(); v != nil {
		out.Consecutive_5Xx = wrapperspb.UInt32(v.GetValue())
		out.EnforcingConsecutive_5Xx = wrapperspb.UInt32(enforcing(v.GetValue()))
	}
	if v := od.GetConsecutiveGatewayErrors(); v != nil {
		out.ConsecutiveGatewayFailure = wrapperspb.UInt32(v.GetValue())
		out.EnforcingConsecutiveGatewayFailure = wrapperspb.UInt32(enforcing(v.GetValue()))
	}
	if od.GetSplitExternalLocalOriginErrors() {
		out.SplitExternalLocalOriginErrors = true
		if v := od.GetConsecutiveLocalOriginFailures().GetValue(); v > 0 {
			out.ConsecutiveLocalOriginFailure = wrapperspb.UInt32(v)
			out.EnforcingConsecutiveLocalOriginFailure = wrapperspb.UInt32(100)
		}
		out.EnforcingLocalOriginSuccessRate = wrapperspb.UInt32(0)
	}
	return out
}

// enforcing is 100% for a threshold that is set, 0 (check off) for 0.
func enforcing(threshold uint32) uint32 {
	if threshold > 0 {
		return 100
	}
	return 0
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
