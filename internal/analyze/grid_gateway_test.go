package analyze

import "testing"

const ingressWorkload = `apiVersion: v1
kind: Pod
metadata:
  name: ingress-pod
  namespace: istio-system
  labels: {istio: ingressgateway, app: istio-ingressgateway}
spec:
  containers: [{name: istio-proxy, image: skein}]
---
apiVersion: v1
kind: Secret
metadata: {name: good-cert, namespace: istio-system}
type: kubernetes.io/tls
data: {tls.crt: YQ==, tls.key: YQ==}
`

func gateway(name, ns, selector, servers string) string {
	return "---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: " + name + ", namespace: " + ns + "}\nspec:\n  selector: {" + selector + "}\n  servers:\n" + servers
}

func TestGridGateways(t *testing.T) {
	http80 := func(hosts string) string {
		return "  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [" + hosts + "]\n"
	}
	tls := func(cred string) string {
		return "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [\"*\"]\n    tls: {mode: SIMPLE, credentialName: " + cred + "}\n"
	}
	runGrid(t, []gridCase{
		{
			name:  "gatewayNoWorkload",
			codes: []string{"IST0101"},
			yaml:  ingressWorkload + gateway("httpbin-gateway", "default", "istio: nothing", http80("\"*\"")) + gateway("ok", "default", "istio: ingressgateway", http80("\"*\"")),
			want:  []string{"IST0101 Gateway default/httpbin-gateway"},
		},
		{
			name:  "gatewaySecret",
			codes: []string{"IST0101"},
			yaml: ingressWorkload + `---
apiVersion: v1
kind: Secret
metadata: {name: elsewhere-cert, namespace: default}
type: kubernetes.io/tls
data: {tls.crt: YQ==, tls.key: YQ==}
` + gateway("defaultgateway-bogus-credential-name", "default", "istio: ingressgateway", tls("bogus")) +
				gateway("customgateway-wrongnamespace", "default", "istio: ingressgateway", tls("elsewhere-cert")) +
				gateway("defaultgateway", "default", "istio: ingressgateway", tls("good-cert")),
			want: []string{
				"IST0101 Gateway default/defaultgateway-bogus-credential-name",
				"IST0101 Gateway default/customgateway-wrongnamespace",
			},
		},
		{
			name:  "conflicting gateways detect",
			codes: []string{"IST0145"},
			yaml:  ingressWorkload + gateway("alpha", "default", "istio: ingressgateway", http80("foo.bar")) + gateway("beta", "default", "istio: ingressgateway", http80("foo.bar")),
			want:  []string{"IST0145 Gateway default/alpha", "IST0145 Gateway default/beta"},
		},
		{
			name:  "gateways with different port are non-conflicting",
			codes: []string{"IST0145"},
			yaml: ingressWorkload + gateway("alpha", "default", "istio: ingressgateway", http80("foo.bar")) +
				gateway("beta", "default", "istio: ingressgateway", "  - port: {number: 81, name: http, protocol: HTTP}\n    hosts: [foo.bar]\n"),
		},
		{
			name:  "conflicting gateways with multiple port declarations",
			codes: []string{"IST0145"},
			yaml: ingressWorkload + gateway("alpha", "default", "istio: ingressgateway", http80("foo.bar")+"  - port: {number: 81, name: http2, protocol: HTTP}\n    hosts: [\"*\"]\n") +
				gateway("beta", "default", "istio: ingressgateway", "  - port: {number: 81, name: http, protocol: HTTP}\n    hosts: [baz.bar]\n"),
			want: []string{"IST0145 Gateway default/alpha", "IST0145 Gateway default/beta"},
		},
		{
			name:  "conflicting gateways detect by sub selector",
			codes: []string{"IST0145"},
			yaml: ingressWorkload + gateway("alpha", "default", "istio: ingressgateway", http80("foo.bar")) +
				gateway("beta", "default", "istio: ingressgateway, app: istio-ingressgateway", http80("\"*.bar\"")),
			want: []string{"IST0145 Gateway default/alpha", "IST0145 Gateway default/beta"},
		},
		{
			name:  "different hosts do not conflict",
			codes: []string{"IST0145"},
			yaml:  ingressWorkload + gateway("alpha", "default", "istio: ingressgateway", http80("a.bar")) + gateway("beta", "default", "istio: ingressgateway", http80("b.bar")),
		},
		{
			name:  "certificate duplication in Gateway",
			codes: []string{"IST0138"},
			yaml: ingressWorkload + gateway("gateway-01-test-01", "istio-system", "istio: ingressgateway", tls("good-cert")) +
				gateway("gateway-02-test-01", "istio-system", "istio: ingressgateway", tls("good-cert")) +
				gateway("gateway-03-other-cert", "istio-system", "istio: ingressgateway", "  - port: {number: 8443, name: https, protocol: HTTPS}\n    hosts: [\"x.test\"]\n    tls: {mode: SIMPLE, credentialName: other-cert}\n") +
				gateway("gateway-04-passthrough", "istio-system", "istio: ingressgateway", "  - port: {number: 9443, name: tls, protocol: TLS}\n    hosts: [\"y.test\"]\n    tls: {mode: PASSTHROUGH}\n"),
			want: []string{"IST0138 Gateway istio-system/gateway-01-test-01", "IST0138 Gateway istio-system/gateway-02-test-01"},
		},
	})
}
