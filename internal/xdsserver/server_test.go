package xdsserver_test

import (
	"context"
	"log/slog"
	"net"
	"strings"
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
	"github.com/skein-mesh/skein/internal/model"
	"github.com/skein-mesh/skein/internal/registry"
	"github.com/skein-mesh/skein/internal/xds"
	"github.com/skein-mesh/skein/internal/xdsserver"
)

const services = `
apiVersion: v1
kind: Service
metadata: {name: a, namespace: ns}
spec:
  selector: {app: a}
  ports: [{name: http, port: 8000}]
`

func pushContext(t *testing.T, store *configstore.Store, yaml string) *model.PushContext {
	t.Helper()
	objs, _, err := config.LoadReader("t.yaml", strings.NewReader(yaml), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Apply(objs); err != nil {
		t.Fatal(err)
	}
	snap := store.Snapshot()
	return model.NewPushContext(time.Now().Format("150405.000"), snap, registry.Build(snap, "cluster.local"), "cluster.local", "istio-system")
}

// TestACKNACKTracking drives the server with a raw ADS stream and checks
// proxy-status states through a push, an ACK, a NACK and a new push.
func TestACKNACKTracking(t *testing.T) {
	srv := xdsserver.New(slog.New(slog.DiscardHandler), xds.Generate)
	store := configstore.OpenMemory()
	srv.Push(pushContext(t, store, services))

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
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
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	md, _ := structpb.NewStruct(map[string]any{"NAMESPACE": "ns", "LABELS": map[string]any{"app": "b"}})
	node := &corev3.Node{Id: "sidecar~127.1.0.9~b-1.ns~ns.svc.cluster.local", Metadata: md}
	send := func(req *discoveryv3.DiscoveryRequest) {
		t.Helper()
		req.TypeUrl = resourcev3.ClusterType
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	status := func() string {
		for _, s := range srv.Status() {
			if s.Name == "b-1.ns" {
				return s.Types["CDS"].State()
			}
		}
		return "absent"
	}

	send(&discoveryv3.DiscoveryRequest{Node: node})
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	// outbound|8000||a.ns.svc.cluster.local, InboundPassthroughCluster, PassthroughCluster, BlackHoleCluster
	if n := len(resp.GetResources()); n != 4 {
		t.Fatalf("got %d clusters, want 4", n)
	}
	eventually(t, func() bool { return status() == "STALE (Never Acknowledged)" }, "never-acked state before the ACK")

	send(&discoveryv3.DiscoveryRequest{VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()})
	eventually(t, func() bool { return status() == "SYNCED" }, "SYNCED after ACK")

	// A config change yields a new CDS version, which the proxy NACKs.
	srv.Push(pushContext(t, store, strings.ReplaceAll(services, "name: a,", "name: c,")))
	resp2, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if resp2.GetVersionInfo() == resp.GetVersionInfo() {
		t.Fatalf("new push reused version %s", resp2.GetVersionInfo())
	}
	send(&discoveryv3.DiscoveryRequest{VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp2.GetNonce(),
		ErrorDetail: &rpcstatus.Status{Code: 3, Message: "cluster outbound|8000||c: unsupported field"}})
	eventually(t, func() bool {
		st := srv.Status()
		return len(st) == 1 && strings.Contains(st[0].Types["CDS"].NackError, "unsupported field")
	}, "NACK reason recorded")
	if got := status(); got != "STALE" {
		t.Errorf("after NACK: %s, want STALE", got)
	}

	// Neither the NACK nor an unchanged push resends CDS: versions are
	// content-derived and a rejected version waits for a change.
	srv.Push(pushContext(t, store, strings.ReplaceAll(services, "name: a,", "name: c,")))
	recv := make(chan *discoveryv3.DiscoveryResponse, 1)
	go func() {
		r, err := stream.Recv()
		if err == nil {
			recv <- r
		}
	}()
	select {
	case r := <-recv:
		t.Errorf("unchanged config resent CDS version %s", r.GetVersionInfo())
	case <-time.After(300 * time.Millisecond):
	}
}

func eventually(t *testing.T, f func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if f() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}
