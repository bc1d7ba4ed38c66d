package xds_test

import (
	"strings"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/skein-mesh/skein/internal/config"
	"github.com/skein-mesh/skein/internal/configstore"
	"github.com/skein-mesh/skein/internal/model"
	"github.com/skein-mesh/skein/internal/registry"
	"github.com/skein-mesh/skein/internal/xds"
)

// TestOutboundTrafficPolicy checks which outboundTrafficPolicy a sidecar
// gets: the mesh config's (ALLOW_ANY by default), overridden by the root
// namespace's Sidecar, the namespace's, then one selecting the workload.
func TestOutboundTrafficPolicy(t *testing.T) {
	const registryOnlyMesh = `apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: "outboundTrafficPolicy: {mode: REGISTRY_ONLY}"
`
	sidecar := func(ns, name, selector, mode string) string {
		return `apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: ` + name + `, namespace: ` + ns + `}
spec:
  ` + selector + `
  outboundTrafficPolicy: {mode: ` + mode + `}
`
	}
	tests := []struct {
		name  string
		yaml  []string
		block bool // want block_all (502) rather than allow_any
	}{
		{"default is ALLOW_ANY", nil, false},
		{"mesh REGISTRY_ONLY", []string{registryOnlyMesh}, true},
		{"root Sidecar overrides mesh", []string{registryOnlyMesh, sidecar("istio-system", "default", "", "ALLOW_ANY")}, false},
		{"namespace Sidecar overrides root", []string{sidecar("istio-system", "default", "", "ALLOW_ANY"), sidecar("bookinfo", "default", "", "REGISTRY_ONLY")}, true},
		{"workload Sidecar overrides namespace", []string{sidecar("bookinfo", "default", "", "REGISTRY_ONLY"), sidecar("bookinfo", "pp", "workloadSelector: {labels: {app: productpage}}", "ALLOW_ANY")}, false},
		{"other workload's Sidecar does not apply", []string{sidecar("bookinfo", "rv", "workloadSelector: {labels: {app: reviews}}", "REGISTRY_ONLY")}, false},
		{"other namespace's Sidecar does not apply", []string{sidecar("default", "default", "", "REGISTRY_ONLY")}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pc := pushContextWith(t, strings.Join(tc.yaml, "---\n"))
			res := xds.Generate(pc, productpage)
			var rc *routev3.RouteConfiguration
			for _, r := range res.Routes {
				if r.GetName() == "9080" {
					rc = r
				}
			}
			if rc == nil {
				t.Fatal("no route 9080")
			}
			last := rc.GetVirtualHosts()[len(rc.GetVirtualHosts())-1]
			wantVH, wantChain := "allow_any", xds.PassthroughFilterChain
			if tc.block {
				wantVH, wantChain = "block_all", xds.BlackHoleFilterChain
			}
			if last.GetName() != wantVH {
				t.Errorf("catch-all virtual host = %s, want %s", last.GetName(), wantVH)
			}
			if tc.block && last.GetRoutes()[0].GetDirectResponse().GetStatus() != 502 {
				t.Errorf("block_all answers %v, want 502", last.GetRoutes()[0].GetAction())
			}
			for _, l := range res.Listeners {
				if l.GetName() == xds.VirtualOutboundListener {
					if got := l.GetFilterChains()[0].GetName(); got != wantChain {
						t.Errorf("virtualOutbound chain = %s, want %s", got, wantChain)
					}
				}
			}
		})
	}
}

// pushContextWith is pushContext over the Bookinfo mesh plus inline YAML.
func pushContextWith(t *testing.T, extra string) *model.PushContext {
	t.Helper()
	objs, _, err := config.LoadFiles([]string{"testdata/bookinfo-mesh.yaml"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(extra) != "" {
		more, _, err := config.LoadReader("extra.yaml", strings.NewReader(extra), "")
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, more...)
	}
	store := configstore.OpenMemory()
	if _, err := store.Apply(objs); err != nil {
		t.Fatal(err)
	}
	snap := store.Snapshot()
	return model.NewPushContext("1", snap, registry.Build(snap, "cluster.local"), "cluster.local", "istio-system")
}
