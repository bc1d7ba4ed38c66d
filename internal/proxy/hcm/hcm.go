// Package hcm is the proxy's HTTP connection manager
// (envoy.filters.network.http_connection_manager): per request it
// normalises the path, routes with the route table (RDS or inline), runs
// the HTTP filter chain, answers locally (no route, direct responses,
// redirects, filters' replies) or hands the request to package upstream,
// and reports the finished request to access logs, tracing and stats.
//
// Sockets and filter chain selection stay in package listener; a future
// HTTP/1.1 fast path or REDIRECT capture hands requests in through
// ConnectionManager.Serve.
package hcm

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path"
	"strings"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"github.com/skein-mesh/skein/internal/proxy/accesslog"
	"github.com/skein-mesh/skein/internal/proxy/cluster"
	"github.com/skein-mesh/skein/internal/proxy/filters"
	"github.com/skein-mesh/skein/internal/proxy/internal/confparse"
	"github.com/skein-mesh/skein/internal/proxy/internal/protocheck"
	"github.com/skein-mesh/skein/internal/proxy/router"
	"github.com/skein-mesh/skein/internal/proxy/stats"
	"github.com/skein-mesh/skein/internal/proxy/tracing"
	"github.com/skein-mesh/skein/internal/proxy/upstream"
)

// RouterFilterName is the terminal HTTP filter: routing and forwarding.
const RouterFilterName = "envoy.filters.http.router"

var (
	hcmFields = protocheck.Fields(&hcmv3.HttpConnectionManager{},
		"codec_type", "stat_prefix", "rds", "route_config", "http_filters",
		"server_name", "server_header_transformation", "use_remote_address",
		"xff_num_trusted_hops", "generate_request_id", "preserve_external_request_id",
		"upgrade_configs", "normalize_path", "merge_slashes",
		"forward_client_cert_details", "set_current_client_cert_details",
		"http2_protocol_options", "path_with_escaped_slashes_action", "stream_idle_timeout",
		"tracing", "access_log", "max_request_headers_kb", "common_http_protocol_options")
	commonOptionFields = protocheck.Fields(&corev3.HttpProtocolOptions{}, "max_headers_count")
	rdsFields          = protocheck.Fields(&hcmv3.Rds{}, "config_source", "route_config_name")
	httpFilterFields   = protocheck.Fields(&hcmv3.HttpFilter{}, "name", "typed_config")
	routerFilterField  = protocheck.Fields(&routerfilterv3.Router{}, "suppress_envoy_headers", "start_child_span")
	// Window and stream limits only tune Go's HTTP/2 server; accepted as such.
	http2OptionFields = protocheck.Fields(&corev3.Http2ProtocolOptions{}, "max_concurrent_streams", "initial_stream_window_size", "initial_connection_window_size")
	upgradeFields     = protocheck.Fields(&hcmv3.HttpConnectionManager_UpgradeConfig{}, "upgrade_type", "enabled")
)

// Clusters finds upstream clusters by name (the cluster manager).
type Clusters interface {
	Get(name string) (*cluster.Cluster, bool)
}

// Routes finds compiled RDS route tables by route configuration name; nil
// when the configuration has not arrived.
type Routes interface {
	Table(name string) *router.Table
}

// Env is what a connection manager needs from the proxy around it.
type Env struct {
	Clusters    Clusters
	Routes      Routes
	HTTPFilters *filters.Registry // nil: only the router filter
	Stats       *stats.Store
	Log         *slog.Logger
	// NodeID, ServiceName and PodIP identify the proxy in trace spans.
	NodeID, ServiceName, PodIP string
	// Outbound is set for a listener with traffic_direction OUTBOUND.
	Outbound bool
}

// ConnectionManager is a compiled HttpConnectionManager: it routes each
// request with the route table (RDS or inline) and forwards it upstream.
type ConnectionManager struct {
	env *Env
	fwd *upstream.Forwarder

	statPrefix string
	rdsName    string        // set when routes come from RDS
	inline     *router.Table // set for an inline route_config
	// fixedCluster replaces routing for HTTP requests handed to a
	// tcp_proxy chain by the outbound forward proxy: it picks the cluster
	// of each; transparent then adds no headers.
	fixedCluster func() string
	transparent  bool

	serverName          string
	serverHeader        hcmv3.HttpConnectionManager_ServerHeaderTransformation
	useRemoteAddress    bool
	generateRequestID   bool
	websocket           bool
	normalizePath       bool
	mergeSlashes        bool
	sanitizeClientCert  bool
	suppressEnvoyHeader bool
	// chain is the HTTP filters before the router, in configured order.
	chain filters.Chain
	// observers are told about every completed request: chain filters that
	// implement filters.Observer, then those built from the connection
	// manager's own config (access logs, tracing).
	observers []filters.Observer
	// tracer starts a span per request before forwarding (nil: no tracing).
	tracer *tracing.Tracer
	// inbound marks a sidecar inbound connection manager (stat prefix
	// "inbound_..."), whose requests are reported by the destination.
	inbound bool

	// maxHeaderBytes and maxHeaders bound a request's headers (Envoy's
	// max_request_headers_kb and max_headers_count): over them, 431.
	maxHeaderBytes, maxHeaders int

	stats hcmStats
}

// Envoy's default request header limits.
const (
	defaultMaxRequestHeadersKB = 60
	defaultMaxHeadersCount     = 100
)

type hcmStats struct {
	rqTotal, noRoute, directResponse, redirect *stats.Counter
	rqActive                                   *stats.Gauge
	class                                      [6]*stats.Counter // downstream_rq_<N>xx
}

// New compiles an HttpConnectionManager; an error names the first field
// the proxy does not implement.
func New(cfg *hcmv3.HttpConnectionManager, env *Env) (*ConnectionManager, error) {
	if err := hcmFields.Check(cfg); err != nil {
		return nil, err
	}
	if cfg.GetStatPrefix() == "" {
		return nil, fmt.Errorf("stat_prefix is required")
	}
	h := &ConnectionManager{
		env:               env,
		statPrefix:        cfg.GetStatPrefix(),
		serverName:        cfg.GetServerName(),
		serverHeader:      cfg.GetServerHeaderTransformation(),
		useRemoteAddress:  cfg.GetUseRemoteAddress().GetValue(),
		generateRequestID: cfg.GetGenerateRequestId() == nil || cfg.GetGenerateRequestId().GetValue(),
		normalizePath:     cfg.GetNormalizePath().GetValue(),
		mergeSlashes:      cfg.GetMergeSlashes(),
		// Without TLS there is no client certificate to forward: whatever a
		// client sends in x-forwarded-client-cert is dropped unless the
		// config says to trust it.
		sanitizeClientCert: cfg.GetForwardClientCertDetails() == hcmv3.HttpConnectionManager_SANITIZE ||
			cfg.GetForwardClientCertDetails() == hcmv3.HttpConnectionManager_SANITIZE_SET,
	}
	if h.serverName == "" {
		h.serverName = "envoy"
	}
	if err := http2OptionFields.Check(cfg.GetHttp2ProtocolOptions()); err != nil {
		return nil, fmt.Errorf("http2_protocol_options: %v", err)
	}
	switch cfg.GetPathWithEscapedSlashesAction() {
	case hcmv3.HttpConnectionManager_IMPLEMENTATION_SPECIFIC_DEFAULT, hcmv3.HttpConnectionManager_KEEP_UNCHANGED:
	default:
		return nil, fmt.Errorf("path_with_escaped_slashes_action %s is not supported yet", cfg.GetPathWithEscapedSlashesAction())
	}
	if d := cfg.GetStreamIdleTimeout(); d != nil && d.AsDuration() != 0 {
		return nil, fmt.Errorf("stream_idle_timeout other than 0s (disabled) is not supported yet")
	}
	switch cfg.GetCodecType() {
	case hcmv3.HttpConnectionManager_AUTO, hcmv3.HttpConnectionManager_HTTP1, hcmv3.HttpConnectionManager_HTTP2:
	default:
		return nil, fmt.Errorf("codec_type %s is not supported", cfg.GetCodecType())
	}
	switch {
	case cfg.GetRds() != nil:
		if err := rdsFields.Check(cfg.GetRds()); err != nil {
			return nil, fmt.Errorf("rds: %v", err)
		}
		if cfg.GetRds().GetRouteConfigName() == "" {
			return nil, fmt.Errorf("rds.route_config_name is required")
		}
		h.rdsName = cfg.GetRds().GetRouteConfigName()
	case cfg.GetRouteConfig() != nil:
		t, err := CompileRoutes(cfg.GetRouteConfig(), env.HTTPFilters)
		if err != nil {
			return nil, fmt.Errorf("route_config: %v", err)
		}
		h.inline = t
	default:
		return nil, fmt.Errorf("one of rds or route_config is required (scoped_routes is not supported)")
	}
	if err := h.filters(cfg.GetHttpFilters()); err != nil {
		return nil, err
	}
	for i, u := range cfg.GetUpgradeConfigs() {
		if err := upgradeFields.Check(u); err != nil {
			return nil, fmt.Errorf("upgrade_configs[%d]: %v", i, err)
		}
		if !strings.EqualFold(u.GetUpgradeType(), "websocket") {
			return nil, fmt.Errorf("upgrade_configs[%d]: upgrade_type %q is not supported (websocket is)", i, u.GetUpgradeType())
		}
		h.websocket = u.GetEnabled() == nil || u.GetEnabled().GetValue()
	}
	for _, f := range h.chain {
		if o, ok := f.(filters.Observer); ok {
			h.observers = append(h.observers, o)
		}
	}
	if err := h.telemetry(cfg); err != nil {
		return nil, err
	}
	if kb := cfg.GetMaxRequestHeadersKb(); kb != nil {
		if kb.GetValue() == 0 || kb.GetValue() > 8192 {
			return nil, fmt.Errorf("max_request_headers_kb: %d is not in [1, 8192]", kb.GetValue())
		}
		h.maxHeaderBytes = int(kb.GetValue()) << 10
	}
	if o := cfg.GetCommonHttpProtocolOptions(); o != nil {
		if err := commonOptionFields.Check(o); err != nil {
			return nil, fmt.Errorf("common_http_protocol_options: %v", err)
		}
		if n := o.GetMaxHeadersCount(); n != nil {
			if n.GetValue() == 0 {
				return nil, fmt.Errorf("common_http_protocol_options: max_headers_count must be at least 1")
			}
			h.maxHeaders = int(n.GetValue())
		}
	}
	h.inbound = strings.HasPrefix(h.statPrefix, "inbound_")
	h.init()
	return h, nil
}

// NewPassthrough is a connection manager for HTTP requests that reach a
// tcp_proxy chain through the forward proxy: it sends them, unchanged, to
// the cluster pick names for each (the bytes tcp_proxy would relay).
func NewPassthrough(env *Env, statPrefix string, pick func() string) *ConnectionManager {
	h := &ConnectionManager{
		env:                 env,
		statPrefix:          statPrefix,
		fixedCluster:        pick,
		transparent:         true,
		serverHeader:        hcmPassThrough,
		suppressEnvoyHeader: true,
	}
	h.init()
	return h
}

// init builds the forwarder and the stats of a compiled manager.
func (h *ConnectionManager) init() {
	if h.maxHeaderBytes == 0 {
		h.maxHeaderBytes = defaultMaxRequestHeadersKB << 10
	}
	if h.maxHeaders == 0 {
		h.maxHeaders = defaultMaxHeadersCount
	}
	h.fwd = &upstream.Forwarder{Clusters: h.env.Clusters, Log: h.env.Log,
		SuppressEnvoyHeaders: h.suppressEnvoyHeader, WebSocket: h.websocket}
	h.initStats()
}

func (h *ConnectionManager) initStats() {
	d := h.env
	p := "http." + h.statPrefix + "."
	h.stats = hcmStats{
		rqTotal:        d.Stats.Counter(p + "downstream_rq_total"),
		rqActive:       d.Stats.Gauge(p + "downstream_rq_active"),
		noRoute:        d.Stats.Counter(p + "no_route"),
		directResponse: d.Stats.Counter(p + "rq_direct_response"),
		redirect:       d.Stats.Counter(p + "rq_redirect"),
	}
	for i := 1; i <= 5; i++ {
		h.stats.class[i] = d.Stats.Counter(fmt.Sprintf("%sdownstream_rq_%dxx", p, i))
	}
}

// filters compiles the HTTP filters: registered ones in order, then the
// router, which must be last as Envoy requires.
func (h *ConnectionManager) filters(fs []*hcmv3.HttpFilter) error {
	if len(fs) == 0 {
		return fmt.Errorf("http_filters must end with %s", RouterFilterName)
	}
	for i, f := range fs {
		if err := httpFilterFields.Check(f); err != nil {
			return fmt.Errorf("http_filters[%d] %q: %v", i, f.GetName(), err)
		}
		tc := f.GetTypedConfig()
		isRouter := f.GetName() == RouterFilterName && tc == nil || tc.MessageIs(&routerfilterv3.Router{})
		if !isRouter {
			if i == len(fs)-1 {
				return fmt.Errorf("http_filters must end with %s, not %q", RouterFilterName, f.GetName())
			}
			if h.env.HTTPFilters == nil {
				return fmt.Errorf("http filter %q is not supported (only %s is)", f.GetName(), RouterFilterName)
			}
			filter, err := h.env.HTTPFilters.Build(f.GetName(), tc)
			if err != nil {
				return err
			}
			if su, ok := filter.(filters.StatsUser); ok && h.env.Stats != nil {
				su.UseStats(h.env.Stats, "http."+h.statPrefix+".")
			}
			h.chain = append(h.chain, filter)
			continue
		}
		if i != len(fs)-1 {
			return fmt.Errorf("http filter %s must be the last filter", RouterFilterName)
		}
		if tc == nil {
			continue
		}
		var rf routerfilterv3.Router
		if err := confparse.Unmarshal(tc, &rf); err != nil {
			return fmt.Errorf("http filter %q: typed_config must be envoy.extensions.filters.http.router.v3.Router: %v", f.GetName(), err)
		}
		if err := routerFilterField.Check(&rf); err != nil {
			return fmt.Errorf("http filter %q: %v", f.GetName(), err)
		}
		h.suppressEnvoyHeader = rf.GetSuppressEnvoyHeaders()
	}
	return nil
}

// CompileRoutes compiles a RouteConfiguration (RDS or inline) with the
// per-route configs of the filters in reg (nil: none).
func CompileRoutes(rc *routev3.RouteConfiguration, reg *filters.Registry) (*router.Table, error) {
	if reg == nil {
		return router.Compile(rc, nil)
	}
	return router.Compile(rc, reg)
}

// route finds the decision for r with the route table in force.
func (h *ConnectionManager) route(r *http.Request) (*router.Decision, bool) {
	switch {
	case h.fixedCluster != nil:
		return &router.Decision{Cluster: h.fixedCluster()}, true
	case h.inline != nil:
		return h.inline.Route(r)
	}
	t := h.env.Routes.Table(h.rdsName)
	if t == nil {
		return nil, false
	}
	return t.Route(r)
}

// ServeHTTP serves a request that arrived on the manager's own listener.
func (h *ConnectionManager) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.Serve(w, r, "")
}

// Serve handles one request. target is the host:port the client addressed
// (the original destination, used by ORIGINAL_DST clusters); "" means the
// request's authority.
func (h *ConnectionManager) Serve(w http.ResponseWriter, r *http.Request, target string) {
	ex := &exchange{hcm: h, w: w, r: r, start: time.Now(), target: target}
	h.stats.rqTotal.Inc()
	h.stats.rqActive.Inc()
	var counted *countingWriter
	if len(h.observers) > 0 {
		grpc := isGRPC(r)
		counted = &countingWriter{ResponseWriter: w}
		if grpc {
			counted.grpc = &grpcMessages{}
		}
		ex.w = counted
		if r.Body != nil && r.Body != http.NoBody {
			ex.reqBody = &countingReader{ReadCloser: r.Body}
			if grpc {
				ex.reqBody.grpc = &grpcMessages{}
			}
			r.Body = ex.reqBody
		}
	}
	defer func() {
		h.stats.rqActive.Dec()
		if c := ex.Status / 100; c >= 1 && c <= 5 {
			h.stats.class[c].Inc()
		}
		ex.log()
		if counted != nil {
			ex.observe(counted)
		}
	}()
	if !h.headersWithinLimits(r) {
		// As Envoy's codec: the request is refused and the connection
		// closed, since the client may not expect its headers cut.
		w.Header().Set("Connection", "close")
		ex.localReply(http.StatusRequestHeaderFieldsTooLarge, "DPE", "", nil)
		return
	}
	if ex.target == "" {
		ex.target = WithDefaultPort(r.Host, "80")
	}
	h.normalize(r)

	d, ok := h.route(r)
	if len(h.chain) > 0 || len(h.observers) > 0 {
		ex.filterReq = &filters.Request{HTTP: r, Conn: connInfo(r), Route: d}
	}
	if h.tracer != nil {
		h.tracer.Start(ex.filterReq) // rewrites the trace headers sent upstream
	}
	if len(h.chain) > 0 {
		if reply := h.chain.OnRequest(ex.filterReq); reply != nil {
			ex.decision = d
			for k, vs := range reply.Headers {
				w.Header()[k] = vs
			}
			ex.localReply(reply.Status, reply.Flag, reply.Body, d)
			return
		}
	}
	if !ok {
		h.stats.noRoute.Inc()
		ex.localReply(http.StatusNotFound, "NR", "", nil)
		return
	}
	ex.decision = d
	switch {
	case d.DirectResponse != nil:
		h.stats.directResponse.Inc()
		ex.localReply(d.DirectResponse.Status, "", d.DirectResponse.Body, d)
		return
	case d.Redirect != nil:
		h.stats.redirect.Inc()
		w.Header().Set("Location", d.Redirect.Location)
		ex.localReply(d.Redirect.Status, "", "", d)
		return
	}
	cl, ok := h.env.Clusters.Get(d.Cluster)
	if !ok {
		status := d.ClusterNotFoundStatus
		if status == 0 {
			status = http.StatusServiceUnavailable
		}
		ex.localReply(status, "NC", "", d)
		return
	}
	h.prepareHeaders(r)
	h.fwd.Forward(&upstream.Request{W: ex.w, R: r, Target: ex.target, Decision: d, Cluster: cl, Down: ex, Result: &ex.Result})
}

// headersWithinLimits checks the request's headers against the header
// count and size limits. Pseudo-headers count as Envoy sees them in
// HTTP/1 (the request line and host); sizes are names plus values.
func (h *ConnectionManager) headersWithinLimits(r *http.Request) bool {
	count := 1 // host
	size := len(r.Method) + len(r.RequestURI) + len(r.Host)
	for k, vs := range r.Header {
		count += len(vs)
		for _, v := range vs {
			size += len(k) + len(v)
		}
	}
	return count <= h.maxHeaders && size <= h.maxHeaderBytes
}

// normalize applies normalize_path and merge_slashes before routing.
func (h *ConnectionManager) normalize(r *http.Request) {
	if !h.normalizePath && !h.mergeSlashes {
		return
	}
	p := r.URL.Path
	if h.mergeSlashes {
		for strings.Contains(p, "//") {
			p = strings.ReplaceAll(p, "//", "/")
		}
	}
	if h.normalizePath && p != "" {
		clean := path.Clean(p)
		if strings.HasSuffix(p, "/") && clean != "/" {
			clean += "/"
		}
		p = clean
	}
	if p != r.URL.Path {
		r.URL.Path, r.URL.RawPath = p, ""
	}
}

// WithDefaultPort adds port to host when it has none.
func WithDefaultPort(host, port string) string {
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	return net.JoinHostPort(host, port)
}

// ConnState is what a connection manager keeps per downstream connection
// across its requests. The listener puts one in each accepted connection's
// context (WithConnState).
type ConnState struct {
	// info is what filters see of the connection, computed on its first
	// request.
	info atomic.Pointer[filters.Conn]
}

type connStateKey struct{}

// WithConnState returns ctx carrying the connection's state.
func WithConnState(ctx context.Context, s *ConnState) context.Context {
	return context.WithValue(ctx, connStateKey{}, s)
}

// connInfo describes the downstream connection of r for filters. A
// connection the listener accepted computes it once for all its requests.
func connInfo(r *http.Request) *filters.Conn {
	if sc, ok := r.Context().Value(connStateKey{}).(*ConnState); ok {
		if c := sc.info.Load(); c != nil {
			return c
		}
		c := describeConn(r)
		sc.info.Store(c)
		return c
	}
	return describeConn(r)
}

// describeConn reads the connection's addresses and peer identity from r.
// Filters only read the result.
func describeConn(r *http.Request) *filters.Conn {
	c := &filters.Conn{}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		c.Source = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if ap, err := netip.ParseAddrPort(la.String()); err == nil {
			c.Destination = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		}
	}
	if r.TLS != nil {
		c.TLS = true
		c.SNI = r.TLS.ServerName
		if len(r.TLS.PeerCertificates) > 0 {
			c.PeerCertificate = r.TLS.PeerCertificates[0]
			for _, u := range c.PeerCertificate.URIs {
				if u.Scheme == "spiffe" {
					c.PeerPrincipal = u.Host + u.Path
					break
				}
			}
		}
	}
	return c
}

// telemetry compiles the connection manager's access_log and tracing into
// observers of completed requests.
func (h *ConnectionManager) telemetry(cfg *hcmv3.HttpConnectionManager) error {
	if len(cfg.GetAccessLog()) > 0 {
		logs, err := accesslog.New(cfg.GetAccessLog())
		if err != nil {
			return err
		}
		h.observers = append(h.observers, logs)
	}
	if cfg.GetTracing() == nil {
		return nil
	}
	// Client spans for a sidecar's outbound traffic; a gateway (node type
	// "router") is the edge where traces start, so its spans are server
	// spans even though its listeners are OUTBOUND.
	kind := tracing.Server
	if h.env.Outbound && !strings.HasPrefix(h.env.NodeID, "router~") {
		kind = tracing.Client
	}
	d := h.env
	t, err := tracing.New(cfg.GetTracing(), tracing.Options{
		Kind: kind, Upstream: d.Outbound, NodeID: d.NodeID, ServiceName: d.ServiceName, LocalIP: d.PodIP, Stats: d.Stats,
		Resolve: func(name string) (string, error) {
			c, ok := d.Clusters.Get(name)
			if !ok {
				return "", fmt.Errorf("cluster %q not found", name)
			}
			ep, err := c.Pick(context.Background(), "")
			if err != nil {
				return "", err
			}
			return ep.Address, nil
		},
	})
	if err != nil {
		return err
	}
	h.tracer = t
	h.observers = append(h.observers, t)
	return nil
}

// Logger is the manager's logger, for servers that feed it requests.
func (h *ConnectionManager) Logger() *slog.Logger { return h.env.Log }
