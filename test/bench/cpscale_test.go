package main

import (
	"testing"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
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
