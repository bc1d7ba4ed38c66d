package xds_test

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/skein-mesh/skein/internal/config"
	"github.com/skein-mesh/skein/internal/configstore"
	"github.com/skein-mesh/skein/internal/model"
	"github.com/skein-mesh/skein/internal/registry"
	"github.com/skein-mesh/skein/internal/xds"
)

// cacheInputs is config where each input of the shared part's key changes
// the result: a DestinationRule only namespace "other" sees, a VirtualService
// match on sourceLabels, a Sidecar selecting by label, and an EnvoyFilter
// (applied per proxy, after sharing) selecting by a label the key ignores.
const cacheInputs = `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews-other, namespace: other}
spec:
  host: reviews.bookinfo.svc.cluster.local
  exportTo: ["."]
  trafficPolicy: {connectionPool: {tcp: {maxConnections: 7}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
  http:
  - match: [{sourceLabels: {version: v1}}]
    route: [{destination: {host: ratings}}]
  - route: [{destination: {host: reviews}}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: locked, namespace: bookinfo}
spec:
  workloadSelector: {labels: {lock: "yes"}}
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: slow-details, namespace: bookinfo}
spec:
  workloadSelector: {labels: {patched: "yes"}}
  configPatches:
  - applyTo: CLUSTER
    match:
      context: SIDECAR_OUTBOUND
      cluster: {portNumber: 9080, service: details.bookinfo.svc.cluster.local}
    patch:
      operation: MERGE
      value: {connect_timeout: 2s}
`

func cachePushContext(t testing.TB, version, extra string) *model.PushContext {
	t.Helper()
	path := filepath.Join(t.TempDir(), "extra.yaml")
	if err := os.WriteFile(path, []byte(extra), 0o644); err != nil {
		t.Fatal(err)
	}
	objs, _, err := config.LoadFiles([]string{filepath.Join("testdata", "bookinfo-mesh.yaml"), path}, "")
	if err != nil {
		t.Fatal(err)
	}
	store := configstore.OpenMemory()
	if _, err := store.Apply(objs); err != nil {
		t.Fatal(err)
	}
	snap := store.Snapshot()
	return model.NewPushContext(version, snap, registry.Build(snap, "cluster.local"), "cluster.local", "istio-system")
}

// baseProxy is a sidecar in bookinfo that no selector in cacheInputs picks.
func baseProxy() *model.Proxy {
	return &model.Proxy{ID: "sidecar~127.1.0.6~productpage-v1-fffff.bookinfo~bookinfo.svc.cluster.local", Type: model.SidecarProxy,
		IP: "127.1.0.6", PodName: "productpage-v1-fffff", Namespace: "bookinfo", AppIP: "127.2.0.6",
		Labels: map[string]string{"app": "productpage", "version": "v2"}, ServiceAccount: "bookinfo-productpage",
		WorkloadName: "productpage-v1", Version: "1.0"}
}

func withLabel(k, v string) func(*model.Proxy) {
	return func(p *model.Proxy) {
		p.Labels = maps.Clone(p.Labels)
		p.Labels[k] = v
	}
}

// named renders the resource called name from res, "" when absent.
func named(t *testing.T, res *xds.Resources, name string) string {
	t.Helper()
	var msgs []proto.Message
	for _, c := range res.Clusters {
		if c.GetName() == name {
			msgs = append(msgs, c)
		}
	}
	for _, r := range res.Routes {
		if r.GetName() == name {
			msgs = append(msgs, r)
		}
	}
	out := ""
	for _, m := range msgs {
		b, err := protojson.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		out += string(b)
	}
	return out
}

// TestSharedPartKey proves the shared part's key covers every input it
// reads: proxies differing in one such input get different config, and
// proxies differing only in per-pod fields share the same protos.
func TestSharedPartKey(t *testing.T) {
	pc := cachePushContext(t, "1", cacheInputs)
	base := xds.Generate(pc, baseProxy())

	differ := []struct {
		name     string
		change   func(*model.Proxy)
		resource string // a resource the input changes
	}{
		{"namespace", func(p *model.Proxy) { p.Namespace = "other" }, "outbound|9080||reviews.bookinfo.svc.cluster.local"},
		{"VirtualService sourceLabels", withLabel("version", "v1"), "9080"},
		{"Sidecar workloadSelector", withLabel("lock", "yes"), "9080"},
		{"proxy type", func(p *model.Proxy) { p.Type = model.Router }, "9080"},
	}
	for _, tc := range differ {
		t.Run("differ/"+tc.name, func(t *testing.T) {
			p := baseProxy()
			tc.change(p)
			got := xds.Generate(pc, p)
			if before, after := named(t, base, tc.resource), named(t, got, tc.resource); before == after {
				t.Errorf("%s: resource %s unchanged (%s); the cache served another key's config", tc.name, tc.resource, after)
			}
		})
	}

	share := []struct {
		name   string
		change func(*model.Proxy)
	}{
		{"IP and ID", func(p *model.Proxy) {
			p.IP = "127.1.0.99"
			p.ID = "sidecar~127.1.0.99~productpage-v1-zzzzz.bookinfo~bookinfo.svc.cluster.local"
		}},
		{"pod name", func(p *model.Proxy) { p.PodName = "productpage-v1-zzzzz" }},
		{"app IP", func(p *model.Proxy) { p.AppIP = "127.2.0.99" }},
		{"label no selector reads", withLabel("pod-template-hash", "abc")},
		{"service account", func(p *model.Proxy) { p.ServiceAccount = "other" }},
		{"proxy version", func(p *model.Proxy) { p.Version = "2.0" }},
	}
	for _, tc := range share {
		t.Run("share/"+tc.name, func(t *testing.T) {
			p := baseProxy()
			tc.change(p)
			got := xds.Generate(pc, p)
			if len(got.Routes) == 0 || len(got.Endpoints) == 0 || len(got.Clusters) == 0 {
				t.Fatalf("missing resources: %d clusters, %d routes, %d endpoints", len(got.Clusters), len(got.Routes), len(got.Endpoints))
			}
			for i, c := range base.Clusters[:4] {
				if got.Clusters[i] != c {
					t.Errorf("cluster %s not shared", c.GetName())
				}
			}
			if got.Routes[0] != base.Routes[0] {
				t.Errorf("route %s not shared", base.Routes[0].GetName())
			}
			if got.Endpoints[0] != base.Endpoints[0] {
				t.Errorf("endpoints %s not shared", base.Endpoints[0].GetClusterName())
			}
		})
	}
}

// TestSharedPartNotMutatedByEnvoyFilter: a proxy an EnvoyFilter patches
// shares its key with one it does not; the patch (made to copies: such a
// proxy shares nothing) must not leak into the shared protos.
func TestSharedPartNotMutatedByEnvoyFilter(t *testing.T) {
	pc := cachePushContext(t, "1", cacheInputs)
	patched := baseProxy()
	withLabel("patched", "yes")(patched)
	const details = "outbound|9080||details.bookinfo.svc.cluster.local"
	if got := named(t, xds.Generate(pc, patched), details); !strings.Contains(got, `"connectTimeout":"2s"`) {
		t.Fatalf("EnvoyFilter not applied: %s", got)
	}
	if got := named(t, xds.Generate(pc, baseProxy()), details); !strings.Contains(got, `"connectTimeout":"10s"`) {
		t.Fatalf("EnvoyFilter patch leaked into a proxy it does not select: %s", got)
	}
}

// TestSharedPartPerPushContext: a new push context is a new cache.
func TestSharedPartPerPushContext(t *testing.T) {
	pc1 := cachePushContext(t, "1", cacheInputs)
	r1 := named(t, xds.Generate(pc1, baseProxy()), "9080")
	pc2 := cachePushContext(t, "2", cacheInputs+`---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: details, namespace: bookinfo}
spec:
  hosts: [details]
  http:
  - route: [{destination: {host: ratings}}]
`)
	r2 := named(t, xds.Generate(pc2, baseProxy()), "9080")
	if r1 == r2 {
		t.Fatal("a new push context served the previous push's routes")
	}
	if again := named(t, xds.Generate(pc1, baseProxy()), "9080"); again != r1 {
		t.Fatal("the previous push context's routes changed")
	}
}

// BenchmarkGenerate generates config for many sidecars (distinct pods,
// labels and IPs, one namespace) over a push of 1000 services, as one push
// to every connected proxy does.
func BenchmarkGenerate(b *testing.B) {
	const services, proxies = 1000, 200
	var extra string
	for i := range services {
		extra += fmt.Sprintf(`---
apiVersion: v1
kind: Service
metadata: {name: svc-%d, namespace: scale}
spec:
  selector: {app: svc-%d}
  ports: [{name: http, port: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: svc-%d-0, namespace: scale, labels: {app: svc-%d}}
spec: {containers: [{name: app, image: app}]}
status:
  phase: Running
  podIP: 127.10.%d.%d
  conditions: [{type: Ready, status: "True"}]
`, i, i, i, i, i/250, i%250+1)
	}
	ps := make([]*model.Proxy, proxies)
	for i := range ps {
		ip := fmt.Sprintf("127.10.%d.%d", i/250, i%250+1)
		ps[i] = &model.Proxy{ID: fmt.Sprintf("sidecar~%s~svc-%d-0.scale~scale.svc.cluster.local", ip, i), Type: model.SidecarProxy,
			IP: ip, PodName: fmt.Sprintf("svc-%d-0", i), Namespace: "scale", Labels: map[string]string{"app": fmt.Sprintf("svc-%d", i)}}
	}
	b.ReportAllocs()
	version := 0
	for b.Loop() {
		b.StopTimer()
		version++
		pc := cachePushContext(b, fmt.Sprint(version), extra)
		b.StartTimer()
		for _, p := range ps {
			xds.Generate(pc, p)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*proxies), "ns/proxy")
}
