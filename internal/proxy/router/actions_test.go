package router

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestTimeout(t *testing.T) {
	tbl := mustCompile(t, singleVhost(`
  - match: {path: /unset}
    route: {cluster: c}
  - match: {path: /zero}
    route: {cluster: c, timeout: 0s}
  - match: {path: /three}
    route: {cluster: c, timeout: 3.5s}
`))
	for path, want := range map[string]time.Duration{"/unset": 15 * time.Second, "/zero": 0, "/three": 3500 * time.Millisecond} {
		d, ok := tbl.Route(newRequest(http.MethodGet, path))
		if !ok || d.Timeout != want {
			t.Errorf("%s: timeout %v (ok=%v), want %v", path, d.Timeout, ok, want)
		}
	}
}

func TestWeightedClusterDistribution(t *testing.T) {
	tbl := mustCompile(t, singleVhost(`
  - match: {prefix: /}
    route:
      weightedClusters:
        clusters:
        - {name: v1, weight: 50}
        - {name: never, weight: 0}
        - {name: v3, weight: 50}
`))
	const picks = 4000
	counts := map[string]int{}
	for range picks {
		d, ok := tbl.Route(newRequest(http.MethodGet, "/"))
		if !ok {
			t.Fatal("no match")
		}
		counts[d.Cluster]++
	}
	if counts["never"] != 0 {
		t.Errorf("a weight-0 cluster was picked %d times", counts["never"])
	}
	for _, c := range []string{"v1", "v3"} {
		if share := float64(counts[c]) / picks; share < 0.45 || share > 0.55 {
			t.Errorf("%s got %.1f%% of %d picks, want 45-55%% (%v)", c, 100*share, picks, counts)
		}
	}
}

// TestWeightedPicksStayOnShare checks that weighted choices hold their share
// in every window of requests, not only on average: any 100 consecutive
// picks are within 2 of the weight, from any starting point.
func TestWeightedPicksStayOnShare(t *testing.T) {
	for _, weights := range [][]uint64{{50, 50}, {10, 90}, {33, 33, 34}, {1, 99}} {
		var total uint64
		for _, w := range weights {
			total += w
		}
		for _, start := range []uint64{0, 1 << 63, 12345678901234567} {
			picks := make([]int, 0, 1000)
			for k := start; k < start+1000; k++ {
				v := lowDiscrepancyPick(total, k)
				var i int
				for acc := uint64(0); i < len(weights); i++ {
					acc += weights[i]
					if v < acc {
						break
					}
				}
				picks = append(picks, i)
			}
			for from := 0; from+100 <= len(picks); from++ {
				counts := make([]int, len(weights))
				for _, i := range picks[from : from+100] {
					counts[i]++
				}
				for i, w := range weights {
					if d := counts[i] - int(w*100/total); d < -2 || d > 2 {
						t.Fatalf("weights %v, start %d, window at %d: cluster %d got %d of 100, want %d±2", weights, start, from, i, counts[i], w*100/total)
					}
				}
			}
		}
	}
}

// TestWeightedClusterRanges pins the picker to check every weight range
// maps to its cluster, with total_weight given.
func TestWeightedClusterRanges(t *testing.T) {
	tbl := mustCompile(t, singleVhost(`
  - match: {prefix: /}
    route:
      weightedClusters:
        totalWeight: 100
        clusters:
        - {name: a, weight: 10}
        - {name: b, weight: 90}
`))
	for v, want := range map[uint64]string{0: "a", 9: "a", 10: "b", 99: "b"} {
		tbl.pick = func(n, _ uint64) uint64 {
			if n != 100 {
				t.Fatalf("pick(%d), want 100", n)
			}
			return v
		}
		if d, _ := tbl.Route(newRequest(http.MethodGet, "/")); d.Cluster != want {
			t.Errorf("pick %d: cluster %s, want %s", v, d.Cluster, want)
		}
	}
}

func TestRedirect(t *testing.T) {
	cases := []struct {
		name, redirect string
		url            string
		headers        []string
		status         int
		location       string
	}{
		{"https keeps path and query", `{httpsRedirect: true}`, "http://foo.com/a?b=1", nil, 301, "https://foo.com/a?b=1"},
		{"https drops the default http port", `{httpsRedirect: true}`, "http://foo.com:80/a", nil, 301, "https://foo.com/a"},
		{"https keeps another port", `{httpsRedirect: true}`, "http://foo.com:8080/a", nil, 301, "https://foo.com:8080/a"},
		{"x-forwarded-proto decides the original scheme", `{httpsRedirect: true}`, "http://foo.com:443/a", []string{"x-forwarded-proto", "https"}, 301, "https://foo.com:443/a"},
		{"scheme_redirect", `{schemeRedirect: http}`, "https://foo.com:443/x", nil, 301, "http://foo.com/x"},
		{"host_redirect", `{hostRedirect: new.example.com}`, "http://foo.com:8080/a?b=1", nil, 301, "http://new.example.com/a?b=1"},
		{"port_redirect", `{httpsRedirect: true, portRedirect: 8443}`, "http://foo.com:8080/a", nil, 301, "https://foo.com:8443/a"},
		{"port_redirect ipv6", `{portRedirect: 8443}`, "http://[::1]:8080/a", nil, 301, "http://[::1]:8443/a"},
		{"path_redirect keeps the query", `{pathRedirect: /new}`, "http://foo.com/old?b=1", nil, 301, "http://foo.com/new?b=1"},
		{"path_redirect with its own query", `{pathRedirect: "/new?x=1"}`, "http://foo.com/old?b=1", nil, 301, "http://foo.com/new?x=1"},
		{"strip_query", `{pathRedirect: /new, stripQuery: true}`, "http://foo.com/old?b=1", nil, 301, "http://foo.com/new"},
		{"prefix_rewrite", `{prefixRewrite: /new}`, "http://foo.com/old/page?q=1", nil, 301, "http://foo.com/new/page?q=1"},
		{"regex_rewrite", `{regexRewrite: {pattern: {regex: "^/old/(.*)$"}, substitution: "/v2/\\1"}}`, "http://foo.com/old/x", nil, 301, "http://foo.com/v2/x"},
		{"FOUND", `{pathRedirect: /n, responseCode: FOUND}`, "http://foo.com/old", nil, 302, "http://foo.com/n"},
		{"SEE_OTHER", `{pathRedirect: /n, responseCode: SEE_OTHER}`, "http://foo.com/old", nil, 303, "http://foo.com/n"},
		{"TEMPORARY_REDIRECT", `{pathRedirect: /n, responseCode: TEMPORARY_REDIRECT}`, "http://foo.com/old", nil, 307, "http://foo.com/n"},
		{"PERMANENT_REDIRECT", `{pathRedirect: /n, responseCode: PERMANENT_REDIRECT}`, "http://foo.com/old", nil, 308, "http://foo.com/n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tbl := mustCompile(t, singleVhost("  - name: r\n    match: {prefix: /old}\n    redirect: "+tc.redirect+"\n  - match: {prefix: /}\n    redirect: "+tc.redirect+"\n"))
			d, ok := tbl.Route(newRequest(http.MethodGet, tc.url, tc.headers...))
			if !ok || d.Redirect == nil {
				t.Fatalf("got %+v, %v; want a redirect", d, ok)
			}
			if d.Redirect.Status != tc.status || d.Redirect.Location != tc.location {
				t.Errorf("got %d %s, want %d %s", d.Redirect.Status, d.Redirect.Location, tc.status, tc.location)
			}
			if d.Cluster != "" || d.DirectResponse != nil {
				t.Errorf("redirect decision also has cluster %q / direct response %v", d.Cluster, d.DirectResponse)
			}
		})
	}
}

func TestDirectResponse(t *testing.T) {
	tbl := mustCompile(t, singleVhost(`
  - match: {path: /str}
    directResponse: {status: 418, body: {inlineString: "short and stout"}}
  - match: {path: /bytes}
    directResponse: {status: 503, body: {inlineBytes: "b2s="}}
  - match: {path: /empty}
    directResponse: {status: 204}
`))
	for path, want := range map[string]DirectResponse{
		"/str":   {418, "short and stout"},
		"/bytes": {503, "ok"},
		"/empty": {204, ""},
	} {
		d, ok := tbl.Route(newRequest(http.MethodGet, path))
		if !ok || d.DirectResponse == nil || *d.DirectResponse != want {
			t.Errorf("%s: got %+v, %v; want %+v", path, d, ok, want)
		}
	}
}

func TestPathAndHostRewrite(t *testing.T) {
	cases := []struct {
		name, route, url string
		wantPath         string // r.URL.RequestURI() after ApplyRequest
		wantHost         string
	}{
		{"prefix_rewrite keeps the query", `{match: {prefix: /api/v1}, route: {cluster: c, prefixRewrite: /v2}}`, "/api/v1/products?x=1", "/v2/products?x=1", "example.com"},
		{"prefix_rewrite root", `{match: {prefix: /}, route: {cluster: c, prefixRewrite: /app/}}`, "/a", "/app/a", "example.com"},
		{"prefix_rewrite of an exact path", `{match: {path: /login}, route: {cluster: c, prefixRewrite: /auth/login}}`, "/login?next=/", "/auth/login?next=/", "example.com"},
		{"prefix_rewrite case-insensitive", `{match: {prefix: /API, caseSensitive: false}, route: {cluster: c, prefixRewrite: /x}}`, "/api/foo", "/x/foo", "example.com"},
		{"prefix_rewrite path_separated_prefix", `{match: {pathSeparatedPrefix: /old}, route: {cluster: c, prefixRewrite: /new}}`, "/old/a", "/new/a", "example.com"},
		{"prefix_rewrite keeps escapes", `{match: {prefix: /a}, route: {cluster: c, prefixRewrite: /b}}`, "/a/x%2Fy", "/b/x%2Fy", "example.com"},
		{"regex_rewrite groups", `{match: {prefix: /service}, route: {cluster: c, regexRewrite: {pattern: {regex: "^/service/([^/]+)(/.*)$"}, substitution: "\\2/instance/\\1"}}}`, "/service/foo/v1/api?q", "/v1/api/instance/foo?q", "example.com"},
		{"regex_rewrite replaces every match", `{match: {prefix: /}, route: {cluster: c, regexRewrite: {pattern: {regex: "o"}, substitution: "0$"}}}`, "/foo/boo", "/f0$0$/b0$0$", "example.com"},
		{"host_rewrite_literal", `{match: {prefix: /}, route: {cluster: c, hostRewriteLiteral: internal.example}}`, "http://public.example/x", "/x", "internal.example"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tbl := mustCompile(t, singleVhost("  - "+tc.route+"\n"))
			r := newRequest(http.MethodGet, tc.url)
			original := r.URL.RequestURI()
			d, ok := tbl.Route(r)
			if !ok {
				t.Fatal("no match")
			}
			d.ApplyRequest(r)
			if got := r.URL.RequestURI(); got != tc.wantPath {
				t.Errorf("path %q, want %q", got, tc.wantPath)
			}
			if r.RequestURI != "" && strings.HasPrefix(r.RequestURI, "/") && r.RequestURI != tc.wantPath {
				t.Errorf("RequestURI %q not updated to %q", r.RequestURI, tc.wantPath)
			}
			if r.Host != tc.wantHost {
				t.Errorf("host %q, want %q", r.Host, tc.wantHost)
			}
			wantOrig := ""
			if tc.wantPath != original {
				wantOrig = original
			}
			if got := r.Header.Get("X-Envoy-Original-Path"); got != wantOrig {
				t.Errorf("x-envoy-original-path %q, want %q", got, wantOrig)
			}
		})
	}
}

func TestHeaderAppendActions(t *testing.T) {
	tbl := mustCompile(t, singleVhost(`
  - match: {prefix: /}
    route: {cluster: c}
    requestHeadersToRemove: [x-remove, x-replaced]
    requestHeadersToAdd:
    - header: {key: x-append, value: new}
    - header: {key: x-append-absent, value: new}
      appendAction: APPEND_IF_EXISTS_OR_ADD
    - header: {key: x-if-absent, value: new}
      appendAction: ADD_IF_ABSENT
    - header: {key: x-if-absent-missing, value: new}
      appendAction: ADD_IF_ABSENT
    - header: {key: x-overwrite, value: new}
      appendAction: OVERWRITE_IF_EXISTS_OR_ADD
    - header: {key: x-overwrite-missing, value: new}
      appendAction: OVERWRITE_IF_EXISTS_OR_ADD
    - header: {key: x-if-exists, value: new}
      appendAction: OVERWRITE_IF_EXISTS
    - header: {key: x-if-exists-missing, value: new}
      appendAction: OVERWRITE_IF_EXISTS
    - header: {key: x-legacy-append, value: new}
      append: true
    - header: {key: x-legacy-set, value: new}
      append: false
    - header: {key: x-replaced, value: new}
    - header: {key: x-empty-dropped, value: ""}
    - header: {key: x-empty-kept, value: ""}
      keepEmptyValue: true
    - header: {key: x-raw, rawValue: cmF3}
    - header: {key: x-percent, value: "100%%"}
    responseHeadersToRemove: [server]
    responseHeadersToAdd:
    - header: {key: x-resp, value: r}
      appendAction: OVERWRITE_IF_EXISTS_OR_ADD
`))
	r := newRequest(http.MethodGet, "/",
		"x-remove", "old", "x-replaced", "old", "x-append", "old", "x-if-absent", "old",
		"x-overwrite", "old", "x-if-exists", "old", "x-legacy-append", "old", "x-legacy-set", "old")
	d, ok := tbl.Route(r)
	if !ok {
		t.Fatal("no match")
	}
	d.ApplyRequest(r)
	want := map[string][]string{
		"X-Remove":            nil,
		"X-Replaced":          {"new"},
		"X-Append":            {"old", "new"},
		"X-Append-Absent":     {"new"},
		"X-If-Absent":         {"old"},
		"X-If-Absent-Missing": {"new"},
		"X-Overwrite":         {"new"},
		"X-Overwrite-Missing": {"new"},
		"X-If-Exists":         {"new"},
		"X-If-Exists-Missing": nil,
		"X-Legacy-Append":     {"old", "new"},
		"X-Legacy-Set":        {"new"},
		"X-Empty-Dropped":     nil,
		"X-Empty-Kept":        {""},
		"X-Raw":               {"raw"},
		"X-Percent":           {"100%"},
	}
	for k, v := range want {
		if got := r.Header[k]; !slices.Equal(got, v) {
			t.Errorf("request header %s = %q, want %q", k, got, v)
		}
	}
	resp := http.Header{"Server": {"upstream"}, "X-Resp": {"old"}}
	d.ApplyResponse(resp)
	if resp.Get("Server") != "" || !slices.Equal(resp["X-Resp"], []string{"r"}) {
		t.Errorf("response headers %v", resp)
	}
}

// TestHeaderMutationOrder checks Envoy's level order: by default the most
// specific level is evaluated first, so less specific levels win an
// overwrite and append last; most_specific_header_mutations_wins reverses it.
func TestHeaderMutationOrder(t *testing.T) {
	const levels = `
requestHeadersToAdd: [{header: {key: x-set, value: config}, appendAction: OVERWRITE_IF_EXISTS_OR_ADD}, {header: {key: x-add, value: config}}]
responseHeadersToAdd: [{header: {key: x-set, value: config}, appendAction: OVERWRITE_IF_EXISTS_OR_ADD}]
virtualHosts:
- name: vh
  domains: ["*"]
  requestHeadersToAdd: [{header: {key: x-set, value: vhost}, appendAction: OVERWRITE_IF_EXISTS_OR_ADD}, {header: {key: x-add, value: vhost}}]
  responseHeadersToAdd: [{header: {key: x-set, value: vhost}, appendAction: OVERWRITE_IF_EXISTS_OR_ADD}]
  routes:
  - match: {prefix: /}
    requestHeadersToAdd: [{header: {key: x-set, value: route}, appendAction: OVERWRITE_IF_EXISTS_OR_ADD}, {header: {key: x-add, value: route}}]
    responseHeadersToAdd: [{header: {key: x-set, value: route}, appendAction: OVERWRITE_IF_EXISTS_OR_ADD}]
    route:
      weightedClusters:
        clusters:
        - name: c
          weight: 1
          requestHeadersToAdd: [{header: {key: x-set, value: cluster}, appendAction: OVERWRITE_IF_EXISTS_OR_ADD}, {header: {key: x-add, value: cluster}}]
          responseHeadersToAdd: [{header: {key: x-set, value: cluster}, appendAction: OVERWRITE_IF_EXISTS_OR_ADD}]
`
	for _, tc := range []struct {
		flag    string
		wantSet string
		wantAdd []string
	}{
		{"", "config", []string{"cluster", "route", "vhost", "config"}},
		{"mostSpecificHeaderMutationsWins: true\n", "cluster", []string{"config", "vhost", "route", "cluster"}},
	} {
		tbl := mustCompile(t, "name: order\n"+tc.flag+levels)
		r := newRequest(http.MethodGet, "/")
		d, _ := tbl.Route(r)
		d.ApplyRequest(r)
		if got := r.Header.Get("X-Set"); got != tc.wantSet {
			t.Errorf("%q: request x-set %q, want %q", tc.flag, got, tc.wantSet)
		}
		if got := r.Header["X-Add"]; !slices.Equal(got, tc.wantAdd) {
			t.Errorf("%q: request x-add %q, want %q", tc.flag, got, tc.wantAdd)
		}
		h := http.Header{}
		d.ApplyResponse(h)
		if got := h.Get("X-Set"); got != tc.wantSet {
			t.Errorf("%q: response x-set %q, want %q", tc.flag, got, tc.wantSet)
		}
	}
}

func TestWeightedClusterHostRewrite(t *testing.T) {
	tbl := mustCompile(t, singleVhost(`
  - match: {prefix: /}
    route:
      hostRewriteLiteral: route.example
      weightedClusters:
        clusters:
        - {name: a, weight: 1, hostRewriteLiteral: a.example}
        - {name: b, weight: 1}
`))
	for v, want := range map[uint64]string{0: "a.example", 1: "route.example"} {
		tbl.pick = func(_, _ uint64) uint64 { return v }
		r := newRequest(http.MethodGet, "/")
		d, _ := tbl.Route(r)
		d.ApplyRequest(r)
		if r.Host != want {
			t.Errorf("pick %d: host %q, want %q", v, r.Host, want)
		}
	}
}

// TestCarriedFields checks fields other components own reach the Decision.
func TestCarriedFields(t *testing.T) {
	tbl := mustCompile(t, `
name: carried
virtualHosts:
- name: vh
  domains: ["*"]
  includeRequestAttemptCount: true
  cors: {allowOriginStringMatch: [{exact: "https://a.example"}]}
  retryPolicy: {retryOn: "5xx", numRetries: 7}
  typedPerFilterConfig:
    f.vhost: {"@type": type.googleapis.com/google.protobuf.StringValue, value: vhost}
    f.both: {"@type": type.googleapis.com/google.protobuf.StringValue, value: vhost}
  routes:
  - name: full
    match: {prefix: /full}
    metadata: {filterMetadata: {istio: {config: /apis/networking.istio.io/v1/namespaces/default/virtual-service/reviews}}}
    decorator: {operation: "reviews.default.svc.cluster.local:9080/*"}
    typedPerFilterConfig:
      f.both: {"@type": type.googleapis.com/google.protobuf.StringValue, value: route}
    route:
      cluster: c
      clusterNotFoundResponseCode: NOT_FOUND
      retryPolicy: {retryOn: "connect-failure", numRetries: 2}
      hashPolicy: [{header: {headerName: x-user}}]
      requestMirrorPolicies: [{cluster: mirror, runtimeFraction: {defaultValue: {numerator: 50}}}]
      maxStreamDuration: {maxStreamDuration: 0s, grpcTimeoutHeaderMax: 0s}
  - name: inherit
    match: {prefix: /}
    route: {cluster: c}
`)
	d, _ := tbl.Route(newRequest(http.MethodGet, "/full"))
	if d.Retry.Retries() != 2 || d.Hash == nil || len(d.Mirrors) != 1 || d.Mirrors[0].PerMillion != 500_000 ||
		d.StreamDuration == nil || d.Decorator.GetOperation() == "" || d.Metadata == nil || d.FilterConfig["envoy.filters.http.cors"] != "cors" ||
		!d.IncludeRequestAttemptCount || d.ClusterNotFoundStatus != http.StatusNotFound {
		t.Errorf("full route decision misses carried fields: %+v", d)
	}
	if got := d.FilterConfig["f.both"]; got != "route" {
		t.Errorf("f.both = %q, want the route's", got)
	}
	if got := d.FilterConfig["f.vhost"]; got != "vhost" {
		t.Errorf("f.vhost = %q, want the virtual host's", got)
	}
	d, _ = tbl.Route(newRequest(http.MethodGet, "/other"))
	if d.Retry.Retries() != 7 || d.ClusterNotFoundStatus != http.StatusServiceUnavailable {
		t.Errorf("inherit: retry policy %v, cluster-not-found %d", d.Retry, d.ClusterNotFoundStatus)
	}
	if got := d.FilterConfig["f.both"]; got != "vhost" {
		t.Errorf("inherit: f.both = %q, want the virtual host's", got)
	}
}
