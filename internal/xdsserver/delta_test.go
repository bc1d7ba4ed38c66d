package xdsserver_test

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/skein-mesh/skein/internal/config"
	"github.com/skein-mesh/skein/internal/configstore"
	"github.com/skein-mesh/skein/internal/xds"
	"github.com/skein-mesh/skein/internal/xdsserver"
)

const deltaServices = `
apiVersion: v1
kind: Service
metadata: {name: a, namespace: ns}
spec:
  selector: {app: a}
  ports: [{name: http, port: 8000}]
---
apiVersion: v1
kind: Service
metadata: {name: b, namespace: ns}
spec:
  selector: {app: b}
  ports: [{name: http, port: 8000}]
`

const deltaVS = `
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: ns}
spec:
  hosts: [a]
  http: [{timeout: 3s, route: [{destination: {host: a}}]}]
`

type deltaClient struct {
	t      *testing.T
	stream discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	resps  chan *discoveryv3.DeltaDiscoveryResponse
}

func dialDelta(t *testing.T, ctx context.Context, addr string) *deltaClient {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := &deltaClient{t: t, stream: stream, resps: make(chan *discoveryv3.DeltaDiscoveryResponse, 16)}
	go func() {
		for {
			r, err := stream.Recv()
			if err != nil {
				close(c.resps)
				return
			}
			c.resps <- r
		}
	}()
	return c
}

func (c *deltaClient) send(req *discoveryv3.DeltaDiscoveryRequest) {
	c.t.Helper()
	if err := c.stream.Send(req); err != nil {
		c.t.Fatal(err)
	}
}

func (c *deltaClient) recv(typ string) *discoveryv3.DeltaDiscoveryResponse {
	c.t.Helper()
	select {
	case r := <-c.resps:
		if r == nil {
			c.t.Fatal("stream closed")
		}
		if r.GetTypeUrl() != typ {
			c.t.Fatalf("got a %s response (%d resources), want %s", xdsserver.ShortType(r.GetTypeUrl()), len(r.GetResources()), xdsserver.ShortType(typ))
		}
		return r
	case <-time.After(5 * time.Second):
		c.t.Fatalf("no %s response", xdsserver.ShortType(typ))
	}
	return nil
}

func (c *deltaClient) quiet() {
	c.t.Helper()
	select {
	case r := <-c.resps:
		c.t.Fatalf("unexpected %s response: %d resources, removed %v", xdsserver.ShortType(r.GetTypeUrl()), len(r.GetResources()), r.GetRemovedResources())
	case <-time.After(300 * time.Millisecond):
	}
}

func (c *deltaClient) ack(r *discoveryv3.DeltaDiscoveryResponse) {
	c.t.Helper()
	c.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResponseNonce: r.GetNonce()})
}

func names(r *discoveryv3.DeltaDiscoveryResponse) []string {
	var out []string
	for _, res := range r.GetResources() {
		out = append(out, res.GetName())
	}
	slices.Sort(out)
	return out
}

// TestDeltaADS drives incremental ADS with go-control-plane's delta stream
// types on a loopback server: initial sync, a VirtualService change sends
// only the changed RouteConfiguration, a deleted service's cluster arrives
// in removed_resources, a NACK is recorded for proxy-status, and a
// reconnect with initial_resource_versions is sent nothing it holds.
func TestDeltaADS(t *testing.T) {
	srv := xdsserver.New(slog.New(slog.DiscardHandler), xds.Generate)
	store := configstore.OpenMemory()
	srv.Push(pushContext(t, store, deltaServices))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(srv.GRPCServerOption())
	srv.Register(g)
	go g.Serve(lis)
	defer g.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	md, _ := structpb.NewStruct(map[string]any{"NAMESPACE": "ns", "LABELS": map[string]any{"app": "c"}})
	node := &corev3.Node{Id: "sidecar~127.1.0.9~c-1.ns~ns.svc.cluster.local", Metadata: md}
	c := dialDelta(t, ctx, lis.Addr().String())

	// Initial sync: CDS by wildcard, RDS by name.
	c.send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType})
	cds := c.recv(resourcev3.ClusterType)
	wantClusters := []string{"BlackHoleCluster", "InboundPassthroughCluster", "PassthroughCluster", "outbound|8000||a.ns.svc.cluster.local", "outbound|8000||b.ns.svc.cluster.local"}
	if got := names(cds); !slices.Equal(got, wantClusters) {
		t.Fatalf("initial CDS = %v, want %v", got, wantClusters)
	}
	c.ack(cds)
	c.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.RouteType, ResourceNamesSubscribe: []string{"8000"}})
	rds := c.recv(resourcev3.RouteType)
	if got := names(rds); !slices.Equal(got, []string{"8000"}) {
		t.Fatalf("initial RDS = %v", got)
	}
	c.ack(rds)
	c.quiet()
	initial := map[string]string{}
	for _, r := range cds.GetResources() {
		initial[r.GetName()] = r.GetVersion()
	}

	// A VirtualService change: only RDS 8000 is sent.
	srv.Push(pushContext(t, store, deltaServices+deltaVS))
	rds2 := c.recv(resourcev3.RouteType)
	if got := names(rds2); !slices.Equal(got, []string{"8000"}) || rds2.GetResources()[0].GetVersion() == rds.GetResources()[0].GetVersion() {
		t.Fatalf("RDS after the VirtualService change = %v (version %s), want a new 8000", got, rds2.GetResources()[0].GetVersion())
	}
	c.ack(rds2)
	c.quiet() // no CDS: no cluster changed

	// Deleting service b: its cluster is removed, nothing else resent.
	if _, err := store.Delete([]config.Key{{Kind: "Service", Namespace: "ns", Name: "b"}}); err != nil {
		t.Fatal(err)
	}
	srv.Push(pushContext(t, store, deltaVS))
	cds2 := c.recv(resourcev3.ClusterType)
	if len(cds2.GetResources()) != 0 || !slices.Equal(cds2.GetRemovedResources(), []string{"outbound|8000||b.ns.svc.cluster.local"}) {
		t.Fatalf("CDS after deleting b: resources %v, removed %v; want only b removed", names(cds2), cds2.GetRemovedResources())
	}
	// The proxy rejects it: recorded as for state of the world.
	c.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResponseNonce: cds2.GetNonce(),
		ErrorDetail: &rpcstatus.Status{Code: 3, Message: "cannot remove b"}})
	rds3 := c.recv(resourcev3.RouteType) // b's virtual host went away
	c.ack(rds3)
	eventually(t, func() bool {
		for _, st := range srv.Status() {
			if st.Name == "c-1.ns" {
				return st.Types["CDS"].NackError == "cannot remove b" && st.Types["CDS"].State() == "STALE" && st.Types["RDS"].State() == "SYNCED"
			}
		}
		return false
	}, "CDS NACK and RDS ACK in proxy-status")

	// A reconnecting proxy that holds the current clusters is sent none.
	delete(initial, "outbound|8000||b.ns.svc.cluster.local")
	c2 := dialDelta(t, ctx, lis.Addr().String())
	c2.send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType, InitialResourceVersions: initial})
	if r := c2.recv(resourcev3.ClusterType); len(r.GetResources()) != 0 || len(r.GetRemovedResources()) != 0 {
		t.Fatalf("reconnect with current versions got %v, removed %v", names(r), r.GetRemovedResources())
	}
	// Holding a cluster that is gone: it is removed.
	initial["outbound|8000||b.ns.svc.cluster.local"] = "old"
	c3 := dialDelta(t, ctx, lis.Addr().String())
	c3.send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType, InitialResourceVersions: initial})
	if r := c3.recv(resourcev3.ClusterType); len(r.GetResources()) != 0 || !slices.Equal(r.GetRemovedResources(), []string{"outbound|8000||b.ns.svc.cluster.local"}) {
		t.Fatalf("reconnect holding b got %v, removed %v", names(r), r.GetRemovedResources())
	}
}
