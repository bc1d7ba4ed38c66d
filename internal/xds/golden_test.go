package xds_test

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"github.com/skein-mesh/skein/internal/config"
	"github.com/skein-mesh/skein/internal/configstore"
	"github.com/skein-mesh/skein/internal/model"
	"github.com/skein-mesh/skein/internal/registry"
	"github.com/skein-mesh/skein/internal/xds"
)

var update = flag.Bool("update", false, "rewrite golden files")

var (
	productpage = &model.Proxy{ID: "sidecar~127.1.0.6~productpage-v1-fffff.bookinfo~bookinfo.svc.cluster.local", Type: model.SidecarProxy,
		IP: "127.1.0.6", PodName: "productpage-v1-fffff", Namespace: "bookinfo", AppIP: "127.2.0.6",
		Labels: map[string]string{"app": "productpage", "version": "v1"}}
	reviewsV1 = &model.Proxy{ID: "sidecar~127.1.0.3~reviews-v1-ccccc.bookinfo~bookinfo.svc.cluster.local", Type: model.SidecarProxy,
		IP: "127.1.0.3", PodName: "reviews-v1-ccccc", Namespace: "bookinfo", AppIP: "127.2.0.3",
		Labels: map[string]string{"app": "reviews", "version": "v1"}}
	ingress = &model.Proxy{ID: "router~127.1.0.100~istio-ingressgateway-ggggg.istio-system~istio-system.svc.cluster.local", Type: model.Router,
		IP: "127.1.0.100", PodName: "istio-ingressgateway-ggggg", Namespace: "istio-system",
		Labels: map[string]string{"app": "istio-ingressgateway", "istio": "ingressgateway"}}
)

// TestGolden translates Istio YAML for a set of proxies and compares every
// generated resource with testdata/<case>.<proxy>.golden.yaml.
func TestGolden(t *testing.T) {
	cases := []struct {
		name    string
		files   []string
		proxies map[string]*model.Proxy
	}{
		{"bookinfo-default", []string{"bookinfo-mesh.yaml"}, map[string]*model.Proxy{"productpage": productpage, "reviews-v1": reviewsV1, "ingress": ingress}},
		{"tutorial-routing", []string{"bookinfo-mesh.yaml", "tutorial-routing.yaml"}, map[string]*model.Proxy{"productpage": productpage, "ingress": ingress}},
		{"vs-features", []string{"bookinfo-mesh.yaml", "vs-features.yaml"}, map[string]*model.Proxy{"productpage": productpage, "reviews-v1": reviewsV1}},
		{"authz", []string{"bookinfo-mesh.yaml", "authz.yaml"}, map[string]*model.Proxy{"productpage": productpage}},
		{"authz-gateway", []string{"bookinfo-mesh.yaml", "tutorial-routing.yaml", "authz.yaml"}, map[string]*model.Proxy{"ingress": ingress}},
		{"vs-faults", []string{"bookinfo-mesh.yaml", "vs-faults.yaml"}, map[string]*model.Proxy{"productpage": productpage, "reviews-v1": reviewsV1, "ingress": ingress}},
		{"mtls-strict", []string{"bookinfo-mesh.yaml", "mtls-strict.yaml"}, map[string]*model.Proxy{"productpage": productpage, "reviews-v1": reviewsV1}},
		{"dr-tls", []string{"bookinfo-mesh.yaml", "dr-tls.yaml"}, map[string]*model.Proxy{"productpage": productpage}},
		{"gateway-tls", []string{"bookinfo-mesh.yaml", "gateway-tls.yaml"}, map[string]*model.Proxy{"ingress": ingress}},
		{"traffic-policy", []string{"bookinfo-mesh.yaml", "traffic-policy.yaml"}, map[string]*model.Proxy{"productpage": productpage}},
		{"protocols", []string{"bookinfo-mesh.yaml", "protocols.yaml"}, map[string]*model.Proxy{"productpage": productpage, "reviews-v1": reviewsV1}},
		{"sidecar-scope", []string{"bookinfo-mesh.yaml", "sidecar-scope.yaml"}, map[string]*model.Proxy{"productpage": productpage, "reviews-v1": reviewsV1, "ingress": ingress}},
		{"egress", []string{"bookinfo-mesh.yaml", "egress.yaml"}, map[string]*model.Proxy{"productpage": productpage, "egressgateway": {ID: "router~127.1.0.101~istio-egressgateway-eeeee.istio-system~istio-system.svc.cluster.local", Type: model.Router, IP: "127.1.0.101", PodName: "istio-egressgateway-eeeee", Namespace: "istio-system", Labels: map[string]string{"app": "istio-egressgateway", "istio": "egressgateway"}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pc := pushContext(t, tc.files...)
			for pname, proxy := range tc.proxies {
				got := render(t, xds.Generate(pc, proxy))
				path := filepath.Join("testdata", tc.name+"."+pname+".golden.yaml")
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
					t.Errorf("%s differs from golden file %s; run `go test ./internal/xds -update` and review the diff", pname, path)
				}
			}
		})
	}
}

func pushContext(t *testing.T, files ...string) *model.PushContext {
	t.Helper()
	return pushContextEdited(t, nil, files...)
}

// pushContextEdited is pushContext with the loaded objects changed by edit
// before they are stored (a store's objects are immutable afterwards).
func pushContextEdited(t *testing.T, edit func([]*config.Object), files ...string) *model.PushContext {
	t.Helper()
	var paths []string
	for _, f := range files {
		paths = append(paths, filepath.Join("testdata", f))
	}
	objs, _, err := config.LoadFiles(paths, "")
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(objs)
	}
	store := configstore.OpenMemory()
	if _, err := store.Apply(objs); err != nil {
		t.Fatal(err)
	}
	snap := store.Snapshot()
	return model.NewPushContext("1", snap, registry.Build(snap, "cluster.local"), "cluster.local", "istio-system")
}

// render turns resources into stable YAML: protojson, re-encoded so its
// whitespace is deterministic.
func render(t *testing.T, res *xds.Resources) []byte {
	t.Helper()
	doc := map[string]any{}
	add := func(key string, m proto.Message) {
		b, err := protojson.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
		list, _ := doc[key].([]any)
		doc[key] = append(list, v)
	}
	for _, l := range res.Listeners {
		add("listeners", l)
	}
	for _, r := range res.Routes {
		add("routes", r)
	}
	for _, c := range res.Clusters {
		add("clusters", c)
	}
	for _, e := range res.Endpoints {
		add("endpoints", e)
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

// TestRouteDecisions spot-checks the golden output for the acceptance
// scenarios, so a bad -update cannot silently bless a regression.
func TestRouteDecisions(t *testing.T) {
	pc := pushContext(t, "bookinfo-mesh.yaml", "tutorial-routing.yaml")
	res := xds.Generate(pc, productpage)
	var reviews string
	for _, rc := range res.Routes {
		if rc.GetName() != "9080" {
			continue
		}
		for _, vh := range rc.GetVirtualHosts() {
			if vh.GetName() == "reviews.bookinfo.svc.cluster.local:9080" {
				b, _ := protojson.Marshal(vh)
				reviews = string(b)
			}
		}
	}
	for _, want := range []string{`"jason"`, "outbound|9080|v2|reviews.bookinfo.svc.cluster.local", "outbound|9080|v1|reviews.bookinfo.svc.cluster.local"} {
		if !strings.Contains(reviews, want) {
			t.Errorf("reviews virtual host lacks %s: %s", want, reviews)
		}
	}
	gw := xds.Generate(pc, ingress)
	if len(gw.Listeners) != 1 || gw.Listeners[0].GetName() != "0.0.0.0_8080" {
		t.Fatalf("gateway listeners = %v, want one 0.0.0.0_8080 (port 80 mapped through the gateway Service's targetPort)", gw.Listeners)
	}
	if len(gw.Routes) != 1 || gw.Routes[0].GetName() != "http.8080" || len(gw.Routes[0].GetVirtualHosts()[0].GetRoutes()) != 5 {
		t.Fatalf("gateway routes = %v, want http.8080 with 5 routes", gw.Routes)
	}
	eds := map[string]int{}
	for _, cla := range res.Endpoints {
		n := 0
		for _, l := range cla.GetEndpoints() {
			n += len(l.GetLbEndpoints())
		}
		eds[cla.GetClusterName()] = n
	}
	for cluster, want := range map[string]int{
		"outbound|9080||reviews.bookinfo.svc.cluster.local":   3,
		"outbound|9080|v2|reviews.bookinfo.svc.cluster.local": 1,
		"outbound|9080||details.bookinfo.svc.cluster.local":   1,
	} {
		if eds[cluster] != want {
			t.Errorf("EDS %s has %d endpoints, want %d", cluster, eds[cluster], want)
		}
	}
}
