package xdsserver

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/skein-mesh/skein/internal/config"
	"github.com/skein-mesh/skein/internal/configstore"
	"github.com/skein-mesh/skein/internal/model"
	"github.com/skein-mesh/skein/internal/registry"
	"github.com/skein-mesh/skein/internal/xds"
)

func sharePush(t testing.TB, services int, version string) *model.PushContext {
	t.Helper()
	var b strings.Builder
	for i := range services {
		fmt.Fprintf(&b, `---
apiVersion: v1
kind: Service
metadata: {name: svc-%d, namespace: ns}
spec:
  selector: {app: svc-%d}
  ports: [{name: http, port: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: svc-%d-0, namespace: ns, labels: {app: svc-%d}}
spec: {containers: [{name: app, image: app}]}
status:
  phase: Running
  podIP: 127.10.%d.%d
  conditions: [{type: Ready, status: "True"}]
`, i, i, i, i, i/250, i%250+1)
	}
	objs, _, err := config.LoadReader("t.yaml", strings.NewReader(b.String()), "")
	if err != nil {
		t.Fatal(err)
	}
	store := configstore.OpenMemory()
	if _, err := store.Apply(objs); err != nil {
		t.Fatal(err)
	}
	snap := store.Snapshot()
	return model.NewPushContext(version, snap, registry.Build(snap, "cluster.local"), "cluster.local", "istio-system")
}

func shareNode(i int) *corev3.Node {
	md, _ := structpb.NewStruct(map[string]any{"NAMESPACE": "ns", "LABELS": map[string]any{"app": fmt.Sprintf("client-%d", i)}})
	return &corev3.Node{Id: fmt.Sprintf("sidecar~127.1.0.%d~client-%d.ns~ns.svc.cluster.local", i+1, i), Metadata: md}
}

// syncStream opens an ADS stream, subscribes to CDS and then to the EDS
// names the clusters use, and returns both responses (ACKing each).
func syncStream(t *testing.T, ctx context.Context, conn *grpc.ClientConn, node *corev3.Node) (cds, eds *discoveryv3.DiscoveryResponse) {
	t.Helper()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType}); err != nil {
		t.Fatal(err)
	}
	if cds, err = stream.Recv(); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, a := range cds.GetResources() {
		var c clusterv3.Cluster
		if err := a.UnmarshalTo(&c); err != nil {
			t.Fatal(err)
		}
		if c.GetType() == clusterv3.Cluster_EDS {
			names = append(names, c.GetName())
		}
	}
	for _, req := range []*discoveryv3.DiscoveryRequest{
		{TypeUrl: resourcev3.ClusterType, VersionInfo: cds.GetVersionInfo(), ResponseNonce: cds.GetNonce()},
		{TypeUrl: resourcev3.EndpointType, ResourceNames: names},
	} {
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	if eds, err = stream.Recv(); err != nil {
		t.Fatal(err)
	}
	if eds.GetTypeUrl() != resourcev3.EndpointType || len(eds.GetResources()) != len(names) {
		t.Fatalf("EDS response: type %s with %d resources, want %d endpoints", eds.GetTypeUrl(), len(eds.GetResources()), len(names))
	}
	return cds, eds
}

// TestSharedResourcesMarshalledOncePerPush connects two proxies with the
// same shared key: the second stream must marshal only its own resources
// (inbound and well-known clusters, listeners), never the outbound
// clusters, endpoints and routes the first stream's proxy already has.
func TestSharedResourcesMarshalledOncePerPush(t *testing.T) {
	const services = 20
	pc := sharePush(t, services, "1")
	srv := New(slog.New(slog.DiscardHandler), xds.Generate)
	srv.Push(pc)

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(srv.GRPCServerOption()) // responses pre-encoded, decoded by a plain client
	srv.Register(g)
	go g.Serve(lis)
	defer g.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// What each proxy gets, by pointer: generation shares the outbound part.
	var gens [2]*xds.Resources
	for i := range gens {
		p, err := model.ParseNode(shareNode(i))
		if err != nil {
			t.Fatal(err)
		}
		gens[i] = xds.Generate(pc, p)
	}
	all := func(r *xds.Resources) []types.Resource {
		return slices.Concat(toResources(r.Clusters), toResources(r.Listeners), toResources(r.Routes), toResources(r.Endpoints))
	}
	shared := 0
	for _, r := range all(gens[1]) {
		if slices.Contains(all(gens[0]), r) {
			shared++
		}
	}
	own := len(all(gens[1])) - shared
	if shared < 2*services {
		t.Fatalf("only %d resources shared between the two proxies; want at least the %d outbound clusters and endpoints", shared, 2*services)
	}

	memo := memoFor(pc)
	cds1, eds1 := syncStream(t, ctx, conn, shareNode(0))
	before := memo.marshals.Load()
	cds2, eds2 := syncStream(t, ctx, conn, shareNode(1))
	if got := memo.marshals.Load() - before; got != int64(own) {
		t.Errorf("second stream marshalled %d resources, want %d (its own; %d are shared and must not be marshalled again)", got, own, shared)
	}
	// Same content, same bytes: the second proxy got the first one's
	// outbound clusters and endpoints.
	if !proto.Equal(eds1, withNonce(eds2, eds1.GetNonce())) {
		t.Error("the two proxies got different endpoints")
	}
	common := 0
	for _, a := range cds1.GetResources() {
		if slices.ContainsFunc(cds2.GetResources(), func(b *anypb.Any) bool { return proto.Equal(a, b) }) {
			common++
		}
	}
	if common < services {
		t.Errorf("%d clusters in common, want at least the %d outbound ones", common, services)
	}
}

func withNonce(r *discoveryv3.DiscoveryResponse, nonce string) *discoveryv3.DiscoveryResponse {
	c := proto.Clone(r).(*discoveryv3.DiscoveryResponse)
	c.Nonce = nonce
	return c
}

func TestTypeSetFilter(t *testing.T) {
	pm := &pushMemo{}
	var items []types.Resource
	for _, n := range []string{"c", "a", "b"} {
		items = append(items, &endpointv3.ClusterLoadAssignment{ClusterName: n})
	}
	lastA := &endpointv3.ClusterLoadAssignment{ClusterName: "a", Endpoints: []*endpointv3.LocalityLbEndpoints{{}}}
	items = append(items, lastA)
	ts, err := pm.set(resourcev3.EndpointType, items)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ts.names, []string{"a", "b", "c"}) {
		t.Fatalf("names %v: want sorted, duplicates dropped", ts.names)
	}
	// The last of two resources with one name wins, as in a map.
	want, _ := proto.MarshalOptions{Deterministic: true}.Marshal(lastA)
	if string(ts.anys[0].GetValue()) != string(want) {
		t.Error("the first resource named a was kept, want the last")
	}
	for _, c := range []struct {
		sub, want []string
		shared    bool
	}{
		{[]string{"a", "b", "c"}, []string{"a", "b", "c"}, true},
		{[]string{"a", "b", "c", "d"}, []string{"a", "b", "c"}, true},
		{[]string{"b"}, []string{"b"}, false},
		{[]string{"0", "a", "z"}, []string{"a"}, false},
		{nil, []string{}, false},
	} {
		names, anys := ts.filter(c.sub)
		if !slices.Equal(names, c.want) || len(anys) != len(names) {
			t.Errorf("filter(%v) = %v (%d resources), want %v", c.sub, names, len(anys), c.want)
		}
		if isShared := len(names) > 0 && &names[0] == &ts.names[0]; isShared != c.shared {
			t.Errorf("filter(%v): shared slice %v, want %v", c.sub, isShared, c.shared)
		}
	}
	// The same list again is the same set, without marshalling anything.
	n := pm.marshals.Load()
	if again, _ := pm.set(resourcev3.EndpointType, items); again != ts || pm.marshals.Load() != n {
		t.Error("the same resources were not recognised")
	}
}

func TestConsistentSnapshot(t *testing.T) {
	pm := &pushMemo{}
	eds := func(name string) *clusterv3.Cluster {
		return &clusterv3.Cluster{Name: name, ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}}
	}
	set := func(typ string, rs ...types.Resource) *typeSet {
		ts, err := pm.set(typ, rs)
		if err != nil {
			t.Fatal(err)
		}
		return ts
	}
	clusters := set(resourcev3.ClusterType, eds("a"), eds("b"), &clusterv3.Cluster{Name: "static"})
	for _, c := range []struct {
		name      string
		endpoints []string
		wantErr   string
	}{
		{"exact", []string{"a", "b"}, ""},
		{"missing", []string{"a"}, `"b" needs endpoints "b"`},
		{"extra", []string{"a", "b", "c"}, `endpoints "c" is in the snapshot but nothing refers to it`},
	} {
		var rs []types.Resource
		for _, n := range c.endpoints {
			rs = append(rs, &endpointv3.ClusterLoadAssignment{ClusterName: n})
		}
		err := consistent(clusters, set(resourcev3.EndpointType, rs...), "endpoints")
		if (err == nil) != (c.wantErr == "") || err != nil && !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("%s: got %v, want %q", c.name, err, c.wantErr)
		}
	}
}

// BenchmarkPush is one push of 1000 services to 200 connected sidecars
// (same namespace, distinct pods): generation plus what the server adds
// per proxy (marshalling its own resources, finding the shared sets,
// checking consistency). Streams are not involved.
func BenchmarkPush(b *testing.B) {
	const services, proxies = 1000, 200
	pcs := []*model.PushContext{sharePush(b, services, "1"), sharePush(b, services, "2")}
	srv := New(slog.New(slog.DiscardHandler), xds.Generate)
	for i := range proxies {
		p, err := model.ParseNode(shareNode(i))
		if err != nil {
			b.Fatal(err)
		}
		srv.proxies[p.ID] = &proxyState{proxy: p, snap: map[string]*typeSnap{}, status: map[string]*TypeStatus{}, pending: map[string]time.Time{}}
	}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		srv.Push(pcs[n%2]) // alternate: every push is a new push context
		n++
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*proxies), "ns/proxy")
}
