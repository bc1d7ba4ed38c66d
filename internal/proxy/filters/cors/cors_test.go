package cors_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/skein-mesh/skein/internal/proxy/cluster"
	"github.com/skein-mesh/skein/internal/proxy/filters"
	"github.com/skein-mesh/skein/internal/proxy/filters/cors"
	"github.com/skein-mesh/skein/internal/proxy/hcm"
	"github.com/skein-mesh/skein/internal/proxy/listener"
	"github.com/skein-mesh/skein/internal/proxy/router"
	"github.com/skein-mesh/skein/internal/proxy/stats"
)

type noRDS struct{}

func (noRDS) Table(string) *router.Table { return nil }

func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func sock(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
}

// proxy runs a real listener on ip with the CORS filter; vh's routes go
// to a backend that answers "backend" (and says when it saw an OPTIONS).
func proxy(t *testing.T, ip string, vh *routev3.VirtualHost) (string, *stats.Store) {
	t.Helper()
	backend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend-Method", r.Method)
		io.WriteString(w, "backend")
	}))
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	backend.Listener = ln
	backend.Start()
	t.Cleanup(backend.Close)
	bhost, bport, _ := net.SplitHostPort(ln.Addr().String())
	var port uint32
	fmt.Sscan(bport, &port)
	clusters := cluster.NewManager(cluster.Options{})
	if err := clusters.Update(map[string]*clusterv3.Cluster{"backend": {
		Name:                 "backend",
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: "backend", Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: sock(bhost, port)}}}},
		}}},
	}}, nil); err != nil {
		t.Fatal(err)
	}
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix:     "test",
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{Name: "local", VirtualHosts: []*routev3.VirtualHost{vh}}},
		HttpFilters: []*hcmv3.HttpFilter{
			{Name: cors.Name, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &corsv3.Cors{})}},
			{Name: hcm.RouterFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &routerv3.Router{})}},
		},
	}
	reg := filters.NewRegistry()
	cors.Register(reg)
	st := stats.NewStore()
	m, err := listener.NewManager(listener.Options{PodIP: ip, Clusters: clusters, Routes: noRDS{}, HTTPFilters: reg, Stats: st, DrainTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown(context.Background()) })
	pl, _ := net.Listen("tcp", ip+":0")
	_, pport, _ := net.SplitHostPort(pl.Addr().String())
	pl.Close()
	fmt.Sscan(pport, &port)
	if err := m.Update(map[string]*listenerv3.Listener{"l": {
		Name:         "l",
		Address:      sock("0.0.0.0", port),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, hcm)}}}}},
	}}); err != nil {
		t.Fatal(err)
	}
	return "http://" + net.JoinHostPort(ip, pport), st
}

func route(t *testing.T, prefix string, p *routev3.CorsPolicy) *routev3.Route {
	r := &routev3.Route{
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: prefix}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "backend"}}},
	}
	if p != nil {
		r.TypedPerFilterConfig = map[string]*anypb.Any{cors.Name: mustAny(t, p)}
	}
	return r
}

func exact(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
}

func TestCORS(t *testing.T) {
	full := &routev3.CorsPolicy{
		AllowOriginStringMatch: []*matcherv3.StringMatcher{exact("https://a.example"),
			{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: `https://.*\.b\.example`}}}},
		AllowMethods: "GET,POST", AllowHeaders: "x-custom", ExposeHeaders: "x-trace", MaxAge: "600",
		AllowCredentials: wrapperspb.Bool(true),
		EnabledSpecifier: &routev3.CorsPolicy_FilterEnabled{FilterEnabled: &corev3.RuntimeFractionalPercent{
			DefaultValue: &typev3.FractionalPercent{Numerator: 100}}},
		ForwardNotMatchingPreflights: wrapperspb.Bool(true),
	}
	vh := &routev3.VirtualHost{Name: "all", Domains: []string{"*"},
		// the virtual host's own policy applies where a route has none
		Cors: &routev3.CorsPolicy{AllowOriginStringMatch: []*matcherv3.StringMatcher{{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "*"}}}, AllowMethods: "*"},
		Routes: []*routev3.Route{
			route(t, "/full", full),
			route(t, "/ignore", &routev3.CorsPolicy{AllowOriginStringMatch: []*matcherv3.StringMatcher{exact("https://a.example")},
				ForwardNotMatchingPreflights: wrapperspb.Bool(false)}),
			route(t, "/shadow", &routev3.CorsPolicy{AllowOriginStringMatch: []*matcherv3.StringMatcher{exact("https://a.example")},
				EnabledSpecifier: &routev3.CorsPolicy_FilterEnabled{FilterEnabled: &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{}}},
				ShadowEnabled:    &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{Numerator: 100}}}),
			route(t, "/", nil),
		}}
	base, st := proxy(t, "127.78.2.1", vh)

	tests := []struct {
		name, method, path, origin, reqMethod string
		status                                int
		backend                               string            // X-Backend-Method, "" when answered locally
		want                                  map[string]string // response headers ("" = absent)
	}{
		{"preflight allowed", "OPTIONS", "/full", "https://a.example", "POST", 200, "", map[string]string{
			"Access-Control-Allow-Origin": "https://a.example", "Access-Control-Allow-Methods": "GET,POST",
			"Access-Control-Allow-Headers": "x-custom", "Access-Control-Max-Age": "600",
			"Access-Control-Allow-Credentials": "true", "Access-Control-Expose-Headers": ""}},
		{"preflight regex origin", "OPTIONS", "/full", "https://x.b.example", "GET", 200, "", map[string]string{
			"Access-Control-Allow-Origin": "https://x.b.example"}},
		{"preflight unknown origin forwarded", "OPTIONS", "/full", "https://evil.example", "POST", 200, "OPTIONS", map[string]string{
			"Access-Control-Allow-Origin": ""}},
		{"preflight unknown origin ignored", "OPTIONS", "/ignore", "https://evil.example", "POST", 200, "", map[string]string{
			"Access-Control-Allow-Origin": ""}},
		{"options without request method is not a preflight", "OPTIONS", "/full", "https://a.example", "", 200, "OPTIONS", map[string]string{
			"Access-Control-Allow-Origin": "https://a.example", "Access-Control-Max-Age": ""}},
		{"simple request", "GET", "/full", "https://a.example", "", 200, "GET", map[string]string{
			"Access-Control-Allow-Origin": "https://a.example", "Access-Control-Allow-Credentials": "true",
			"Access-Control-Expose-Headers": "x-trace"}},
		{"simple request unknown origin", "GET", "/full", "https://evil.example", "", 200, "GET", map[string]string{
			"Access-Control-Allow-Origin": ""}},
		{"no origin", "GET", "/full", "", "", 200, "GET", map[string]string{"Access-Control-Allow-Origin": ""}},
		{"shadow mode only counts", "OPTIONS", "/shadow", "https://a.example", "POST", 200, "OPTIONS", map[string]string{
			"Access-Control-Allow-Origin": ""}},
		{"virtual host policy with wildcard origin and methods", "OPTIONS", "/other", "https://any.example", "PUT", 200, "", map[string]string{
			"Access-Control-Allow-Origin": "https://any.example", "Access-Control-Allow-Methods": "PUT"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, base+tc.path, nil)
			if tc.origin != "" {
				req.Header.Set("Origin", tc.origin)
			}
			if tc.reqMethod != "" {
				req.Header.Set("Access-Control-Request-Method", tc.reqMethod)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status || resp.Header.Get("X-Backend-Method") != tc.backend {
				t.Errorf("got %d (backend saw %q), want %d (%q)", resp.StatusCode, resp.Header.Get("X-Backend-Method"), tc.status, tc.backend)
			}
			for k, v := range tc.want {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}
	counters := map[string]int64{}
	for _, s := range st.Snapshot() {
		counters[s.Name] = s.Value
	}
	if counters["http.test.cors.origin_valid"] != 6 || counters["http.test.cors.origin_invalid"] != 3 {
		t.Errorf("origin_valid %d origin_invalid %d, want 6 and 3", counters["http.test.cors.origin_valid"], counters["http.test.cors.origin_invalid"])
	}
}

func TestInvalidPolicyIsNACKed(t *testing.T) {
	tests := []struct {
		name string
		p    *routev3.CorsPolicy
		want string
	}{
		{"bad regex", &routev3.CorsPolicy{AllowOriginStringMatch: []*matcherv3.StringMatcher{{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "("}}}}}, "safe_regex"},
		{"private network access", &routev3.CorsPolicy{AllowPrivateNetworkAccess: wrapperspb.Bool(true)}, "allow_private_network_access is not supported"},
		{"no default value", &routev3.CorsPolicy{EnabledSpecifier: &routev3.CorsPolicy_FilterEnabled{FilterEnabled: &corev3.RuntimeFractionalPercent{}}}, "default_value is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rc := &routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{Name: "v", Domains: []string{"*"},
				Routes: []*routev3.Route{route(t, "/", tc.p)}}}}
			reg := filters.NewRegistry()
			cors.Register(reg)
			if _, err := router.Compile(rc, reg); err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), cors.Name) {
				t.Errorf("router.Compile: %v, want %q naming %s", err, tc.want, cors.Name)
			}
		})
	}
}
