package istiostats

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	udpav1 "github.com/cncf/xds/go/udpa/type/v1"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/skein-mesh/skein/internal/proxy/filters"
	"github.com/skein-mesh/skein/internal/proxy/router"
	"github.com/skein-mesh/skein/internal/proxy/stats"
)

var (
	productpage = Node{ID: "sidecar~127.0.0.2~productpage-v1-x.bookinfo~bookinfo.svc.cluster.local", Name: "productpage-v1-x", Namespace: "bookinfo",
		WorkloadName: "productpage-v1", ServiceAccount: "bookinfo-productpage", ClusterID: "Kubernetes", Labels: map[string]string{"app": "productpage", "version": "v1"}}
	reviews = Node{ID: "sidecar~127.0.0.3~reviews-v2-y.bookinfo~bookinfo.svc.cluster.local", Name: "reviews-v2-y", Namespace: "bookinfo",
		WorkloadName: "reviews-v2", ServiceAccount: "bookinfo-reviews", ClusterID: "Kubernetes", Labels: map[string]string{"app": "reviews", "version": "v2"}}
)

// build makes one filter the way the connection manager does.
func build(t testing.TB, node Node, cfg map[string]any, store *stats.Store, prefix string) *Filter {
	t.Helper()
	reg := filters.NewRegistry()
	Register(reg, Options{Node: node})
	v, err := structpb.NewStruct(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := anypb.New(&udpav1.TypedStruct{TypeUrl: TypeURL, Value: v})
	f, err := reg.Build(Name, a)
	if err != nil {
		t.Fatal(err)
	}
	f.(filters.StatsUser).UseStats(store, prefix)
	return f.(*Filter)
}

// exchange runs one request through a client-side and a server-side filter
// as two proxies would, and returns what each reported.
func exchange(t testing.TB, client, server *Filter, reqHeader http.Header, status int, respHeader, trailer http.Header, principal string) {
	t.Helper()
	app := httptest.NewRequest("GET", "http://reviews:9080/reviews/0", nil)
	for k, vs := range reqHeader {
		app.Header[k] = vs
	}
	creq := &filters.Request{HTTP: app, Conn: &filters.Conn{}, Route: &router.Decision{Cluster: "outbound|9080|v2|reviews.bookinfo.svc.cluster.local"}}
	client.OnRequest(creq)
	if app.Header.Get(headerPeerMetadata) == "" || app.Header.Get(headerPeerMetadataID) != client.opts.Node.ID {
		t.Fatalf("client did not add peer metadata: %v", app.Header)
	}
	// Server side sees the forwarded request.
	sreqHTTP := app.Clone(app.Context())
	sreq := &filters.Request{HTTP: sreqHTTP, Conn: &filters.Conn{PeerPrincipal: principal}}
	server.OnRequest(sreq)
	if sreqHTTP.Header.Get(headerPeerMetadata) != "" {
		t.Fatal("server did not strip peer metadata from the request")
	}
	h := http.Header{}
	for k, vs := range respHeader {
		h[k] = vs
	}
	server.OnResponse(sreq, status, h)
	server.OnComplete(&filters.RequestInfo{Request: sreq, Status: status, ResponseFlags: "-", ResponseHeader: h, Trailer: trailer, Duration: 7 * time.Millisecond, BytesSent: 120, Inbound: true})
	if h.Get(headerPeerMetadata) == "" {
		t.Fatal("server did not answer with its metadata")
	}
	client.OnResponse(creq, status, h)
	if h.Get(headerPeerMetadata) != "" || h.Get(headerPeerMetadataID) != "" {
		t.Fatal("client did not strip peer metadata from the response")
	}
	client.OnComplete(&filters.RequestInfo{Request: creq, Status: status, ResponseFlags: "-", ResponseHeader: h, Trailer: trailer, Duration: 9 * time.Millisecond, BytesSent: 120,
		Cluster: "outbound|9080|v2|reviews.bookinfo.svc.cluster.local"})
}

// seriesLabels returns the single series of a family as a label map.
func seriesLabels(t *testing.T, store *stats.Store, name string) (map[string]string, *stats.Series) {
	t.Helper()
	for _, f := range store.Families() {
		if f.Name != name {
			continue
		}
		ss := f.Series()
		if len(ss) != 1 {
			t.Fatalf("%s: %d series, want 1", name, len(ss))
		}
		m := map[string]string{}
		for i, l := range f.Labels {
			m[l] = ss[0].Values[i]
		}
		return m, ss[0]
	}
	t.Fatalf("no family %s", name)
	return nil, nil
}

func TestExchangeLabels(t *testing.T) {
	common := map[string]string{
		"source_workload": "productpage-v1", "source_workload_namespace": "bookinfo", "source_app": "productpage", "source_version": "v1",
		"source_canonical_service": "productpage", "source_canonical_revision": "v1", "source_cluster": "Kubernetes",
		"destination_workload": "reviews-v2", "destination_workload_namespace": "bookinfo", "destination_app": "reviews", "destination_version": "v2",
		"destination_canonical_service": "reviews", "destination_canonical_revision": "v2", "destination_cluster": "Kubernetes",
		"destination_service": "reviews.bookinfo.svc.cluster.local", "destination_service_name": "reviews", "destination_service_namespace": "bookinfo",
		"response_flags": "-",
	}
	tests := []struct {
		name       string
		principal  string
		reqHeader  http.Header
		status     int
		respHeader http.Header
		trailer    http.Header
		client     map[string]string
		server     map[string]string
	}{
		{
			name: "http plaintext", status: 200,
			client: map[string]string{"reporter": "source", "request_protocol": "http", "response_code": "200", "grpc_response_status": "",
				"connection_security_policy": "unknown", "source_principal": "unknown", "destination_principal": "unknown"},
			server: map[string]string{"reporter": "destination", "request_protocol": "http", "response_code": "200", "grpc_response_status": "",
				"connection_security_policy": "none", "source_principal": "unknown", "destination_principal": "unknown"},
		},
		{
			name: "grpc over mTLS", principal: "cluster.local/ns/bookinfo/sa/bookinfo-productpage", status: 200,
			reqHeader: http.Header{"Content-Type": {"application/grpc"}}, trailer: http.Header{"Grpc-Status": {"14"}},
			client: map[string]string{"reporter": "source", "request_protocol": "grpc", "response_code": "200", "grpc_response_status": "14",
				"connection_security_policy": "unknown"},
			server: map[string]string{"reporter": "destination", "request_protocol": "grpc", "response_code": "200", "grpc_response_status": "14",
				"connection_security_policy": "mutual_tls",
				"source_principal":           "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-productpage",
				"destination_principal":      "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-reviews"},
		},
		{
			name: "grpc trailers-only", status: 200,
			reqHeader: http.Header{"Content-Type": {"application/grpc+proto"}}, respHeader: http.Header{"Grpc-Status": {"5"}},
			client: map[string]string{"request_protocol": "grpc", "grpc_response_status": "5"},
			server: map[string]string{"request_protocol": "grpc", "grpc_response_status": "5"},
		},
		{
			name: "server error", status: 503,
			client: map[string]string{"response_code": "503"},
			server: map[string]string{"response_code": "503"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs, ss := stats.NewStore(), stats.NewStore()
			client := build(t, productpage, map[string]any{}, cs, "http.outbound_0.0.0.0_9080.")
			server := build(t, reviews, map[string]any{}, ss, "http.inbound_0.0.0.0_9080.")
			exchange(t, client, server, tt.reqHeader, tt.status, tt.respHeader, tt.trailer, tt.principal)
			for side, c := range map[string]struct {
				store *stats.Store
				want  map[string]string
			}{"client": {cs, tt.client}, "server": {ss, tt.server}} {
				got, series := seriesLabels(t, c.store, "istio_requests_total")
				if len(got) != len(standardLabels) {
					t.Errorf("%s: %d labels, want %d", side, len(got), len(standardLabels))
				}
				for k, v := range common {
					if got[k] != v {
						t.Errorf("%s: %s = %q, want %q", side, k, got[k], v)
					}
				}
				for k, v := range c.want {
					if got[k] != v {
						t.Errorf("%s: %s = %q, want %q", side, k, got[k], v)
					}
				}
				if series.Counter.Value() != 1 {
					t.Errorf("%s: requests_total = %d, want 1", side, series.Counter.Value())
				}
				_, d := seriesLabels(t, c.store, "istio_request_duration_milliseconds")
				if v := d.Histogram.Value(); v.Count != 1 || v.Sum < 7 || v.Sum > 9 {
					t.Errorf("%s: duration histogram count %d sum %v", side, v.Count, v.Sum)
				}
				_, rb := seriesLabels(t, c.store, "istio_response_bytes")
				if v := rb.Histogram.Value(); v.Count != 1 || v.Sum != 120 {
					t.Errorf("%s: response bytes count %d sum %v", side, v.Count, v.Sum)
				}
			}
		})
	}
}

func TestNoPeerIsUnknown(t *testing.T) {
	ss := stats.NewStore()
	server := build(t, reviews, map[string]any{}, ss, "http.inbound_0.0.0.0_9080.")
	r := httptest.NewRequest("GET", "http://10.0.0.1:9080/", nil)
	req := &filters.Request{HTTP: r, Conn: &filters.Conn{}}
	server.OnRequest(req)
	server.OnComplete(&filters.RequestInfo{Request: req, Status: 404, ResponseFlags: "NR"})
	got, _ := seriesLabels(t, ss, "istio_requests_total")
	for k, want := range map[string]string{"source_workload": "unknown", "source_canonical_revision": "unknown", "destination_service": "unknown",
		"response_flags": "NR", "response_code": "404", "destination_workload": "reviews-v2"} {
		if got[k] != want {
			t.Errorf("%s = %q, want %q", k, got[k], want)
		}
	}
}

func TestPassthroughGetsNoMetadata(t *testing.T) {
	client := build(t, productpage, map[string]any{}, stats.NewStore(), "http.outbound_0.0.0.0_80.")
	r := httptest.NewRequest("GET", "http://example.com/", nil)
	r.Header.Set(headerPeerMetadata, "spoofed")
	client.OnRequest(&filters.Request{HTTP: r, Route: &router.Decision{Cluster: "PassthroughCluster"}})
	if r.Header.Get(headerPeerMetadata) != "" {
		t.Fatal("metadata sent to a passthrough destination")
	}
}

func TestOverrides(t *testing.T) {
	cfg := map[string]any{"metrics": []any{
		map[string]any{"name": "", "tags_to_remove": []any{"destination_canonical_revision"}},
		map[string]any{"name": "requests_total", "dimensions": map[string]any{"request_host": "request.host", "user_agent": "request.headers['user-agent']", "destination_cluster": "'east'"}},
		map[string]any{"name": "request_bytes", "drop": true},
	}}
	store := stats.NewStore()
	client := build(t, productpage, map[string]any{}, stats.NewStore(), "http.outbound_0.0.0.0_9080.")
	server := build(t, reviews, cfg, store, "http.inbound_0.0.0.0_9080.")
	exchange(t, client, server, http.Header{"User-Agent": {"curl/8"}}, 200, nil, nil, "")
	got, _ := seriesLabels(t, store, "istio_requests_total")
	for k, want := range map[string]string{"request_host": "reviews:9080", "user_agent": "curl/8", "destination_cluster": "east", "source_workload": "productpage-v1"} {
		if got[k] != want {
			t.Errorf("%s = %q, want %q", k, got[k], want)
		}
	}
	if _, ok := got["destination_canonical_revision"]; ok {
		t.Error("destination_canonical_revision not removed")
	}
	dur, _ := seriesLabels(t, store, "istio_request_duration_milliseconds")
	if _, ok := dur["destination_canonical_revision"]; ok || len(dur) != len(standardLabels)-1 {
		t.Errorf("duration labels %v", dur)
	}
	for _, f := range store.Families() {
		if f.Name == "istio_request_bytes" {
			t.Error("dropped metric istio_request_bytes still exported")
		}
	}
}

func TestConfigErrors(t *testing.T) {
	reg := filters.NewRegistry()
	Register(reg, Options{Node: reviews})
	for _, tt := range []struct {
		cfg  map[string]any
		want string
	}{
		{map[string]any{"bogus": true}, "unknown field"},
		{map[string]any{"stat_prefix": "foo"}, "stat_prefix"},
		{map[string]any{"metrics": []any{map[string]any{"name": "nope"}}}, "unknown metric"},
		{map[string]any{"metrics": []any{map[string]any{"name": "tcp_sent_bytes_total", "dimensions": map[string]any{"x": "'ok'"}}}}, ""},
		{map[string]any{"metrics": []any{map[string]any{"dimensions": map[string]any{"x": "upstream_peer.labels['a']"}}}}, "not supported"},
		{map[string]any{"metrics": []any{map[string]any{"dimensions": map[string]any{"bad-label": "'v'"}}}}, "Prometheus label"},
		{map[string]any{"stats_matcher": map[string]any{"inclusion_regexps": []any{"("}}}, "inclusion_regexps[0]"},
	} {
		v, _ := structpb.NewStruct(tt.cfg)
		a, _ := anypb.New(&udpav1.TypedStruct{TypeUrl: TypeURL, Value: v})
		_, err := reg.Build(Name, a)
		if tt.want == "" {
			if err != nil {
				t.Errorf("%v: %v", tt.cfg, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: error %v, want %q", tt.cfg, err, tt.want)
		}
	}
}

func TestStatsMatcherConfig(t *testing.T) {
	store := stats.NewStore()
	build(t, reviews, map[string]any{"stats_matcher": map[string]any{
		"inclusion_prefixes": []any{"server"}, "inclusion_suffixes": []any{"rbac.allowed"},
		"inclusion_regexps": []any{".*outlier_detection.*"}, "exclusion_regexps": []any{"server\\.state"},
	}}, store, "http.inbound_0.0.0.0_9080.")
	m := store.Matcher()
	for name, want := range map[string]bool{
		"server.live": true, "server.state": false, "http.x.rbac.allowed": true,
		"cluster.a.outlier_detection.ejections_active": true, "cluster.a.upstream_rq_total": false,
		"xserver": false,
	} {
		if got := m.Match(name); got != want {
			t.Errorf("Match(%q) = %v, want %v", name, got, want)
		}
	}
}

func BenchmarkOnComplete(b *testing.B) {
	store := stats.NewStore()
	client := build(b, productpage, map[string]any{}, stats.NewStore(), "http.outbound_0.0.0.0_9080.")
	server := build(b, reviews, map[string]any{}, store, "http.inbound_0.0.0.0_9080.")
	hdr, _ := encodeNode(productpage)
	_ = client
	r := httptest.NewRequest("GET", "http://reviews:9080/reviews/0", nil)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r.Header.Set(headerPeerMetadata, hdr)
		req := &filters.Request{HTTP: r, Conn: &filters.Conn{PeerPrincipal: "cluster.local/ns/bookinfo/sa/bookinfo-productpage"}}
		server.OnRequest(req)
		h := http.Header{}
		server.OnResponse(req, 200, h)
		server.OnComplete(&filters.RequestInfo{Request: req, Status: 200, ResponseFlags: "-", ResponseHeader: h, Duration: 3 * time.Millisecond, BytesSent: 512})
	}
}

func TestInboundServices(t *testing.T) {
	for _, tt := range []struct{ host, want string }{
		{"127.0.9.1:8080", "other.bookinfo.svc.cluster.local"}, // gateway forwards the external Host: the first service
		{"other:9080", "other.bookinfo.svc.cluster.local"},
		{"productpage:9080", "productpage.bookinfo.svc.cluster.local"},
	} {
		store := stats.NewStore()
		f := build(t, reviews, map[string]any{"inbound_services": []any{"other.bookinfo.svc.cluster.local", "productpage.bookinfo.svc.cluster.local"}}, store, "http.inbound_0.0.0.0_9080.")
		r := httptest.NewRequest("GET", "http://"+tt.host+"/", nil)
		req := &filters.Request{HTTP: r, Conn: &filters.Conn{}}
		f.OnRequest(req)
		f.OnComplete(&filters.RequestInfo{Request: req, Status: 200})
		got, _ := seriesLabels(t, store, "istio_requests_total")
		if got["destination_service"] != tt.want {
			t.Errorf("Host %s: destination_service %q, want %q", tt.host, got["destination_service"], tt.want)
		}
	}
}

// BenchmarkRecord is the metric recording alone: labels, one lookup, four
// updates, for an established series.
func BenchmarkRecord(b *testing.B) {
	store := stats.NewStore()
	server := build(b, reviews, map[string]any{}, store, "http.inbound_0.0.0.0_9080.")
	hdr, _ := encodeNode(productpage)
	r := httptest.NewRequest("GET", "http://reviews:9080/reviews/0", nil)
	r.Header.Set(headerPeerMetadata, hdr)
	req := &filters.Request{HTTP: r, Conn: &filters.Conn{PeerPrincipal: "cluster.local/ns/bookinfo/sa/bookinfo-productpage"}}
	server.OnRequest(req)
	info := &filters.RequestInfo{Request: req, Status: 200, ResponseFlags: "-", ResponseHeader: http.Header{}, Duration: 3 * time.Millisecond, BytesSent: 512}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			server.OnComplete(info)
		}
	})
}

// TestTCPPeerFromExchange: with the peer's node metadata from the TCP
// metadata exchange, both reporters label the other workload; without it
// only what the connection shows is known.
func TestTCPPeerFromExchange(t *testing.T) {
	productpageMeta := NodeMetadata(productpage)
	reviewsMeta := NodeMetadata(reviews)
	const cluster = "outbound|3306||mysql.bookinfo.svc.cluster.local"
	for _, tc := range []struct {
		name    string
		self    Node
		inbound bool
		conn    *filters.Conn
		want    map[string]string
	}{
		{"destination with exchange", reviews, true,
			&filters.Conn{PeerPrincipal: "cluster.local/ns/bookinfo/sa/bookinfo-productpage", PeerMetadata: productpageMeta},
			map[string]string{"reporter": "destination", "source_workload": "productpage-v1", "source_app": "productpage", "source_version": "v1",
				"source_canonical_service": "productpage", "source_cluster": "Kubernetes", "source_workload_namespace": "bookinfo",
				"destination_workload": "reviews-v2", "connection_security_policy": "mutual_tls"}},
		{"destination without exchange", reviews, true,
			&filters.Conn{PeerPrincipal: "cluster.local/ns/other/sa/default"},
			map[string]string{"reporter": "destination", "source_workload": "unknown", "source_app": "unknown", "source_workload_namespace": "other",
				"destination_workload": "reviews-v2"}},
		{"source with exchange", productpage, false,
			&filters.Conn{PeerMetadata: reviewsMeta},
			map[string]string{"reporter": "source", "source_workload": "productpage-v1", "destination_workload": "reviews-v2", "destination_app": "reviews",
				"destination_version": "v2", "destination_workload_namespace": "bookinfo", "destination_service": "mysql.bookinfo.svc.cluster.local"}},
		{"source without exchange", productpage, false,
			&filters.Conn{},
			map[string]string{"reporter": "source", "destination_workload": "unknown", "destination_workload_namespace": "bookinfo",
				"destination_service_name": "mysql"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := stats.NewStore()
			f := build(t, tc.self, map[string]any{}, store, "")
			f.BindTCP(store, tc.inbound)
			f.OpenTCP(tc.conn, cluster)(10, 20)
			got, s := seriesLabels(t, store, "istio_tcp_connections_opened_total")
			if s.Counter.Value() != 1 {
				t.Errorf("opened = %d, want 1", s.Counter.Value())
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

// TestGRPCMessageMetrics: gRPC requests add their message counts to
// istio_request_messages_total and istio_response_messages_total; HTTP
// requests create no message series at all, as in Istio.
func TestGRPCMessageMetrics(t *testing.T) {
	store := stats.NewStore()
	f := build(t, reviews, map[string]any{}, store, "http.inbound_0.0.0.0_9080")
	complete := func(contentType string, reqMsgs, respMsgs int64) {
		r := httptest.NewRequest("POST", "http://reviews:9080/pkg.Svc/Call", nil)
		r.Header.Set("Content-Type", contentType)
		req := &filters.Request{HTTP: r, Conn: &filters.Conn{}}
		f.OnRequest(req)
		f.OnComplete(&filters.RequestInfo{Request: req, Status: 200, ResponseFlags: "-", ResponseHeader: http.Header{},
			Trailer: http.Header{"Grpc-Status": {"0"}}, RequestMessages: reqMsgs, ResponseMessages: respMsgs, Inbound: true})
	}
	complete("application/json", 0, 0)
	complete("application/grpc", 1, 1)
	complete("application/grpc", 3, 5) // a streaming call
	for name, want := range map[string]uint64{"istio_request_messages_total": 4, "istio_response_messages_total": 6} {
		got, s := seriesLabels(t, store, name)
		if got["request_protocol"] != "grpc" || got["grpc_response_status"] != "0" || got["reporter"] != "destination" {
			t.Errorf("%s labels %v", name, got)
		}
		if s.Counter.Value() != want {
			t.Errorf("%s = %d, want %d", name, s.Counter.Value(), want)
		}
	}
	for _, fam := range store.Families() {
		if fam.Name == "istio_requests_total" && len(fam.Series()) != 2 {
			t.Errorf("istio_requests_total has %d series, want 2 (http and grpc)", len(fam.Series()))
		}
	}
}

// TestTCPOverrides: Telemetry overrides shape the TCP metrics too — a
// dropped metric is not recorded, removed tags are gone, dimensions from
// literals and connection attributes are added — and entries naming only
// HTTP metrics leave the TCP ones alone.
func TestTCPOverrides(t *testing.T) {
	store := stats.NewStore()
	f := build(t, reviews, map[string]any{"metrics": []any{
		map[string]any{"name": "tcp_connections_closed_total", "drop": true},
		map[string]any{"name": "tcp_sent_bytes_total", "tags_to_remove": []any{"source_principal"}},
		map[string]any{"dimensions": map[string]any{"dst_port": "string(destination.port)", "team": "'storage'"}},
		map[string]any{"name": "requests_total", "tags_to_remove": []any{"destination_app"}},
	}}, store, "")
	f.BindTCP(store, true)
	conn := &filters.Conn{PeerPrincipal: "cluster.local/ns/bookinfo/sa/bookinfo-productpage", Destination: netip.MustParseAddrPort("127.0.0.3:3306")}
	f.OpenTCP(conn, "inbound|3306||")(10, 20)

	names := map[string]bool{}
	for _, fam := range store.Families() {
		names[fam.Name] = true
	}
	if names["istio_tcp_connections_closed_total"] {
		t.Error("a dropped TCP metric is recorded")
	}
	opened, s := seriesLabels(t, store, "istio_tcp_connections_opened_total")
	if s.Counter.Value() != 1 || opened["dst_port"] != "3306" || opened["team"] != "storage" || opened["destination_app"] != "reviews" {
		t.Errorf("opened = %d %v", s.Counter.Value(), opened)
	}
	sent, s := seriesLabels(t, store, "istio_tcp_sent_bytes_total")
	if _, ok := sent["source_principal"]; ok || s.Counter.Value() != 20 {
		t.Errorf("sent = %d %v; want 20 without source_principal", s.Counter.Value(), sent)
	}
	if received, s := seriesLabels(t, store, "istio_tcp_received_bytes_total"); s.Counter.Value() != 10 || received["source_principal"] == "" {
		t.Errorf("received = %d %v", s.Counter.Value(), received)
	}
}
