package tracing

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonv1 "go.opentelemetry.io/proto/otlp/common/v1"
	resourcev1 "go.opentelemetry.io/proto/otlp/resource/v1"
	otlptrace "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/skein-mesh/skein/internal/proxy/internal/confparse"
	"github.com/skein-mesh/skein/internal/proxy/internal/protocheck"
	"github.com/skein-mesh/skein/internal/proxy/stats"
)

var (
	zipkinFields = protocheck.Fields(&tracev3.ZipkinConfig{},
		"collector_cluster", "collector_endpoint", "trace_id_128bit", "shared_span_context", "collector_endpoint_version", "collector_hostname")
	otelFields     = protocheck.Fields(&tracev3.OpenTelemetryConfig{}, "grpc_service", "http_service", "service_name")
	grpcFields     = protocheck.Fields(&corev3.GrpcService{}, "envoy_grpc", "timeout")
	envoyGRPCField = protocheck.Fields(&corev3.GrpcService_EnvoyGrpc{}, "cluster_name", "authority")
	httpSvcFields  = protocheck.Fields(&corev3.HttpService{}, "http_uri", "request_headers_to_add")
	httpURIFields  = protocheck.Fields(&corev3.HttpUri{}, "uri", "cluster", "timeout")
)

// Export tuning: Envoy flushes every 5 s or every 5 spans; a shorter
// interval keeps local traces visible quickly. The queue bounds memory:
// when a collector is slow or down, new spans are dropped (and counted),
// requests never wait.
const (
	flushInterval = time.Second
	batchSize     = 100
	queueSize     = 4096
)

// spanData is a finished span, independent of the wire format.
type spanData struct {
	TraceID, ID, ParentID string
	Name                  string
	Kind                  Kind
	Start                 time.Time
	Duration              time.Duration
	Local                 endpoint
	Remote                *endpoint
	Tags                  map[string]string
}

// endpoint is Zipkin's endpoint object.
type endpoint struct {
	ServiceName string `json:"serviceName,omitempty"`
	IPv4        string `json:"ipv4,omitempty"`
	IPv6        string `json:"ipv6,omitempty"`
	Port        int    `json:"port,omitempty"`
}

// sender delivers one batch to a collector address.
type sender func(ctx context.Context, addr string, spans []*spanData) error

// exporter batches spans for one collector. Exporters are shared by every
// connection manager with the same provider config and live as long as
// the proxy, as Envoy keeps one tracer per config.
type exporter struct {
	cluster string
	resolve func(string) (string, error)
	send    sender
	queue   chan *spanData
	log     *slog.Logger

	sent, dropped, failed, noCluster *stats.Counter
}

var (
	exportersMu sync.Mutex
	exporters   = map[string]*exporter{}
)

// exporterFor returns the exporter of a provider config, starting it the
// first time the config is seen.
func exporterFor(p *tracev3.Tracing_Http, o Options) (*exporter, error) {
	tc := p.GetTypedConfig()
	if tc == nil {
		return nil, fmt.Errorf("typed_config is required")
	}
	var cluster, prefix string
	var send sender
	switch {
	case tc.MessageIs(&tracev3.ZipkinConfig{}):
		var z tracev3.ZipkinConfig
		if err := confparse.Unmarshal(tc, &z); err != nil {
			return nil, err
		}
		if err := zipkinFields.Check(&z); err != nil {
			return nil, err
		}
		if z.GetCollectorEndpointVersion() != tracev3.ZipkinConfig_HTTP_JSON {
			return nil, fmt.Errorf("collector_endpoint_version %s is not supported (HTTP_JSON is)", z.GetCollectorEndpointVersion())
		}
		if z.GetSharedSpanContext().GetValue() {
			return nil, fmt.Errorf("shared_span_context true is not supported (set false, as Istio does)")
		}
		if z.GetCollectorCluster() == "" || z.GetCollectorEndpoint() == "" {
			return nil, fmt.Errorf("collector_cluster and collector_endpoint are required")
		}
		cluster, prefix = z.GetCollectorCluster(), "tracing.zipkin."
		send = zipkinSender(z.GetCollectorEndpoint(), z.GetCollectorHostname())
	case tc.MessageIs(&tracev3.OpenTelemetryConfig{}):
		var c tracev3.OpenTelemetryConfig
		if err := confparse.Unmarshal(tc, &c); err != nil {
			return nil, err
		}
		if err := otelFields.Check(&c); err != nil {
			return nil, err
		}
		svc := c.GetServiceName()
		if svc == "" {
			svc = o.ServiceName
		}
		prefix = "tracing.opentelemetry."
		switch {
		case c.GetHttpService() != nil:
			hs := c.GetHttpService()
			if err := httpSvcFields.Check(hs); err != nil {
				return nil, fmt.Errorf("http_service: %v", err)
			}
			if err := httpURIFields.Check(hs.GetHttpUri()); err != nil {
				return nil, fmt.Errorf("http_service.http_uri: %v", err)
			}
			u, err := url.Parse(hs.GetHttpUri().GetUri())
			if err != nil || u.Path == "" {
				return nil, fmt.Errorf("http_service.http_uri.uri %q must be a URL with a path", hs.GetHttpUri().GetUri())
			}
			hdr := http.Header{}
			for i, h := range hs.GetRequestHeadersToAdd() {
				if h.GetHeader() == nil || h.GetAppendAction() != 0 || h.GetAppend() != nil || h.GetKeepEmptyValue() {
					return nil, fmt.Errorf("http_service.request_headers_to_add[%d]: only header key/value is supported", i)
				}
				hdr.Add(h.GetHeader().GetKey(), h.GetHeader().GetValue())
			}
			cluster = hs.GetHttpUri().GetCluster()
			send = otlpHTTPSender(u.RequestURI(), u.Host, hdr, svc)
		case c.GetGrpcService() != nil:
			gs := c.GetGrpcService()
			if err := grpcFields.Check(gs); err != nil {
				return nil, fmt.Errorf("grpc_service: %v", err)
			}
			if gs.GetEnvoyGrpc() == nil {
				return nil, fmt.Errorf("grpc_service.envoy_grpc is required (google_grpc is not supported)")
			}
			if err := envoyGRPCField.Check(gs.GetEnvoyGrpc()); err != nil {
				return nil, fmt.Errorf("grpc_service.envoy_grpc: %v", err)
			}
			cluster = gs.GetEnvoyGrpc().GetClusterName()
			send = otlpGRPCSender(gs.GetEnvoyGrpc().GetAuthority(), svc)
		default:
			return nil, fmt.Errorf("one of grpc_service or http_service is required")
		}
		if cluster == "" {
			return nil, fmt.Errorf("a collector cluster is required")
		}
	default:
		return nil, fmt.Errorf("typed_config %s is not supported (ZipkinConfig and OpenTelemetryConfig are)", tc.GetTypeUrl())
	}
	if o.Resolve == nil {
		return nil, fmt.Errorf("no cluster manager to reach collector cluster %q", cluster)
	}
	key := p.GetName() + "\x00" + string(tc.GetValue()) + "\x00" + o.ServiceName
	exportersMu.Lock()
	defer exportersMu.Unlock()
	if e := exporters[key]; e != nil {
		return e, nil
	}
	st := o.Stats
	if st == nil {
		st = stats.NewStore()
	}
	e := &exporter{
		cluster: cluster, resolve: o.Resolve, send: send,
		queue:     make(chan *spanData, queueSize),
		log:       slog.Default().With("component", "tracing", "cluster", cluster),
		sent:      st.Counter(prefix + "spans_sent"),
		dropped:   st.Counter(prefix + "spans_dropped"),
		failed:    st.Counter(prefix + "reports_failed"),
		noCluster: st.Counter(prefix + "reports_skipped_no_cluster"),
	}
	exporters[key] = e
	go e.run()
	return e, nil
}

// enqueue hands a span to the exporter without ever blocking.
func (e *exporter) enqueue(s *spanData) {
	select {
	case e.queue <- s:
	default:
		e.dropped.Inc()
	}
}

func (e *exporter) run() {
	tick := time.NewTicker(flushInterval)
	defer tick.Stop()
	var batch []*spanData
	for {
		select {
		case s := <-e.queue:
			batch = append(batch, s)
			if len(batch) < batchSize {
				continue
			}
		case <-tick.C:
			if len(batch) == 0 {
				continue
			}
		}
		e.flush(batch)
		batch = nil
	}
}

func (e *exporter) flush(batch []*spanData) {
	addr, err := e.resolve(e.cluster)
	if err != nil {
		e.noCluster.Inc()
		e.dropped.Add(uint64(len(batch)))
		e.log.Debug("trace collector unreachable", "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.send(ctx, addr, batch); err != nil {
		e.failed.Inc()
		e.dropped.Add(uint64(len(batch)))
		e.log.Debug("trace export failed", "err", err)
		return
	}
	e.sent.Add(uint64(len(batch)))
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

func post(ctx context.Context, u, host, contentType string, body []byte, hdr http.Header) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", contentType)
	if host != "" {
		req.Host = host
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("collector answered %s", resp.Status)
	}
	return nil
}

// zipkinSpan is a span in Zipkin's v2 JSON model.
type zipkinSpan struct {
	TraceID        string            `json:"traceId"`
	ID             string            `json:"id"`
	ParentID       string            `json:"parentId,omitempty"`
	Name           string            `json:"name,omitempty"`
	Kind           string            `json:"kind,omitempty"`
	Timestamp      int64             `json:"timestamp"`
	Duration       int64             `json:"duration"`
	LocalEndpoint  *endpoint         `json:"localEndpoint,omitempty"`
	RemoteEndpoint *endpoint         `json:"remoteEndpoint,omitempty"`
	Tags           map[string]string `json:"tags,omitempty"`
}

func zipkinSender(path, hostname string) sender {
	return func(ctx context.Context, addr string, spans []*spanData) error {
		out := make([]zipkinSpan, len(spans))
		for i, s := range spans {
			local := s.Local
			out[i] = zipkinSpan{
				TraceID: s.TraceID, ID: s.ID, ParentID: s.ParentID, Name: s.Name, Kind: string(s.Kind),
				Timestamp: s.Start.UnixMicro(), Duration: max(s.Duration.Microseconds(), 1),
				LocalEndpoint: &local, RemoteEndpoint: s.Remote, Tags: s.Tags,
			}
		}
		body, err := json.Marshal(out)
		if err != nil {
			return err
		}
		return post(ctx, "http://"+addr+path, hostname, "application/json", body, nil)
	}
}

// otlpRequest converts spans to an OTLP export request.
func otlpRequest(service string, spans []*spanData) *collectortrace.ExportTraceServiceRequest {
	str := func(k, v string) *commonv1.KeyValue {
		return &commonv1.KeyValue{Key: k, Value: &commonv1.AnyValue{Value: &commonv1.AnyValue_StringValue{StringValue: v}}}
	}
	ss := &otlptrace.ScopeSpans{Scope: &commonv1.InstrumentationScope{Name: "envoy"}}
	for _, s := range spans {
		tid, _ := hex.DecodeString(s.TraceID)
		sid, _ := hex.DecodeString(s.ID)
		var pid []byte
		if s.ParentID != "" {
			pid, _ = hex.DecodeString(s.ParentID)
		}
		kind := otlptrace.Span_SPAN_KIND_SERVER
		if s.Kind == Client {
			kind = otlptrace.Span_SPAN_KIND_CLIENT
		}
		sp := &otlptrace.Span{
			TraceId: tid, SpanId: sid, ParentSpanId: pid, Name: s.Name, Kind: kind,
			StartTimeUnixNano: uint64(s.Start.UnixNano()),
			EndTimeUnixNano:   uint64(s.Start.Add(s.Duration).UnixNano()),
		}
		for k, v := range s.Tags {
			sp.Attributes = append(sp.Attributes, str(k, v))
		}
		if s.Tags["error"] == "true" {
			sp.Status = &otlptrace.Status{Code: otlptrace.Status_STATUS_CODE_ERROR}
		}
		ss.Spans = append(ss.Spans, sp)
	}
	return &collectortrace.ExportTraceServiceRequest{ResourceSpans: []*otlptrace.ResourceSpans{{
		Resource:   &resourcev1.Resource{Attributes: []*commonv1.KeyValue{str("service.name", service)}},
		ScopeSpans: []*otlptrace.ScopeSpans{ss},
	}}}
}

func otlpHTTPSender(path, host string, hdr http.Header, service string) sender {
	return func(ctx context.Context, addr string, spans []*spanData) error {
		body, err := proto.Marshal(otlpRequest(service, spans))
		if err != nil {
			return err
		}
		return post(ctx, "http://"+addr+path, host, "application/x-protobuf", body, hdr)
	}
}

// otlpGRPCSender exports over OTLP/gRPC, keeping one connection per
// collector address.
func otlpGRPCSender(authority, service string) sender {
	var conn *grpc.ClientConn
	var connAddr string
	return func(ctx context.Context, addr string, spans []*spanData) error {
		// Called only from the exporter's goroutine: no locking needed.
		if conn == nil || connAddr != addr {
			if conn != nil {
				conn.Close()
			}
			opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
			if authority != "" {
				opts = append(opts, grpc.WithAuthority(authority))
			}
			c, err := grpc.NewClient(addr, opts...)
			if err != nil {
				return err
			}
			conn, connAddr = c, addr
		}
		_, err := collectortrace.NewTraceServiceClient(conn).Export(ctx, otlpRequest(service, spans))
		return err
	}
}

func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}
