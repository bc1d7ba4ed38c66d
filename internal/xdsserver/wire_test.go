package xdsserver

import (
	"bytes"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

// TestCodecWritesDiscoveryResponse checks that what the codec writes for an
// encodedResponse is byte for byte proto.Marshal of the DiscoveryResponse it
// stands for, and decodes as that message.
func TestCodecWritesDiscoveryResponse(t *testing.T) {
	pm := &pushMemo{}
	mustSet := func(typeURL string, items ...types.Resource) *typeSet {
		t.Helper()
		ts, err := pm.set(typeURL, items)
		if err != nil {
			t.Fatal(err)
		}
		return ts
	}
	shared := mustSet(resourcev3.ClusterType,
		&clusterv3.Cluster{Name: "outbound|80||b", ConnectTimeout: durationpb.New(1e9)},
		&clusterv3.Cluster{Name: "outbound|80||a", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}})
	own := mustSet(resourcev3.ClusterType, &clusterv3.Cluster{Name: "inbound|9080||"})
	composite := pm.compose(shared, own)
	if composite == nil || composite.parts == nil {
		t.Fatal("clusters with distinct names did not compose")
	}
	// An empty resource has an Any without a value field.
	empty := mustSet(resourcev3.EndpointType, &endpointv3.ClusterLoadAssignment{}, &endpointv3.ClusterLoadAssignment{ClusterName: "x"})

	c := newCodec()
	for _, tc := range []struct {
		name                    string
		version, typeURL, nonce string
		set                     *typeSet
		filter                  []string // nil: every resource
	}{
		{"plain", "v1-abc", resourcev3.ClusterType, "1", shared, nil},
		{"composite", "v2-def", resourcev3.ClusterType, "17", composite, nil},
		{"filtered", "v2-def", resourcev3.ClusterType, "18", composite, []string{"inbound|9080||", "outbound|80||b"}},
		{"empty value, empty version", "", resourcev3.EndpointType, "3", empty, nil},
		{"no resources", "v3", resourcev3.EndpointType, "4", mustSet(resourcev3.EndpointType), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enc := &encodedResponse{version: tc.version, typeURL: tc.typeURL, nonce: tc.nonce}
			want := &discoveryv3.DiscoveryResponse{VersionInfo: tc.version, TypeUrl: tc.typeURL, Nonce: tc.nonce}
			if tc.filter == nil {
				enc.chunks = tc.set.chunks()
				// A composite set goes out part by part (order does not
				// matter in a state-of-the-world response).
				parts := tc.set.parts
				if parts == nil {
					parts = []*typeSet{tc.set}
				}
				for _, p := range parts {
					want.Resources = append(want.Resources, p.anys...)
				}
			} else {
				_, items := tc.set.filter(tc.filter)
				enc.chunks = [][]byte{encodeItems(items)}
				for _, m := range items {
					want.Resources = append(want.Resources, m.any)
				}
			}
			data, err := c.Marshal(enc)
			if err != nil {
				t.Fatal(err)
			}
			got := data.Materialize()
			wantBytes, err := proto.Marshal(want)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, wantBytes) {
				t.Errorf("codec wrote %d bytes that differ from proto.Marshal's %d", len(got), len(wantBytes))
			}
			// What a proxy decodes, through the same codec's proto path.
			var dec discoveryv3.DiscoveryResponse
			if err := c.Unmarshal(data, &dec); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(&dec, want) {
				t.Errorf("decoded %v, want %v", &dec, want)
			}
			// The resources unpack into what was encoded.
			for i, a := range dec.GetResources() {
				m, err := anypb.UnmarshalNew(a, proto.UnmarshalOptions{})
				if err != nil {
					t.Fatalf("resource %d: %v", i, err)
				}
				if w, _ := want.Resources[i].UnmarshalNew(); !proto.Equal(m, w) {
					t.Errorf("resource %d = %v, want %v", i, m, w)
				}
			}
			data.Free() // must not recycle the shared bytes
			if again := enc.buffers().Materialize(); !bytes.Equal(again, wantBytes) {
				t.Error("the shared bytes changed after gRPC freed a response")
			}
		})
	}
}

// TestComposeRefusesDuplicateNames: a proxy's own cluster named like a
// shared one replaces it, so that list is not composed.
func TestComposeRefusesDuplicateNames(t *testing.T) {
	pm := &pushMemo{}
	shared, _ := pm.set(resourcev3.ClusterType, []types.Resource{&clusterv3.Cluster{Name: "a"}, &clusterv3.Cluster{Name: "b"}})
	own, _ := pm.set(resourcev3.ClusterType, []types.Resource{&clusterv3.Cluster{Name: "b", ConnectTimeout: durationpb.New(2e9)}})
	if ts := pm.compose(shared, own); ts != nil {
		t.Fatalf("composed %d resources with a duplicate name", ts.size())
	}
}
