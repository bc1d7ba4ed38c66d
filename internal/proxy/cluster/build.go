package cluster

import (
	"fmt"
	"net"
	"net/netip"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"

	"github.com/skein-mesh/skein/internal/proxy/filters/metadataexchange"
	"github.com/skein-mesh/skein/internal/proxy/internal/confparse"
	"github.com/skein-mesh/skein/internal/proxy/internal/protocheck"
	"github.com/skein-mesh/skein/internal/proxy/stats"
	"github.com/skein-mesh/skein/internal/proxy/tlsconfig"
)

const httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// Defaults Envoy uses when a cluster leaves them unset.
const (
	defaultConnectTimeout = 5 * time.Second
	defaultIdleTimeout    = time.Hour
	defaultDNSRefresh     = 5 * time.Second
)

// clusterFields are the Cluster fields the proxy implements or that are
// informational. Everything else (transport_socket, health_checks, ...) is
// NACKed until implemented.
var clusterFields = protocheck.Fields(&clusterv3.Cluster{},
	"name", "alt_stat_name", "type", "eds_cluster_config", "connect_timeout",
	"lb_policy", "load_assignment", "typed_extension_protocol_options", "metadata",
	"common_lb_config", "dns_lookup_family", "dns_refresh_rate", "dns_failure_refresh_rate",
	"respect_dns_ttl", "dns_jitter", "cleanup_interval", "per_connection_buffer_limit_bytes",
	"upstream_connection_options", "circuit_breakers", "outlier_detection",
	"ring_hash_lb_config", "maglev_lb_config", "least_request_lb_config",
	"transport_socket", "transport_socket_matches", "filters")

// clusterFilterFields: a cluster's upstream network filters.
var clusterFilterFields = protocheck.Fields(&clusterv3.Filter{}, "name", "typed_config")

// commonLbFields: only the panic threshold is implemented.
var commonLbFields = protocheck.Fields(&clusterv3.Cluster_CommonLbConfig{}, "healthy_panic_threshold")

// defaultPanicThreshold is Envoy's healthy_panic_threshold default (percent).
const defaultPanicThreshold = 50

var (
	edsConfigFields       = protocheck.Fields(&clusterv3.Cluster_EdsClusterConfig{}, "eds_config", "service_name")
	connOptionsFields     = protocheck.Fields(&clusterv3.UpstreamConnectionOptions{}, "tcp_keepalive")
	keepaliveFields       = protocheck.Fields(&corev3.TcpKeepalive{}, "keepalive_probes", "keepalive_time", "keepalive_interval")
	httpOptionsFields     = protocheck.Fields(&upstreamhttpv3.HttpProtocolOptions{}, "explicit_http_config", "use_downstream_protocol_config", "common_http_protocol_options")
	commonOptionsFields   = protocheck.Fields(&corev3.HttpProtocolOptions{}, "idle_timeout", "max_requests_per_connection")
	http1OptionsFields    = protocheck.Fields(&corev3.Http1ProtocolOptions{})
	http2OptionsFields    = protocheck.Fields(&corev3.Http2ProtocolOptions{}, "max_concurrent_streams", "initial_stream_window_size", "initial_connection_window_size")
	downstreamProtoFields = protocheck.Fields(&upstreamhttpv3.HttpProtocolOptions_UseDownstreamHttpConfig{}, "http_protocol_options", "http2_protocol_options")
)

// builder carries what every cluster needs from the manager.
type builder struct {
	stats    *stats.Store
	resolver *net.Resolver
	now      func() time.Time     // outlier detection's clock
	certs    tlsconfig.CertSource // workload identity for mTLS (nil: none)
	source   netip.Addr           // upstream connections' source address (invalid: any)
	exchange *metadataexchange.Exchanger
}

// build validates pc and returns a Cluster with no endpoints yet (EDS) or
// with its static endpoints.
func (b *builder) build(pc *clusterv3.Cluster) (*Cluster, error) {
	if err := clusterFields.Check(pc); err != nil {
		return nil, err
	}
	c := &Cluster{name: pc.GetName(), kind: pc.GetType(), config: pc}
	sockets, err := b.upstreamSockets(pc)
	if err != nil {
		return nil, err
	}
	c.sockets = sockets
	for i, f := range pc.GetFilters() {
		if err := clusterFilterFields.Check(f); err != nil {
			return nil, fmt.Errorf("filters[%d]: %v", i, err)
		}
		ok, err := metadataexchange.Is(f.GetTypedConfig())
		if err != nil {
			return nil, fmt.Errorf("filters[%d] %q: %v", i, f.GetName(), err)
		}
		if !ok {
			return nil, fmt.Errorf("filters[%d]: upstream network filter %q (%s) is not supported (only %s is)",
				i, f.GetName(), f.GetTypedConfig().GetTypeUrl(), metadataexchange.Name)
		}
		c.exchange = b.exchange
	}

	switch pc.GetType() {
	case clusterv3.Cluster_EDS:
		if err := edsConfigFields.Check(pc.GetEdsClusterConfig()); err != nil {
			return nil, fmt.Errorf("eds_cluster_config: %v", err)
		}
		if src := pc.GetEdsClusterConfig().GetEdsConfig(); src != nil && src.GetAds() == nil {
			return nil, fmt.Errorf("eds_cluster_config.eds_config must be ads, this proxy gets endpoints only over ADS")
		}
		if pc.GetLoadAssignment() != nil {
			return nil, fmt.Errorf("load_assignment is not allowed on an EDS cluster")
		}
		c.edsName = pc.GetEdsClusterConfig().GetServiceName()
		if c.edsName == "" {
			c.edsName = pc.GetName()
		}
	case clusterv3.Cluster_STATIC:
		hosts, err := parseAssignment(pc.GetLoadAssignment(), true)
		if err != nil {
			return nil, fmt.Errorf("load_assignment: %v", err)
		}
		c.sockets.assign(hosts)
		c.endpoints.Store(newEndpointSet(endpointsOf(hosts)))
	case clusterv3.Cluster_STRICT_DNS, clusterv3.Cluster_LOGICAL_DNS:
		hosts, err := parseAssignment(pc.GetLoadAssignment(), false)
		if err != nil {
			return nil, fmt.Errorf("load_assignment: %v", err)
		}
		logical := pc.GetType() == clusterv3.Cluster_LOGICAL_DNS
		if logical && len(hosts) != 1 {
			return nil, fmt.Errorf("a LOGICAL_DNS cluster needs exactly one endpoint, has %d", len(hosts))
		}
		network, err := dnsNetwork(pc.GetDnsLookupFamily())
		if err != nil {
			return nil, err
		}
		refresh := defaultDNSRefresh
		if d := pc.GetDnsRefreshRate(); d != nil {
			refresh = d.AsDuration()
		}
		c.dns = &dnsHosts{hosts: hosts, logical: logical, network: network, refresh: refresh,
			resolver: b.resolver, timeout: connectTimeout(pc)}
	case clusterv3.Cluster_ORIGINAL_DST:
		if pc.GetLoadAssignment() != nil {
			return nil, fmt.Errorf("load_assignment is not allowed on an ORIGINAL_DST cluster")
		}
	default:
		if pc.GetClusterType() != nil {
			return nil, fmt.Errorf("custom cluster_type %q is not supported", pc.GetClusterType().GetName())
		}
		return nil, fmt.Errorf("cluster type %s is not supported", pc.GetType())
	}

	lb, err := balancerFor(pc)
	if err != nil {
		return nil, err
	}
	c.lb = lb

	if err := commonLbFields.Check(pc.GetCommonLbConfig()); err != nil {
		return nil, fmt.Errorf("common_lb_config: %v", err)
	}
	c.panicPct = defaultPanicThreshold
	if p := pc.GetCommonLbConfig().GetHealthyPanicThreshold(); p != nil {
		c.panicPct = p.GetValue()
	}
	th, err := parseBreakers(pc.GetCircuitBreakers())
	if err != nil {
		return nil, fmt.Errorf("circuit_breakers: %v", err)
	}
	od, err := parseOutlier(pc.GetOutlierDetection())
	if err != nil {
		return nil, fmt.Errorf("outlier_detection: %v", err)
	}

	idle := defaultIdleTimeout
	c.protocol, idle, c.perConn, err = httpProtocol(pc, idle)
	if err != nil {
		return nil, err
	}
	c.dialer = &net.Dialer{Timeout: connectTimeout(pc)}
	if err := applyKeepalive(c.dialer, pc.GetUpstreamConnectionOptions()); err != nil {
		return nil, fmt.Errorf("upstream_connection_options: %v", err)
	}
	c.Stats = newStats(b.stats, statName(pc))
	c.breaker = newBreaker(th, b.stats, c.Stats.prefix)
	if od != nil {
		now := b.now
		if now == nil {
			now = time.Now
		}
		c.outlier = newOutlierDetector(od, b.stats, c.Stats.prefix, now)
		if set := c.endpoints.Load(); set != nil {
			c.outlier.sync(set.all)
		}
	}
	c.h1 = newTransport(c.dial, idle, false)
	c.h2 = newTransport(c.dial, idle, true)
	if c.perConn == 1 {
		// One request per connection: plain HTTP/1.1 without keep-alive.
		c.h1.DisableKeepAlives = true
	}
	return c, nil
}

// statName is alt_stat_name when set, as in Envoy.
func statName(pc *clusterv3.Cluster) string {
	if pc.GetAltStatName() != "" {
		return pc.GetAltStatName()
	}
	return pc.GetName()
}

func connectTimeout(pc *clusterv3.Cluster) time.Duration {
	if d := pc.GetConnectTimeout(); d != nil && d.AsDuration() > 0 {
		return d.AsDuration()
	}
	return defaultConnectTimeout
}

func dnsNetwork(f clusterv3.Cluster_DnsLookupFamily) (string, error) {
	switch f {
	case clusterv3.Cluster_V4_ONLY:
		return "ip4", nil
	case clusterv3.Cluster_V6_ONLY:
		return "ip6", nil
	case clusterv3.Cluster_AUTO, clusterv3.Cluster_V4_PREFERRED, clusterv3.Cluster_ALL:
		return "ip", nil
	}
	return "", fmt.Errorf("dns_lookup_family %s is not supported", f)
}

// httpProtocol reads typed_extension_protocol_options.
// It also returns max_requests_per_connection (0: unlimited).
func httpProtocol(pc *clusterv3.Cluster, idle time.Duration) (_ Protocol, _ time.Duration, perConn uint64, _ error) {
	opts := pc.GetTypedExtensionProtocolOptions()
	for key := range opts {
		if key != httpProtocolOptionsKey {
			return 0, 0, 0, fmt.Errorf("typed_extension_protocol_options[%q] is not supported", key)
		}
	}
	anyOpts, ok := opts[httpProtocolOptionsKey]
	if !ok {
		return HTTP1, idle, perConn, nil
	}
	where := "typed_extension_protocol_options[\"" + httpProtocolOptionsKey + "\"]"
	var hpo upstreamhttpv3.HttpProtocolOptions
	if err := confparse.Unmarshal(anyOpts, &hpo); err != nil {
		return 0, 0, 0, fmt.Errorf("%s: %v", where, err)
	}
	if err := httpOptionsFields.Check(&hpo); err != nil {
		return 0, 0, 0, fmt.Errorf("%s: %v", where, err)
	}
	if common := hpo.GetCommonHttpProtocolOptions(); common != nil {
		if err := commonOptionsFields.Check(common); err != nil {
			return 0, 0, 0, fmt.Errorf("%s.common_http_protocol_options: %v", where, err)
		}
		if d := common.GetIdleTimeout(); d != nil && d.AsDuration() > 0 {
			idle = d.AsDuration()
		}
		if v := common.GetMaxRequestsPerConnection(); v != nil {
			perConn = uint64(v.GetValue())
		}
	}
	if err := checkCodecOptions(hpo.GetExplicitHttpConfig().GetHttpProtocolOptions(), hpo.GetExplicitHttpConfig().GetHttp2ProtocolOptions()); err != nil {
		return 0, 0, 0, fmt.Errorf("%s.explicit_http_config: %v", where, err)
	}
	switch {
	case hpo.GetExplicitHttpConfig().GetHttp2ProtocolOptions() != nil:
		return HTTP2, idle, perConn, nil
	case hpo.GetExplicitHttpConfig().GetHttp3ProtocolOptions() != nil:
		return 0, 0, 0, fmt.Errorf("%s: HTTP/3 upstreams are not supported", where)
	case hpo.GetUseDownstreamProtocolConfig() != nil:
		d := hpo.GetUseDownstreamProtocolConfig()
		if err := downstreamProtoFields.Check(d); err != nil {
			return 0, 0, 0, fmt.Errorf("%s.use_downstream_protocol_config: %v", where, err)
		}
		if err := checkCodecOptions(d.GetHttpProtocolOptions(), d.GetHttp2ProtocolOptions()); err != nil {
			return 0, 0, 0, fmt.Errorf("%s.use_downstream_protocol_config: %v", where, err)
		}
		return Downstream, idle, perConn, nil
	case hpo.GetAutoConfig() != nil:
		return 0, 0, 0, fmt.Errorf("%s: auto_config needs TLS with ALPN, not supported yet", where)
	}
	return HTTP1, idle, perConn, nil
}

func checkCodecOptions(h1 *corev3.Http1ProtocolOptions, h2 *corev3.Http2ProtocolOptions) error {
	if err := http1OptionsFields.Check(h1); err != nil {
		return fmt.Errorf("http_protocol_options: %v", err)
	}
	if err := http2OptionsFields.Check(h2); err != nil {
		return fmt.Errorf("http2_protocol_options: %v", err)
	}
	return nil
}

func applyKeepalive(d *net.Dialer, o *clusterv3.UpstreamConnectionOptions) error {
	if o == nil {
		return nil
	}
	if err := connOptionsFields.Check(o); err != nil {
		return err
	}
	ka := o.GetTcpKeepalive()
	if ka == nil {
		return nil
	}
	if err := keepaliveFields.Check(ka); err != nil {
		return fmt.Errorf("tcp_keepalive: %v", err)
	}
	cfg := net.KeepAliveConfig{Enable: true, Idle: -1, Interval: -1, Count: -1} // -1: OS default
	if v := ka.GetKeepaliveTime(); v != nil {
		cfg.Idle = time.Duration(v.GetValue()) * time.Second
	}
	if v := ka.GetKeepaliveInterval(); v != nil {
		cfg.Interval = time.Duration(v.GetValue()) * time.Second
	}
	if v := ka.GetKeepaliveProbes(); v != nil {
		cfg.Count = int(v.GetValue())
	}
	d.KeepAliveConfig = cfg
	return nil
}
