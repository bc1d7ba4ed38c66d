package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/skein-mesh/skein/internal/proxy/internal/xdstest"
	"github.com/skein-mesh/skein/internal/proxy/xdsclient"
)

// syncBuffer collects log output from several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// upstream starts a real HTTP server (HTTP/1.1 and h2c) on ip.
func upstream(t *testing.T, ip string, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: &p}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// named answers with its name and records the request headers it saw.
type named struct {
	name string
	mu   sync.Mutex
	last http.Header
}

func (n *named) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n.mu.Lock()
	n.last = r.Header.Clone()
	n.mu.Unlock()
	io.WriteString(w, n.name)
}

func (n *named) lastHeaders() http.Header {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.last
}

// closedAddr is an address nothing listens on.
func closedAddr(t *testing.T, ip string) string {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

type harness struct {
	t      *testing.T
	cp     *xdstest.Server
	proxy  *Proxy
	podIP  string
	nodeID string
	logs   *syncBuffer
	client *http.Client // sends through virtualOutbound, like HTTP_PROXY
	cancel context.CancelFunc
}

func startProxy(t *testing.T, cp *xdstest.Server, mode Mode, podIP, bindAddress string) *harness {
	t.Helper()
	logs := &syncBuffer{}
	opts := Options{
		Mode:             mode,
		DiscoveryAddress: cp.Addr(),
		PodIP:            podIP,
		AppIP:            "127.77.9.9",
		BindAddress:      bindAddress,
		PodName:          "reviews-v1-5d8f9-x2x7k",
		Namespace:        "default",
		Labels:           map[string]string{"app": "reviews", "version": "v1", "pod-template-hash": "5d8f9"},
		DrainTimeout:     2 * time.Second,
		Logger:           slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	ctx, cancel := context.WithCancel(context.Background())
	p, err := Start(ctx, opts)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		p.Wait()
	})
	proxyURL, _ := url.Parse("http://" + net.JoinHostPort(podIP, "15001"))
	return &harness{
		t: t, cp: cp, proxy: p, podIP: podIP, nodeID: p.node.GetId(), logs: logs, cancel: cancel,
		client: &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}, Timeout: 5 * time.Second},
	}
}

// waitReady waits for /ready to say LIVE.
func (h *harness) waitReady() {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get("http://" + h.proxy.AdminAddr() + "/ready")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && string(body) == "LIVE\n" {
				return
			}
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("proxy not ready; logs:\n%s", h.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitACK waits until the proxy ACKed version of typeURL.
func (h *harness) waitACK(typeURL, version string) {
	h.t.Helper()
	h.cp.WaitRequest(h.t, 5*time.Second, func(r *discoveryv3.DiscoveryRequest) bool {
		return r.GetTypeUrl() == typeURL && r.GetVersionInfo() == version && r.GetErrorDetail() == nil && r.GetResponseNonce() != ""
	})
}

// waitAllACKed waits until every type of a snapshot version is in force
// (types arrive in any order, so one ACK does not imply the others).
func (h *harness) waitAllACKed(version string) {
	h.t.Helper()
	for _, typeURL := range []string{xdsclient.ClusterType, xdsclient.EndpointType, xdsclient.ListenerType, xdsclient.RouteType} {
		h.waitACK(typeURL, version)
	}
}

func (h *harness) get(rawURL string) (int, string, http.Header) {
	h.t.Helper()
	resp, err := h.client.Get(rawURL)
	if err != nil {
		h.t.Fatalf("GET %s: %v", rawURL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp.Header
}

func (h *harness) admin(path string) (int, string) {
	h.t.Helper()
	resp, err := http.Get("http://" + h.proxy.AdminAddr() + path)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func (h *harness) stat(name string) string {
	h.t.Helper()
	_, body := h.admin("/stats?filter=" + url.QueryEscape("^"+regexp.QuoteMeta(name)+"$"))
	return strings.TrimSpace(body)
}

// h2cClient speaks HTTP/2 with prior knowledge.
func h2cClient() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &p}, Timeout: 5 * time.Second}
}

// echoStream echoes every line of the request body at once and ends with
// trailers, reporting the protocol it was reached over.
func echoStream(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Upstream-Proto", r.Proto)
	w.Header().Set("Trailer", "X-Checksum")
	w.WriteHeader(200)
	rc := http.NewResponseController(w)
	rc.EnableFullDuplex()
	rc.Flush()
	n := 0
	sc := bufio.NewScanner(r.Body)
	for sc.Scan() {
		n++
		fmt.Fprintf(w, "echo %s\n", sc.Text())
		rc.Flush()
	}
	w.Header().Set("X-Checksum", fmt.Sprintf("lines=%d", n))
}

// sidecarResources is the snapshot of TestSidecar.
func sidecarResources(t *testing.T, reviews []string, ratings, slow, down, app, grpcAddr string) xdstest.Resources {
	routes := serviceHost("reviews",
		directResponse("/direct", 200, "hello from the route"),
		routeTo("slow", "/slow", outboundCluster("slow"), 100*time.Millisecond),
		routeTo("default", "/", outboundCluster("reviews"), 0))
	return xdstest.Resources{
		Clusters: []types.Resource{
			edsCluster(outboundCluster("reviews")),
			withHTTP2(t, edsCluster(outboundCluster("ratings"))),
			withHTTP2(t, edsCluster(outboundCluster("health"))),
			edsCluster(outboundCluster("empty")),
			edsCluster(outboundCluster("slow")),
			edsCluster(outboundCluster("down")),
			staticCluster(t, "inbound|9080||", app),
			passthroughCluster(),
		},
		Endpoints: []types.Resource{
			assignment(t, outboundCluster("reviews"), reviews...),
			assignment(t, outboundCluster("ratings"), ratings),
			assignment(t, outboundCluster("health"), grpcAddr),
			assignment(t, outboundCluster("empty")),
			assignment(t, outboundCluster("slow"), slow),
			assignment(t, outboundCluster("down"), down),
		},
		Listeners: []types.Resource{virtualOutbound(t), outboundHTTP(t, 9080), virtualInbound(t, 9080)},
		Routes: []types.Resource{&routev3.RouteConfiguration{
			Name: "9080",
			VirtualHosts: []*routev3.VirtualHost{
				routes,
				serviceHost("ratings", routeTo("default", "/", outboundCluster("ratings"), 0)),
				serviceHost("empty", routeTo("default", "/", outboundCluster("empty"), 0)),
				serviceHost("health", routeTo("default", "/", outboundCluster("health"), 0)),
				serviceHost("down", routeTo("default", "/", outboundCluster("down"), 0)),
			},
		}},
	}
}

func TestSidecar(t *testing.T) {
	const podIP = "127.77.0.2"
	cp := xdstest.Start(t, "127.0.0.1:0")
	var reviews []string
	backends := map[string]*named{}
	for i := 1; i <= 3; i++ {
		n := &named{name: fmt.Sprintf("reviews-%d", i)}
		addr := upstream(t, fmt.Sprintf("127.77.1.%d", i), n)
		backends[n.name] = n
		reviews = append(reviews, addr)
	}
	ratings := upstream(t, "127.77.1.4", http.HandlerFunc(echoStream))
	release := make(chan struct{})
	defer close(release)
	slow := upstream(t, "127.77.1.5", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	app := &named{name: "the app"}
	appAddr := upstream(t, "127.77.9.9", app)
	outside := upstream(t, "127.77.1.6", &named{name: "outside the mesh"})
	grpcLn, err := net.Listen("tcp", "127.77.1.8:0")
	if err != nil {
		t.Fatal(err)
	}
	grpcServer := grpc.NewServer()
	healthService := health.NewServer()
	healthService.SetServingStatus("reviews", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(grpcServer, healthService)
	go grpcServer.Serve(grpcLn)
	defer grpcServer.Stop()

	h := startProxy(t, cp, Sidecar, podIP, "")
	cp.Set(t, h.nodeID, "v1", sidecarResources(t, reviews, ratings, slow, closedAddr(t, "127.77.1.7"), appAddr, grpcLn.Addr().String()))
	h.waitReady()

	t.Run("outbound by host through the forward proxy", func(t *testing.T) {
		status, body, hdr := h.get("http://reviews:9080/reviews/1")
		if status != 200 || !strings.HasPrefix(body, "reviews-") {
			t.Fatalf("got %d %q, want 200 from a reviews backend", status, body)
		}
		if hdr.Get("X-Envoy-Upstream-Service-Time") == "" {
			t.Error("no x-envoy-upstream-service-time on the response")
		}
		seen := backends[body].lastHeaders()
		if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(seen.Get("X-Request-Id")) {
			t.Errorf("upstream saw x-request-id %q, want a UUID v4", seen.Get("X-Request-Id"))
		}
		if seen.Get("X-Forwarded-Proto") != "http" {
			t.Errorf("upstream saw x-forwarded-proto %q, want http", seen.Get("X-Forwarded-Proto"))
		}
		if seen.Get("Proxy-Connection") != "" || seen.Get("Connection") != "" {
			t.Errorf("hop-by-hop headers reached the upstream: %v", seen)
		}
	})

	t.Run("an incoming request id is kept", func(t *testing.T) {
		req, _ := http.NewRequest("GET", "http://reviews.default.svc.cluster.local:9080/", nil)
		req.Header.Set("X-Request-Id", "abc-123")
		resp, err := h.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got := backends[string(body)].lastHeaders().Get("X-Request-Id"); got != "abc-123" {
			t.Errorf("x-request-id = %q, want abc-123", got)
		}
	})

	t.Run("round robin is even across three endpoints", func(t *testing.T) {
		counts := map[string]int{}
		for range 30 {
			_, body, _ := h.get("http://reviews:9080/")
			counts[body]++
		}
		for name := range backends {
			if counts[name] != 10 {
				t.Errorf("%s got %d of 30 requests, want 10 (%v)", name, counts[name], counts)
			}
		}
	})

	t.Run("inbound port forwards to the app", func(t *testing.T) {
		resp, err := http.Get("http://" + net.JoinHostPort(podIP, "9080") + "/productpage")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "the app" {
			t.Errorf("got %d %q, want 200 from the app", resp.StatusCode, body)
		}
	})

	t.Run("direct response", func(t *testing.T) {
		if status, body, _ := h.get("http://reviews:9080/direct"); status != 200 || body != "hello from the route" {
			t.Errorf("got %d %q", status, body)
		}
	})

	localReplies := []struct {
		name, url string
		status    int
		body      string
		flag      string
	}{
		{"no route", "http://nowhere:9080/", 404, "", "NR"},
		{"no healthy upstream", "http://empty:9080/", 503, "no healthy upstream", "UH"},
		{"connect failure", "http://down:9080/", 503, "upstream connect error or disconnect/reset before headers. reset reason: connection failure", "UF"},
		{"route timeout", "http://reviews:9080/slow", 504, "upstream request timeout", "UT"},
	}
	for _, tc := range localReplies {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			status, body, _ := h.get(tc.url)
			if status != tc.status || body != tc.body {
				t.Errorf("got %d %q, want %d %q", status, body, tc.status, tc.body)
			}
			if time.Since(start) > 2*time.Second {
				t.Errorf("took %v", time.Since(start))
			}
			u, _ := url.Parse(tc.url)
			want := fmt.Sprintf(`authority=%s path=%s protocol=HTTP/1.1 status=%d responseFlags=%s`, u.Host, u.Path, tc.status, tc.flag)
			if !strings.Contains(h.logs.String(), want) {
				t.Errorf("no access log with %q", want)
			}
		})
	}

	t.Run("passthrough for ports without a listener", func(t *testing.T) {
		if status, body, _ := h.get("http://" + outside + "/"); status != 200 || body != "outside the mesh" {
			t.Errorf("got %d %q", status, body)
		}
	})

	t.Run("h2c downstream and upstream, streaming both ways with trailers", func(t *testing.T) {
		pr, pw := io.Pipe()
		req, _ := http.NewRequest("POST", "http://"+net.JoinHostPort(podIP, "15001")+"/stream", pr)
		req.Host = "ratings:9080"
		resp, err := h2cClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.Header.Get("X-Upstream-Proto") != "HTTP/2.0" {
			t.Fatalf("downstream %s, upstream %q; want HTTP/2 both", resp.Proto, resp.Header.Get("X-Upstream-Proto"))
		}
		lines := bufio.NewReader(resp.Body)
		for i := range 3 {
			// Each echo must arrive before the next line is sent: nothing buffers.
			fmt.Fprintf(pw, "line %d\n", i)
			got, err := lines.ReadString('\n')
			if err != nil || got != fmt.Sprintf("echo line %d\n", i) {
				t.Fatalf("read %q, %v", got, err)
			}
		}
		pw.Close()
		io.Copy(io.Discard, lines)
		if got := resp.Trailer.Get("X-Checksum"); got != "lines=3" {
			t.Errorf("trailer X-Checksum = %q, want lines=3", got)
		}
	})

	t.Run("HTTP/1.1 chunked response trailers through the forward proxy", func(t *testing.T) {
		resp, err := h.client.Post("http://ratings:9080/stream", "text/plain", strings.NewReader("a\nb\n"))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "echo a\necho b\n" || resp.Trailer.Get("X-Checksum") != "lines=2" {
			t.Errorf("body %q trailer %q", body, resp.Trailer.Get("X-Checksum"))
		}
	})

	t.Run("gRPC through the outbound proxy, including a trailers-only error", func(t *testing.T) {
		conn, err := grpc.NewClient(net.JoinHostPort(podIP, "15001"),
			grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority("health:9080"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		client := healthpb.NewHealthClient(conn)
		resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "reviews"})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("Check = %v, %v; want SERVING", resp, err)
		}
		_, err = client.Check(ctx, &healthpb.HealthCheckRequest{Service: "nope"})
		if status.Code(err) != codes.NotFound {
			t.Errorf("Check(unknown) error = %v, want NotFound", err)
		}
	})

	t.Run("CONNECT tunnel through the passthrough chain", func(t *testing.T) {
		c, err := net.Dial("tcp", net.JoinHostPort(podIP, "15001"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", outside, outside)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("CONNECT answered %v, %v", resp, err)
		}
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: outside\r\nConnection: close\r\n\r\n")
		resp, err = http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if string(body) != "outside the mesh" {
			t.Errorf("through the tunnel: %q", body)
		}
	})

	t.Run("admin", func(t *testing.T) {
		status, body := h.admin("/config_dump?include_eds")
		if status != 200 {
			t.Fatalf("config_dump: %d", status)
		}
		var generic map[string]any
		if err := json.Unmarshal([]byte(body), &generic); err != nil {
			t.Fatalf("config_dump is not JSON: %v", err)
		}
		var dump adminv3.ConfigDump
		if err := protojson.Unmarshal([]byte(body), &dump); err != nil {
			t.Fatalf("config_dump is not a ConfigDump: %v", err)
		}
		var listeners adminv3.ListenersConfigDump
		var names []string
		for _, c := range dump.GetConfigs() {
			if c.MessageIs(&listeners) {
				c.UnmarshalTo(&listeners)
			}
		}
		for _, l := range listeners.GetDynamicListeners() {
			names = append(names, l.GetName())
			if l.GetActiveState().GetVersionInfo() != "v1" {
				t.Errorf("listener %s version %q, want v1", l.GetName(), l.GetActiveState().GetVersionInfo())
			}
		}
		if strings.Join(names, ",") != "0.0.0.0_9080,virtualInbound,virtualOutbound" {
			t.Errorf("dumped listeners %v", names)
		}
		if len(dump.GetConfigs()) != 5 {
			t.Errorf("config_dump?include_eds has %d configs, want bootstrap, clusters, endpoints, listeners, routes", len(dump.GetConfigs()))
		}

		for stat, want := range map[string]string{
			"cluster." + outboundCluster("reviews") + ".upstream_rq_total": "",
			"cluster." + outboundCluster("empty") + ".upstream_rq_503":     ": 1",
			"cluster." + outboundCluster("slow") + ".upstream_rq_504":      ": 1",
			"http.outbound_0.0.0.0_9080.downstream_rq_total":               "",
			"http.inbound_0.0.0.0_9080.downstream_rq_2xx":                  ": 1",
			"control_plane.connected_state":                                ": 1",
			"listener_manager.lds.update_success":                          ": 1",
		} {
			if got := h.stat(stat); !strings.HasPrefix(got, stat+": ") || !strings.HasSuffix(got, want) {
				t.Errorf("stat %s = %q, want suffix %q", stat, got, want)
			}
		}
		if _, body := h.admin("/listeners"); !strings.Contains(body, "virtualInbound::"+podIP+":9080") || !strings.Contains(body, "virtualOutbound::"+podIP+":15001") {
			t.Errorf("/listeners:\n%s", body)
		}
		if _, body := h.admin("/clusters"); !strings.Contains(body, outboundCluster("reviews")+"::"+reviews[0]+"::health_flags::healthy") {
			t.Errorf("/clusters:\n%s", body)
		}
		resp, err := http.Get("http://" + h.proxy.HealthAddr() + "/healthz/ready")
		if err != nil || resp.StatusCode != 200 {
			t.Errorf("healthz/ready: %v %v", resp, err)
		}
		resp, err = http.Get("http://" + h.proxy.PrometheusAddr() + "/stats/prometheus")
		if err != nil {
			t.Fatal(err)
		}
		prom, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(prom), `envoy_cluster_upstream_rq{envoy_cluster_name="`+outboundCluster("empty")+`",envoy_response_code="503"} 1`) {
			t.Errorf("prometheus output lacks the tagged 503 counter:\n%s", prom)
		}
	})
}
