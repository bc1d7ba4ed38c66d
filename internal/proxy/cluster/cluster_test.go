package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	udpav1 "github.com/cncf/xds/go/udpa/type/v1"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/skein-mesh/skein/internal/proxy/filters/metadataexchange"
	"github.com/skein-mesh/skein/internal/proxy/stats"
)

func assignment(name string, addrs ...string) *endpointv3.ClusterLoadAssignment {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	loc := &endpointv3.LocalityLbEndpoints{}
	for _, a := range addrs {
		host, port, _ := net.SplitHostPort(a)
		var p uint32
		fmt.Sscan(port, &p)
		loc.LbEndpoints = append(loc.LbEndpoints, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: p}}}},
		}}})
	}
	cla.Endpoints = []*endpointv3.LocalityLbEndpoints{loc}
	return cla
}

func edsCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}},
		ConnectTimeout:       durationpb.New(time.Second),
	}
}

func staticCluster(name string, addrs ...string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LoadAssignment:       assignment(name, addrs...),
	}
}

func http2Options(t *testing.T) map[string]*anypb.Any {
	t.Helper()
	a, err := anypb.New(&upstreamhttpv3.HttpProtocolOptions{UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{
		ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return map[string]*anypb.Any{httpProtocolOptionsKey: a}
}

func TestUpdateRejectsWhatIsNotImplemented(t *testing.T) {
	anyOther, _ := anypb.New(&corev3.Http1ProtocolOptions{})
	cases := []struct {
		name    string
		cluster *clusterv3.Cluster
		reason  string
	}{
		{"per-host circuit breakers", func() *clusterv3.Cluster {
			c := edsCluster("a")
			c.CircuitBreakers = &clusterv3.CircuitBreakers{PerHostThresholds: []*clusterv3.CircuitBreakers_Thresholds{{}}}
			return c
		}(), `cluster "a": circuit_breakers: field per_host_thresholds is not supported yet`},
		{"success-rate outlier detection", func() *clusterv3.Cluster {
			c := edsCluster("a")
			c.OutlierDetection = &clusterv3.OutlierDetection{}
			return c
		}(), "outlier_detection: enforcing_success_rate must be 0"},
		{"ring hash with murmur", func() *clusterv3.Cluster {
			c := edsCluster("a")
			c.LbPolicy = clusterv3.Cluster_RING_HASH
			c.LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{HashFunction: clusterv3.Cluster_RingHashLbConfig_MURMUR_HASH_2}}
			return c
		}(), "hash_function MURMUR_HASH_2 is not supported"},
		{"maglev table not prime", func() *clusterv3.Cluster {
			c := edsCluster("a")
			c.LbPolicy = clusterv3.Cluster_MAGLEV
			c.LbConfig = &clusterv3.Cluster_MaglevLbConfig_{MaglevLbConfig: &clusterv3.Cluster_MaglevLbConfig{TableSize: wrapperspb.UInt64(1000)}}
			return c
		}(), "table_size 1000 must be a prime"},
		{"locality weighted lb", func() *clusterv3.Cluster {
			c := edsCluster("a")
			c.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{LocalityConfigSpecifier: &clusterv3.Cluster_CommonLbConfig_LocalityWeightedLbConfig_{}}
			return c
		}(), "common_lb_config: field locality_weighted_lb_config is not supported yet"},
		{"transport socket", func() *clusterv3.Cluster {
			c := edsCluster("a")
			c.TransportSocket = &corev3.TransportSocket{Name: "tls"}
			return c
		}(), `transport_socket: transport socket "tls" has no typed_config`},
		{"cluster provided lb", func() *clusterv3.Cluster {
			c := edsCluster("a")
			c.LbPolicy = clusterv3.Cluster_LOAD_BALANCING_POLICY_CONFIG
			return c
		}(), "lb_policy LOAD_BALANCING_POLICY_CONFIG is not supported yet"},
		{"unknown protocol options", func() *clusterv3.Cluster {
			c := edsCluster("a")
			c.TypedExtensionProtocolOptions = map[string]*anypb.Any{"envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions": anyOther}
			return c
		}(), `typed_extension_protocol_options["envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions"] is not supported`},
		{"static hostname", staticCluster("a", "example.com:80"), `address "example.com" is not an IP address`},
		{"eds not over ads", func() *clusterv3.Cluster {
			c := edsCluster("a")
			c.EdsClusterConfig.EdsConfig = &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Path{Path: "/x"}}
			return c
		}(), "eds_config must be ads"},
		{"unknown upstream filter", func() *clusterv3.Cluster {
			c := edsCluster("a")
			c.Filters = []*clusterv3.Filter{{Name: "envoy.filters.network.upstream.foo", TypedConfig: anyOther}}
			return c
		}(), `filters[0]: upstream network filter "envoy.filters.network.upstream.foo" (type.googleapis.com/envoy.config.core.v3.Http1ProtocolOptions) is not supported`},
		{"metadata exchange for another protocol", func() *clusterv3.Cluster {
			c := edsCluster("a")
			c.Filters = []*clusterv3.Filter{metadataExchangeFilter(t, "h2")}
			return c
		}(), `filters[0] "istio.metadata_exchange": istio.metadata_exchange: protocol "h2" is not supported`},
		{"cluster provided off original dst", func() *clusterv3.Cluster {
			c := edsCluster("a")
			c.LbPolicy = clusterv3.Cluster_CLUSTER_PROVIDED
			return c
		}(), "CLUSTER_PROVIDED is only supported on ORIGINAL_DST"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := NewManager(Options{})
			if err := m.Update(map[string]*clusterv3.Cluster{"good": edsCluster("good")}, nil); err != nil {
				t.Fatal(err)
			}
			err := m.Update(map[string]*clusterv3.Cluster{"good": edsCluster("good"), tc.cluster.Name: tc.cluster}, nil)
			if err == nil || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("Update error = %v, want one containing %q", err, tc.reason)
			}
			if _, ok := m.Get(tc.cluster.Name); ok || len(m.All()) != 1 {
				t.Errorf("a rejected update changed the clusters: %v", m.All())
			}
		})
	}
}

func TestRoundRobinIsEvenAndSkipsUnhealthy(t *testing.T) {
	m := NewManager(Options{})
	cla := assignment("c", "127.0.0.1:1001", "127.0.0.1:1002", "127.0.0.1:1003", "127.0.0.1:1004")
	cla.Endpoints[0].LbEndpoints[3].HealthStatus = corev3.HealthStatus_UNHEALTHY
	if err := m.Update(map[string]*clusterv3.Cluster{"c": edsCluster("c")}, map[string]*endpointv3.ClusterLoadAssignment{"c": cla}); err != nil {
		t.Fatal(err)
	}
	c, _ := m.Get("c")
	counts := map[string]int{}
	for range 300 {
		ep, err := c.Pick(context.Background(), "")
		if err != nil {
			t.Fatal(err)
		}
		counts[ep.Address]++
	}
	for _, a := range []string{"127.0.0.1:1001", "127.0.0.1:1002", "127.0.0.1:1003"} {
		if counts[a] != 100 {
			t.Errorf("%s picked %d times, want 100 (all: %v)", a, counts[a], counts)
		}
	}
	if counts["127.0.0.1:1004"] != 0 {
		t.Error("unhealthy endpoint was picked")
	}
}

func TestPriorityFallbackAndNoHealthy(t *testing.T) {
	m := NewManager(Options{})
	cla := assignment("c", "127.0.0.1:1001")
	backup := assignment("c", "127.0.0.1:2001").Endpoints[0]
	backup.Priority = 1
	cla.Endpoints = append(cla.Endpoints, backup)
	if err := m.Update(map[string]*clusterv3.Cluster{"c": edsCluster("c"), "empty": edsCluster("empty")}, map[string]*endpointv3.ClusterLoadAssignment{"c": cla}); err != nil {
		t.Fatal(err)
	}
	c, _ := m.Get("c")
	if ep, _ := c.Pick(context.Background(), ""); ep.Address != "127.0.0.1:1001" {
		t.Errorf("picked %s, want the priority 0 host", ep.Address)
	}
	cla.Endpoints[0].LbEndpoints[0].HealthStatus = corev3.HealthStatus_DRAINING
	if err := m.UpdateEndpoints(map[string]*endpointv3.ClusterLoadAssignment{"c": cla}); err != nil {
		t.Fatal(err)
	}
	if ep, _ := c.Pick(context.Background(), ""); ep.Address != "127.0.0.1:2001" {
		t.Errorf("picked %s, want the priority 1 host when priority 0 has none healthy", ep.Address)
	}
	empty, _ := m.Get("empty")
	if _, err := empty.Pick(context.Background(), ""); !errors.Is(err, ErrNoHealthyUpstream) {
		t.Errorf("Pick on a cluster without endpoints = %v, want ErrNoHealthyUpstream", err)
	}
}

func TestUnchangedClusterKeepsItsPool(t *testing.T) {
	m := NewManager(Options{})
	cds := map[string]*clusterv3.Cluster{"c": edsCluster("c")}
	if err := m.Update(cds, nil); err != nil {
		t.Fatal(err)
	}
	before, _ := m.Get("c")
	cds["d"] = staticCluster("d", "127.0.0.1:80")
	if err := m.Update(cds, nil); err != nil {
		t.Fatal(err)
	}
	after, _ := m.Get("c")
	if before != after || before.RoundTripper(false) != after.RoundTripper(false) {
		t.Error("an unchanged cluster was rebuilt, losing its connection pool")
	}
	cds["c"] = edsCluster("c")
	cds["c"].ConnectTimeout = durationpb.New(2 * time.Second)
	if err := m.Update(cds, nil); err != nil {
		t.Fatal(err)
	}
	if changed, _ := m.Get("c"); changed == before {
		t.Error("a changed cluster was not rebuilt")
	}
}

func TestTransportsSpeakTheConfiguredProtocol(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto)
	}))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	defer srv.Close()
	addr := srv.Listener.Addr().String()

	h2 := staticCluster("h2", addr)
	h2.TypedExtensionProtocolOptions = http2Options(t)
	st := stats.NewStore()
	m := NewManager(Options{Stats: st})
	if err := m.Update(map[string]*clusterv3.Cluster{"h1": staticCluster("h1", addr), "h2": h2}, nil); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"h1": "HTTP/1.1", "h2": "HTTP/2.0"} {
		c, _ := m.Get(name)
		ep, err := c.Pick(context.Background(), "")
		if err != nil {
			t.Fatal(err)
		}
		for range 3 { // three requests, one pooled connection
			req, _ := http.NewRequest("GET", "http://"+ep.Address+"/", nil)
			resp, err := c.RoundTripper(false).RoundTrip(req)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != want {
				t.Errorf("cluster %s reached the server over %s, want %s", name, body, want)
			}
		}
		if got := st.Counter("cluster." + name + ".upstream_cx_total").Value(); got != 1 {
			t.Errorf("cluster %s opened %d connections for 3 requests, want 1", name, got)
		}
	}
}

func TestConnectFailureIsAConnectError(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close() // nothing listens there any more
	m := NewManager(Options{})
	if err := m.Update(map[string]*clusterv3.Cluster{"c": staticCluster("c", addr)}, nil); err != nil {
		t.Fatal(err)
	}
	c, _ := m.Get("c")
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	_, err := c.RoundTripper(false).RoundTrip(req)
	var ce *ConnectError
	if !errors.As(err, &ce) {
		t.Fatalf("RoundTrip error = %v (%T), want a *ConnectError", err, err)
	}
	if got := c.Stats.CxConnectFail.Value(); got != 1 {
		t.Errorf("upstream_cx_connect_fail = %d, want 1", got)
	}
}

func TestDNSAndOriginalDestination(t *testing.T) {
	dns := &clusterv3.Cluster{
		Name:                 "dns",
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS},
		DnsLookupFamily:      clusterv3.Cluster_V4_ONLY,
		LoadAssignment:       assignment("dns", "localhost:8080"),
	}
	passthrough := &clusterv3.Cluster{
		Name:                 "PassthroughCluster",
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
		LbPolicy:             clusterv3.Cluster_CLUSTER_PROVIDED,
	}
	m := NewManager(Options{})
	if err := m.Update(map[string]*clusterv3.Cluster{"dns": dns, "PassthroughCluster": passthrough}, nil); err != nil {
		t.Fatal(err)
	}
	c, _ := m.Get("dns")
	ep, err := c.Pick(context.Background(), "")
	if err != nil || ep.Address != "127.0.0.1:8080" {
		t.Errorf("STRICT_DNS localhost picked %v, %v; want 127.0.0.1:8080", ep, err)
	}
	p, _ := m.Get("PassthroughCluster")
	if ep, err := p.Pick(context.Background(), "reviews:9080"); err != nil || ep.Address != "reviews:9080" {
		t.Errorf("ORIGINAL_DST picked %v, %v; want the target", ep, err)
	}
}

func TestLeastRequestPrefersIdleHosts(t *testing.T) {
	c := edsCluster("c")
	c.LbPolicy = clusterv3.Cluster_LEAST_REQUEST
	m := NewManager(Options{})
	if err := m.Update(map[string]*clusterv3.Cluster{"c": c}, map[string]*endpointv3.ClusterLoadAssignment{"c": assignment("c", "127.0.0.1:1", "127.0.0.1:2")}); err != nil {
		t.Fatal(err)
	}
	cl, _ := m.Get("c")
	busy := cl.Endpoints()[0]
	for range 5 {
		busy.Begin()
	}
	for range 20 {
		if ep, _ := cl.Pick(context.Background(), ""); ep == busy {
			t.Fatal("LEAST_REQUEST picked the busy host over an idle one")
		}
	}
}

func metadataExchangeFilter(t *testing.T, protocol string) *clusterv3.Filter {
	t.Helper()
	v, err := structpb.NewStruct(map[string]any{"protocol": protocol})
	if err != nil {
		t.Fatal(err)
	}
	a, err := anypb.New(&udpav1.TypedStruct{TypeUrl: metadataexchange.TypeURL, Value: v})
	if err != nil {
		t.Fatal(err)
	}
	return &clusterv3.Filter{Name: metadataexchange.Name, TypedConfig: a}
}

// TestMetadataExchangeFilter: only a cluster with Istio's upstream
// metadata exchange filter offers the exchanger to tcp_proxy.
func TestMetadataExchangeFilter(t *testing.T) {
	m := NewManager(Options{})
	with := edsCluster("with")
	with.Filters = []*clusterv3.Filter{metadataExchangeFilter(t, metadataexchange.Protocol)}
	if err := m.Update(map[string]*clusterv3.Cluster{"with": with, "without": edsCluster("without")}, nil); err != nil {
		t.Fatal(err)
	}
	if c, _ := m.Get("with"); c.PeerExchange() == nil {
		t.Error("cluster with istio.metadata_exchange has no exchanger")
	}
	if c, _ := m.Get("without"); c.PeerExchange() != nil {
		t.Error("cluster without the filter has an exchanger")
	}
}
