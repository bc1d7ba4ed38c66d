package hcm

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	"github.com/skein-mesh/skein/internal/proxy/cluster"
	"github.com/skein-mesh/skein/internal/proxy/filters"
	"github.com/skein-mesh/skein/internal/proxy/filters/cors"
	"github.com/skein-mesh/skein/internal/proxy/filters/fault"
	"github.com/skein-mesh/skein/internal/proxy/filters/localratelimit"
	"github.com/skein-mesh/skein/internal/proxy/filters/rbac"
	"github.com/skein-mesh/skein/internal/proxy/internal/confparse"
	"github.com/skein-mesh/skein/internal/proxy/stats"
)

// noParseHCM exercises every kind of per-route config and the filters that
// read one: regex matches and rewrites, retry, hash, mirror and stream
// duration, fault and CORS overrides, a per-route rate limit, an RBAC
// regex, a virtual host's cors.
const noParseHCM = `
statPrefix: noparse
httpFilters:
- name: envoy.filters.http.fault
  typedConfig: {"@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault}
- name: envoy.filters.http.cors
  typedConfig: {"@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors}
- name: envoy.filters.http.local_ratelimit
  typedConfig:
    "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
    statPrefix: listener
    tokenBucket: {maxTokens: 100000, tokensPerFill: 100000, fillInterval: 1s}
    filterEnabled: {defaultValue: {numerator: 100}}
    filterEnforced: {defaultValue: {numerator: 100}}
- name: envoy.filters.http.rbac
  typedConfig:
    "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
    rules:
      action: DENY
      policies:
        evil:
          permissions: [{header: {name: x-evil, stringMatch: {safeRegex: {regex: "ye+s"}}}}]
          principals: [{any: true}]
- name: envoy.filters.http.router
  typedConfig: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
routeConfig:
  name: local
  virtualHosts:
  - name: all
    domains: ["*"]
    cors:
      allowOriginStringMatch: [{safeRegex: {regex: "https://.*\\.example"}}]
      allowMethods: GET
    retryPolicy: {retryOn: "5xx,connect-failure", numRetries: 2}
    typedPerFilterConfig:
      envoy.filters.http.local_ratelimit:
        "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
        statPrefix: vhost
        tokenBucket: {maxTokens: 100000, tokensPerFill: 100000, fillInterval: 1s}
        filterEnabled: {defaultValue: {numerator: 100}}
        filterEnforced: {defaultValue: {numerator: 100}}
    routes:
    - name: regex
      match:
        safeRegex: {regex: "/re/[a-z]+"}
        headers: [{name: x-user, stringMatch: {safeRegex: {regex: "[a-z]+"}}}]
      route:
        cluster: backend
        regexRewrite: {pattern: {regex: "^/re/(.*)$"}, substitution: "/\\1"}
        hashPolicy: [{header: {headerName: x-user}}, {cookie: {name: sticky, ttl: 60s}}]
        requestMirrorPolicies: [{cluster: backend, runtimeFraction: {defaultValue: {numerator: 100}}}]
        maxStreamDuration: {grpcTimeoutHeaderMax: 5s}
      typedPerFilterConfig:
        envoy.filters.http.fault:
          "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
          delay: {fixedDelay: 0.001s, percentage: {numerator: 100}}
        envoy.filters.http.cors:
          "@type": type.googleapis.com/envoy.config.route.v3.CorsPolicy
          allowOriginStringMatch: [{safeRegex: {regex: "https://[a-z]+\\.example"}}]
          allowMethods: GET
    - name: abort
      match: {prefix: /abort}
      route: {cluster: backend}
      typedPerFilterConfig:
        envoy.filters.http.fault:
          "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
          abort: {httpStatus: 418, percentage: {numerator: 100}}
    - name: default
      match: {prefix: /}
      route: {cluster: backend, retryPolicy: {retryOn: retriable-status-codes, retriableStatusCodes: [503]}}
`

// TestRequestPathParsesNothing runs requests through a connection manager
// whose routes and filters use every kind of per-route config, and counts
// the typed-config decodes and regexp compiles (internal/confparse, the
// proxy's only door for either) while they are served: there must be none.
// Config is compiled once, when it arrives.
func TestRequestPathParsesNothing(t *testing.T) {
	backend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "ok %s", r.URL.Path)
	}))
	backend.Listener, _ = net.Listen("tcp", "127.0.0.1:0")
	backend.Start()
	defer backend.Close()
	clusters := backendClusters(t, backend.Listener.Addr())
	cfg := noParseConfig(t)
	reg := filters.NewRegistry()
	fault.Register(reg)
	cors.Register(reg)
	localratelimit.Register(reg, localratelimit.Options{})
	rbac.Register(reg, rbac.Options{})
	cm, err := New(cfg, &Env{Clusters: clusters, HTTPFilters: reg, Stats: stats.NewStore()})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(cm)
	defer front.Close()
	base := front.URL

	requests := []struct {
		method, path string
		headers      []string
		status       int
		check        string // a response header that must be set
	}{
		{"GET", "/re/abc", []string{"X-User", "bob", "Origin", "https://a.example", "Grpc-Timeout", "1S"}, 200, "Access-Control-Allow-Origin"},
		{"OPTIONS", "/re/abc", []string{"X-User", "bob", "Origin", "https://a.example", "Access-Control-Request-Method", "GET"}, 200, "Access-Control-Allow-Methods"},
		{"GET", "/abort", nil, 418, ""},
		{"GET", "/other", []string{"Origin", "https://b.example"}, 200, "Access-Control-Allow-Origin"},
		{"GET", "/other", []string{"X-Evil", "yeees"}, 403, ""},
	}
	round := func() {
		t.Helper()
		for _, rq := range requests {
			req, _ := http.NewRequest(rq.method, base+rq.path, strings.NewReader("body"))
			for i := 0; i+1 < len(rq.headers); i += 2 {
				req.Header.Set(rq.headers[i], rq.headers[i+1])
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != rq.status || rq.check != "" && resp.Header.Get(rq.check) == "" {
				t.Fatalf("%s %s: %d %v, want %d with %s", rq.method, rq.path, resp.StatusCode, resp.Header, rq.status, rq.check)
			}
		}
	}
	round() // connections and pools are set up lazily; config is not
	unmarshals, regexps := confparse.Counts()
	for range 20 {
		round()
	}
	u, r := confparse.Counts()
	if u != unmarshals || r != regexps {
		t.Errorf("serving requests decoded %d typed configs and compiled %d regexps; want none", u-unmarshals, r-regexps)
	}
}

// backendClusters is a cluster manager whose one STATIC cluster, "backend",
// is the test server at addr.
func backendClusters(tb testing.TB, addr net.Addr) *cluster.Manager {
	tb.Helper()
	host, portText, _ := net.SplitHostPort(addr.String())
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil {
		tb.Fatal(err)
	}
	clusters := cluster.NewManager(cluster.Options{})
	if err := clusters.Update(map[string]*clusterv3.Cluster{"backend": {Name: "backend",
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: "backend", Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: &corev3.Address{
				Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port)}}}}}}}},
		}}}}}, nil); err != nil {
		tb.Fatal(err)
	}
	return clusters
}

// noParseConfig is noParseHCM decoded.
func noParseConfig(tb testing.TB) *hcmv3.HttpConnectionManager {
	tb.Helper()
	js, err := yaml.YAMLToJSON([]byte(noParseHCM))
	if err != nil {
		tb.Fatal(err)
	}
	cfg := &hcmv3.HttpConnectionManager{}
	if err := protojson.Unmarshal(js, cfg); err != nil {
		tb.Fatal(err)
	}
	return cfg
}
