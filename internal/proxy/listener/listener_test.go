package listener

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	udpav1 "github.com/cncf/xds/go/udpa/type/v1"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/skein-mesh/skein/internal/proxy/cluster"
	"github.com/skein-mesh/skein/internal/proxy/filters/metadataexchange"
	"github.com/skein-mesh/skein/internal/proxy/hcm"
	"github.com/skein-mesh/skein/internal/proxy/router"
)

// routeMap is the simplest Routes: compiled tables by name.
type routeMap map[string]*router.Table

func (m routeMap) Table(name string) *router.Table { return m[name] }

func addr(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

func typed(t testing.TB, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func filter(t testing.TB, name string, m proto.Message) *listenerv3.Filter {
	return &listenerv3.Filter{Name: name, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: typed(t, m)}}
}

func inlineHCM(cluster string) *hcmv3.HttpConnectionManager {
	return &hcmv3.HttpConnectionManager{
		StatPrefix: "test",
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name: "local",
			VirtualHosts: []*routev3.VirtualHost{{Name: "all", Domains: []string{"*"}, Routes: []*routev3.Route{{
				Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}},
			}}}},
		}},
		HttpFilters: []*hcmv3.HttpFilter{{Name: hcm.RouterFilterName}},
	}
}

func httpListener(t testing.TB, name, ip string, port uint32, hcm *hcmv3.HttpConnectionManager) *listenerv3.Listener {
	return &listenerv3.Listener{
		Name:         name,
		Address:      addr(ip, port),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{filter(t, hcmFilterName, hcm)}}},
	}
}

func staticClusters(t testing.TB, name, hostPort string) *cluster.Manager {
	t.Helper()
	host, portText, _ := net.SplitHostPort(hostPort)
	var port uint32
	fmt.Sscan(portText, &port)
	m := cluster.NewManager(cluster.Options{})
	err := m.Update(map[string]*clusterv3.Cluster{name: {
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: addr(host, port)}}}},
		}}},
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func newManager(t testing.TB, podIP string, clusters Clusters) *Manager {
	t.Helper()
	m, err := NewManager(Options{PodIP: podIP, Clusters: clusters, Routes: routeMap{}, DrainTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown(context.Background()) })
	return m
}

func freePort(t testing.TB, ip string) uint32 {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return uint32(ln.Addr().(*net.TCPAddr).Port)
}

func TestUpdateRejectsWhatIsNotImplemented(t *testing.T) {
	const podIP = "127.77.4.1"
	good := httpListener(t, "good", "0.0.0.0", freePort(t, podIP), inlineHCM("c"))

	withHCM := func(change func(*hcmv3.HttpConnectionManager)) *listenerv3.Listener {
		hcm := inlineHCM("c")
		change(hcm)
		return httpListener(t, "bad", "0.0.0.0", 0, hcm)
	}
	withListener := func(change func(*listenerv3.Listener)) *listenerv3.Listener {
		l := httpListener(t, "bad", "0.0.0.0", 0, inlineHCM("c"))
		change(l)
		return l
	}
	occupied, _ := net.Listen("tcp", net.JoinHostPort(podIP, "0"))
	defer occupied.Close()
	busyPort := uint32(occupied.Addr().(*net.TCPAddr).Port)

	cases := []struct {
		name   string
		bad    []*listenerv3.Listener
		reason string
	}{
		{"unknown http filter", []*listenerv3.Listener{withHCM(func(h *hcmv3.HttpConnectionManager) {
			h.HttpFilters = append([]*hcmv3.HttpFilter{{Name: "envoy.filters.http.foo"}}, h.HttpFilters...)
		})}, `listener "bad": filter chain [0]: envoy.filters.network.http_connection_manager: http filter "envoy.filters.http.foo" is not supported`},
		{"no router filter", []*listenerv3.Listener{withHCM(func(h *hcmv3.HttpConnectionManager) { h.HttpFilters = nil })},
			"http_filters must end with envoy.filters.http.router"},
		{"unimplemented hcm field", []*listenerv3.Listener{withHCM(func(h *hcmv3.HttpConnectionManager) {
			h.Tracing = &hcmv3.HttpConnectionManager_Tracing{Verbose: true}
		})}, "tracing: field verbose is not supported yet"},
		{"bad inline route", []*listenerv3.Listener{withHCM(func(h *hcmv3.HttpConnectionManager) {
			h.GetRouteConfig().VirtualHosts[0].Routes[0].GetRoute().RequestMirrorPolicies = []*routev3.RouteAction_RequestMirrorPolicy{{ClusterHeader: "x-mirror"}}
		})}, "request_mirror_policies[0]: field cluster_header is not supported yet"},
		{"unknown network filter", []*listenerv3.Listener{withListener(func(l *listenerv3.Listener) {
			l.FilterChains[0].Filters = []*listenerv3.Filter{filter(t, "envoy.filters.network.redis_proxy", &corev3.Http1ProtocolOptions{})}
		})}, `network filter "envoy.filters.network.redis_proxy"`},
		{"metadata exchange before an HTTP connection manager", []*listenerv3.Listener{withListener(func(l *listenerv3.Listener) {
			l.FilterChains[0].Filters = append([]*listenerv3.Filter{metadataExchange(t, metadataexchange.Protocol)}, l.FilterChains[0].Filters...)
		})}, "network filters other than envoy.filters.network.http_connection_manager are supported only before envoy.filters.network.tcp_proxy"},
		{"metadata exchange of another protocol", []*listenerv3.Listener{withListener(func(l *listenerv3.Listener) {
			l.FilterChains[0].Filters = append([]*listenerv3.Filter{metadataExchange(t, "istio2")}, l.FilterChains[0].Filters...)
		})}, `filter "istio.metadata_exchange": istio.metadata_exchange: protocol "istio2" is not supported`},
		{"unknown transport protocol", []*listenerv3.Listener{withListener(func(l *listenerv3.Listener) {
			l.FilterChains[0].FilterChainMatch = &listenerv3.FilterChainMatch{TransportProtocol: "quic"}
		})}, `transport_protocol "quic" is not supported`},
		{"unknown listener filter", []*listenerv3.Listener{withListener(func(l *listenerv3.Listener) {
			l.ListenerFilters = []*listenerv3.ListenerFilter{{Name: "envoy.filters.listener.proxy_protocol"}}
		})}, `listener filter "envoy.filters.listener.proxy_protocol" is not supported yet`},
		{"unimplemented listener field", []*listenerv3.Listener{withListener(func(l *listenerv3.Listener) {
			l.ConnectionBalanceConfig = &listenerv3.Listener_ConnectionBalanceConfig{}
		})}, "field connection_balance_config is not supported yet"},
		{"two listeners on one address", []*listenerv3.Listener{
			httpListener(t, "a", podIP, 15999, inlineHCM("c")), httpListener(t, "b", "0.0.0.0", 15999, inlineHCM("c")),
		}, `listeners "a" and "b" both need address 127.77.4.1:15999`},
		{"port in use", []*listenerv3.Listener{httpListener(t, "bad", "0.0.0.0", busyPort, inlineHCM("c"))},
			fmt.Sprintf(`listener "bad": cannot bind 127.77.4.1:%d`, busyPort)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := newManager(t, podIP, cluster.NewManager(cluster.Options{}))
			if err := m.Update(map[string]*listenerv3.Listener{"good": good}); err != nil {
				t.Fatal(err)
			}
			next := map[string]*listenerv3.Listener{"good": good}
			for _, l := range tc.bad {
				next[l.Name] = l
			}
			err := m.Update(next)
			if err == nil || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("Update error = %v\nwant one containing %q", err, tc.reason)
			}
			if got := m.Listeners(); len(got) != 1 || got[0].Name != "good" || len(got[0].Bound) != 1 {
				t.Errorf("a rejected update changed the listeners: %+v", got)
			}
		})
	}
}

func TestTCPProxyListener(t *testing.T) {
	const podIP = "127.77.4.2"
	echo, err := net.Listen("tcp", "127.77.4.3:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() {
				io.Copy(c, c) // echo until the client half-closes
				c.Close()
			}()
		}
	}()
	port := freePort(t, podIP)
	m := newManager(t, podIP, staticClusters(t, "echo", echo.Addr().String()))
	err = m.Update(map[string]*listenerv3.Listener{"tcp": {
		Name:    "tcp",
		Address: addr("0.0.0.0", port),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{filter(t, tcpProxyFilterName, &tcpproxyv3.TcpProxy{
			StatPrefix: "echo", ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: "echo"},
		})}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", net.JoinHostPort(podIP, fmt.Sprint(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "ping over tcp")
	c.(*net.TCPConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "ping over tcp" {
		t.Errorf("echo through tcp_proxy = %q, %v", got, err)
	}
}

func TestWebsocketUpgrade(t *testing.T) {
	const podIP = "127.77.4.4"
	up, err := net.Listen("tcp", "127.77.4.5:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "upgrade required", http.StatusUpgradeRequired)
			return
		}
		conn, brw, _ := http.NewResponseController(w).Hijack()
		defer conn.Close()
		io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		line, _ := brw.ReadString('\n')
		io.WriteString(conn, "echo "+line)
	})}
	go srv.Serve(up)
	defer srv.Close()

	port := freePort(t, podIP)
	hcm := inlineHCM("ws")
	hcm.UpgradeConfigs = []*hcmv3.HttpConnectionManager_UpgradeConfig{{UpgradeType: "websocket", Enabled: wrapperspb.Bool(true)}}
	m := newManager(t, podIP, staticClusters(t, "ws", up.Addr().String()))
	if err := m.Update(map[string]*listenerv3.Listener{"ws": httpListener(t, "ws", "0.0.0.0", port, hcm)}); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", net.JoinHostPort(podIP, fmt.Sprint(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET /chat HTTP/1.1\r\nHost: ws\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade answer %v, %v", resp, err)
	}
	io.WriteString(c, "hello\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "echo hello\n" {
		t.Errorf("read %q, %v after the upgrade", line, err)
	}
}

func TestOutboundRequestsPreferTheExactIPListener(t *testing.T) {
	s := &state{byAddr: map[string]*Listener{}, byPort: map[uint32]*Listener{}}
	wildcard, exact := &Listener{Name: "0.0.0.0_3306"}, &Listener{Name: "10.0.0.7_3306"}
	s.byPort[3306] = wildcard
	s.byAddr["10.0.0.7:3306"] = exact
	for _, tc := range []struct {
		host string
		want *Listener
	}{{"10.0.0.7", exact}, {"10.0.0.8", wildcard}, {"mysql", wildcard}} {
		if got := s.outbound(tc.host, 3306); got != tc.want {
			t.Errorf("outbound(%s) = %v, want %s", tc.host, got, tc.want.Name)
		}
	}
	if s.outbound("mysql", 9999) != nil {
		t.Error("a port without listener found one")
	}
}

func TestRetries(t *testing.T) {
	const podIP = "127.77.4.6"
	down, _ := net.Listen("tcp", "127.77.4.7:0")
	downAddr := down.Addr().String()
	down.Close()
	var failures atomic.Int32
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/flaky" && failures.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "attempt %s body %q", r.Header.Get("X-Envoy-Attempt-Count"), body)
	}))
	up.Listener, _ = net.Listen("tcp", "127.77.4.8:0")
	up.Start()
	defer up.Close()

	clusters := cluster.NewManager(cluster.Options{})
	static := func(addrs ...string) *clusterv3.Cluster {
		cla := &endpointv3.ClusterLoadAssignment{ClusterName: "c", Endpoints: []*endpointv3.LocalityLbEndpoints{{}}}
		for _, a := range addrs {
			host, portText, _ := net.SplitHostPort(a)
			var port uint32
			fmt.Sscan(portText, &port)
			cla.Endpoints[0].LbEndpoints = append(cla.Endpoints[0].LbEndpoints, &endpointv3.LbEndpoint{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: addr(host, port)}}})
		}
		return &clusterv3.Cluster{Name: "c", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}, LoadAssignment: cla}
	}
	if err := clusters.Update(map[string]*clusterv3.Cluster{"c": static(downAddr, up.Listener.Addr().String())}, nil); err != nil {
		t.Fatal(err)
	}
	hcm := inlineHCM("c")
	vh := hcm.GetRouteConfig().VirtualHosts[0]
	vh.IncludeRequestAttemptCount = true
	vh.Routes[0].GetRoute().RetryPolicy = &routev3.RetryPolicy{
		RetryOn:                       "connect-failure,retriable-status-codes",
		RetriableStatusCodes:          []uint32{503},
		NumRetries:                    wrapperspb.UInt32(2),
		RetryHostPredicate:            []*routev3.RetryPolicy_RetryHostPredicate{{Name: "envoy.retry_host_predicates.previous_hosts"}},
		HostSelectionRetryMaxAttempts: 5,
	}
	port := freePort(t, podIP)
	m := newManager(t, podIP, clusters)
	if err := m.Update(map[string]*listenerv3.Listener{"l": httpListener(t, "l", "0.0.0.0", port, hcm)}); err != nil {
		t.Fatal(err)
	}
	base := "http://" + net.JoinHostPort(podIP, fmt.Sprint(port))
	for i := range 4 { // round robin starts at the dead endpoint every other time
		resp, err := http.Post(base+"/ok", "text/plain", strings.NewReader("payload"))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasSuffix(string(body), `body "payload"`) {
			t.Errorf("request %d: %d %q, want 200 with the body replayed after a connect failure", i, resp.StatusCode, body)
		}
	}
	if err := clusters.Update(map[string]*clusterv3.Cluster{"c": static(up.Listener.Addr().String())}, nil); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(base + "/flaky")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(string(body), "attempt 2 ") {
		t.Errorf("retriable 503: got %d %q, want 200 on attempt 2", resp.StatusCode, body)
	}
}

// metadataExchange is Istio's istio.metadata_exchange network filter.
func metadataExchange(t *testing.T, protocol string) *listenerv3.Filter {
	t.Helper()
	v, err := structpb.NewStruct(map[string]any{"protocol": protocol})
	if err != nil {
		t.Fatal(err)
	}
	return filter(t, metadataexchange.Name, &udpav1.TypedStruct{TypeUrl: metadataexchange.TypeURL, Value: v})
}
