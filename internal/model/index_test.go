package model_test

import (
	"slices"
	"strings"
	"testing"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/skein-mesh/skein/internal/config"
	"github.com/skein-mesh/skein/internal/configstore"
	"github.com/skein-mesh/skein/internal/model"
)

func mirrorStore(t *testing.T, yaml string) *configstore.Store {
	t.Helper()
	objs, _, err := config.LoadReader("t.yaml", strings.NewReader(yaml), "")
	if err != nil {
		t.Fatal(err)
	}
	store := configstore.OpenMemory()
	if _, err := store.Mirror(objs, nil); err != nil { // keeps creationTimestamp
		t.Fatal(err)
	}
	return store
}

const indexConfig = `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: a-newest, namespace: bookinfo, creationTimestamp: "2026-01-01T00:05:00Z"}
spec: {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: b-oldest, namespace: bookinfo, creationTimestamp: "2026-01-01T00:01:00Z"}
spec: {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mesh, namespace: istio-system, creationTimestamp: "2026-01-01T00:03:00Z"}
spec: {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: elsewhere, namespace: default, creationTimestamp: "2026-01-01T00:00:00Z"}
spec: {}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: a-default, namespace: bookinfo}
spec: {outboundTrafficPolicy: {mode: ALLOW_ANY}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: b-reviews, namespace: bookinfo}
spec:
  workloadSelector: {labels: {app: reviews}}
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: mesh, namespace: istio-system}
spec: {egress: [{hosts: ["./*"]}]}
`

func TestIndexesOrderAndPrecedence(t *testing.T) {
	store := mirrorStore(t, indexConfig)
	snap := store.Snapshot()
	before := slices.Clone(snap.List("AuthorizationPolicy"))
	pc := model.NewPushContext("1", snap, nil, "cluster.local", "istio-system")

	var got []string
	for _, o := range pc.AuthorizationPolicies("bookinfo") {
		got = append(got, o.Meta.Namespace+"/"+o.Meta.Name)
	}
	if want := []string{"bookinfo/b-oldest", "istio-system/mesh", "bookinfo/a-newest"}; !slices.Equal(got, want) {
		t.Errorf("AuthorizationPolicies(bookinfo) = %v, want root and namespace merged oldest first %v", got, want)
	}
	if !slices.Equal(snap.List("AuthorizationPolicy"), before) {
		t.Error("indexing reordered the store snapshot's slice")
	}

	for _, tc := range []struct {
		ns     string
		labels map[string]string
		want   networking.OutboundTrafficPolicy_Mode
		egress bool // the root namespace's Sidecar (the only one with egress)
		none   bool
	}{
		{ns: "bookinfo", labels: map[string]string{"app": "reviews"}, want: networking.OutboundTrafficPolicy_REGISTRY_ONLY},
		{ns: "bookinfo", labels: map[string]string{"app": "ratings"}, want: networking.OutboundTrafficPolicy_ALLOW_ANY},
		{ns: "default", egress: true},
		{ns: "istio-system", egress: true},
	} {
		sc := pc.SidecarFor(&model.Proxy{Namespace: tc.ns, Labels: tc.labels})
		switch {
		case sc == nil:
			t.Errorf("%s %v: no Sidecar", tc.ns, tc.labels)
		case tc.egress != (len(sc.GetEgress()) > 0):
			t.Errorf("%s %v: got %v, want the root namespace's: %v", tc.ns, tc.labels, sc, tc.egress)
		case !tc.egress && sc.GetOutboundTrafficPolicy().GetMode() != tc.want:
			t.Errorf("%s %v: mode %v, want %v", tc.ns, tc.labels, sc.GetOutboundTrafficPolicy().GetMode(), tc.want)
		}
	}
}

func TestEnvoyFilterCompiledOnce(t *testing.T) {
	store := mirrorStore(t, `
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: good, namespace: bookinfo}
spec:
  configPatches:
  - applyTo: CLUSTER
    match: {proxy: {proxyVersion: '^1\.2.*'}}
    patch: {operation: MERGE, value: {connect_timeout: 2s}}
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: bad-regex, namespace: bookinfo}
spec:
  configPatches:
  - applyTo: CLUSTER
    match: {proxy: {proxyVersion: '('}}
    patch: {operation: MERGE, value: {connect_timeout: 2s}}
`)
	pc := model.NewPushContext("1", store.Snapshot(), nil, "cluster.local", "istio-system")
	ws := pc.EnvoyFilters(&model.Proxy{Namespace: "bookinfo"})
	if len(ws) != 2 {
		t.Fatalf("got %d EnvoyFilters, want 2", len(ws))
	}
	for _, w := range ws {
		switch w.Name {
		case "good":
			if w.Err != nil || len(w.Patches) != 1 {
				t.Fatalf("good: err %v, %d patches", w.Err, len(w.Patches))
			}
			p := w.Patches[0]
			if p.ProxyVersion == nil || !p.ProxyVersion.MatchString("1.24.0") || p.Value == nil || !p.Supported {
				t.Errorf("good: patch not compiled: %+v", p)
			}
		case "bad-regex":
			if w.Err == nil || !strings.Contains(w.Err.Error(), "proxyVersion") {
				t.Errorf("bad-regex: err %v, want one naming proxyVersion", w.Err)
			}
		}
	}
	// The same push hands every proxy the same compiled filter.
	if again := pc.EnvoyFilters(&model.Proxy{Namespace: "bookinfo"}); again[0] != ws[0] {
		t.Error("EnvoyFilters compiled again for a second proxy")
	}
}
