package fault_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	commonfaultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/skein-mesh/skein/internal/proxy/cluster"
	"github.com/skein-mesh/skein/internal/proxy/filters"
	"github.com/skein-mesh/skein/internal/proxy/filters/fault"
	"github.com/skein-mesh/skein/internal/proxy/hcm"
	"github.com/skein-mesh/skein/internal/proxy/listener"
	"github.com/skein-mesh/skein/internal/proxy/router"
	"github.com/skein-mesh/skein/internal/proxy/stats"
)

// noRDS is the Routes of a proxy whose routes are all inline.
type noRDS struct{}

func (noRDS) Table(string) *router.Table { return nil }

func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func pct(n uint32) *typev3.FractionalPercent {
	return &typev3.FractionalPercent{Numerator: n * 10000, Denominator: typev3.FractionalPercent_MILLION}
}

// proxy runs a real listener on ip with the fault filter in its chain and
// one route per entry of faults (path prefix → per-route HTTPFault), all
// to a backend on loopback. It returns the proxy's base URL and stats.
func proxy(t *testing.T, ip string, faults map[string]*faultv3.HTTPFault) (string, *stats.Store) {
	t.Helper()
	backend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "backend")
	}))
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	backend.Listener = ln
	backend.Start()
	t.Cleanup(backend.Close)
	bhost, bport, _ := net.SplitHostPort(ln.Addr().String())
	var port uint32
	fmt.Sscan(bport, &port)
	sock := func(host string, port uint32) *corev3.Address {
		return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
	}
	clusters := cluster.NewManager(cluster.Options{})
	if err := clusters.Update(map[string]*clusterv3.Cluster{"backend": {
		Name:                 "backend",
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: "backend", Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: sock(bhost, port)}}}},
		}}},
	}}, nil); err != nil {
		t.Fatal(err)
	}
	vh := &routev3.VirtualHost{Name: "all", Domains: []string{"*"}}
	prefixes := make([]string, 0, len(faults))
	for p := range faults {
		prefixes = append(prefixes, p)
	}
	// longest first, so "/" comes last
	sort.Slice(prefixes, func(i, j int) bool { return len(prefixes[i]) > len(prefixes[j]) })
	for _, prefix := range prefixes {
		f := faults[prefix]
		r := &routev3.Route{
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: prefix}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "backend"}}},
		}
		if f != nil {
			r.TypedPerFilterConfig = map[string]*anypb.Any{fault.Name: mustAny(t, f)}
		}
		vh.Routes = append(vh.Routes, r)
	}
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix:     "test",
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{Name: "local", VirtualHosts: []*routev3.VirtualHost{vh}}},
		HttpFilters: []*hcmv3.HttpFilter{
			{Name: fault.Name, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &faultv3.HTTPFault{})}},
			{Name: hcm.RouterFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &routerv3.Router{})}},
		},
	}
	reg := filters.NewRegistry()
	fault.Register(reg)
	st := stats.NewStore()
	m, err := listener.NewManager(listener.Options{PodIP: ip, Clusters: clusters, Routes: noRDS{}, HTTPFilters: reg, Stats: st, DrainTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown(context.Background()) })
	pl, _ := net.Listen("tcp", ip+":0")
	_, pport, _ := net.SplitHostPort(pl.Addr().String())
	pl.Close()
	fmt.Sscan(pport, &port)
	if err := m.Update(map[string]*listenerv3.Listener{"l": {
		Name:         "l",
		Address:      sock("0.0.0.0", port),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, hcm)}}}}},
	}}); err != nil {
		t.Fatal(err)
	}
	return "http://" + net.JoinHostPort(ip, pport), st
}

func TestFaultInjection(t *testing.T) {
	delay := func(d time.Duration, p uint32) *commonfaultv3.FaultDelay {
		return &commonfaultv3.FaultDelay{FaultDelaySecifier: &commonfaultv3.FaultDelay_FixedDelay{FixedDelay: durationpb.New(d)}, Percentage: pct(p)}
	}
	base, st := proxy(t, "127.78.1.1", map[string]*faultv3.HTTPFault{
		"/delay":    {Delay: delay(300*time.Millisecond, 100)},
		"/abort":    {Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_HttpStatus{HttpStatus: 503}, Percentage: pct(100)}},
		"/both":     {Delay: delay(200*time.Millisecond, 100), Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_HttpStatus{HttpStatus: 418}, Percentage: pct(100)}},
		"/grpc":     {Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_GrpcStatus{GrpcStatus: 14}, Percentage: pct(100)}},
		"/never":    {Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_HttpStatus{HttpStatus: 500}, Percentage: pct(0)}},
		"/unsetpct": {Delay: &commonfaultv3.FaultDelay{FaultDelaySecifier: &commonfaultv3.FaultDelay_FixedDelay{FixedDelay: durationpb.New(time.Second)}}},
		"/half":     {Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_HttpStatus{HttpStatus: 500}, Percentage: pct(50)}},
		"/":         nil,
	})
	tests := []struct {
		path             string
		status           int
		body, grpcStatus string
		minTime, maxTime time.Duration
	}{
		{"/delay", 200, "backend", "", 300 * time.Millisecond, 2 * time.Second},
		{"/abort", 503, fault.AbortBody, "", 0, 200 * time.Millisecond},
		{"/both", 418, fault.AbortBody, "", 200 * time.Millisecond, 2 * time.Second},
		{"/grpc", 200, "", "14", 0, 200 * time.Millisecond},
		{"/never", 200, "backend", "", 0, 200 * time.Millisecond},
		{"/unsetpct", 200, "backend", "", 0, 200 * time.Millisecond},
		{"/other", 200, "backend", "", 0, 200 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			start := time.Now()
			resp, err := http.Get(base + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			took := time.Since(start)
			if resp.StatusCode != tc.status || string(body) != tc.body || resp.Header.Get("Grpc-Status") != tc.grpcStatus {
				t.Errorf("got %d %q grpc-status %q, want %d %q %q", resp.StatusCode, body, resp.Header.Get("Grpc-Status"), tc.status, tc.body, tc.grpcStatus)
			}
			if took < tc.minTime || took > tc.maxTime {
				t.Errorf("took %v, want within [%v, %v]", took, tc.minTime, tc.maxTime)
			}
		})
	}
	aborted := 0
	for range 200 {
		resp, err := http.Get(base + "/half")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 500 {
			aborted++
		}
	}
	if aborted < 60 || aborted > 140 { // 50% of 200; this band fails about once in 10^8 runs
		t.Errorf("50%% abort hit %d of 200 requests", aborted)
	}
	counters := map[string]int64{}
	for _, s := range st.Snapshot() {
		counters[s.Name] = s.Value
	}
	if got := counters["http.test.fault.delays_injected"]; got != 2 {
		t.Errorf("delays_injected = %d, want 2", got)
	}
	if got := counters["http.test.fault.aborts_injected"]; got != int64(3+aborted) {
		t.Errorf("aborts_injected = %d, want %d", got, 3+aborted)
	}
}

func TestDelayEndsWhenTheClientLeaves(t *testing.T) {
	base, st := proxy(t, "127.78.1.2", map[string]*faultv3.HTTPFault{"/": {Delay: &commonfaultv3.FaultDelay{
		FaultDelaySecifier: &commonfaultv3.FaultDelay_FixedDelay{FixedDelay: durationpb.New(time.Minute)}, Percentage: pct(100)}}})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/", nil)
	if _, err := http.DefaultClient.Do(req); err == nil {
		t.Fatal("a one-minute delay answered within 200ms")
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		active := int64(-1)
		for _, s := range st.Snapshot() {
			if s.Name == "http.test.fault.active_faults" {
				active = s.Value
			}
		}
		if active == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("active_faults = %d two seconds after the client left, want 0", active)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestInvalidConfigIsRejected(t *testing.T) {
	tests := []struct {
		name string
		f    *faultv3.HTTPFault
		want string
	}{
		{"header delay", &faultv3.HTTPFault{Delay: &commonfaultv3.FaultDelay{FaultDelaySecifier: &commonfaultv3.FaultDelay_HeaderDelay_{HeaderDelay: &commonfaultv3.FaultDelay_HeaderDelay{}}}}, "header_delay is not supported"},
		{"status out of range", &faultv3.HTTPFault{Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_HttpStatus{HttpStatus: 99}}}, "not in [200, 600)"},
		{"upstream_cluster", &faultv3.HTTPFault{UpstreamCluster: "x"}, "upstream_cluster is not supported"},
		{"abort body", &faultv3.HTTPFault{Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_HttpStatus{HttpStatus: 500}, ResponseBody: "x"}}, "response_body is not supported"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := mustAny(t, tc.f)
			if _, err := fault.New(a); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v, want %q", err, tc.want)
			}
			// A route carrying it is NACKed when the routes arrive.
			rc := &routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{Name: "v", Domains: []string{"*"},
				Routes: []*routev3.Route{{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
					Action:               &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "c"}}},
					TypedPerFilterConfig: map[string]*anypb.Any{fault.Name: a}}}}}}
			reg := filters.NewRegistry()
			fault.Register(reg)
			if _, err := router.Compile(rc, reg); err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), fault.Name) {
				t.Errorf("router.Compile: %v, want %q naming %s", err, tc.want, fault.Name)
			}
		})
	}
}
