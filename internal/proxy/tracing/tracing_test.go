package tracing

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/skein-mesh/skein/internal/proxy/filters"
	"github.com/skein-mesh/skein/internal/proxy/stats"
)

const (
	tid = "463ac35c9f6413ad48485a3953bb6124"
	sid = "a2fb4a1d1a96d312"
	pid = "0020000000000001"
)

func TestExtract(t *testing.T) {
	cases := []struct {
		name    string
		headers map[string]string
		ok      bool
		want    SpanContext
		sampled bool
	}{
		{"b3 multi", map[string]string{"x-b3-traceid": tid, "x-b3-spanid": sid, "x-b3-parentspanid": pid, "x-b3-sampled": "1"},
			true, SpanContext{TraceID: tid, SpanID: sid, ParentID: pid, decision: sampled}, true},
		{"b3 multi 64-bit trace id, not sampled", map[string]string{"x-b3-traceid": "48485a3953bb6124", "x-b3-spanid": sid, "x-b3-sampled": "0"},
			true, SpanContext{TraceID: "000000000000000048485a3953bb6124", SpanID: sid, decision: notSampled}, false},
		{"b3 debug flag", map[string]string{"x-b3-traceid": tid, "x-b3-spanid": sid, "x-b3-flags": "1"},
			true, SpanContext{TraceID: tid, SpanID: sid, Debug: true}, true},
		{"b3 single", map[string]string{"b3": tid + "-" + sid + "-1-" + pid},
			true, SpanContext{TraceID: tid, SpanID: sid, ParentID: pid, decision: sampled}, true},
		{"b3 single deny only", map[string]string{"b3": "0"}, false, SpanContext{decision: notSampled}, false},
		{"w3c sampled", map[string]string{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
			true, SpanContext{TraceID: "0af7651916cd43dd8448eb211c80319c", SpanID: "b7ad6b7169203331", decision: sampled}, true},
		{"w3c not sampled", map[string]string{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"},
			true, SpanContext{TraceID: "0af7651916cd43dd8448eb211c80319c", SpanID: "b7ad6b7169203331", decision: notSampled}, false},
		{"b3 wins over w3c", map[string]string{"x-b3-traceid": tid, "x-b3-spanid": sid, "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
			true, SpanContext{TraceID: tid, SpanID: sid}, false},
		{"invalid ids", map[string]string{"x-b3-traceid": "xyz", "x-b3-spanid": "0000000000000000"}, false, SpanContext{}, false},
		{"w3c all-zero trace", map[string]string{"traceparent": "00-00000000000000000000000000000000-b7ad6b7169203331-01"}, false, SpanContext{}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tc.headers {
				h.Set(k, v)
			}
			got, ok := Extract(h)
			if ok != tc.ok || got != tc.want || got.Sampled() != tc.sampled {
				t.Errorf("Extract = %+v, %v (sampled %v); want %+v, %v (sampled %v)", got, ok, got.Sampled(), tc.want, tc.ok, tc.sampled)
			}
		})
	}
}

func TestInjectRoundTrip(t *testing.T) {
	h := http.Header{}
	h.Set("b3", "1")
	h.Set("tracestate", "congo=t61rcWkgMzE")
	c := SpanContext{TraceID: tid, SpanID: sid, ParentID: pid, decision: sampled}
	Inject(h, c)
	want := map[string]string{
		"X-B3-Traceid": tid, "X-B3-Spanid": sid, "X-B3-Parentspanid": pid, "X-B3-Sampled": "1",
		"B3": tid + "-" + sid + "-1-" + pid, "Traceparent": "00-" + tid + "-" + sid + "-01", "Tracestate": "congo=t61rcWkgMzE",
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	back, ok := Extract(h)
	if !ok || back != c {
		t.Errorf("Extract(Inject(c)) = %+v, want %+v", back, c)
	}
	// Each format alone carries the same context.
	for _, only := range []string{"B3", "Traceparent"} {
		h2 := http.Header{only: h.Values(only)}
		got, ok := Extract(h2)
		if !ok || got.TraceID != tid || got.SpanID != sid || !got.Sampled() {
			t.Errorf("Extract(%s only) = %+v, %v", only, got, ok)
		}
	}
}

// newTestTracer builds a tracer exporting Zipkin JSON to a real trace
// store over HTTP.
func newTestTracer(t *testing.T, kind Kind, sampling float64, provider *tracev3.Tracing_Http, addr string) *Tracer {
	t.Helper()
	tr, err := New(&hcmv3.HttpConnectionManager_Tracing{RandomSampling: &typev3.Percent{Value: sampling}, Provider: provider}, Options{
		Kind: kind, Upstream: kind == Client, NodeID: "sidecar~127.0.0.5~p.ns~ns.svc.cluster.local", ServiceName: "productpage.bookinfo-" + t.Name(), LocalIP: "127.0.0.5",
		Resolve: func(c string) (string, error) { return addr, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func zipkin(cluster string) *tracev3.Tracing_Http {
	a, _ := anypb.New(&tracev3.ZipkinConfig{CollectorCluster: cluster, CollectorEndpoint: "/api/v2/spans", TraceId_128Bit: true,
		SharedSpanContext: wrapperspb.Bool(false), CollectorEndpointVersion: tracev3.ZipkinConfig_HTTP_JSON})
	return &tracev3.Tracing_Http{Name: "envoy.tracers.zipkin", ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: a}}
}

func request(t *testing.T, tr *Tracer, headers map[string]string) *filters.Request {
	r := httptest.NewRequest("GET", "http://productpage:9080/productpage?u=1", nil)
	for k, v := range headers {
		r.Header.Set(k, v)
	}
	req := &filters.Request{HTTP: r, Conn: &filters.Conn{Source: netip.MustParseAddrPort("127.0.0.9:5555")}}
	tr.Start(req)
	return req
}

// collector is a Zipkin v2 JSON receiver over real HTTP, decoding what the
// exporter sends (the proxy may not import the control plane's store; the
// e2e test covers proxy → built-in store).
type collector struct {
	srv   *httptest.Server
	spans chan []zipkinSpan
	otlp  chan *collectortrace.ExportTraceServiceRequest
}

func newCollector(t *testing.T) *collector {
	c := &collector{spans: make(chan []zipkinSpan, 10), otlp: make(chan *collectortrace.ExportTraceServiceRequest, 10)}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch {
		case r.URL.Path == "/api/v2/spans" && r.Header.Get("Content-Type") == "application/json":
			var spans []zipkinSpan
			if err := json.Unmarshal(body, &spans); err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			c.spans <- spans
		case r.URL.Path == "/v1/traces" && r.Header.Get("Content-Type") == "application/x-protobuf":
			req := &collectortrace.ExportTraceServiceRequest{}
			if err := proto.Unmarshal(body, req); err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			c.otlp <- req
		default:
			http.Error(w, "unexpected "+r.URL.Path, 404)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *collector) addr() string { return strings.TrimPrefix(c.srv.URL, "http://") }

func TestZipkinExport(t *testing.T) {
	col := newCollector(t)
	server := newTestTracer(t, Server, 100, zipkin("zipkin"), col.addr())
	req := request(t, server, map[string]string{"x-b3-traceid": tid, "x-b3-spanid": sid, "x-b3-sampled": "1", "x-request-id": "rid-1"})
	// The request now carries this proxy's span as the parent upstream.
	child, ok := Extract(req.HTTP.Header)
	if !ok || child.TraceID != tid || child.ParentID != sid || child.SpanID == sid || !child.Sampled() {
		t.Fatalf("upstream context = %+v", child)
	}
	server.OnComplete(&filters.RequestInfo{Request: req, Status: 503, ResponseFlags: "UF", Cluster: "inbound|9080||", UpstreamHost: "127.0.0.6:9080", Duration: 3 * time.Millisecond, Start: time.Now()})
	var spans []zipkinSpan
	select {
	case spans = <-col.spans:
	case <-time.After(5 * time.Second):
		t.Fatal("no spans exported within 5s")
	}
	if len(spans) != 1 {
		t.Fatalf("exported %d spans, want 1", len(spans))
	}
	s := spans[0]
	if s.TraceID != tid || s.ID != child.SpanID || s.ParentID != sid || s.Kind != "SERVER" || s.Duration != 3000 ||
		s.Tags["http.status_code"] != "503" || s.Tags["error"] != "true" || s.Tags["response_flags"] != "UF" ||
		s.Tags["guid:x-request-id"] != "rid-1" || s.Tags["http.url"] != "http://productpage:9080/productpage?u=1" ||
		s.Tags["component"] != "proxy" || s.Tags["upstream_cluster"] != "inbound|9080||" || s.LocalEndpoint.ServiceName != "productpage.bookinfo-"+t.Name() ||
		s.Name != "productpage:9080/*" {
		t.Errorf("span = %+v", s)
	}
}

func TestOTLPHTTPExport(t *testing.T) {
	col := newCollector(t)
	cfg, _ := anypb.New(&tracev3.OpenTelemetryConfig{ServiceName: "reviews.bookinfo", HttpService: &corev3.HttpService{
		HttpUri: &corev3.HttpUri{Uri: "http://otel:4318/v1/traces", HttpUpstreamType: &corev3.HttpUri_Cluster{Cluster: "otel"}}}})
	client := newTestTracer(t, Client, 100, &tracev3.Tracing_Http{Name: "envoy.tracers.opentelemetry", ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: cfg}}, col.addr())
	req := request(t, client, nil)
	client.OnComplete(&filters.RequestInfo{Request: req, Status: 200, ResponseFlags: "-", Cluster: "outbound|9080||ratings.bookinfo.svc.cluster.local", UpstreamHost: "127.0.0.7:9080", Duration: time.Millisecond, Start: time.Now()})
	var got *collectortrace.ExportTraceServiceRequest
	select {
	case got = <-col.otlp:
	case <-time.After(5 * time.Second):
		t.Fatal("no OTLP export within 5s")
	}
	rs := got.GetResourceSpans()[0]
	sp := rs.GetScopeSpans()[0].GetSpans()[0]
	sc, _ := Extract(req.HTTP.Header)
	if rs.GetResource().GetAttributes()[0].GetValue().GetStringValue() != "reviews.bookinfo" ||
		hex.EncodeToString(sp.GetTraceId()) != sc.TraceID || hex.EncodeToString(sp.GetSpanId()) != sc.SpanID ||
		len(sp.GetParentSpanId()) != 0 || sp.GetName() != "productpage:9080/*" || req.HTTP.Header.Get("X-Envoy-Decorator-Operation") != sp.GetName() || sp.GetKind().String() != "SPAN_KIND_CLIENT" {
		t.Errorf("OTLP export = %v", got)
	}
}

func TestQueueOverflowDropsWithoutBlocking(t *testing.T) {
	e := &exporter{queue: make(chan *spanData, 2), dropped: stats.NewStore().Counter("d")}
	start := time.Now()
	for range 10 {
		e.enqueue(&spanData{})
	}
	if time.Since(start) > 100*time.Millisecond || e.dropped.Value() != 8 {
		t.Errorf("10 spans into a queue of 2: dropped %d in %v, want 8 without blocking", e.dropped.Value(), time.Since(start))
	}
}

func TestSamplingDecisions(t *testing.T) {
	never := newTestTracer(t, Client, 0, nil, "")
	always := newTestTracer(t, Client, 100, nil, "")
	cases := []struct {
		name    string
		tr      *Tracer
		headers map[string]string
		want    bool
	}{
		{"0% without decision", never, nil, false},
		{"100% without decision", always, nil, true},
		{"upstream decision yes wins over 0%", never, map[string]string{"x-b3-traceid": tid, "x-b3-spanid": sid, "x-b3-sampled": "1"}, true},
		{"upstream decision no wins over 100%", always, map[string]string{"x-b3-traceid": tid, "x-b3-spanid": sid, "x-b3-sampled": "0"}, false},
		{"traceparent flag", never, map[string]string{"traceparent": "00-" + tid + "-" + sid + "-01"}, true},
		{"x-envoy-force-trace", never, map[string]string{"x-envoy-force-trace": "true"}, true},
		{"x-client-trace-id (client_sampling 100%)", never, map[string]string{"x-client-trace-id": "abc"}, true},
		{"bare b3 deny", always, map[string]string{"b3": "0"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := request(t, tc.tr, tc.headers)
			got, _ := Extract(req.HTTP.Header)
			if got.Sampled() != tc.want {
				t.Errorf("sampled = %v, want %v (headers %v)", got.Sampled(), tc.want, req.HTTP.Header)
			}
		})
	}
}

func TestNewRejectsWhatIsNotImplemented(t *testing.T) {
	proto, _ := anypb.New(&tracev3.ZipkinConfig{CollectorCluster: "z", CollectorEndpoint: "/api/v2/spans", CollectorEndpointVersion: tracev3.ZipkinConfig_HTTP_PROTO})
	shared, _ := anypb.New(&tracev3.ZipkinConfig{CollectorCluster: "z", CollectorEndpoint: "/api/v2/spans", CollectorEndpointVersion: tracev3.ZipkinConfig_HTTP_JSON, SharedSpanContext: wrapperspb.Bool(true)})
	other, _ := anypb.New(&tracev3.DatadogConfig{CollectorCluster: "d"})
	cases := []struct {
		name string
		cfg  *hcmv3.HttpConnectionManager_Tracing
		want string
	}{
		{"verbose", &hcmv3.HttpConnectionManager_Tracing{Verbose: true}, "field verbose is not supported"},
		{"zipkin proto", &hcmv3.HttpConnectionManager_Tracing{Provider: &tracev3.Tracing_Http{Name: "z", ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: proto}}}, "HTTP_PROTO is not supported"},
		{"shared span context", &hcmv3.HttpConnectionManager_Tracing{Provider: &tracev3.Tracing_Http{Name: "z", ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: shared}}}, "shared_span_context"},
		{"datadog", &hcmv3.HttpConnectionManager_Tracing{Provider: &tracev3.Tracing_Http{Name: "d", ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: other}}}, "DatadogConfig is not supported"},
		{"bad percent", &hcmv3.HttpConnectionManager_Tracing{RandomSampling: &typev3.Percent{Value: 101}}, "not a percentage"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg, Options{Resolve: func(string) (string, error) { return "", nil }})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// traceService is a real OTLP/gRPC TraceService receiving exports.
type traceService struct {
	collectortrace.UnimplementedTraceServiceServer
	got chan *collectortrace.ExportTraceServiceRequest
}

func (s *traceService) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	s.got <- req
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func TestOTLPGRPCExport(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	svc := &traceService{got: make(chan *collectortrace.ExportTraceServiceRequest, 4)}
	g := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(g, svc)
	go g.Serve(lis)
	t.Cleanup(g.Stop)

	cfg, _ := anypb.New(&tracev3.OpenTelemetryConfig{ServiceName: "ratings.bookinfo", GrpcService: &corev3.GrpcService{
		TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: "otel", Authority: "otel-collector"}}}})
	tr := newTestTracer(t, Server, 100, &tracev3.Tracing_Http{Name: "envoy.tracers.opentelemetry", ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: cfg}}, lis.Addr().String())
	req := request(t, tr, map[string]string{"traceparent": "00-" + tid + "-" + sid + "-01"})
	tr.OnComplete(&filters.RequestInfo{Request: req, Status: 200, ResponseFlags: "-", Duration: time.Millisecond, Start: time.Now()})
	select {
	case got := <-svc.got:
		sp := got.GetResourceSpans()[0].GetScopeSpans()[0].GetSpans()[0]
		if hex.EncodeToString(sp.GetTraceId()) != tid || hex.EncodeToString(sp.GetParentSpanId()) != sid || sp.GetKind().String() != "SPAN_KIND_SERVER" {
			t.Errorf("exported span = %v", sp)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no OTLP/gRPC export within 5s")
	}
}
