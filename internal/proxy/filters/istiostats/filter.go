// Package istiostats is Istio's istio.stats HTTP filter (TypedStruct
// type.googleapis.com/stats.PluginConfig) together with Istio's HTTP
// metadata exchange: the client-side proxy sends its workload identity in
// x-envoy-peer-metadata, the server-side proxy strips it, answers with its
// own, and both record Istio's standard metrics (istio_requests_total,
// istio_request_duration_milliseconds, istio_request_bytes,
// istio_response_bytes, and for gRPC istio_request_messages_total and
// istio_response_messages_total) with Istio's labels, reporter "destination" on a
// sidecar's inbound side and "source" elsewhere (outbound, gateways).
//
// The filter also carries the proxyStatsMatcher (PluginConfig.stats_matcher,
// a Skein extension) that decides which Envoy stats /stats/prometheus shows.
package istiostats

import (
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/skein-mesh/skein/internal/proxy/filters"
	"github.com/skein-mesh/skein/internal/proxy/stats"
)

// Name and TypeURL identify the filter as Istio emits it.
const (
	Name    = "istio.stats"
	TypeURL = "type.googleapis.com/stats.PluginConfig"
)

// Options carry what the filter needs from the proxy: its own identity.
type Options struct {
	Node   Node
	Logger *slog.Logger
}

// Register adds the filter to reg.
func Register(reg *filters.Registry, opts Options) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	self, err := encodeNode(opts.Node)
	if err != nil {
		opts.Logger.Warn("istio.stats: cannot encode node metadata; peers will see unknown labels", "error", err)
	}
	shared := &shared{opts: opts, self: peerOf(opts.Node), selfHeader: self}
	reg.RegisterTypedStruct(Name, TypeURL, func(v *structpb.Struct) (filters.HTTPFilter, error) {
		return shared.build(v)
	})
}

// shared is the per-proxy state every filter instance uses.
type shared struct {
	opts       Options
	self       *peer
	selfHeader string
	peers      peerCache
}

func (s *shared) build(v *structpb.Struct) (*Filter, error) {
	c, err := parseConfig(v)
	if err != nil {
		return nil, err
	}
	p, err := compile(c, httpMetrics)
	if err != nil {
		return nil, err
	}
	tp, err := compile(c, tcpMetrics)
	if err != nil {
		return nil, err
	}
	m, err := c.StatsMatcher.matcher()
	if err != nil {
		return nil, err
	}
	return &Filter{shared: s, plan: p, tcpPlan: tp, matcher: m, hostFallback: !c.DisableHostHeaderFallback, inboundServices: c.InboundServices}, nil
}

// Filter is one connection manager's istio.stats instance.
type Filter struct {
	*shared
	plan         *plan // the HTTP metrics
	tcpPlan      *plan // the TCP metrics, when run as a network filter
	matcher      *stats.Matcher
	hostFallback bool
	// inboundServices are the services of an inbound port (sorted).
	inboundServices []string

	inbound  bool      // reporter=destination: a sidecar's inbound side
	tcp      *tcpMeter // set when running as a network filter (tcp.go)
	families [numMetrics]*stats.Family
	groups   sync.Map // label tuple key → *group

	// Memoized per-request strings, bounded together by cacheSize.
	principalCache sync.Map // peer principal → *[2]string
	hostCache      sync.Map // Host header → service host
	cacheSize      atomic.Int64
}

// group holds the series one label tuple updates, so a request does one
// map lookup for all its metrics.
type group struct{ series [numMetrics]*stats.Series }

var (
	_ filters.HTTPFilter     = (*Filter)(nil)
	_ filters.ResponseFilter = (*Filter)(nil)
	_ filters.Observer       = (*Filter)(nil)
	_ filters.StatsUser      = (*Filter)(nil)
)

// UseStats binds the filter to the proxy's store. The connection manager's
// stat prefix tells the traffic direction, as it does for the connection
// manager itself ("http.inbound_..."): Istio's reporter follows it.
func (f *Filter) UseStats(store *stats.Store, prefix string) {
	f.inbound = strings.HasPrefix(prefix, "http.inbound_")
	for m, mp := range f.plan.metrics {
		if mp.drop {
			continue
		}
		kind := stats.KindHistogram
		if counterMetric[m] {
			kind = stats.KindCounter
		}
		name := "istio_" + metricNames[m]
		f.families[m] = store.Family(name, kind, mp.labels, defaultBuckets)
	}
	if f.matcher != nil {
		store.SetMatcher(f.matcher)
	}
}

// peerState is the peer found by the metadata exchange.
var peerState = filters.NewStateKey(Name + ".peer")

// OnRequest runs the request half of the metadata exchange.
func (f *Filter) OnRequest(req *filters.Request) *filters.LocalReply {
	h := req.HTTP.Header
	if f.inbound {
		p := f.peers.get(h.Get(headerPeerMetadata))
		h.Del(headerPeerMetadata)
		h.Del(headerPeerMetadataID)
		req.SetState(peerState, p)
		return nil
	}
	// Only in-mesh upstreams get the proxy's identity; a passthrough or
	// an external service must not see it.
	if f.selfHeader != "" && req.Route != nil && strings.HasPrefix(req.Route.Cluster, "outbound|") {
		h.Set(headerPeerMetadata, f.selfHeader)
		h.Set(headerPeerMetadataID, f.opts.Node.ID)
	} else {
		h.Del(headerPeerMetadata)
		h.Del(headerPeerMetadataID)
	}
	return nil
}

// OnResponse runs the response half: the server answers with its identity,
// the client takes the server's and keeps it from the application.
func (f *Filter) OnResponse(req *filters.Request, status int, h http.Header) {
	if f.inbound {
		if f.selfHeader != "" {
			h.Set(headerPeerMetadata, f.selfHeader)
			h.Set(headerPeerMetadataID, f.opts.Node.ID)
		}
		return
	}
	p := f.peers.get(h.Get(headerPeerMetadata))
	h.Del(headerPeerMetadata)
	h.Del(headerPeerMetadataID)
	req.SetState(peerState, p)
}

// OnComplete records the request in Istio's metrics.
func (f *Filter) OnComplete(info *filters.RequestInfo) {
	if f.families == [numMetrics]*stats.Family{} {
		return // not bound to a store
	}
	var vals [numLabels]string
	f.labels(info, &vals)
	exprVals := f.plan.eval(info)
	key := groupKey(&vals, exprVals)
	g, ok := f.groups.Load(key)
	if !ok {
		g = f.newGroup(key, &vals, exprVals)
	}
	gr := g.(*group)
	if s := gr.series[mRequests]; s != nil {
		s.Counter.Inc()
	}
	if s := gr.series[mDuration]; s != nil {
		s.Histogram.Observe(float64(info.Duration) / 1e6)
	}
	if s := gr.series[mRequestBytes]; s != nil {
		s.Histogram.Observe(float64(info.BytesReceived))
	}
	if s := gr.series[mResponseBytes]; s != nil {
		s.Histogram.Observe(float64(info.BytesSent))
	}
	if s := gr.series[mRequestMessages]; s != nil {
		s.Counter.Add(uint64(max(info.RequestMessages, 0)))
	}
	if s := gr.series[mResponseMessages]; s != nil {
		s.Counter.Add(uint64(max(info.ResponseMessages, 0)))
	}
}

func (f *Filter) newGroup(key string, vals *[numLabels]string, exprVals []string) any {
	gr := &group{}
	for m, mp := range f.plan.metrics {
		fam := f.families[m]
		if mp.drop || fam == nil || grpcOnlyMetric[m] && vals[lProtocol] != "grpc" {
			continue
		}
		values := mp.values(vals, exprVals)
		gr.series[m] = fam.With(stats.Key(values), values)
	}
	g, _ := f.groups.LoadOrStore(key, gr)
	return g
}

// groupKey joins the label values in one allocation.
func groupKey(vals *[numLabels]string, extra []string) string {
	n := len(vals) + len(extra)
	for _, v := range vals {
		n += len(v)
	}
	for _, v := range extra {
		n += len(v)
	}
	var b strings.Builder
	b.Grow(n)
	for _, v := range vals {
		b.WriteString(v)
		b.WriteByte(0xff)
	}
	for _, v := range extra {
		b.WriteString(v)
		b.WriteByte(0xff)
	}
	return b.String()
}

// labels computes Istio's standard labels of one request.
func (f *Filter) labels(info *filters.RequestInfo, v *[numLabels]string) {
	other := unknownPeer
	var r *http.Request
	var conn *filters.Conn
	if info.Request != nil {
		if p, ok := info.Request.State(peerState).(*peer); ok {
			other = p
		}
		r, conn = info.Request.HTTP, info.Request.Conn
	}
	src, dst := f.self, other
	v[lReporter] = "source"
	v[lSrcPrincipal], v[lDstPrincipal] = "unknown", "unknown"
	v[lSecurityPolicy] = "unknown"
	if f.inbound {
		src, dst = other, f.self
		v[lReporter] = "destination"
		v[lSecurityPolicy] = "none"
		if conn != nil && conn.PeerPrincipal != "" {
			v[lSecurityPolicy] = "mutual_tls"
			p := f.principals(conn.PeerPrincipal)
			v[lSrcPrincipal], v[lDstPrincipal] = p[0], p[1]
		}
	}
	v[lSrcWorkload], v[lSrcNamespace], v[lSrcApp], v[lSrcVersion] = src.workload, src.namespace, src.app, src.version
	v[lSrcCanonicalService], v[lSrcCanonicalRevision], v[lSrcCluster] = src.canonicalService, src.canonicalRevision, src.cluster
	v[lDstWorkload], v[lDstNamespace], v[lDstApp], v[lDstVersion] = dst.workload, dst.namespace, dst.app, dst.version
	v[lDstCanonicalService], v[lDstCanonicalRevision], v[lDstCluster] = dst.canonicalService, dst.canonicalRevision, dst.cluster

	svc := ""
	if !f.inbound {
		cluster := info.Cluster
		if cluster == "" && info.Request != nil && info.Request.Route != nil {
			cluster = info.Request.Route.Cluster
		}
		svc = clusterHost(cluster)
	}
	if svc == "" && f.hostFallback && r != nil {
		svc = f.cachedHostService(r.Host)
	}
	if f.inbound && len(f.inboundServices) > 0 {
		svc = f.inboundService(svc)
	}
	v[lDstService] = orUnknown(svc)
	v[lDstServiceName], v[lDstServiceNamespace] = serviceParts(svc)

	v[lProtocol] = "http"
	v[lGRPCStatus] = ""
	if r != nil && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
		v[lProtocol] = "grpc"
		v[lGRPCStatus] = grpcStatus(info)
	}
	v[lResponseCode] = statusText(info.Status)
	v[lResponseFlags] = info.ResponseFlags
	if v[lResponseFlags] == "" {
		v[lResponseFlags] = "-"
	}
}

// principals returns the source and destination principal labels of an
// mTLS peer, memoized: a proxy sees few distinct peers.
func (f *Filter) principals(peerPrincipal string) *[2]string {
	if p, ok := f.principalCache.Load(peerPrincipal); ok {
		return p.(*[2]string)
	}
	p := &[2]string{"spiffe://" + peerPrincipal, f.selfPrincipal(peerPrincipal)}
	if f.cacheSize.Add(1) <= maxPeers {
		f.principalCache.Store(peerPrincipal, p)
	}
	return p
}

// cachedHostService memoizes hostService by Host header.
func (f *Filter) cachedHostService(host string) string {
	if s, ok := f.hostCache.Load(host); ok {
		return s.(string)
	}
	s := f.hostService(host)
	if f.cacheSize.Add(1) <= maxPeers {
		f.hostCache.Store(host, s)
	}
	return s
}

// selfPrincipal is the server's own SPIFFE identity in the peer's trust
// domain (both ends of a mesh connection share it).
func (f *Filter) selfPrincipal(peerPrincipal string) string {
	td, _, _ := strings.Cut(peerPrincipal, "/")
	if f.opts.Node.ServiceAccount == "" || f.opts.Node.Namespace == "" {
		return "unknown"
	}
	return "spiffe://" + td + "/ns/" + f.opts.Node.Namespace + "/sa/" + f.opts.Node.ServiceAccount
}

// inboundService picks the inbound port's service the Host header names,
// else the first, as Istio picks among an inbound cluster's services.
func (f *Filter) inboundService(fromHost string) string {
	for _, s := range f.inboundServices {
		if s == fromHost {
			return s
		}
	}
	return f.inboundServices[0]
}

// clusterHost is the service host of an Istio cluster name
// (outbound|port|subset|host); "" for others (passthrough, inbound).
func clusterHost(cluster string) string {
	if !strings.HasPrefix(cluster, "outbound|") {
		return ""
	}
	i := strings.LastIndexByte(cluster, '|')
	return cluster[i+1:]
}

// hostService completes a Host header into a service host: short names
// are in the proxy's namespace, as Kubernetes DNS resolves them.
func (f *Filter) hostService(host string) string {
	if h, _, ok := strings.Cut(host, ":"); ok && !strings.HasPrefix(host, "[") {
		host = h
	}
	if host == "" || host[0] >= '0' && host[0] <= '9' || host[0] == '[' {
		return "" // an address names no service
	}
	switch strings.Count(host, ".") {
	case 0:
		if f.opts.Node.Namespace != "" {
			return host + "." + f.opts.Node.Namespace + ".svc.cluster.local"
		}
	case 1:
		return host + ".svc.cluster.local"
	}
	if strings.HasSuffix(host, ".svc") {
		return host + ".cluster.local"
	}
	return host
}

// serviceParts splits name.namespace.svc.<domain>; other hosts are their
// own name with an unknown namespace.
func serviceParts(svc string) (name, namespace string) {
	if svc == "" {
		return "unknown", "unknown"
	}
	name, rest, _ := strings.Cut(svc, ".")
	ns, rest, _ := strings.Cut(rest, ".")
	if rest == "svc" || strings.HasPrefix(rest, "svc.") {
		return name, ns
	}
	return svc, "unknown"
}
