package model_test

import (
	"strings"
	"testing"

	"github.com/skein-mesh/skein/internal/config"
	"github.com/skein-mesh/skein/internal/configstore"
	"github.com/skein-mesh/skein/internal/model"
)

func TestPeerAuthnMode(t *testing.T) {
	const (
		mesh = `apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
`
		nsDisable = `apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: default, namespace: bookinfo}
spec: {mtls: {mode: DISABLE}}
`
		nsUnset = `apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: default, namespace: bookinfo}
spec: {}
`
		workload = `apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: reviews, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: reviews}}
  mtls: {mode: PERMISSIVE}
  portLevelMtls:
    9080: {mode: DISABLE}
    9090: {mode: UNSET}
`
		workloadUnset = `apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: reviews, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: reviews}}
  portLevelMtls:
    9080: {mode: STRICT}
`
		otherNS = `apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: default, namespace: other}
spec: {mtls: {mode: DISABLE}}
`
	)
	reviews := map[string]string{"app": "reviews"}
	ratings := map[string]string{"app": "ratings"}
	for _, tc := range []struct {
		name   string
		docs   []string
		ns     string
		labels map[string]string
		port   uint32
		want   model.MTLSMode
	}{
		{"no policy", nil, "bookinfo", reviews, 9080, model.MTLSPermissive},
		{"mesh strict", []string{mesh}, "bookinfo", reviews, 9080, model.MTLSStrict},
		{"namespace beats mesh", []string{mesh, nsDisable}, "bookinfo", ratings, 9080, model.MTLSDisable},
		{"namespace unset inherits mesh", []string{mesh, nsUnset}, "bookinfo", ratings, 9080, model.MTLSStrict},
		{"other namespace ignored", []string{mesh, otherNS}, "bookinfo", ratings, 9080, model.MTLSStrict},
		{"workload beats namespace", []string{mesh, nsDisable, workload}, "bookinfo", reviews, 9091, model.MTLSPermissive},
		{"workload selector must match", []string{mesh, nsDisable, workload}, "bookinfo", ratings, 9091, model.MTLSDisable},
		{"port level overrides", []string{mesh, workload}, "bookinfo", reviews, 9080, model.MTLSDisable},
		{"port level unset inherits workload", []string{mesh, workload}, "bookinfo", reviews, 9090, model.MTLSPermissive},
		{"workload unset inherits namespace", []string{nsDisable, workloadUnset}, "bookinfo", reviews, 9091, model.MTLSDisable},
		{"port level strict on unset workload", []string{nsDisable, workloadUnset}, "bookinfo", reviews, 9080, model.MTLSStrict},
		{"root namespace workload", []string{mesh}, "istio-system", map[string]string{"istio": "ingressgateway"}, 8080, model.MTLSStrict},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, _, err := config.LoadReader("test.yaml", strings.NewReader(strings.Join(tc.docs, "---\n")), "")
			if err != nil {
				t.Fatal(err)
			}
			store := configstore.OpenMemory()
			if len(objs) > 0 {
				if _, err := store.Apply(objs); err != nil {
					t.Fatal(err)
				}
			}
			pc := model.NewPushContext("1", store.Snapshot(), nil, "cluster.local", "istio-system")
			if got := pc.PeerAuthnMode(tc.ns, tc.labels, tc.port); got != tc.want {
				t.Errorf("PeerAuthnMode(%s, %v, %d) = %s, want %s", tc.ns, tc.labels, tc.port, got, tc.want)
			}
		})
	}
}
