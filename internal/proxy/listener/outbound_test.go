package listener

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	udpav1 "github.com/cncf/xds/go/udpa/type/v1"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/skein-mesh/skein/internal/proxy/cluster"
	"github.com/skein-mesh/skein/internal/proxy/filters"
	"github.com/skein-mesh/skein/internal/proxy/filters/istiostats"
	"github.com/skein-mesh/skein/internal/proxy/stats"
)

// echoServer answers each line on a connection with "<name>: <line>".
func echoServer(t *testing.T, ip, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					fmt.Fprintf(c, "%s: %s\n", name, sc.Text())
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// staticManager serves STATIC clusters by name → host:port.
func staticManager(t *testing.T, eps map[string]string) *cluster.Manager {
	t.Helper()
	cs := map[string]*clusterv3.Cluster{}
	for name, hp := range eps {
		host, portText, _ := net.SplitHostPort(hp)
		var port uint32
		fmt.Sscan(portText, &port)
		cs[name] = &clusterv3.Cluster{
			Name:                 name,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
			LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
				LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: addr(host, port)}}}},
			}}},
		}
	}
	m := cluster.NewManager(cluster.Options{})
	if err := m.Update(cs, nil); err != nil {
		t.Fatal(err)
	}
	return m
}

func tcpChain(t *testing.T, cluster string, hosts ...string) *listenerv3.FilterChain {
	fc := &listenerv3.FilterChain{Name: cluster, Filters: []*listenerv3.Filter{
		filter(t, tcpProxyFilterName, &tcpproxyv3.TcpProxy{StatPrefix: cluster, ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: cluster}}),
	}}
	if len(hosts) > 0 {
		vals := make([]any, len(hosts))
		for i, h := range hosts {
			vals[i] = h
		}
		md, err := structpb.NewStruct(map[string]any{"hosts": vals})
		if err != nil {
			t.Fatal(err)
		}
		fc.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{outboundHostsKey: md}}
	}
	return fc
}

func virtualOutbound(t *testing.T, port uint32, passthrough string) *listenerv3.Listener {
	return &listenerv3.Listener{
		Name: "virtualOutbound", Address: addr("0.0.0.0", port), UseOriginalDst: wrapperspb.Bool(true),
		TrafficDirection: corev3.TrafficDirection_OUTBOUND,
		FilterChains:     []*listenerv3.FilterChain{tcpChain(t, passthrough)},
	}
}

func handoff(name string, port uint32, chains ...*listenerv3.FilterChain) *listenerv3.Listener {
	return &listenerv3.Listener{
		Name: name, Address: addr("0.0.0.0", port), BindToPort: wrapperspb.Bool(false),
		TrafficDirection: corev3.TrafficDirection_OUTBOUND, FilterChains: chains,
	}
}

// connectThrough opens a CONNECT tunnel to target through the forward proxy.
func connectThrough(proxy, target string) (net.Conn, *bufio.Reader, error) {
	c, err := net.DialTimeout("tcp", proxy, 5*time.Second)
	if err != nil {
		return nil, nil, err
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		c.Close()
		return nil, nil, fmt.Errorf("CONNECT %s: %s", target, resp.Status)
	}
	return c, br, nil
}

// echoVia sends one line through a CONNECT tunnel and returns the answer.
func echoVia(proxy, target, line string) (string, error) {
	c, br, err := connectThrough(proxy, target)
	if err != nil {
		return "", err
	}
	defer c.Close()
	fmt.Fprintln(c, line)
	got, err := br.ReadString('\n')
	return strings.TrimSpace(got), err
}

// TestConnectDispatchByHost: a CONNECT is served by the chain of the target
// port's listener whose hosts name the target; other hosts on that port
// and ports without a listener take the passthrough chain.
func TestConnectDispatchByHost(t *testing.T) {
	const podIP = "127.77.5.1"
	clusters := staticManager(t, map[string]string{
		"outbound|9000||a.ns.svc.cluster.local": echoServer(t, "127.77.5.2", "a"),
		"outbound|9000||b.ns.svc.cluster.local": echoServer(t, "127.77.5.3", "b"),
		"PassthroughCluster":                    echoServer(t, "127.77.5.4", "passthrough"),
	})
	m := newManager(t, podIP, clusters)
	port := freePort(t, podIP)
	err := m.Update(map[string]*listenerv3.Listener{
		"virtualOutbound": virtualOutbound(t, port, "PassthroughCluster"),
		"0.0.0.0_9000": handoff("0.0.0.0_9000", 9000,
			tcpChain(t, "outbound|9000||a.ns.svc.cluster.local", "a.ns.svc.cluster.local", "a.ns", "a.ns:9000"),
			tcpChain(t, "outbound|9000||b.ns.svc.cluster.local", "b.ns.svc.cluster.local", "b.ns")),
	})
	if err != nil {
		t.Fatal(err)
	}
	proxy := hostPort(podIP, port)
	for _, tc := range []struct{ target, want string }{
		{"a.ns:9000", "a: hi"},
		{"A.NS:9000", "a: hi"}, // host names are case-insensitive
		{"b.ns:9000", "b: hi"},
		{"b.ns.svc.cluster.local:9000", "b: hi"},
		{"c.ns:9000", "passthrough: hi"},
		{"a.ns:9001", "passthrough: hi"},
	} {
		got, err := echoVia(proxy, tc.target, "hi")
		if err != nil || got != tc.want {
			t.Errorf("CONNECT %s: got %q, %v; want %q", tc.target, got, err, tc.want)
		}
	}
}

// TestConnectToHTTPPort: a CONNECT to an HTTP port is served by that port's
// connection manager, in HTTP/1.1 and h2c (gRPC's way), trailers included.
func TestConnectToHTTPPort(t *testing.T) {
	const podIP = "127.77.5.11"
	backend := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Done")
		fmt.Fprintf(w, "host=%s proto=%s", r.Host, r.Proto)
		w.Header().Set("X-Done", "yes")
	})}
	ln, err := net.Listen("tcp", "127.77.5.12:0")
	if err != nil {
		t.Fatal(err)
	}
	go backend.Serve(ln)
	t.Cleanup(func() { backend.Close() })
	clusters := staticManager(t, map[string]string{"web": ln.Addr().String(), "PassthroughCluster": echoServer(t, "127.77.5.13", "passthrough")})
	m := newManager(t, podIP, clusters)
	port := freePort(t, podIP)
	if err := m.Update(map[string]*listenerv3.Listener{
		"virtualOutbound": virtualOutbound(t, port, "PassthroughCluster"),
		"0.0.0.0_9090":    {Name: "0.0.0.0_9090", Address: addr("0.0.0.0", 9090), BindToPort: wrapperspb.Bool(false), FilterChains: httpListener(t, "", "0.0.0.0", 9090, inlineHCM("web")).FilterChains},
	}); err != nil {
		t.Fatal(err)
	}
	proxy := hostPort(podIP, port)
	for _, h2c := range []bool{false, true} {
		var protocols http.Protocols
		protocols.SetHTTP1(!h2c)
		protocols.SetUnencryptedHTTP2(h2c)
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			Protocols: &protocols,
			DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				c, br, err := connectThrough(proxy, addr)
				if err != nil {
					return nil, err
				}
				c.SetDeadline(time.Time{})
				return &bufferedConn{Conn: c, r: br}, nil
			},
		}}
		resp, err := client.Get("http://web.ns:9090/x")
		if err != nil {
			t.Fatalf("h2c=%v: %v", h2c, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		wantProto := "HTTP/1.1"
		if h2c {
			wantProto = "HTTP/2.0"
		}
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(body), "host=web.ns:9090") || resp.Proto != wantProto {
			t.Errorf("h2c=%v: %s %s %q", h2c, resp.Proto, resp.Status, body)
		}
		if got := resp.Trailer.Get("X-Done"); got != "yes" {
			t.Errorf("h2c=%v: trailer X-Done = %q, want yes", h2c, got)
		}
	}
}

// TestTCPWeightedClustersAndStats: weighted_clusters splits connections,
// and istio.stats before tcp_proxy counts them in Istio's TCP metrics.
func TestTCPWeightedClustersAndStats(t *testing.T) {
	const podIP = "127.77.5.21"
	clusters := staticManager(t, map[string]string{
		"outbound|9000||a.ns.svc.cluster.local": echoServer(t, "127.77.5.22", "a"),
		"outbound|9000||b.ns.svc.cluster.local": echoServer(t, "127.77.5.23", "b"),
		"PassthroughCluster":                    echoServer(t, "127.77.5.24", "passthrough"),
	})
	reg := filters.NewRegistry()
	istiostats.Register(reg, istiostats.Options{Node: istiostats.Node{Namespace: "ns", WorkloadName: "client"}})
	store := stats.NewStore()
	m, err := NewManager(Options{PodIP: podIP, Clusters: clusters, Routes: routeMap{}, HTTPFilters: reg, Stats: store, DrainTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown(context.Background()) })
	ts := &udpav1.TypedStruct{TypeUrl: istiostats.TypeURL, Value: &structpb.Struct{}}
	weighted := tcpChain(t, "outbound|9000||a.ns.svc.cluster.local", "a.ns")
	weighted.Filters = []*listenerv3.Filter{
		filter(t, istiostats.Name, ts),
		filter(t, tcpProxyFilterName, &tcpproxyv3.TcpProxy{StatPrefix: "outbound|9000||a.ns.svc.cluster.local", ClusterSpecifier: &tcpproxyv3.TcpProxy_WeightedClusters{
			WeightedClusters: &tcpproxyv3.TcpProxy_WeightedCluster{Clusters: []*tcpproxyv3.TcpProxy_WeightedCluster_ClusterWeight{
				{Name: "outbound|9000||a.ns.svc.cluster.local", Weight: 50},
				{Name: "outbound|9000||b.ns.svc.cluster.local", Weight: 50},
			}},
		}}),
	}
	port := freePort(t, podIP)
	if err := m.Update(map[string]*listenerv3.Listener{
		"virtualOutbound": virtualOutbound(t, port, "PassthroughCluster"),
		"0.0.0.0_9000":    handoff("0.0.0.0_9000", 9000, weighted),
	}); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	const n = 60
	for range n {
		got, err := echoVia(hostPort(podIP, port), "a.ns:9000", "hi")
		if err != nil {
			t.Fatal(err)
		}
		name, _, _ := strings.Cut(got, ":")
		seen[name]++
	}
	if seen["a"] < 10 || seen["b"] < 10 || seen["a"]+seen["b"] != n {
		t.Errorf("50/50 split over %d connections: %v", n, seen)
	}

	// Each connection closes on the proxy side after the test closes it.
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := tcpMetrics(store)
		want := map[string]uint64{
			"istio_tcp_connections_opened_total{b}": uint64(seen["b"]),
			"istio_tcp_connections_closed_total{b}": uint64(seen["b"]),
			"istio_tcp_received_bytes_total{b}":     uint64(3 * seen["b"]),              // "hi\n"
			"istio_tcp_sent_bytes_total{b}":         uint64(len("b: hi\n") * seen["b"]), // the echo
		}
		ok := true
		for k, v := range want {
			ok = ok && got[k] == v
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("TCP metrics: got %v, want (at least) %v", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tcpMetrics sums Istio's TCP metrics by name and destination service
// name, checking the labels every series must have.
func tcpMetrics(store *stats.Store) map[string]uint64 {
	out := map[string]uint64{}
	for _, f := range store.Families() {
		if !strings.HasPrefix(f.Name, "istio_tcp_") {
			continue
		}
		for _, s := range f.Series() {
			labels := map[string]string{}
			for i, l := range f.Labels {
				labels[l] = s.Values[i]
			}
			if labels["reporter"] != "source" || labels["request_protocol"] != "tcp" || labels["source_workload"] != "client" {
				out["bad labels: "+fmt.Sprint(labels)]++
				continue
			}
			out[fmt.Sprintf("%s{%s}", f.Name, labels["destination_service_name"])] += s.Counter.Value()
		}
	}
	return out
}

// tlsNameServer is a TLS server that tells each client its name.
func tlsNameServer(t *testing.T, ip, name string, cert *tls.Certificate) string {
	t.Helper()
	ln, err := tls.Listen("tcp", net.JoinHostPort(ip, "0"), &tls.Config{Certificates: []tls.Certificate{*cert}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				fmt.Fprintf(c, "%s\n", name)
			}()
		}
	}()
	return ln.Addr().String()
}

// TestConnectTLSRouteBySNI: on a listener whose chains differ by
// server_names (VirtualService tls routes), a CONNECT tunnel's ClientHello
// picks the chain; other SNIs take the host's chain without server_names.
func TestConnectTLSRouteBySNI(t *testing.T) {
	const podIP = "127.77.5.31"
	id := newIdentities(t, "spiffe://cluster.local/ns/ns/sa/tls")[0]
	clusters := staticManager(t, map[string]string{
		"outbound|8443||t.ns.svc.cluster.local": tlsNameServer(t, "127.77.5.32", "t", id.cert),
		"outbound|8443||b.ns.svc.cluster.local": tlsNameServer(t, "127.77.5.33", "b", id.cert),
		"PassthroughCluster":                    echoServer(t, "127.77.5.34", "passthrough"),
	})
	m := newManager(t, podIP, clusters)
	bySNI := tcpChain(t, "outbound|8443||b.ns.svc.cluster.local", "t.ns")
	bySNI.Name = "sni"
	bySNI.FilterChainMatch = &listenerv3.FilterChainMatch{ServerNames: []string{"b.example.com", "*.b.example.com"}}
	port := freePort(t, podIP)
	if err := m.Update(map[string]*listenerv3.Listener{
		"virtualOutbound": virtualOutbound(t, port, "PassthroughCluster"),
		"0.0.0.0_8443":    handoff("0.0.0.0_8443", 8443, bySNI, tcpChain(t, "outbound|8443||t.ns.svc.cluster.local", "t.ns")),
	}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ sni, want string }{
		{"b.example.com", "b"},
		{"x.b.example.com", "b"},
		{"a.example.com", "t"},
		{"", "t"},
	} {
		c, br, err := connectThrough(hostPort(podIP, port), "t.ns:8443")
		if err != nil {
			t.Fatal(err)
		}
		tc2 := tls.Client(&bufferedConn{Conn: c, r: br}, &tls.Config{ServerName: tc.sni, InsecureSkipVerify: true})
		got, err := bufio.NewReader(tc2).ReadString('\n')
		c.Close()
		if strings.TrimSpace(got) != tc.want {
			t.Errorf("SNI %q: got %q, %v; want %q", tc.sni, got, err, tc.want)
		}
	}
}
