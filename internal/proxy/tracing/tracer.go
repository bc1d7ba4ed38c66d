package tracing

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tagv3 "github.com/envoyproxy/go-control-plane/envoy/type/tracing/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"

	"github.com/skein-mesh/skein/internal/proxy/filters"
	"github.com/skein-mesh/skein/internal/proxy/internal/protocheck"
	"github.com/skein-mesh/skein/internal/proxy/stats"
)

var (
	tracingFields = protocheck.Fields(&hcmv3.HttpConnectionManager_Tracing{},
		"client_sampling", "random_sampling", "overall_sampling", "custom_tags", "max_path_tag_length", "provider")
	percentFields   = protocheck.Fields(&typev3.Percent{}, "value")
	customTagFields = protocheck.Fields(&tagv3.CustomTag{}, "tag", "literal", "environment", "request_header")
	providerFields  = protocheck.Fields(&tracev3.Tracing_Http{}, "name", "typed_config")
)

// Kind is the span kind: SERVER for requests a proxy receives on behalf of
// its workload or as a gateway, CLIENT for requests its workload sends.
type Kind string

// Span kinds.
const (
	Server Kind = "SERVER"
	Client Kind = "CLIENT"
)

// Options are the proxy-wide inputs of a tracer.
type Options struct {
	Kind Kind
	// Upstream is set for connection managers that send to other services
	// (sidecar outbound, gateways), unset for a sidecar's inbound.
	Upstream bool
	// NodeID is the proxy's node id, reported as the node_id tag.
	NodeID string
	// ServiceName names the local service in exported spans
	// ("productpage.bookinfo", Istio's APP_LABEL_AND_NAMESPACE).
	ServiceName string
	// LocalIP is the proxy's address for the span's local endpoint.
	LocalIP string
	// Resolve returns host:port of an endpoint of a collector cluster.
	Resolve func(cluster string) (string, error)
	Stats   *stats.Store
}

// Tracer makes a span of every request through one connection manager.
type Tracer struct {
	kind       Kind
	upstream   bool    // sends to other services: propagates its operation name
	random     float64 // random_sampling, percent
	client     float64 // client_sampling (x-client-trace-id), percent
	overall    float64 // overall_sampling, percent
	maxPathLen int
	// clusterOps memoises the default operation name per outbound cluster
	// (cluster name → "host:port/*"), built on the request path otherwise.
	clusterOps sync.Map
	tags       []customTag
	nodeID     string
	exp        *exporter
	local      endpoint
}

type customTag struct {
	name, literal, header, def string
}

// New compiles an HttpConnectionManager's tracing config. Unknown fields,
// tag kinds and providers are errors (the listener is NACKed).
func New(cfg *hcmv3.HttpConnectionManager_Tracing, o Options) (*Tracer, error) {
	if err := tracingFields.Check(cfg); err != nil {
		return nil, fmt.Errorf("tracing: %v", err)
	}
	t := &Tracer{kind: o.Kind, upstream: o.Upstream, random: 100, client: 100, overall: 100, maxPathLen: 256, nodeID: o.NodeID}
	for name, p := range map[string]struct {
		pct *typev3.Percent
		dst *float64
	}{"random_sampling": {cfg.GetRandomSampling(), &t.random}, "client_sampling": {cfg.GetClientSampling(), &t.client}, "overall_sampling": {cfg.GetOverallSampling(), &t.overall}} {
		if p.pct == nil {
			continue
		}
		if err := percentFields.Check(p.pct); err != nil {
			return nil, fmt.Errorf("tracing.%s: %v", name, err)
		}
		if v := p.pct.GetValue(); v < 0 || v > 100 {
			return nil, fmt.Errorf("tracing.%s: %v is not a percentage", name, v)
		}
		*p.dst = p.pct.GetValue()
	}
	if m := cfg.GetMaxPathTagLength(); m != nil {
		t.maxPathLen = int(m.GetValue())
	}
	for i, ct := range cfg.GetCustomTags() {
		if err := customTagFields.Check(ct); err != nil {
			return nil, fmt.Errorf("tracing.custom_tags[%d]: %v", i, err)
		}
		tag := customTag{name: ct.GetTag()}
		switch {
		case ct.GetLiteral() != nil:
			tag.literal = ct.GetLiteral().GetValue()
		case ct.GetEnvironment() != nil:
			// Environment tags are resolved once, as Envoy does at startup.
			tag.literal = envOr(ct.GetEnvironment().GetName(), ct.GetEnvironment().GetDefaultValue())
		case ct.GetRequestHeader() != nil:
			tag.header, tag.def = ct.GetRequestHeader().GetName(), ct.GetRequestHeader().GetDefaultValue()
		default:
			return nil, fmt.Errorf("tracing.custom_tags[%d] %q: one of literal, environment or request_header is required", i, ct.GetTag())
		}
		if tag.name == "" {
			return nil, fmt.Errorf("tracing.custom_tags[%d]: tag is required", i)
		}
		t.tags = append(t.tags, tag)
	}
	// Without a provider the proxy samples and propagates trace context
	// but reports nothing (Istio's disableSpanReporting).
	if p := cfg.GetProvider(); p != nil {
		if err := providerFields.Check(p); err != nil {
			return nil, fmt.Errorf("tracing.provider: %v", err)
		}
		exp, err := exporterFor(p, o)
		if err != nil {
			return nil, fmt.Errorf("tracing.provider %q: %v", p.GetName(), err)
		}
		t.exp = exp
	}
	t.local = endpoint{ServiceName: o.ServiceName}
	if ip := net.ParseIP(o.LocalIP); ip != nil && ip.To4() != nil {
		t.local.IPv4 = ip.String()
	} else if ip != nil {
		t.local.IPv6 = ip.String()
	}
	return t, nil
}

// Span is one request's span while it is in flight.
type Span struct {
	ctx   SpanContext
	kind  Kind
	start time.Time
	name  string
}

// spanState keeps the request's span for OnComplete.
var spanState = filters.NewStateKey("envoy.tracers.span")

// Start begins the span of a request: it reads the incoming context,
// decides sampling (once, where no decision exists yet, as Envoy does at
// the edge), and rewrites the request's trace headers so that the request
// forwarded upstream carries this span as its parent. The span is kept in
// the request's metadata for OnComplete.
func (t *Tracer) Start(req *filters.Request) {
	r := req.HTTP
	parent, ok := Extract(r.Header)
	sc := SpanContext{SpanID: newID(8), decision: parent.decision, Debug: parent.Debug}
	if ok {
		sc.TraceID, sc.ParentID = parent.TraceID, parent.SpanID
	} else {
		sc.TraceID = newID(16)
	}
	if sc.decision == undecided {
		sc.decision = t.decide(r.Header)
	}
	Inject(r.Header, sc)
	span := &Span{ctx: sc, kind: t.kind, start: time.Now(), name: t.operation(req)}
	// Envoy's decorator propagation: a client names the operation for the
	// server side, which adopts it (and does not pass it to the app).
	if t.upstream {
		r.Header.Set(hDecoratorOperation, span.name)
	} else if op := r.Header.Get(hDecoratorOperation); op != "" {
		span.name = op
		r.Header.Del(hDecoratorOperation)
	}
	req.SetState(spanState, span)
}

// decide makes a new sampling decision: forced traces first, then random
// sampling, both capped by overall sampling.
func (t *Tracer) decide(h http.Header) decision {
	var yes bool
	switch {
	case strings.EqualFold(h.Get(hForceTrace), "true") || h.Get(hForceTrace) != "" && h.Get(hForceTrace) != "false":
		yes = true
	case h.Get(hClientTrace) != "":
		yes = roll(t.client)
	default:
		yes = roll(t.random)
	}
	if yes && t.overall < 100 {
		yes = roll(t.overall)
	}
	if yes {
		return sampled
	}
	return notSampled
}

func roll(pct float64) bool {
	if pct >= 100 {
		return true
	}
	return pct > 0 && rand.Float64()*100 < pct
}

var _ filters.Observer = (*Tracer)(nil)

// OnComplete finishes the request's span and queues it for export when
// the trace is sampled.
func (t *Tracer) OnComplete(info *filters.RequestInfo) {
	req := info.Request
	if req == nil {
		return
	}
	s, _ := req.State(spanState).(*Span)
	if s == nil || !s.ctx.Sampled() || t.exp == nil {
		return
	}
	r := req.HTTP
	tags := map[string]string{
		"component":             "proxy",
		"node_id":               t.nodeID,
		"http.method":           r.Method,
		"http.protocol":         r.Proto,
		"http.url":              t.url(r),
		"http.status_code":      strconv.Itoa(info.Status),
		"response_flags":        info.ResponseFlags,
		"request_size":          strconv.FormatInt(info.BytesReceived, 10),
		"response_size":         strconv.FormatInt(info.BytesSent, 10),
		"user_agent":            orDash(r.Header.Get("User-Agent")),
		"guid:x-request-id":     r.Header.Get("X-Request-Id"),
		"downstream_cluster":    orDash(r.Header.Get("X-Envoy-Downstream-Service-Cluster")),
		"upstream_cluster":      orDash(info.Cluster),
		"upstream_cluster.name": orDash(info.Cluster),
	}
	if req.Conn != nil && req.Conn.Source.IsValid() {
		tags["peer.address"] = req.Conn.Source.Addr().String()
	}
	if info.UpstreamHost != "" {
		tags["upstream_address"] = info.UpstreamHost
	}
	if info.Status >= 500 || info.ResponseFlags != "-" && info.ResponseFlags != "" {
		tags["error"] = "true"
	}
	for _, ct := range t.tags {
		v := ct.literal
		if ct.header != "" {
			v = r.Header.Get(ct.header)
			if v == "" {
				v = ct.def
			}
		}
		if v != "" {
			tags[ct.name] = v
		}
	}
	for k, v := range tags {
		if v == "" {
			delete(tags, k)
		}
	}
	sp := &spanData{
		TraceID:  s.ctx.TraceID,
		ID:       s.ctx.SpanID,
		ParentID: s.ctx.ParentID,
		Name:     s.name,
		Kind:     s.kind,
		Start:    s.start,
		Duration: info.Duration,
		Local:    t.local,
		Tags:     tags,
	}
	if h, p, err := net.SplitHostPort(info.UpstreamHost); err == nil && s.kind == Client {
		port, _ := strconv.Atoi(p)
		sp.Remote = &endpoint{IPv4: h, Port: port}
	}
	t.exp.enqueue(sp)
}

// operation names the span as Envoy does with Istio's config: the route's
// decorator, else "<host>:<port>/*" from the outbound cluster, else the
// request's authority.
func (t *Tracer) operation(req *filters.Request) string {
	d := req.Route
	if d != nil && d.Decorator.GetOperation() != "" {
		return d.Decorator.GetOperation()
	}
	if d != nil && strings.HasPrefix(d.Cluster, "outbound|") {
		if op, ok := t.clusterOps.Load(d.Cluster); ok {
			return op.(string)
		}
		if parts := strings.Split(d.Cluster, "|"); len(parts) == 4 {
			op := parts[3] + ":" + parts[1] + "/*"
			t.clusterOps.Store(d.Cluster, op) // bounded by the clusters routes name
			return op
		}
	}
	host := req.HTTP.Host
	if i := strings.LastIndexByte(host, ':'); i < 0 && req.Conn != nil && req.Conn.Destination.IsValid() {
		host += ":" + strconv.Itoa(int(req.Conn.Destination.Port()))
	}
	return host + "/*"
}

func (t *Tracer) url(r *http.Request) string {
	p := r.URL.RequestURI()
	if r.URL.Path == "" && r.URL.RawQuery == "" {
		p = "/"
	}
	if t.maxPathLen > 0 && len(p) > t.maxPathLen {
		p = p[:t.maxPathLen]
	}
	return "http://" + r.Host + p
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ServiceName is the name a proxy reports its spans under, Istio's
// APP_LABEL_AND_NAMESPACE: "<app label or workload name>.<namespace>".
func ServiceName(labels map[string]string, workload, namespace string) string {
	name := labels["app"]
	if name == "" {
		name = workload
	}
	return name + "." + namespace
}
