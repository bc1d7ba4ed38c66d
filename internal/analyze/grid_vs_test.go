package analyze

import "testing"

const reviewsSvc = `apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: twoports, namespace: default}
spec:
  selector: {app: two}
  ports: [{name: http, port: 80}, {name: http-admin, port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: details, namespace: other}
spec:
  selector: {app: details}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: hidden, namespace: hello}
spec:
  hosts: [hidden.example.com]
  exportTo: ["."]
  addresses: [10.1.1.1]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.1.1.1}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: wild, namespace: default}
spec:
  hosts: ["*.wild.example.com"]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: NONE
`

func TestGridVirtualServiceDestinationHosts(t *testing.T) {
	vs := func(name, ns, dest string) string {
		return "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: " + name + ", namespace: " + ns + "}\nspec:\n  hosts: [" + name + ".test]\n  http:\n  - route:\n" + dest
	}
	runGrid(t, []gridCase{{
		name:  "virtualServiceDestinationHosts",
		codes: []string{"IST0101", "IST0112"},
		yaml: reviewsSvc +
			vs("reviews-ok", "default", "    - destination: {host: reviews}\n") +
			vs("reviews-fqdn", "default", "    - destination: {host: reviews.default.svc.cluster.local, port: {number: 9080}}\n") +
			vs("reviews-bogushost", "default", "    - destination: {host: reviews-bogus}\n      weight: 50\n    - destination: {host: reviews-bogus2}\n      weight: 50\n") +
			vs("reviews-bookinfo-other", "default", "    - destination: {host: details}\n") +
			vs("reviews-mirror-bogushost", "default", "    - destination: {host: reviews}\n    mirror: {host: mirror-bogus}\n") +
			vs("reviews-bogusport", "default", "    - destination: {host: reviews, port: {number: 7777}}\n") +
			vs("reviews-2port-missing", "default", "    - destination: {host: twoports}\n") +
			vs("reviews-2port-ok", "default", "    - destination: {host: twoports, port: {number: 80}}\n") +
			vs("cross-namespace-details", "istio-system", "    - destination: {host: details}\n") +
			vs("cross-namespace-fqdn", "istio-system", "    - destination: {host: details.other.svc.cluster.local}\n") +
			vs("hello-export-to-bogus", "world", "    - destination: {host: hidden.example.com}\n") +
			vs("hello-export-to-ok", "hello", "    - destination: {host: hidden.example.com}\n") +
			vs("wildcard-se", "default", "    - destination: {host: api.wild.example.com}\n"),
		want: []string{
			"IST0101 VirtualService default/reviews-bogushost",
			"IST0101 VirtualService default/reviews-bogushost",
			"IST0101 VirtualService default/reviews-bookinfo-other",
			"IST0101 VirtualService default/reviews-mirror-bogushost",
			"IST0101 VirtualService default/reviews-bogusport",
			"IST0112 VirtualService default/reviews-2port-missing",
			"IST0101 VirtualService istio-system/cross-namespace-details",
			"IST0101 VirtualService world/hello-export-to-bogus",
		},
	}})
}

const reviewsDR = `---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
`

func TestGridVirtualServiceDestinationRules(t *testing.T) {
	runGrid(t, []gridCase{{
		name:  "virtualServiceDestinationRules",
		codes: []string{"IST0101"},
		yaml: reviewsSvc + reviewsDR + `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-ok, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 50
    - destination: {host: reviews.default.svc.cluster.local, subset: v2}
      weight: 50
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-bogussubset, namespace: default}
spec:
  hosts: [reviews.a]
  http:
  - route:
    - destination: {host: reviews, subset: bogus}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-mirror-bogussubset, namespace: default}
spec:
  hosts: [reviews.b]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
    mirror: {host: reviews, subset: bogus}
`,
		want: []string{
			"IST0101 VirtualService default/reviews-bogussubset",
			"IST0101 VirtualService default/reviews-mirror-bogussubset",
		},
	}})
}

func TestGridVirtualServiceGateways(t *testing.T) {
	gw := `---
apiVersion: apps/v1
kind: Deployment
metadata: {name: ingress, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  template:
    metadata: {labels: {istio: ingressgateway}}
    spec: {containers: [{name: istio-proxy, image: skein}]}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: httpbin-gateway, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*.httpbin.example.com"]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: scoped, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["foo/*"]
`
	runGrid(t, []gridCase{{
		name:  "virtualServiceGateways",
		codes: []string{"IST0101", "IST0132"},
		yaml: reviewsSvc + gw + `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin, namespace: default}
spec:
  hosts: [www.example.com]
  gateways: [httpbin-gateway]
  http: [{route: [{destination: {host: reviews}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin-ok, namespace: default}
spec:
  hosts: [a.httpbin.example.com]
  gateways: [httpbin-gateway, mesh]
  http: [{route: [{destination: {host: reviews}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin-bogus, namespace: default}
spec:
  hosts: [www.example.com]
  gateways: [httpbin-gateway-bogus, httpbin-gateway]
  http: [{route: [{destination: {host: reviews}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: cross-test, namespace: default}
spec:
  hosts: [anything.example.com]
  gateways: [istio-system/scoped]
  http: [{route: [{destination: {host: reviews}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: cross-ok, namespace: foo}
spec:
  hosts: [anything.example.com]
  gateways: [istio-system/scoped]
  http: [{route: [{destination: {host: reviews.default.svc.cluster.local}}]}]
`,
		want: []string{
			"IST0101 VirtualService default/httpbin-bogus",
			"IST0132 VirtualService default/httpbin-bogus",
			"IST0132 VirtualService default/httpbin",
			"IST0132 VirtualService default/cross-test",
		},
	}})
}

func TestGridConflictingMeshGatewayHosts(t *testing.T) {
	vs := func(name, ns, host, extra string) string {
		return "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: " + name + ", namespace: " + ns + "}\nspec:\n  hosts: [" + host + "]\n" + extra +
			"  http: [{route: [{destination: {host: " + host + "}}]}]\n"
	}
	runGrid(t, []gridCase{
		{
			name:  "virtualServiceConflictingMeshGatewayHosts",
			codes: []string{"IST0109"},
			yaml: vs("ratings", "team1", "ratings", "") + // short name: its own namespace's host
				vs("ratings", "team2", "ratings.team3.svc.cluster.local", "") +
				vs("ratings", "team3", "ratings", "") +
				vs("ratings", "team4", "ratings.team3.svc.cluster.local", "  gateways: [mesh]\n") +
				vs("productpage", "foo", "productpage.foo.svc.cluster.local", "") +
				vs("bogus-productpage", "foo", "productpage", "") +
				vs("gateway-only", "foo", "productpage", "  gateways: [foo/gw]\n"),
			want: []string{
				"IST0109 VirtualService team2/ratings",
				"IST0109 VirtualService team3/ratings",
				"IST0109 VirtualService team4/ratings",
				"IST0109 VirtualService foo/productpage",
				"IST0109 VirtualService foo/bogus-productpage",
			},
		},
		{
			name:  "virtualServiceConflictingMeshGatewayHostsWithExportTo",
			codes: []string{"IST0109"},
			yaml: vs("productpage", "foo", "productpage.foo.svc.cluster.local", "  exportTo: [\"*\"]\n") +
				vs("productpage", "bar", "productpage.foo.svc.cluster.local", "") +
				vs("isolated-a", "foo", "iso.foo.svc.cluster.local", "  exportTo: [\".\"]\n") +
				vs("isolated-b", "bar", "iso.foo.svc.cluster.local", "  exportTo: [\".\"]\n") +
				vs("productpage-c", "foo", "c.foo.svc.cluster.local", "  exportTo: [\".\", bar]\n") +
				vs("productpage-c", "bar", "c.foo.svc.cluster.local", "  exportTo: [\".\"]\n"),
			want: []string{
				"IST0109 VirtualService foo/productpage",
				"IST0109 VirtualService bar/productpage",
				"IST0109 VirtualService foo/productpage-c",
				"IST0109 VirtualService bar/productpage-c",
			},
		},
	})
}

func TestGridVirtualServiceMatches(t *testing.T) {
	runGrid(t, []gridCase{
		{
			name:  "dupmatches",
			codes: []string{"IST0130", "IST0131"},
			yaml: reviewsSvc + `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: duplicate-match, namespace: default}
spec:
  hosts: [a.test]
  http:
  - match: [{uri: {prefix: /a}}]
    route: [{destination: {host: reviews}}]
  - match: [{uri: {prefix: /a}}]
    route: [{destination: {host: reviews}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: almost-duplicate-match, namespace: default}
spec:
  hosts: [b.test]
  http:
  - match: [{uri: {prefix: /a}}]
    route: [{destination: {host: reviews}}]
  - match: [{uri: {prefix: /a}}, {uri: {prefix: /b}}]
    route: [{destination: {host: reviews}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: two-catch-alls, namespace: default}
spec:
  hosts: [c.test]
  http:
  - route: [{destination: {host: reviews}}]
  - route: [{destination: {host: reviews}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: named-duplicate, namespace: default}
spec:
  hosts: [d.test]
  http:
  - name: first
    match: [{name: one, headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews}}]
  - name: second
    match: [{name: two, headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: distinct, namespace: default}
spec:
  hosts: [e.test]
  http:
  - match: [{uri: {prefix: /a}}]
    route: [{destination: {host: reviews}}]
  - match: [{uri: {exact: /a}}]
    route: [{destination: {host: reviews}}]
  - route: [{destination: {host: reviews}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: duplicate-tcp-match, namespace: default}
spec:
  hosts: [f.test]
  tcp:
  - match: [{port: 3306}]
    route: [{destination: {host: reviews}}]
  - match: [{port: 3306}]
    route: [{destination: {host: reviews}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tls-routing, namespace: default}
spec:
  hosts: [g.test]
  tls:
  - match: [{sniHosts: [g.test]}]
    route: [{destination: {host: reviews}}]
  - match: [{sniHosts: [g.test]}]
    route: [{destination: {host: reviews}}]
`,
			want: []string{
				"IST0130 VirtualService default/duplicate-match",
				"IST0131 VirtualService default/duplicate-match",
				"IST0131 VirtualService default/almost-duplicate-match",
				"IST0130 VirtualService default/two-catch-alls",
				"IST0130 VirtualService default/named-duplicate",
				"IST0131 VirtualService default/named-duplicate",
				"IST0130 VirtualService default/duplicate-tcp-match",
				"IST0131 VirtualService default/duplicate-tcp-match",
				"IST0130 VirtualService default/tls-routing",
				"IST0131 VirtualService default/tls-routing",
			},
		},
		{
			name:  "Route Rule no effect on Ingress",
			codes: []string{"IST0140"},
			yaml: reviewsSvc + reviewsDR + `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews, subset: v1}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ingress, namespace: default}
spec:
  hosts: ["*"]
  gateways: [gw]
  http: [{route: [{destination: {host: reviews}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ingress-subset, namespace: default}
spec:
  hosts: [x.test]
  gateways: [gw]
  http: [{route: [{destination: {host: reviews, subset: v2}}]}]
`,
			want: []string{"IST0140 VirtualService default/ingress"},
		},
	})
}

func TestInvalidRegexMessage(t *testing.T) {
	// Skein's validation refuses a bad regex too (IST0106); IST0122 names
	// the field and RE2's complaint.
	msgs := analyzeYAML(t, reviewsSvc+`---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bad-regex, namespace: default}
spec:
  hosts: [r.test]
  http:
  - match: [{uri: {regex: "[a-"}, headers: {x: {regex: "(("}}}]
    route: [{destination: {host: reviews}}]
`)
	var got []string
	for _, m := range msgs {
		if m.Type == InvalidRegexp {
			got = append(got, m.Text())
		}
	}
	want := []string{
		`Field "uri" regular expression invalid: "[a-" (missing closing ])`,
		`Field "headers" regular expression invalid: "((" (missing closing ))`,
	}
	if len(got) != 2 || got[0] != want[1] && got[0] != want[0] {
		t.Errorf("got %q, want %q", got, want)
	}
}
