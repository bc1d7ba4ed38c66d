package router

import (
	"strings"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/encoding/protowire"
)

func TestCompileErrors(t *testing.T) {
	// route wraps one route item in a named config and virtual host.
	route := func(item string) string {
		return `
name: "9080"
virtualHosts:
- name: "reviews:9080"
  domains: [reviews]
  routes:
  - ` + item + "\n"
	}
	cases := []struct {
		name, config string
		want         string // the whole error, or a prefix ending in "..."
	}{
		{"grpc match, by index", `
name: "9080"
virtualHosts:
- name: "reviews:9080"
  domains: [reviews]
  routes:
  - {match: {prefix: /a}, route: {cluster: c}}
  - {match: {prefix: /b}, route: {cluster: c}}
  - {match: {prefix: /, grpc: {}}, route: {cluster: c}}
`, `route_config "9080": virtual_host "reviews:9080": route[2]: unsupported match field "grpc"`},
		{"tls_context match, by name", route(`{name: tls, match: {prefix: /, tlsContext: {presented: true}}, route: {cluster: c}}`),
			`route_config "9080": virtual_host "reviews:9080": route "tls": unsupported match field "tls_context"`},
		{"runtime_fraction", route(`{match: {prefix: /, runtimeFraction: {defaultValue: {numerator: 1}}}, route: {cluster: c}}`),
			`route_config "9080": virtual_host "reviews:9080": route[0]: unsupported match field "runtime_fraction"`},
		{"cluster_header", route(`{match: {prefix: /}, route: {clusterHeader: x-cluster}}`),
			`route_config "9080": virtual_host "reviews:9080": route[0]: unsupported route action field "cluster_header"`},
		{"idle_timeout", route(`{match: {prefix: /}, route: {cluster: c, idleTimeout: 1s}}`),
			`route_config "9080": virtual_host "reviews:9080": route[0]: unsupported route action field "idle_timeout"`},
		{"route tracing", route(`{match: {prefix: /}, route: {cluster: c}, tracing: {}}`),
			`route_config "9080": virtual_host "reviews:9080": route[0]: unsupported route field "tracing"`},
		{"virtual host require_tls", `
name: "9080"
virtualHosts:
- {name: vh, domains: ["*"], requireTls: ALL}
`, `route_config "9080": virtual_host "vh": unsupported virtual_host field "require_tls"`},
		{"route config internal_only_headers", `
name: rc
internalOnlyHeaders: [x-internal]
`, `route_config "rc": unsupported route_config field "internal_only_headers"`},
		{"header range_match", route(`{match: {prefix: /, headers: [{name: x-n, rangeMatch: {start: 1, end: 5}}]}, route: {cluster: c}}`),
			`route_config "9080": virtual_host "reviews:9080": route[0]: match.headers[0]: unsupported header matcher field "range_match"`},
		{"weighted cluster_header", route(`{match: {prefix: /}, route: {weightedClusters: {clusters: [{name: a, weight: 1, clusterHeader: x}]}}}`),
			`route_config "9080": virtual_host "reviews:9080": route[0]: route: weighted_clusters: clusters[0]: unsupported weighted cluster field "cluster_header"`},
		{"direct response from a file", route(`{match: {prefix: /}, directResponse: {status: 200, body: {filename: /etc/passwd}}}`),
			`route_config "9080": virtual_host "reviews:9080": route[0]: direct_response: unsupported body field "filename"`},

		{"bad path regex", route(`{match: {safeRegex: {regex: "/a("}}, route: {cluster: c}}`),
			`route_config "9080": virtual_host "reviews:9080": route[0]: match.safe_regex: invalid regex "/a(": ...`},
		{"bad header regex", route(`{match: {prefix: /, headers: [{name: x, stringMatch: {safeRegex: {regex: "[z-a]"}}}]}, route: {cluster: c}}`),
			`route_config "9080": virtual_host "reviews:9080": route[0]: match.headers[0]: string_match: safe_regex: invalid regex "[z-a]": ...`},
		{"bad legacy header regex", route(`{match: {prefix: /, headers: [{name: x, safeRegexMatch: {regex: "*"}}]}, route: {cluster: c}}`),
			`route_config "9080": virtual_host "reviews:9080": route[0]: match.headers[0]: safe_regex_match: invalid regex "*": ...`},
		{"bad query regex", route(`{match: {prefix: /, queryParameters: [{name: q, stringMatch: {safeRegex: {regex: "a{2,1}"}}}]}, route: {cluster: c}}`),
			`route_config "9080": virtual_host "reviews:9080": route[0]: match.query_parameters[0]: string_match: safe_regex: invalid regex "a{2,1}": ...`},
		{"bad rewrite regex", route(`{match: {prefix: /}, route: {cluster: c, regexRewrite: {pattern: {regex: "("}, substitution: x}}}`),
			`route_config "9080": virtual_host "reviews:9080": route[0]: route: regex_rewrite: invalid regex "(": ...`},
		{"rewrite group out of range", route(`{match: {prefix: /}, route: {cluster: c, regexRewrite: {pattern: {regex: "(a)"}, substitution: "\\2"}}}`),
			`route_config "9080": virtual_host "reviews:9080": route[0]: route: regex_rewrite: substitution "\\2": \2 refers to a group the pattern does not have (it has 1)`},
		{"redirect rewrite regex", route(`{match: {prefix: /}, redirect: {regexRewrite: {pattern: {regex: "+"}, substitution: x}}}`),
			`route_config "9080": virtual_host "reviews:9080": route[0]: redirect: regex_rewrite: invalid regex "+": ...`},

		{"no path specifier", route(`{match: {headers: [{name: x}]}, route: {cluster: c}}`),
			`route_config "9080": virtual_host "reviews:9080": route[0]: match: a path specifier (prefix, path, safe_regex or path_separated_prefix) is required`},
		{"bad path_separated_prefix", route(`{match: {pathSeparatedPrefix: /a/}, route: {cluster: c}}`),
			`route_config "9080": virtual_host "reviews:9080": route[0]: match.path_separated_prefix "/a/": ...`},
		{"no action", route(`{match: {prefix: /}}`),
			`route_config "9080": virtual_host "reviews:9080": route[0]: no action: one of route, redirect or direct_response is required`},
		{"no cluster", route(`{match: {prefix: /}, route: {timeout: 1s}}`),
			`route_config "9080": virtual_host "reviews:9080": route[0]: route: no cluster: cluster or weighted_clusters is required`},
		{"both rewrites", route(`{match: {prefix: /}, route: {cluster: c, prefixRewrite: /x, regexRewrite: {pattern: {regex: a}, substitution: b}}}`),
			`route_config "9080": virtual_host "reviews:9080": route[0]: route: prefix_rewrite and regex_rewrite are mutually exclusive`},
		{"total_weight mismatch", route(`{match: {prefix: /}, route: {weightedClusters: {totalWeight: 100, clusters: [{name: a, weight: 50}, {name: b, weight: 40}]}}}`),
			`route_config "9080": virtual_host "reviews:9080": route[0]: route: weighted_clusters: sum of weights 90 does not equal total_weight 100`},
		{"zero weights", route(`{match: {prefix: /}, route: {weightedClusters: {clusters: [{name: a}]}}}`),
			`route_config "9080": virtual_host "reviews:9080": route[0]: route: weighted_clusters: sum of weights is 0`},
		{"direct response status", route(`{match: {prefix: /}, directResponse: {status: 99}}`),
			`route_config "9080": virtual_host "reviews:9080": route[0]: direct_response: status 99 out of range [200, 599]`},
		{"direct response too large", route(`{match: {prefix: /}, directResponse: {status: 200, body: {inlineString: "` + strings.Repeat("x", 4097) + `"}}}`),
			`route_config "9080": virtual_host "reviews:9080": route[0]: direct_response: body is 4097 bytes, more than max_direct_response_body_size_bytes 4096`},
		{"header formatter", route(`{match: {prefix: /}, route: {cluster: c}, requestHeadersToAdd: [{header: {key: x-ip, value: "%DOWNSTREAM_REMOTE_ADDRESS%"}}]}`),
			`route_config "9080": virtual_host "reviews:9080": route[0]: headers_to_add[0]: unsupported header value formatter "%DOWNSTREAM_REMOTE_ADDRESS%" in "%DOWNSTREAM_REMOTE_ADDRESS%" (write a literal % as %%)`},
		{"pseudo header add", route(`{match: {prefix: /}, route: {cluster: c}, responseHeadersToAdd: [{header: {key: ":status", value: "200"}}]}`),
			`route_config "9080": virtual_host "reviews:9080": route[0]: response_headers_to_add[0]: header ":status" cannot be modified`},
		{"host remove", route(`{match: {prefix: /}, route: {cluster: c}, requestHeadersToRemove: [Host]}`),
			`route_config "9080": virtual_host "reviews:9080": route[0]: headers_to_remove[0]: header "Host" cannot be modified`},
		{"append and append_action", route(`{match: {prefix: /}, route: {cluster: c}, requestHeadersToAdd: [{header: {key: x, value: v}, append: true, appendAction: OVERWRITE_IF_EXISTS}]}`),
			`route_config "9080": virtual_host "reviews:9080": route[0]: headers_to_add[0]: append and append_action are mutually exclusive`},
		{"duplicate domain", `
name: rc
virtualHosts:
- {name: a, domains: [reviews, "*.svc"], routes: [{match: {prefix: /}, route: {cluster: c}}]}
- {name: b, domains: [ratings, "*.SVC"], routes: [{match: {prefix: /}, route: {cluster: c}}]}
`, `route_config "rc": virtual_host "b": domains[1]: duplicate domain "*.SVC" (also in virtual_host "a")`},
		{"no domains", `
name: rc
virtualHosts: [{name: a}]
`, `route_config "rc": virtual_host "a": domains: at least one domain is required`},
		{"unnamed virtual host", `
name: rc
virtualHosts: [{domains: ["*"]}]
`, `route_config "rc": virtual_host[0]: name is required`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile(parseRouteConfig(t, tc.config), stringFilters{})
			if err == nil {
				t.Fatalf("Compile succeeded, want error %q", tc.want)
			}
			if prefix, ok := strings.CutSuffix(tc.want, "..."); ok {
				if !strings.HasPrefix(err.Error(), prefix) {
					t.Fatalf("error:\n  %s\nwant prefix:\n  %s", err, prefix)
				}
				return
			}
			if err.Error() != tc.want {
				t.Fatalf("error:\n  %s\nwant:\n  %s", err, tc.want)
			}
		})
	}
}

func TestCompileNil(t *testing.T) {
	if _, err := Compile(nil, nil); err == nil {
		t.Fatal("Compile(nil, nil) succeeded")
	}
}

func TestCompileRejectsUnknownFields(t *testing.T) {
	rc := parseRouteConfig(t, singleVhost("  - {match: {prefix: /}, route: {cluster: c}}\n"))
	// Field 999 is not in our proto: a newer control plane's feature.
	unknown := protowire.AppendTag(nil, 999, protowire.VarintType)
	unknown = protowire.AppendVarint(unknown, 1)
	rc.GetVirtualHosts()[0].GetRoutes()[0].ProtoReflect().SetUnknown(unknown)
	_, err := Compile(rc, nil)
	if want := `route_config "test": virtual_host "vh": route[0]: route has fields unknown to this proxy`; err == nil || err.Error() != want {
		t.Fatalf("error %v, want %s", err, want)
	}
}

// TestCompileCopiesConfig checks the Table does not see later changes to
// the RouteConfiguration it was compiled from.
func TestCompileCopiesConfig(t *testing.T) {
	rc := parseRouteConfig(t, singleVhost("  - {match: {prefix: /}, route: {cluster: before, retryPolicy: {retryOn: 5xx, numRetries: 1}}}\n"))
	tbl, err := Compile(rc, nil)
	if err != nil {
		t.Fatal(err)
	}
	ra := rc.GetVirtualHosts()[0].GetRoutes()[0].GetRoute()
	ra.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: "after"}
	ra.GetRetryPolicy().NumRetries.Value = 9
	d, _ := tbl.Route(newRequest("GET", "/"))
	if d.Cluster != "before" || d.Retry.Retries() != 1 {
		t.Fatalf("table changed with its source: cluster %s, retries %d", d.Cluster, d.Retry.Retries())
	}
}

func TestMaxDirectResponseBodySize(t *testing.T) {
	big := strings.Repeat("x", 5000)
	mustCompile(t, `
name: rc
maxDirectResponseBodySizeBytes: 1048576
virtualHosts:
- name: vh
  domains: ["*"]
  routes: [{match: {prefix: /}, directResponse: {status: 200, body: {inlineString: "`+big+`"}}}]
`)
}
