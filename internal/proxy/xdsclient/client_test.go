package xdsclient

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/skein-mesh/skein/internal/proxy/internal/xdstest"
	"github.com/skein-mesh/skein/internal/proxy/stats"
)

// filterChecker is the test's Consumer: it accepts everything except
// listeners whose HTTP connection manager uses a filter other than the
// router, as the proxy does, and remembers what it installed.
type filterChecker struct {
	mu      sync.Mutex
	applied map[string]*Snapshot
}

func (f *filterChecker) Apply(typeURL string, next *Snapshot) error {
	if typeURL == ListenerType {
		for name, l := range next.Listeners {
			for _, fc := range l.Message.GetFilterChains() {
				for _, flt := range fc.GetFilters() {
					var hcm hcmv3.HttpConnectionManager
					if err := flt.GetTypedConfig().UnmarshalTo(&hcm); err != nil {
						return err
					}
					for _, hf := range hcm.GetHttpFilters() {
						if hf.GetName() != "envoy.filters.http.router" {
							return fmt.Errorf("listener %q: http filter %q is not supported", name, hf.GetName())
						}
					}
				}
			}
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied[typeURL] = next
	return nil
}

func (f *filterChecker) last(typeURL string) *Snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied[typeURL]
}

func httpListener(name, routeName string, filters ...string) *listenerv3.Listener {
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix:     name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: routeName, ConfigSource: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}}},
	}
	for _, f := range filters {
		hcm.HttpFilters = append(hcm.HttpFilters, &hcmv3.HttpFilter{Name: f})
	}
	tc, _ := anypb.New(hcm)
	return &listenerv3.Listener{
		Name:    name,
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "0.0.0.0", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 9080}}}},
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: tc},
		}}}},
	}
}

func resources(listener *listenerv3.Listener) xdstest.Resources {
	eds := &clusterv3.Cluster{
		Name:                 "outbound|9080||reviews.default.svc.cluster.local",
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}},
	}
	return xdstest.Resources{
		Clusters:  []types.Resource{eds},
		Endpoints: []types.Resource{&endpointv3.ClusterLoadAssignment{ClusterName: eds.Name}},
		Listeners: []types.Resource{listener},
		Routes:    []types.Resource{&routev3.RouteConfiguration{Name: "9080"}},
	}
}

func isACK(typeURL, version string) func(*discoveryv3.DiscoveryRequest) bool {
	return func(r *discoveryv3.DiscoveryRequest) bool {
		return r.GetTypeUrl() == typeURL && r.GetVersionInfo() == version && r.GetResponseNonce() != "" && r.GetErrorDetail() == nil
	}
}

func startClient(t *testing.T, addr string, node *corev3.Node) (*Client, *filterChecker, *stats.Store) {
	t.Helper()
	consumer := &filterChecker{applied: map[string]*Snapshot{}}
	st := stats.NewStore()
	c, err := New(Options{Address: addr, Node: node, Consumer: consumer, Stats: st})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return c, consumer, st
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestClientACKsNACKsAndReconnects(t *testing.T) {
	srv := xdstest.Start(t, "127.0.0.1:0")
	meta, _ := structpb.NewStruct(map[string]any{"NAMESPACE": "default"})
	node := &corev3.Node{Id: "sidecar~127.0.0.2~reviews-1.default~default.svc.cluster.local", Metadata: meta}
	srv.Set(t, node.Id, "v1", resources(httpListener("0.0.0.0_9080", "9080", "envoy.filters.http.router")))
	c, consumer, st := startClient(t, srv.Addr(), node)

	// Every type is ACKed with the version the server sent.
	for _, typeURL := range typeOrder {
		srv.WaitRequest(t, 5*time.Second, isACK(typeURL, "v1"))
	}
	waitFor(t, "synced", c.Synced)
	snap := c.Snapshot()
	if len(snap.Clusters) != 1 || len(snap.Endpoints) != 1 || len(snap.Listeners) != 1 || len(snap.Routes) != 1 {
		t.Fatalf("snapshot has %d clusters, %d endpoints, %d listeners, %d routes; want one of each",
			len(snap.Clusters), len(snap.Endpoints), len(snap.Listeners), len(snap.Routes))
	}
	if consumer.last(RouteType) == nil {
		t.Fatal("consumer never saw the route configuration")
	}

	// The node (with metadata) is on the first request of each type, and the
	// EDS and RDS subscriptions name what CDS and LDS reference.
	firstOf := map[string]*discoveryv3.DiscoveryRequest{}
	for _, r := range srv.Requests() {
		if firstOf[r.GetTypeUrl()] == nil {
			firstOf[r.GetTypeUrl()] = r
		}
	}
	for _, typeURL := range typeOrder {
		r := firstOf[typeURL]
		if r.GetNode().GetId() != node.Id || r.GetNode().GetMetadata().GetFields()["NAMESPACE"].GetStringValue() != "default" {
			t.Errorf("first %s request carries node %v, want id and metadata", shortType(typeURL), r.GetNode())
		}
	}
	if got := firstOf[EndpointType].GetResourceNames(); len(got) != 1 || got[0] != "outbound|9080||reviews.default.svc.cluster.local" {
		t.Errorf("EDS subscription = %v", got)
	}
	if got := firstOf[RouteType].GetResourceNames(); len(got) != 1 || got[0] != "9080" {
		t.Errorf("RDS subscription = %v", got)
	}

	// A listener with an unknown HTTP filter is NACKed with the previous
	// version and a reason naming the filter; nothing changes.
	srv.Set(t, node.Id, "v2", resources(httpListener("0.0.0.0_9080", "9080", "envoy.filters.http.foo", "envoy.filters.http.router")))
	nack := srv.WaitRequest(t, 5*time.Second, func(r *discoveryv3.DiscoveryRequest) bool {
		return r.GetTypeUrl() == ListenerType && r.GetErrorDetail() != nil
	})
	if nack.GetVersionInfo() != "v1" || !strings.Contains(nack.GetErrorDetail().GetMessage(), "envoy.filters.http.foo") {
		t.Errorf("NACK has version %q and reason %q; want v1 and a reason naming envoy.filters.http.foo", nack.GetVersionInfo(), nack.GetErrorDetail().GetMessage())
	}
	if v := c.Snapshot().Versions[ListenerType]; v != "v1" {
		t.Errorf("listener version after NACK = %q, want v1", v)
	}
	if got := st.Counter("listener_manager.lds.update_rejected").Value(); got < 1 {
		t.Errorf("update_rejected = %d, want >= 1", got)
	}
	// CDS of the same v2 snapshot was fine and is ACKed.
	srv.WaitRequest(t, 5*time.Second, isACK(ClusterType, "v2"))

	// The control plane restarts: the config is kept meanwhile and the client
	// reconnects and takes the new server's config.
	srv.Restart(t)
	if len(c.Snapshot().Listeners) != 1 {
		t.Fatal("listeners dropped while the control plane was away")
	}
	srv.Set(t, node.Id, "v3", resources(httpListener("0.0.0.0_9090", "9080", "envoy.filters.http.router")))
	srv.WaitRequest(t, 5*time.Second, isACK(ListenerType, "v3"))
	waitFor(t, "reconnected", c.Connected)
	if _, ok := c.Snapshot().Listeners["0.0.0.0_9090"]; !ok {
		t.Errorf("listeners after reconnect = %v, want 0.0.0.0_9090", c.Snapshot().Listeners)
	}
	// The unchanged cluster keeps the version it was first received with.
	if v := c.Snapshot().Clusters["outbound|9080||reviews.default.svc.cluster.local"].Version; v != "v1" {
		t.Errorf("unchanged cluster's version = %q, want v1", v)
	}
}

func TestClientRejectsMalformedResources(t *testing.T) {
	bad := []struct {
		name      string
		resources xdstest.Resources
		reason    string
	}{
		{
			name: "listener without name",
			resources: xdstest.Resources{Listeners: []types.Resource{
				&listenerv3.Listener{Address: &corev3.Address{}},
			}},
			reason: "listener has no name",
		},
		{
			name: "cluster failing proto validation",
			resources: xdstest.Resources{Clusters: []types.Resource{
				&clusterv3.Cluster{Name: "c", ConnectTimeout: nil, LbPolicy: clusterv3.Cluster_LbPolicy(99)},
			}},
			reason: `cluster "c"`,
		},
	}
	for i, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			srv := xdstest.Start(t, "127.0.0.1:0")
			node := &corev3.Node{Id: fmt.Sprintf("sidecar~127.0.0.%d~p.default~default.svc.cluster.local", i+2)}
			srv.Set(t, node.Id, "v1", tc.resources)
			startClient(t, srv.Addr(), node)
			nack := srv.WaitRequest(t, 5*time.Second, func(r *discoveryv3.DiscoveryRequest) bool { return r.GetErrorDetail() != nil })
			if !strings.Contains(nack.GetErrorDetail().GetMessage(), tc.reason) {
				t.Errorf("reason = %q, want it to contain %q", nack.GetErrorDetail().GetMessage(), tc.reason)
			}
		})
	}
}
