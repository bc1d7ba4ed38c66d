package xds_test

import (
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/skein-mesh/skein/internal/config"
	"github.com/skein-mesh/skein/internal/configstore"
	"github.com/skein-mesh/skein/internal/model"
	"github.com/skein-mesh/skein/internal/registry"
	"github.com/skein-mesh/skein/internal/xds"
)

// TestPerTypeRegeneration: after a VirtualService-only change, a push
// builds routes and reuses the previous push's clusters and endpoints (the
// same resources); a DestinationRule change rebuilds clusters too. Either
// way the result equals a full generation.
func TestPerTypeRegeneration(t *testing.T) {
	store := configstore.OpenMemory()
	store2 := func(objs []*config.Object, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := store.Apply(objs); err != nil {
			t.Fatal(err)
		}
	}
	apply := func(files ...string) {
		t.Helper()
		var paths []string
		for _, f := range files {
			paths = append(paths, filepath.Join("testdata", f))
		}
		objs, _, err := config.LoadFiles(paths, "")
		store2(objs, err)
	}
	push := func(prev *model.PushContext) *model.PushContext {
		snap := store.Snapshot()
		pc := model.NewPushContext("1", snap, registry.Build(snap, "cluster.local"), "cluster.local", "istio-system")
		pc.SetPrevious(prev)
		return pc
	}
	full := func() *xds.Resources { return xds.Generate(push(nil), productpage) }
	counts := func(pc *model.PushContext) [3]int64 {
		b := xds.Builds(pc)
		return [3]int64{b.Clusters.Load(), b.Routes.Load(), b.Endpoints.Load()}
	}

	apply("bookinfo-mesh.yaml")
	pc1 := push(nil)
	r1 := xds.Generate(pc1, productpage)
	if got := counts(pc1); got != [3]int64{1, 1, 1} {
		t.Fatalf("first push built clusters, routes, endpoints %v, want one each", got)
	}

	// VirtualServices only.
	objs, _, err := config.LoadReader("vs.yaml", strings.NewReader(ratingsTimeout), "")
	store2(objs, err)
	pc2 := push(pc1)
	if !pc2.ConfigsUpdated()["VirtualService"] || len(pc2.ConfigsUpdated()) != 1 {
		t.Fatalf("ConfigsUpdated = %v, want only VirtualService", pc2.ConfigsUpdated())
	}
	r2 := xds.Generate(pc2, productpage)
	if got := counts(pc2); got != [3]int64{0, 1, 0} {
		t.Errorf("VirtualService change built clusters, routes, endpoints %v, want routes only", got)
	}
	if r2.Clusters[0] != r1.Clusters[0] || r2.Endpoints[0] != r1.Endpoints[0] {
		t.Error("clusters or endpoints were not the previous push's")
	}
	same(t, "VirtualService change", r2, full())
	if pc1.Previous() != nil {
		t.Error("the replaced push still links to its predecessor")
	}

	// A DestinationRule: clusters and endpoints are rebuilt.
	apply("traffic-policy.yaml")
	pc3 := push(pc2)
	r3 := xds.Generate(pc3, productpage)
	if got := counts(pc3); got[0] != 1 || got[2] != 1 {
		t.Errorf("DestinationRule change built clusters, routes, endpoints %v, want all", got)
	}
	same(t, "DestinationRule change", r3, full())
}

const ratingsTimeout = `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings-timeout, namespace: bookinfo}
spec:
  hosts: [ratings]
  http: [{timeout: 2s, route: [{destination: {host: ratings}}]}]
`

func same(t *testing.T, what string, got, want *xds.Resources) {
	t.Helper()
	if len(got.Clusters) != len(want.Clusters) || len(got.Routes) != len(want.Routes) || len(got.Endpoints) != len(want.Endpoints) {
		t.Fatalf("%s: sizes differ from a full generation", what)
	}
	for i := range got.Clusters {
		if !proto.Equal(got.Clusters[i], want.Clusters[i]) {
			t.Errorf("%s: cluster %s differs from a full generation", what, want.Clusters[i].GetName())
		}
	}
	for i := range got.Routes {
		if !proto.Equal(got.Routes[i], want.Routes[i]) {
			t.Errorf("%s: route %s differs from a full generation", what, want.Routes[i].GetName())
		}
	}
	for i := range got.Endpoints {
		if !proto.Equal(got.Endpoints[i], want.Endpoints[i]) {
			t.Errorf("%s: endpoints %s differ from a full generation", what, want.Endpoints[i].GetClusterName())
		}
	}
}
