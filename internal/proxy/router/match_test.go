package router

import (
	"net/http"
	"strings"
	"testing"
)

// TestRouteMatch checks every RouteMatch kind: one route per case, does the
// request match it?
func TestRouteMatch(t *testing.T) {
	type req struct {
		method, url string
		headers     []string
		want        bool
	}
	get := func(url string, want bool, headers ...string) req {
		return req{method: http.MethodGet, url: url, headers: headers, want: want}
	}
	cases := []struct {
		name  string
		match string // YAML of the route's match, indented for a route item
		reqs  []req
	}{
		{"prefix", `prefix: /api`, []req{
			get("/api", true), get("/api/v1", true), get("/apix", true), get("/ap", false), get("/API", false),
		}},
		{"prefix case-insensitive", `{prefix: /api, caseSensitive: false}`, []req{
			get("/API/x", true), get("/Api", true), get("/ap", false),
		}},
		{"prefix spans the query", `prefix: "/q?a=1"`, []req{
			get("/q?a=1&b=2", true), get("/q?a=2", false), get("/q", false),
		}},
		{"prefix root", `prefix: /`, []req{get("/", true), get("/anything?x", true)}},
		{"path", `path: /login`, []req{
			get("/login", true), get("/login?next=/", true), get("/login/", false), get("/Login", false), get("/log", false),
		}},
		{"path case-insensitive", `{path: /login, caseSensitive: false}`, []req{get("/LOGIN", true), get("/login2", false)}},
		{"path is matched escaped", `path: /a%2Fb`, []req{get("/a%2Fb", true), get("/a/b", false)}},
		{"safe_regex full match without query", `safeRegex: {regex: "/reviews/[0-9]+"}`, []req{
			get("/reviews/12", true), get("/reviews/12?x=1", true), get("/reviews/12/x", false), get("/x/reviews/1", false),
		}},
		{"safe_regex alternatives anchored", `safeRegex: {regex: "/a|/ab"}`, []req{get("/ab", true), get("/abc", false)}},
		{"safe_regex ignores case_sensitive", `{safeRegex: {regex: "/abc"}, caseSensitive: false}`, []req{get("/ABC", false)}},
		{"path_separated_prefix", `pathSeparatedPrefix: /sep`, []req{
			get("/sep", true), get("/sep/x", true), get("/sep?x=1", true), get("/sepx", false), get("/se", false),
		}},
		{"path_separated_prefix case-insensitive", `{pathSeparatedPrefix: /sep, caseSensitive: false}`, []req{get("/SEP/x", true)}},

		{"header string exact", `{prefix: /, headers: [{name: end-user, stringMatch: {exact: jason}}]}`, []req{
			get("/", true, "end-user", "jason"), get("/", false, "end-user", "Jason"), get("/", false),
		}},
		{"header exact ignore_case", `{prefix: /, headers: [{name: end-user, stringMatch: {exact: jason, ignoreCase: true}}]}`, []req{
			get("/", true, "end-user", "JASON"), get("/", false, "end-user", "jasonx"),
		}},
		{"header prefix", `{prefix: /, headers: [{name: x-v, stringMatch: {prefix: ab}}]}`, []req{
			get("/", true, "x-v", "abc"), get("/", false, "x-v", "xab"),
		}},
		{"header suffix ignore_case", `{prefix: /, headers: [{name: x-v, stringMatch: {suffix: BC, ignoreCase: true}}]}`, []req{
			get("/", true, "x-v", "abc"), get("/", false, "x-v", "bca"),
		}},
		{"header contains", `{prefix: /, headers: [{name: x-v, stringMatch: {contains: mid}}]}`, []req{
			get("/", true, "x-v", "amidst"), get("/", false, "x-v", "MID"),
		}},
		{"header contains ignore_case", `{prefix: /, headers: [{name: x-v, stringMatch: {contains: mid, ignoreCase: true}}]}`, []req{
			get("/", true, "x-v", "aMIDst"), get("/", false, "x-v", "mi"),
		}},
		{"header safe_regex full match", `{prefix: /, headers: [{name: x-v, stringMatch: {safeRegex: {regex: "v[0-9]"}}}]}`, []req{
			get("/", true, "x-v", "v1"), get("/", false, "x-v", "v12"), get("/", false, "x-v", "xv1"),
		}},
		{"header present", `{prefix: /, headers: [{name: x-p, presentMatch: true}]}`, []req{
			get("/", true, "x-p", ""), get("/", false),
		}},
		{"header absent", `{prefix: /, headers: [{name: x-p, presentMatch: false}]}`, []req{
			get("/", false, "x-p", "1"), get("/", true),
		}},
		{"header name only means present", `{prefix: /, headers: [{name: x-p}]}`, []req{
			get("/", true, "x-p", "1"), get("/", false),
		}},
		{"header invert", `{prefix: /, headers: [{name: x-v, stringMatch: {exact: a}, invertMatch: true}]}`, []req{
			get("/", true, "x-v", "b"), get("/", false, "x-v", "a"),
			get("/", false), // Envoy: a missing header fails an inverted value match
		}},
		{"header invert present", `{prefix: /, headers: [{name: x-v, presentMatch: true, invertMatch: true}]}`, []req{
			get("/", true), get("/", false, "x-v", "a"),
		}},
		{"header invert treat missing as empty", `{prefix: /, headers: [{name: x-v, stringMatch: {exact: a}, invertMatch: true, treatMissingHeaderAsEmpty: true}]}`, []req{
			get("/", true), get("/", false, "x-v", "a"),
		}},
		{"header treat missing as empty", `{prefix: /, headers: [{name: x-v, stringMatch: {exact: ""}, treatMissingHeaderAsEmpty: true}]}`, []req{
			get("/", true), get("/", false, "x-v", "a"),
		}},
		{"header legacy exact", `{prefix: /, headers: [{name: x-v, exactMatch: a}]}`, []req{get("/", true, "x-v", "a"), get("/", false, "x-v", "b")}},
		{"header legacy empty exact matches any value", `{prefix: /, headers: [{name: x-v, exactMatch: ""}]}`, []req{get("/", true, "x-v", "b"), get("/", false)}},
		{"header legacy prefix", `{prefix: /, headers: [{name: x-v, prefixMatch: a}]}`, []req{get("/", true, "x-v", "ab"), get("/", false, "x-v", "ba")}},
		{"header legacy suffix", `{prefix: /, headers: [{name: x-v, suffixMatch: a}]}`, []req{get("/", true, "x-v", "ba"), get("/", false, "x-v", "ab")}},
		{"header legacy contains", `{prefix: /, headers: [{name: x-v, containsMatch: a}]}`, []req{get("/", true, "x-v", "bab"), get("/", false, "x-v", "bbb")}},
		{"header legacy safe_regex", `{prefix: /, headers: [{name: x-v, safeRegexMatch: {regex: "a+"}}]}`, []req{get("/", true, "x-v", "aaa"), get("/", false, "x-v", "aab")}},
		{"header multiple values joined", `{prefix: /, headers: [{name: x-m, stringMatch: {exact: "a,b"}}]}`, []req{
			get("/", true, "x-m", "a", "x-m", "b"), get("/", false, "x-m", "a"),
		}},
		{"header name case-insensitive", `{prefix: /, headers: [{name: X-Mixed-CASE, stringMatch: {exact: "1"}}]}`, []req{get("/", true, "x-mixed-case", "1")}},
		{"several headers all must match", `{prefix: /, headers: [{name: a, presentMatch: true}, {name: b, presentMatch: true}]}`, []req{
			get("/", true, "a", "1", "b", "1"), get("/", false, "a", "1"),
		}},
		{":method", `{prefix: /, headers: [{name: ":method", stringMatch: {exact: POST}}]}`, []req{
			{method: http.MethodPost, url: "/", want: true}, get("/", false),
		}},
		{":authority", `{prefix: /, headers: [{name: ":authority", stringMatch: {exact: "reviews:9080"}}]}`, []req{
			get("http://reviews:9080/", true), get("http://reviews/", false),
		}},
		{"host is :authority", `{prefix: /, headers: [{name: host, stringMatch: {prefix: "reviews"}}]}`, []req{
			get("http://reviews:9080/", true), get("http://ratings/", false),
		}},
		{":path includes the query", `{prefix: /, headers: [{name: ":path", stringMatch: {exact: "/a?b=1"}}]}`, []req{
			get("/a?b=1", true), get("/a", false),
		}},
		{":scheme", `{prefix: /, headers: [{name: ":scheme", stringMatch: {exact: https}}]}`, []req{
			get("https://example.com/", true), get("http://example.com/", false),
		}},

		{"query exact", `{prefix: /, queryParameters: [{name: user, stringMatch: {exact: jason}}]}`, []req{
			get("/?user=jason", true), get("/?a=1&user=jason", true), get("/?user=bob", false), get("/", false),
			get("/?user=bob&user=jason", false), // the first value counts
		}},
		{"query value decoded", `{prefix: /, queryParameters: [{name: q, stringMatch: {exact: "a b/c"}}]}`, []req{
			get("/?q=a+b%2Fc", true), get("/?q=a%20b/c", true),
		}},
		{"query regex", `{prefix: /, queryParameters: [{name: id, stringMatch: {safeRegex: {regex: "[0-9]+"}}}]}`, []req{
			get("/?id=42", true), get("/?id=4x", false),
		}},
		{"query present", `{prefix: /, queryParameters: [{name: debug, presentMatch: true}]}`, []req{
			get("/?debug", true), get("/?debug=0", true), get("/?debugx=1", false), get("/", false),
		}},
		{"query name only means present", `{prefix: /, queryParameters: [{name: debug}]}`, []req{get("/?debug=1", true), get("/?x", false)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			match := tc.match
			if !strings.HasPrefix(match, "{") {
				match = "{" + match + "}"
			}
			tbl := mustCompile(t, singleVhost("  - name: r\n    match: "+match+"\n    route: {cluster: c}\n"))
			for _, rq := range tc.reqs {
				r := newRequest(rq.method, rq.url, rq.headers...)
				d, ok := tbl.Route(r)
				if ok != rq.want {
					t.Errorf("%s %s %v: matched=%v, want %v", rq.method, rq.url, rq.headers, ok, rq.want)
				}
				if ok && d.RouteName != "r" {
					t.Errorf("route %q, want r", d.RouteName)
				}
			}
		})
	}
}

// TestFirstMatchingRouteWins checks routes are tried in order.
func TestFirstMatchingRouteWins(t *testing.T) {
	tbl := mustCompile(t, singleVhost(`
  - name: jason
    match: {prefix: /, headers: [{name: end-user, stringMatch: {exact: jason}}]}
    route: {cluster: v2}
  - name: api
    match: {prefix: /api}
    route: {cluster: api}
  - name: default
    match: {prefix: /}
    route: {cluster: v1}
`))
	for _, tc := range []struct {
		url, user, want string
	}{
		{"/api/x", "jason", "v2"},
		{"/api/x", "", "api"},
		{"/other", "", "v1"},
	} {
		var hdrs []string
		if tc.user != "" {
			hdrs = []string{"end-user", tc.user}
		}
		d, ok := tbl.Route(newRequest(http.MethodGet, tc.url, hdrs...))
		if !ok || d.Cluster != tc.want {
			t.Errorf("%s user=%q: got %v %v, want %s", tc.url, tc.user, d, ok, tc.want)
		}
	}
}

func TestNoRouteMatches(t *testing.T) {
	tbl := mustCompile(t, singleVhost("  - match: {path: /only}\n    route: {cluster: c}\n"))
	if d, ok := tbl.Route(newRequest(http.MethodGet, "/other")); ok || d != nil {
		t.Fatalf("got %v, %v; want no match", d, ok)
	}
}

func TestFirstQueryValue(t *testing.T) {
	for _, tc := range []struct {
		query, name, want string
		ok                bool
	}{
		{"a=1&b=2", "b", "2", true},
		{"a", "a", "", true},
		{"a=&a=2", "a", "", true},
		{"&&a=1", "a", "1", true},
		{"b%20c=x", "b c", "x", true},
		{"a=%zz&a=2", "a", "2", true}, // an undecodable value is skipped
		{"a=1", "b", "", false},
		{"", "a", "", false},
	} {
		got, ok := firstQueryValue(tc.query, tc.name)
		if got != tc.want || ok != tc.ok {
			t.Errorf("firstQueryValue(%q, %q) = %q, %v; want %q, %v", tc.query, tc.name, got, ok, tc.want, tc.ok)
		}
	}
}
