package main

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/skein-mesh/skein/internal/apiclient"
	"github.com/skein-mesh/skein/internal/discovery"
)

// TestScanSplitResponse checks the simulated proxies' copy-free scan of an
// RDS response split into buffers at every possible boundary: the top-level
// fields come out as proto.Unmarshal gives them, and the marker is found
// wherever a boundary cuts it.
func TestScanSplitResponse(t *testing.T) {
	marker := []byte("bench-1234567")
	want := &discoveryv3.DiscoveryResponse{
		VersionInfo: "v42", TypeUrl: resourcev3.RouteType, Nonce: "7",
		Resources: []*anypb.Any{
			{TypeUrl: resourcev3.RouteType, Value: []byte("route 8080 x-bench-marker " + string(marker) + " end")},
			{TypeUrl: resourcev3.RouteType, Value: []byte("route 9080")},
		},
	}
	b, err := proto.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	for cut1 := 0; cut1 <= len(b); cut1++ {
		cut2 := min(len(b), cut1+5)
		chunks := [][]byte{b[:cut1], b[cut1:cut2], b[cut2:]}
		var got discoveryv3.DiscoveryResponse
		if err := scanTopLevel(chunks, &got); err != nil {
			t.Fatalf("cut at %d/%d: %v", cut1, cut2, err)
		}
		if got.VersionInfo != want.VersionInfo || got.TypeUrl != want.TypeUrl || got.Nonce != want.Nonce || len(got.Resources) != 0 {
			t.Fatalf("cut at %d/%d: got %v", cut1, cut2, &got)
		}
		if !containsAcross(chunks, marker) {
			t.Fatalf("cut at %d/%d: marker not found", cut1, cut2)
		}
		if containsAcross(chunks, []byte("bench-1234568")) {
			t.Fatalf("cut at %d/%d: found a marker that is not there", cut1, cut2)
		}
	}
	if err := scanTopLevel([][]byte{b[:len(b)-1]}, &discoveryv3.DiscoveryResponse{}); err == nil {
		t.Fatal("a truncated response scanned without error")
	}
}

// TestSimProxiesAuthenticate runs the simulated sidecars against an
// in-process control plane as cpscale sets it up: Pods registered and
// tokens issued with the admin token, streams over TLS trusting the mesh
// root. Each sidecar syncs with its own token; one without a token, or
// with another pod's, is refused, so the bench measures authenticated
// streams only.
func TestSimProxiesAuthenticate(t *testing.T) {
	storeDir := filepath.Join(t.TempDir(), "store")
	srv, err := discovery.New(discovery.Options{StoreDir: storeDir, GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	caDir := filepath.Join(filepath.Dir(storeDir), "ca")
	admin, err := apiclient.ReadCredential(filepath.Join(caDir, "admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	api := apiclient.NewWithToken(srv.HTTPAddr(), admin)
	if err := applyDocs(ctx, api, append(registryDocs(2), simProxyPods(2)...)); err != nil {
		t.Fatal(err)
	}
	tokens, err := issueTokens(ctx, api, admin, 2)
	if err != nil {
		t.Fatal(err)
	}
	target, err := newXDSTarget(srv.GRPCAddr(), caDir, false)
	if err != nil {
		t.Fatal(err)
	}

	// connect answers nil once proxy i ACKed CDS, LDS, EDS and RDS.
	connect := func(delta bool, token string, i int) error {
		c, run, err := newSimProxy(delta, target, token, i, &nameCache{}, &markerState{})
		if err != nil {
			return err
		}
		defer c.close()
		go run()
		select {
		case <-c.ready:
			return nil
		case err := <-c.failed:
			return err
		case <-time.After(20 * time.Second):
			return errors.New("no initial sync after 20s")
		}
	}
	for _, delta := range []bool{false, true} {
		t.Run(map[bool]string{false: "sotw", true: "delta"}[delta], func(t *testing.T) {
			for i, tok := range tokens {
				err := connect(delta, tok, i)
				if err != nil {
					t.Fatalf("proxy %d with its token: %v", i, err)
				}
			}
			for _, c := range []struct {
				token string
				want  codes.Code
			}{{"", codes.Unauthenticated}, {tokens[1], codes.PermissionDenied}} {
				if err := connect(delta, c.token, 0); status.Code(err) != c.want {
					t.Errorf("proxy 0 with token %.12q: got %v, want %v", c.token, err, c.want)
				}
			}
		})
	}
}
