// Package xdstest runs a real go-control-plane ADS server (snapshot cache)
// on a loopback port for the proxy's tests, and records what clients send it.
package xdstest

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
)

// Server is a control plane for tests. Snapshots are keyed by node id.
type Server struct {
	Cache cachev3.SnapshotCache

	addr string
	grpc *grpc.Server

	mu       sync.Mutex
	requests []*discoveryv3.DiscoveryRequest
	changed  chan struct{} // closed and replaced on every request
}

// Start serves ADS on addr (e.g. "127.0.0.1:0") until the test ends.
func Start(t testing.TB, addr string) *Server {
	t.Helper()
	s := &Server{Cache: cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil), changed: make(chan struct{})}
	s.serve(t, addr)
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) serve(t testing.TB, addr string) {
	t.Helper()
	var lis net.Listener
	var err error
	// The port of a just-stopped server may need a moment to be reusable.
	for range 50 {
		if lis, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("xdstest: listen %s: %v", addr, err)
	}
	s.addr = lis.Addr().String()
	callbacks := serverv3.CallbackFuncs{StreamRequestFunc: func(_ int64, req *discoveryv3.DiscoveryRequest) error {
		s.mu.Lock()
		s.requests = append(s.requests, req)
		close(s.changed)
		s.changed = make(chan struct{})
		s.mu.Unlock()
		return nil
	}}
	s.grpc = grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(s.grpc, serverv3.NewServer(context.Background(), s.Cache, callbacks))
	go s.grpc.Serve(lis)
}

// Addr is the host:port clients dial.
func (s *Server) Addr() string { return s.addr }

// Stop closes the server and every stream.
func (s *Server) Stop() { s.grpc.Stop() }

// Restart stops the server and starts a new one on the same address with a
// fresh cache, as a restarted control plane would have.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	s.Cache = cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)
	s.serve(t, s.addr)
}

// Resources groups the resources of one snapshot by type.
type Resources struct {
	Clusters, Endpoints, Listeners, Routes []types.Resource
}

// Set publishes a snapshot for nodeID.
func (s *Server) Set(t testing.TB, nodeID, version string, r Resources) {
	t.Helper()
	snap, err := cachev3.NewSnapshot(version, map[resourcev3.Type][]types.Resource{
		resourcev3.ClusterType:  r.Clusters,
		resourcev3.EndpointType: r.Endpoints,
		resourcev3.ListenerType: r.Listeners,
		resourcev3.RouteType:    r.Routes,
	})
	if err != nil {
		t.Fatalf("xdstest: snapshot: %v", err)
	}
	if err := s.Cache.SetSnapshot(context.Background(), nodeID, snap); err != nil {
		t.Fatalf("xdstest: set snapshot: %v", err)
	}
}

// Requests returns every request received so far.
func (s *Server) Requests() []*discoveryv3.DiscoveryRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*discoveryv3.DiscoveryRequest(nil), s.requests...)
}

// WaitRequest waits until a request matching ok has been received and
// returns it; it fails the test after timeout.
func (s *Server) WaitRequest(t testing.TB, timeout time.Duration, ok func(*discoveryv3.DiscoveryRequest) bool) *discoveryv3.DiscoveryRequest {
	t.Helper()
	deadline := time.After(timeout)
	seen := 0
	for {
		s.mu.Lock()
		reqs, changed := s.requests[seen:], s.changed
		seen = len(s.requests)
		s.mu.Unlock()
		for _, r := range reqs {
			if ok(r) {
				return r
			}
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("xdstest: no matching request within %v", timeout)
			return nil
		}
	}
}
