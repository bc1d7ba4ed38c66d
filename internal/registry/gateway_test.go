package registry_test

import "testing"

// TestGatewayEndpointsTakePlaintext: auto mTLS must not send Istio
// certificates to a gateway pod (its Gateway servers speak their own
// protocol), nor to a pod labelled security.istio.io/tlsMode: disabled.
func TestGatewayEndpointsTakePlaintext(t *testing.T) {
	snap := build(t, `apiVersion: v1
kind: Service
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {app: gw}
  ports: [{name: http2, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: egress-1, namespace: istio-system, labels: {app: gw}, annotations: {inject.istio.io/templates: gateway}}
spec:
  containers: [{name: istio-proxy, image: auto}]
status: {phase: Running, podIP: 127.1.0.20, conditions: [{type: Ready, status: "True"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: plain-1, namespace: istio-system, labels: {app: gw, security.istio.io/tlsMode: disabled}}
spec:
  containers: [{name: istio-proxy, image: auto}]
status: {phase: Running, podIP: 127.1.0.21, conditions: [{type: Ready, status: "True"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: sidecar-1, namespace: istio-system, labels: {app: gw}}
spec:
  containers: [{name: app, image: x}, {name: istio-proxy, image: auto}]
status: {phase: Running, podIP: 127.1.0.22, conditions: [{type: Ready, status: "True"}]}
`)
	want := map[string]bool{"127.1.0.20": false, "127.1.0.21": false, "127.1.0.22": true}
	eps := snap.Endpoints("gw.istio-system.svc.cluster.local", 80)
	if len(eps) != len(want) {
		t.Fatalf("got %d endpoints, want %d", len(eps), len(want))
	}
	for _, ep := range eps {
		if ep.HasSidecar != want[ep.Address] {
			t.Errorf("%s (%s): HasSidecar = %v, want %v", ep.Address, ep.WorkloadName, ep.HasSidecar, want[ep.Address])
		}
	}
}
