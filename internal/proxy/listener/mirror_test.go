package listener

import (
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
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"

	"github.com/skein-mesh/skein/internal/proxy/cluster"
)

type seen struct {
	host, path, body string
}

func TestRequestMirroring(t *testing.T) {
	const podIP = "127.77.5.6"
	main := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "main %s %q", r.Host, b)
	}))
	main.Listener, _ = net.Listen("tcp", "127.77.5.7:0")
	main.Start()
	defer main.Close()
	mirrored := make(chan seen, 100)
	slow := make(chan struct{})
	shadow := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mirrored <- seen{r.Host, r.URL.Path, string(b)}
		if r.URL.Path == "/slow" {
			<-slow // a mirror that never answers must not hold the main response
		}
		w.WriteHeader(http.StatusInternalServerError) // nor may its errors leak
	}))
	shadow.Listener, _ = net.Listen("tcp", "127.77.5.8:0")
	shadow.Start()
	defer shadow.Close()
	defer close(slow) // before Close, which waits for the slow handler

	static := func(name, hostPort string) *clusterv3.Cluster {
		host, portText, _ := net.SplitHostPort(hostPort)
		var port uint32
		fmt.Sscan(portText, &port)
		return &clusterv3.Cluster{Name: name, ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
			LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
				LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: addr(host, port)}}}},
			}}}}
	}
	clusters := cluster.NewManager(cluster.Options{})
	if err := clusters.Update(map[string]*clusterv3.Cluster{
		"main": static("main", main.Listener.Addr().String()), "shadow": static("shadow", shadow.Listener.Addr().String()),
	}, nil); err != nil {
		t.Fatal(err)
	}
	hcm := inlineHCM("main")
	vh := hcm.GetRouteConfig().VirtualHosts[0]
	all := vh.Routes[0]
	none := &routev3.Route{
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/never"}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "main"},
			RequestMirrorPolicies: []*routev3.RouteAction_RequestMirrorPolicy{{Cluster: "shadow",
				RuntimeFraction: &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{Numerator: 0}}}}}},
	}
	all.GetRoute().RequestMirrorPolicies = []*routev3.RouteAction_RequestMirrorPolicy{
		{Cluster: "shadow", RuntimeFraction: &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{Numerator: 100}}},
		{Cluster: "missing"}, // an unknown mirror cluster is skipped
	}
	vh.Routes = []*routev3.Route{none, all}
	port := freePort(t, podIP)
	m := newManager(t, podIP, clusters)
	if err := m.Update(map[string]*listenerv3.Listener{"l": httpListener(t, "l", "0.0.0.0", port, hcm)}); err != nil {
		t.Fatal(err)
	}
	base := "http://" + net.JoinHostPort(podIP, fmt.Sprint(port))

	tests := []struct {
		name, method, path, host, body string
		mirror                         *seen // nil: no mirror expected
	}{
		{"get", "GET", "/a", "reviews:9080", "", &seen{"reviews-shadow:9080", "/a", ""}},
		{"host without port", "GET", "/b", "reviews", "", &seen{"reviews-shadow", "/b", ""}},
		{"body is copied", "POST", "/c", "reviews:9080", "payload", &seen{"reviews-shadow:9080", "/c", "payload"}},
		{"slow mirror", "GET", "/slow", "reviews:9080", "", &seen{"reviews-shadow:9080", "/slow", ""}},
		{"0% is not mirrored", "GET", "/never", "reviews:9080", "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, base+tc.path, strings.NewReader(tc.body))
			req.Host = tc.host
			start := time.Now()
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := fmt.Sprintf("main %s %q", tc.host, tc.body); resp.StatusCode != 200 || string(b) != want {
				t.Errorf("main response %d %q, want 200 %q", resp.StatusCode, b, want)
			}
			if took := time.Since(start); took > time.Second {
				t.Errorf("main response took %v: the mirror must not delay it", took)
			}
			select {
			case got := <-mirrored:
				if tc.mirror == nil {
					t.Errorf("mirrored %+v, want no mirror", got)
				} else if got != *tc.mirror {
					t.Errorf("mirror saw %+v, want %+v", got, *tc.mirror)
				}
			case <-time.After(500 * time.Millisecond):
				if tc.mirror != nil {
					t.Errorf("no mirrored request within 500ms")
				}
			}
		})
	}
}
