package router

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// typicalTable is a 5-route gateway table like Bookinfo's, plus a
// header-matched route and a weighted split, behind port-qualified domains.
const typicalTable = `
name: bench
virtualHosts:
- name: reviews
  domains: [reviews, "reviews:9080", reviews.bookinfo.svc.cluster.local, "reviews.bookinfo.svc.cluster.local:9080"]
  routes:
  - match: {prefix: /, headers: [{name: end-user, stringMatch: {exact: jason}}]}
    route: {cluster: v2, timeout: 0s}
  - match: {prefix: /}
    route:
      timeout: 0s
      weightedClusters: {clusters: [{name: v1, weight: 50}, {name: v3, weight: 50}]}
- name: gateway
  domains: ["*"]
  routes:
  - {match: {path: /productpage}, route: {cluster: productpage}}
  - {match: {prefix: /static}, route: {cluster: productpage}}
  - {match: {path: /login}, route: {cluster: productpage}}
  - {match: {path: /logout}, route: {cluster: productpage}}
  - {match: {prefix: /api/v1/products}, route: {cluster: productpage}}
`

var benchRequests = []struct {
	name, url string
	headers   []string
}{
	{"gateway-last-route", "http://localhost:8080/api/v1/products/0/reviews", nil},
	{"gateway-first-route", "http://localhost:8080/productpage?u=normal", nil},
	{"sidecar-header", "http://reviews:9080/reviews/0", []string{"end-user", "jason"}},
	{"sidecar-weighted", "http://Reviews:9080/reviews/0", nil},
}

func BenchmarkRoute(b *testing.B) {
	tbl := mustCompile(b, typicalTable)
	for _, br := range benchRequests {
		b.Run(br.name, func(b *testing.B) {
			r := newRequest(http.MethodGet, br.url, br.headers...)
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := tbl.Route(r); !ok {
					b.Fatal("no route")
				}
			}
		})
	}
}

// TestRouteDoesNotAllocate keeps the hot path allocation-free for cluster
// routes (redirects, joined multi-value headers and decoded queries may
// allocate).
func TestRouteDoesNotAllocate(t *testing.T) {
	tbl := mustCompile(t, typicalTable)
	for _, br := range benchRequests {
		r := newRequest(http.MethodGet, br.url, br.headers...)
		if n := testing.AllocsPerRun(100, func() { tbl.Route(r) }); n != 0 {
			t.Errorf("%s: %v allocations per Route", br.name, n)
		}
	}
}

// FuzzRoute routes arbitrary paths, hosts and headers through a table
// using every matcher kind: Route must never panic, and a match must
// name a cluster or a local answer.
func FuzzRoute(f *testing.F) {
	tbl := mustCompile(f, `
name: fuzz
virtualHosts:
- name: vh
  domains: ["*.example.com", "api.*", "*"]
  routes:
  - match: {safeRegex: {regex: "/r/[a-z]+"}, headers: [{name: x-a, stringMatch: {contains: b, ignoreCase: true}}]}
    route: {cluster: a, regexRewrite: {pattern: {regex: "/r/(.*)"}, substitution: "/\\1/x"}}
  - match: {pathSeparatedPrefix: /sep, queryParameters: [{name: q, stringMatch: {prefix: v}}]}
    redirect: {httpsRedirect: true, prefixRewrite: /new}
  - match: {prefix: "/p?x", caseSensitive: false, headers: [{name: ":path", stringMatch: {suffix: "z"}}]}
    directResponse: {status: 200}
  - match: {prefix: /, headers: [{name: x-b, presentMatch: true, invertMatch: true}]}
    route: {cluster: b, prefixRewrite: /pre}
`)
	f.Add("/r/abc", "a.example.com", "B", "q=v")
	f.Add("/sep/x", "[::1]:80", "", "q=v1&q=x")
	f.Add("/P?X=z", "API.x:8080", "", "")
	f.Add("/%2F%zz", "", "\x00", "%%=%")
	f.Fuzz(func(t *testing.T, path, host, header, query string) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.URL.Path, r.URL.RawQuery, r.Host = path, query, host
		r.Header.Set("X-A", header)
		d, ok := tbl.Route(r)
		if !ok {
			return
		}
		if d.Cluster == "" && d.Redirect == nil && d.DirectResponse == nil {
			t.Fatalf("decision without an outcome: %+v", d)
		}
		d.ApplyRequest(r)
		d.ApplyResponse(http.Header{})
	})
}
