package xdsserver

import (
	"bytes"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// TestCodecWritesDeltaResponse: an encodedDelta is byte for byte
// proto.Marshal of the DeltaDiscoveryResponse it stands for.
func TestCodecWritesDeltaResponse(t *testing.T) {
	pm := &pushMemo{}
	ts, err := pm.set(resourcev3.ClusterType, []types.Resource{
		&clusterv3.Cluster{Name: "outbound|80||a", ConnectTimeout: durationpb.New(1e9)},
		&clusterv3.Cluster{Name: "outbound|80||b"}})
	if err != nil {
		t.Fatal(err)
	}
	enc := &encodedDelta{version: "7-abc", typeURL: resourcev3.ClusterType, nonce: "3", removed: []string{"outbound|80||c", "outbound|80||d"}}
	want := &discoveryv3.DeltaDiscoveryResponse{SystemVersionInfo: "7-abc", TypeUrl: resourcev3.ClusterType, Nonce: "3", RemovedResources: enc.removed}
	for _, m := range ts.items {
		enc.chunks = append(enc.chunks, m.deltaEntry())
		want.Resources = append(want.Resources, &discoveryv3.Resource{Name: m.name, Version: resourceVersion(m), Resource: m.any})
	}
	got, err := newCodec().Marshal(enc)
	if err != nil {
		t.Fatal(err)
	}
	wantB, err := proto.MarshalOptions{Deterministic: true}.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Materialize(), wantB) {
		var back discoveryv3.DeltaDiscoveryResponse
		err := proto.Unmarshal(got.Materialize(), &back)
		t.Fatalf("encoded delta response differs from proto.Marshal (decodes as %v, %v)", &back, err)
	}
}
