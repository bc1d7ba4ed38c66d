package model_test

import (
	"testing"

	"github.com/skein-mesh/skein/internal/model"
)

const egressConfig = `
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: istio-system}
spec: {egress: [{hosts: ["./*"]}]}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: bookinfo}
spec: {egress: [{hosts: ["./*", "istio-system/*", "*/*.example.test"]}]}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: reviews, namespace: bookinfo}
spec:
  workloadSelector: {labels: {app: reviews}}
  egress:
  - port: {number: 9080}
    hosts: ["./ratings.bookinfo.svc.cluster.local"]
  - hosts: ["shop/cart.shop.svc.cluster.local", "~/*"]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: open, namespace: open}
spec: {outboundTrafficPolicy: {mode: REGISTRY_ONLY}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: details, namespace: bookinfo}
spec:
  hosts: [details]
  http: [{route: [{destination: {host: billing.legacy.svc.cluster.local}}]}]
`

// TestEgressScope: which services a sidecar's Sidecar egress hosts import,
// by namespace form (".", "*", name, "~"), wildcard, port-specific
// listener, Sidecar precedence and VirtualService destinations.
func TestEgressScope(t *testing.T) {
	pc := model.NewPushContext("1", mirrorStore(t, egressConfig).Snapshot(), nil, "cluster.local", "istio-system")
	svc := func(host, ns string) *model.Service { return &model.Service{Hostname: host, Namespace: ns} }
	ratings := svc("ratings.bookinfo.svc.cluster.local", "bookinfo")
	gw := svc("istio-ingressgateway.istio-system.svc.cluster.local", "istio-system")
	cart := svc("cart.shop.svc.cluster.local", "shop")
	orders := svc("orders.shop.svc.cluster.local", "shop")
	billing := svc("billing.legacy.svc.cluster.local", "legacy")
	api := svc("api.example.test", "default")
	wild := svc("*.wild.example.test", "default")
	sidecar := func(ns string, labels map[string]string) *model.Proxy {
		return &model.Proxy{Type: model.SidecarProxy, Namespace: ns, Labels: labels}
	}
	productpage := sidecar("bookinfo", map[string]string{"app": "productpage"})
	reviews := sidecar("bookinfo", map[string]string{"app": "reviews"})
	cases := []struct {
		name  string
		proxy *model.Proxy
		svc   *model.Service
		port  uint32
		want  bool
	}{
		{"own namespace", productpage, ratings, 9080, true},
		{"istio-system", productpage, gw, 80, true},
		{"other namespace", productpage, cart, 8080, false},
		{"any namespace, wildcard host", productpage, api, 80, true},
		{"wildcard service host under wildcard", productpage, wild, 80, true},
		{"VirtualService destination: cluster", productpage, billing, 0, true},
		{"selector Sidecar wins: port listener", reviews, ratings, 9080, true},
		{"selector Sidecar wins: other port", reviews, ratings, 9081, false},
		{"selector Sidecar wins: named namespace", reviews, cart, 8080, true},
		{"selector Sidecar: not listed", reviews, orders, 8080, false},
		{"selector Sidecar: not the namespace's", reviews, gw, 80, false},
		{"root Sidecar: dot is the proxy's namespace", sidecar("shop", nil), orders, 8080, true},
		{"root Sidecar: istio-system not imported", sidecar("shop", nil), gw, 80, false},
		{"Sidecar without egress: everything", sidecar("open", nil), billing, 9080, true},
		{"gateways are not scoped", &model.Proxy{Type: model.Router, Namespace: "bookinfo"}, cart, 8080, true},
	}
	for _, tc := range cases {
		es := pc.EgressScope(tc.proxy)
		got := es.Includes(tc.svc)
		if tc.port != 0 {
			got = es.IncludesPort(tc.svc, tc.port)
		}
		if got != tc.want {
			t.Errorf("%s: %s port %d included = %v, want %v", tc.name, tc.svc.Hostname, tc.port, got, tc.want)
		}
	}
}
