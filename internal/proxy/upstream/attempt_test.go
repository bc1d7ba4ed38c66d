package upstream

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/skein-mesh/skein/internal/proxy/cluster"
	"github.com/skein-mesh/skein/internal/proxy/router"
)

// recorder is the connection manager's side in these tests: it writes
// local replies to the response like the real one, without filters.
type recorder struct {
	w   http.ResponseWriter
	res *Result
}

func (d *recorder) LocalReply(status int, flag, body string) {
	d.res.Status, d.res.Flags = status, flag
	d.w.WriteHeader(status)
	fmt.Fprint(d.w, body)
}

func (d *recorder) ResponseHeader(int, http.Header) {}

// TestAttemptReleasesEverything sends requests down every path an attempt
// can end on (answer, retried 5xx, connect failure, per-try timeout,
// client gone) through a cluster whose circuit breakers admit one request
// at a time: a resource an attempt failed to release would turn the next
// request into an overflow (503 UO) or leave upstream_rq_active above 0.
func TestAttemptReleasesEverything(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/fail":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "/slow":
			select {
			case <-time.After(300 * time.Millisecond):
			case <-r.Context().Done():
			}
		}
	}))
	defer backend.Close()
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := closed.Addr().String()
	closed.Close()

	static := func(name, hostPort string) *clusterv3.Cluster {
		host, portText, _ := net.SplitHostPort(hostPort)
		var port uint32
		fmt.Sscan(portText, &port)
		one := wrapperspb.UInt32(1)
		return &clusterv3.Cluster{Name: name, ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
			CircuitBreakers: &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
				MaxConnections: one, MaxPendingRequests: one, MaxRequests: one, MaxRetries: one}}},
			LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
				LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: &corev3.Address{
					Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}}}}},
			}}}}
	}
	clusters := cluster.NewManager(cluster.Options{})
	if err := clusters.Update(map[string]*clusterv3.Cluster{
		"live": static("live", backend.Listener.Addr().String()), "dead": static("dead", deadAddr),
	}, nil); err != nil {
		t.Fatal(err)
	}
	table, err := router.Compile(&routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{
		Name: "all", Domains: []string{"*"},
		RetryPolicy: &routev3.RetryPolicy{RetryOn: "5xx,connect-failure", NumRetries: wrapperspb.UInt32(1),
			PerTryTimeout: durationpb.New(50 * time.Millisecond), RetryBackOff: &routev3.RetryPolicy_RetryBackOff{BaseInterval: durationpb.New(time.Millisecond)}},
		Routes: []*routev3.Route{
			{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/dead"}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "dead"}}}},
			{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "live"}}}},
		},
	}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := &Forwarder{Clusters: clusters}
	send := func(path string, cancelled bool) Result {
		r := httptest.NewRequest(http.MethodGet, "http://a"+path, nil)
		if cancelled {
			ctx, cancel := context.WithCancel(r.Context())
			cancel()
			r = r.WithContext(ctx)
		}
		d, ok := table.Route(r)
		if !ok {
			t.Fatalf("%s: no route", path)
		}
		cl, _ := clusters.Get(d.Cluster)
		w := httptest.NewRecorder()
		var res Result
		f.Forward(&Request{W: w, R: r, Target: "a:80", Decision: d, Cluster: cl, Down: &recorder{w: w, res: &res}, Result: &res})
		return res
	}
	for _, tc := range []struct {
		path      string
		cancelled bool
		status    int
		flags     string
		attempts  int
	}{
		{"/ok", false, 200, "", 1},
		{"/fail", false, 503, "", 2},
		{"/dead", false, 503, "UF", 2},
		{"/slow", false, 504, "UT", 2},
		{"/ok", true, 499, "DC", 1},
		{"/ok", false, 200, "", 1}, // nothing leaked: still admitted
	} {
		res := send(tc.path, tc.cancelled)
		if res.Status != tc.status || res.Flags != tc.flags || res.Attempts != tc.attempts {
			t.Errorf("%s (cancelled %v): %+v, want status %d flags %q after %d attempts", tc.path, tc.cancelled, res, tc.status, tc.flags, tc.attempts)
		}
		for _, name := range []string{"live", "dead"} {
			cl, _ := clusters.Get(name)
			if n := cl.Stats.RqActive.Value(); n != 0 {
				t.Errorf("%s: cluster %s upstream_rq_active %d after the request ended", tc.path, name, n)
			}
		}
	}
}
