package xds_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	"github.com/skein-mesh/skein/internal/config"
	"github.com/skein-mesh/skein/internal/xds"
)

// TestStatsGolden translates Telemetry metrics overrides, the mesh
// proxyStatsMatcher and stats annotations into the istio.stats filter of
// every connection manager: testdata/stats/<case>.<proxy>.golden.yaml.
func TestStatsGolden(t *testing.T) {
	for _, name := range []string{"overrides"} {
		t.Run(name, func(t *testing.T) {
			// Istio's stats annotations on reviews-v1, as a user sets them.
			annotate := func(objs []*config.Object) {
				i := slices.IndexFunc(objs, func(o *config.Object) bool {
					return o.Key() == config.Key{Kind: "Pod", Namespace: "bookinfo", Name: "reviews-v1-ccccc"}
				})
				if i < 0 {
					t.Fatal("no pod reviews-v1-ccccc in bookinfo-mesh.yaml")
				}
				objs[i].Meta.Annotations = map[string]string{
					"sidecar.istio.io/statsInclusionPrefixes": "",
					"sidecar.istio.io/statsInclusionRegexps":  "http.*rq_total",
				}
			}
			pc := pushContextEdited(t, annotate, "bookinfo-mesh.yaml", "tutorial-routing.yaml", filepath.Join("stats", name+".yaml"))
			for pname, res := range map[string]*xds.Resources{
				"productpage": xds.Generate(pc, productpage), "reviews-v1": xds.Generate(pc, reviewsV1), "ingress": xds.Generate(pc, ingress),
			} {
				got := renderStats(t, res)
				path := filepath.Join("testdata", "stats", name+"."+pname+".golden.yaml")
				if *update {
					if err := os.WriteFile(path, got, 0o644); err != nil {
						t.Fatal(err)
					}
					continue
				}
				want, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("%v (run go test ./internal/xds -update)", err)
				}
				if string(want) != string(got) {
					t.Errorf("%s differs from %s; run `go test ./internal/xds -update` and review the diff", pname, path)
				}
			}
		})
	}
}

// renderStats keeps, per connection manager, the istio.stats filter's
// position and config, plus the translation warnings.
func renderStats(t *testing.T, res *xds.Resources) []byte {
	t.Helper()
	hcms := map[string]any{}
	for _, l := range res.Listeners {
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				var h hcmv3.HttpConnectionManager
				if f.GetTypedConfig().UnmarshalTo(&h) != nil {
					continue
				}
				for i, hf := range h.GetHttpFilters() {
					if hf.GetName() != xds.IstioStatsFilter {
						continue
					}
					b, err := protojson.Marshal(hf.GetTypedConfig())
					if err != nil {
						t.Fatal(err)
					}
					var v any
					if err := json.Unmarshal(b, &v); err != nil {
						t.Fatal(err)
					}
					hcms[l.GetName()+"/"+h.GetStatPrefix()] = map[string]any{"position": i, "config": v}
				}
			}
		}
	}
	doc := map[string]any{"connection_managers": hcms}
	if len(res.Warnings) > 0 {
		doc["warnings"] = res.Warnings
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
