package xds_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	"github.com/skein-mesh/skein/internal/model"
	"github.com/skein-mesh/skein/internal/xds"
)

// TestTelemetryGolden translates mesh config and Telemetry tracing and
// access logging, and compares each connection manager's tracing and
// access_log, the collector clusters and the warnings with
// testdata/telemetry/<case>.<proxy>.golden.yaml.
func TestTelemetryGolden(t *testing.T) {
	cases := []struct {
		name      string
		collector string // the built-in trace store's address
		proxies   map[string]*model.Proxy
	}{
		{"local-default", "127.0.0.1:15014", map[string]*model.Proxy{"productpage": productpage, "ingress": ingress}},
		{"providers", "127.0.0.1:15014", map[string]*model.Proxy{"productpage": productpage, "ingress": ingress}},
		{"text-log", "", map[string]*model.Proxy{"productpage": productpage}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pc := pushContext(t, "bookinfo-mesh.yaml", filepath.Join("telemetry", tc.name+".yaml"))
			pc.TraceCollector = tc.collector
			for pname, proxy := range tc.proxies {
				got := renderTelemetry(t, xds.Generate(pc, proxy))
				path := filepath.Join("testdata", "telemetry", tc.name+"."+pname+".golden.yaml")
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

// renderTelemetry keeps the telemetry parts of the resources: per
// connection manager (by stat prefix) its tracing and access_log, the
// clusters that are not EDS (collectors among them) and the warnings.
func renderTelemetry(t *testing.T, res *xds.Resources) []byte {
	t.Helper()
	toAny := func(b []byte, err error) any {
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	hcms := map[string]any{}
	for _, l := range res.Listeners {
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				var h hcmv3.HttpConnectionManager
				if f.GetTypedConfig().UnmarshalTo(&h) != nil {
					continue
				}
				entry := map[string]any{}
				if h.Tracing != nil {
					entry["tracing"] = toAny(protojson.Marshal(h.Tracing))
				}
				for _, al := range h.AccessLog {
					list, _ := entry["access_log"].([]any)
					entry["access_log"] = append(list, toAny(protojson.Marshal(al)))
				}
				hcms[l.GetName()+"/"+h.GetStatPrefix()] = entry
			}
		}
	}
	var clusters []any
	for _, c := range res.Clusters {
		if c.GetType() == clusterv3.Cluster_STATIC || c.GetType() == clusterv3.Cluster_STRICT_DNS {
			if c.GetName() == "BlackHoleCluster" || c.GetLoadAssignment().GetClusterName() == "" {
				continue
			}
			if len(c.GetName()) > 8 && c.GetName()[:8] == "inbound|" {
				continue
			}
			clusters = append(clusters, toAny(protojson.Marshal(c)))
		}
	}
	doc := map[string]any{"connection_managers": hcms}
	if len(clusters) > 0 {
		doc["collector_clusters"] = clusters
	}
	if len(res.Warnings) > 0 {
		doc["warnings"] = res.Warnings
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	y, err := yaml.JSONToYAML(b)
	if err != nil {
		t.Fatal(err)
	}
	return y
}
