package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/skein-mesh/skein/internal/proxy/internal/xdstest"
	"github.com/skein-mesh/skein/internal/proxy/xdsclient"
)

// holding answers "<name>" at once, except on /hold where it first tells
// arrived and waits for release.
type holding struct {
	name    string
	arrived chan struct{}
	release chan struct{}
}

func newHolding(name string) *holding {
	return &holding{name: name, arrived: make(chan struct{}, 10), release: make(chan struct{})}
}

func (h *holding) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/hold" {
		h.arrived <- struct{}{}
		<-h.release
	}
	io.WriteString(w, h.name)
}

type result struct {
	status int
	body   string
	err    error
}

func fetch(c *http.Client, req *http.Request) <-chan result {
	out := make(chan result, 1)
	go func() {
		resp, err := c.Do(req)
		if err != nil {
			out <- result{err: err}
			return
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		out <- result{status: resp.StatusCode, body: string(body), err: err}
	}()
	return out
}

func waitArrived(t *testing.T, h *holding) {
	t.Helper()
	select {
	case <-h.arrived:
	case <-time.After(5 * time.Second):
		t.Fatalf("request never reached %s", h.name)
	}
}

func TestConfigUpdatesKeepInFlightRequests(t *testing.T) {
	const podIP = "127.77.0.3"
	cp := xdstest.Start(t, "127.0.0.1:0")
	v1 := newHolding("v1")
	v2 := newHolding("v2")
	app := newHolding("app")
	app2 := newHolding("app on 9081")
	v1Addr := upstream(t, "127.77.2.1", v1)
	v2Addr := upstream(t, "127.77.2.2", v2)
	appAddr := upstream(t, "127.77.2.3", app)
	app2Addr := upstream(t, "127.77.2.3", app2)

	resources := func(backend string, filters []string, inboundPort uint32, inboundApp string) xdstest.Resources {
		outbound := outboundHTTP(t, 9080)
		if filters != nil {
			hcm := rdsHCM(t, "outbound_0.0.0.0_9080", "9080")
			hcm.HttpFilters = nil
			for _, f := range filters {
				hcm.HttpFilters = append(hcm.HttpFilters, &hcmv3.HttpFilter{Name: f})
			}
			outbound.FilterChains[0].Filters[0] = hcmFilter(t, hcm)
		}
		inbound := "inbound|" + itoa(inboundPort) + "||"
		return xdstest.Resources{
			Clusters: []types.Resource{
				edsCluster(outboundCluster(backend)),
				staticCluster(t, inbound, inboundApp),
				passthroughCluster(),
			},
			Endpoints: []types.Resource{assignment(t, outboundCluster(backend), map[string]string{"v1": v1Addr, "v2": v2Addr}[backend])},
			Listeners: []types.Resource{virtualOutbound(t), outbound, virtualInbound(t, inboundPort)},
			Routes: []types.Resource{&routev3.RouteConfiguration{
				Name:         "9080",
				VirtualHosts: []*routev3.VirtualHost{serviceHost("reviews", routeTo("default", "/", outboundCluster(backend), 0))},
			}},
		}
	}

	h := startProxy(t, cp, Sidecar, podIP, "")
	cp.Set(t, h.nodeID, "v1", resources("v1", nil, 9080, appAddr))
	h.waitReady()

	// A request is in flight to v1 while the route moves to v2.
	req, _ := http.NewRequest("GET", "http://reviews:9080/hold", nil)
	inFlight := fetch(h.client, req)
	waitArrived(t, v1)
	cp.Set(t, h.nodeID, "v2", resources("v2", nil, 9080, appAddr))
	h.waitAllACKed("v2")
	if _, body, _ := h.get("http://reviews:9080/"); body != "v2" {
		t.Errorf("after the route update a new request reached %q, want v2", body)
	}
	close(v1.release)
	if r := <-inFlight; r.err != nil || r.status != 200 || r.body != "v1" {
		t.Errorf("in-flight request during the route update: %+v, want 200 from v1", r)
	}
	if n := len(regexp.MustCompile(`msg=listening .*listener=virtualOutbound`).FindAllString(h.logs.String(), -1)); n != 1 {
		t.Errorf("virtualOutbound was bound %d times, want once (no re-bind on route updates); logs:\n%s", n, h.logs.String())
	}

	// A listener with an unknown HTTP filter is NACKed; traffic is unaffected.
	cp.Set(t, h.nodeID, "v3", resources("v2", []string{"envoy.filters.http.foo", "envoy.filters.http.router"}, 9080, appAddr))
	nack := cp.WaitRequest(t, 5*time.Second, func(r *discoveryv3.DiscoveryRequest) bool {
		return r.GetTypeUrl() == xdsclient.ListenerType && r.GetErrorDetail() != nil
	})
	if msg := nack.GetErrorDetail().GetMessage(); !strings.Contains(msg, `"envoy.filters.http.foo"`) || !strings.Contains(msg, `listener "0.0.0.0_9080"`) || nack.GetVersionInfo() != "v2" {
		t.Errorf("NACK version %q reason %q; want v2 and a reason naming the listener and filter", nack.GetVersionInfo(), msg)
	}
	if _, body, _ := h.get("http://reviews:9080/"); body != "v2" {
		t.Errorf("after a NACK traffic reached %q, want v2", body)
	}
	if got := h.stat("listener_manager.lds.update_rejected"); got == "listener_manager.lds.update_rejected: 0" {
		t.Errorf("stat %s", got)
	}

	// The inbound port moves from 9080 to 9081 while a request is in flight
	// on 9080: it completes, then 9080 is closed and 9081 serves.
	inbound := fetch(http.DefaultClient, mustRequest(t, "http://"+net.JoinHostPort(podIP, "9080")+"/hold"))
	waitArrived(t, app)
	cp.Set(t, h.nodeID, "v4", resources("v2", nil, 9081, app2Addr))
	h.waitAllACKed("v4")
	resp, err := http.Get("http://" + net.JoinHostPort(podIP, "9081") + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "app on 9081" {
		t.Errorf("new inbound port answered %q", body)
	}
	close(app.release)
	if r := <-inbound; r.err != nil || r.status != 200 || r.body != "app" {
		t.Errorf("in-flight request on the removed port: %+v, want 200 from the app", r)
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(podIP, "9080"), time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("removed inbound port 9080 still accepts connections")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRouterModeBindsGatewayPortsAndDrains(t *testing.T) {
	const podIP, bindIP = "127.77.0.4", "127.77.0.5"
	cp := xdstest.Start(t, "127.0.0.1:0")
	backend := newHolding("productpage")
	addr := upstream(t, "127.77.3.1", backend)
	gateway := &listenerv3.Listener{
		Name:         "0.0.0.0_18080",
		Address:      sockAddr("0.0.0.0", 18080),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{hcmFilter(t, rdsHCM(t, "outbound_0.0.0.0_18080", "http.8080"))}}},
	}
	h := startProxy(t, cp, Router, podIP, bindIP)
	if !strings.HasPrefix(h.nodeID, "router~"+podIP+"~") {
		t.Errorf("node id %q", h.nodeID)
	}
	cp.Set(t, h.nodeID, "1", xdstest.Resources{
		Clusters:  []types.Resource{edsCluster(outboundCluster("productpage"))},
		Endpoints: []types.Resource{assignment(t, outboundCluster("productpage"), addr)},
		Listeners: []types.Resource{gateway},
		Routes: []types.Resource{&routev3.RouteConfiguration{Name: "http.8080", VirtualHosts: []*routev3.VirtualHost{{
			Name: "*:80", Domains: []string{"*"}, Routes: []*routev3.Route{routeTo("productpage", "/", outboundCluster("productpage"), 0)},
		}}}},
	})
	h.waitReady()
	gw := "http://" + net.JoinHostPort(bindIP, "18080")
	resp, err := http.Get(gw + "/productpage")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "productpage" {
		t.Fatalf("gateway answered %q", body)
	}

	// SIGTERM: in-flight requests finish, new connections are refused.
	inFlight := fetch(http.DefaultClient, mustRequest(t, gw+"/hold"))
	waitArrived(t, backend)
	h.cancel()
	deadline := time.Now().Add(2 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(bindIP, "18080"), time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("draining proxy still accepts connections")
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(backend.release)
	if r := <-inFlight; r.err != nil || r.status != 200 {
		t.Errorf("in-flight request during drain: %+v", r)
	}
	select {
	case <-h.proxy.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("proxy did not stop after draining")
	}
}

func TestNodeIdentity(t *testing.T) {
	o := Options{
		Mode: Sidecar, DiscoveryAddress: "127.0.0.1:15010", PodIP: "127.0.1.2", AppIP: "127.0.1.3",
		PodName: "reviews-v1-7f9d-abcde", Namespace: "bookinfo",
		Labels: map[string]string{"app": "reviews", "version": "v1", "pod-template-hash": "7f9d"},
	}
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	n := o.Node()
	if want := "sidecar~127.0.1.2~reviews-v1-7f9d-abcde.bookinfo~bookinfo.svc.cluster.local"; n.GetId() != want {
		t.Errorf("node id %q, want %q", n.GetId(), want)
	}
	m := n.GetMetadata().AsMap()
	for key, want := range map[string]any{
		"NAMESPACE": "bookinfo", "INSTANCE_IPS": "127.0.1.2", "SERVICE_ACCOUNT": "default",
		"WORKLOAD_NAME": "reviews-v1", "CLUSTER_ID": "Kubernetes", "INTERCEPTION_MODE": "NONE", "APP_IP": "127.0.1.3",
	} {
		if m[key] != want {
			t.Errorf("metadata %s = %v, want %v", key, m[key], want)
		}
	}
	if labels, _ := m["LABELS"].(map[string]any); labels["app"] != "reviews" || labels["version"] != "v1" {
		t.Errorf("metadata LABELS = %v", m["LABELS"])
	}

	bad := []struct {
		name   string
		change func(*Options)
		want   string
	}{
		{"mode", func(o *Options) { o.Mode = "ingress" }, `proxy mode "ingress"`},
		{"pod ip", func(o *Options) { o.PodIP = "pod-1" }, `pod IP "pod-1" is not an IP address`},
		{"app ip", func(o *Options) { o.AppIP = "x" }, `app IP "x"`},
		{"bind address", func(o *Options) { o.BindAddress = "localhost" }, `bind address "localhost"`},
		{"pod name", func(o *Options) { o.PodName = "" }, "no pod name"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			o := Options{Mode: Sidecar, DiscoveryAddress: "127.0.0.1:15010", PodIP: "127.0.1.2", PodName: "p"}
			tc.change(&o)
			if err := o.validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("validate() = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestParseLabels(t *testing.T) {
	got, err := ParseLabels("app=reviews, version=v1")
	if err != nil || len(got) != 2 || got["app"] != "reviews" || got["version"] != "v1" {
		t.Errorf("ParseLabels = %v, %v", got, err)
	}
	if _, err := ParseLabels("app"); err == nil {
		t.Error("ParseLabels accepted a label without =")
	}
}

func mustRequest(t *testing.T, u string) *http.Request {
	req, err := http.NewRequestWithContext(context.Background(), "GET", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func itoa(p uint32) string { return strconv.Itoa(int(p)) }

func TestNotReadyUntilConfigured(t *testing.T) {
	cp := xdstest.Start(t, "127.0.0.1:0")
	h := startProxy(t, cp, Sidecar, "127.77.0.6", "")
	if status, body := h.admin("/ready"); status != 503 || body != "PRE_INITIALIZING\n" {
		t.Errorf("/ready before any config = %d %q", status, body)
	}
	resp, err := http.Get("http://" + h.proxy.HealthAddr() + "/healthz/ready")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Errorf("/healthz/ready before any config = %d", resp.StatusCode)
	}
	// POST /quitquitquit: refused without the pod's credential (local
	// mode shares loopback with every user)
	resp, err = http.Post("http://"+h.proxy.AdminAddr()+"/quitquitquit", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("POST /quitquitquit without a credential = %d, want 403", resp.StatusCode)
	}
	// (admin.TestQuitNeedsThePod covers the credential); Quit stops it.
	h.proxy.Quit()
	select {
	case <-h.proxy.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("proxy did not stop after /quitquitquit")
	}
}
