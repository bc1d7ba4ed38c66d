package istiostats

import (
	"strings"

	"github.com/skein-mesh/skein/internal/proxy/filters"
	"github.com/skein-mesh/skein/internal/proxy/stats"
)

// Istio's TCP metrics, which istio.stats records when it runs as a
// network filter before tcp_proxy.
var tcpMetricNames = [...]string{
	"istio_tcp_connections_opened_total",
	"istio_tcp_connections_closed_total",
	"istio_tcp_received_bytes_total",
	"istio_tcp_sent_bytes_total",
}

const (
	tcpOpened = iota
	tcpClosed
	tcpReceived
	tcpSent
)

// tcpMetricConfigNames name the TCP metrics in PluginConfig overrides.
var tcpMetricConfigNames = func() (out [len(tcpMetricNames)]string) {
	for i, n := range tcpMetricNames {
		out[i] = strings.TrimPrefix(n, "istio_")
	}
	return out
}()

// tcpLabelIndexes are Istio's TCP metric labels: the HTTP ones without
// response_code and grpc_response_status.
func tcpLabelIndexes() []int {
	var out []int
	for i := range numLabels {
		if i != lResponseCode && i != lGRPCStatus {
			out = append(out, i)
		}
	}
	return out
}

// tcpMeter is the filter's network-filter side.
type tcpMeter struct {
	inbound  bool
	families [len(tcpMetricNames)]*stats.Family // nil: dropped by an override
}

var _ filters.TCPObserver = (*Filter)(nil)

// BindTCP binds the filter, as a network filter, to the proxy's store,
// with the metric shapes the Telemetry overrides give the TCP metrics.
func (f *Filter) BindTCP(store *stats.Store, inbound bool) {
	m := &tcpMeter{inbound: inbound}
	for i, name := range tcpMetricNames {
		if mp := f.tcpPlan.metrics[i]; !mp.drop {
			m.families[i] = store.Family(name, stats.KindCounter, mp.labels, nil)
		}
	}
	f.tcp = m
	if f.matcher != nil {
		store.SetMatcher(f.matcher)
	}
}

// OpenTCP counts an opened connection and returns what counts its close.
//
// The peer's workload labels come from Istio's TCP metadata exchange
// (conn.PeerMetadata, see metadataexchange). Without one, the peer is what
// the connection itself says: on the inbound side the mTLS peer
// certificate gives source_workload_namespace; on the outbound side the
// cluster name gives destination_service and its namespace. Other peer
// labels are then "unknown".
func (f *Filter) OpenTCP(conn *filters.Conn, cluster string) func(received, sent int64) {
	m := f.tcp
	if m == nil {
		return func(int64, int64) {}
	}
	var v [numLabels]string
	f.tcpLabels(m.inbound, conn, cluster, &v)
	// Expressions see the connection; request and response attributes
	// are unknown on TCP.
	var exprVals []string
	if len(f.tcpPlan.exprs) > 0 {
		exprVals = f.tcpPlan.eval(&filters.RequestInfo{Request: &filters.Request{Conn: conn}, Cluster: cluster, Inbound: m.inbound})
	}
	var counters [len(tcpMetricNames)]*stats.Counter
	for i, fam := range m.families {
		if fam == nil {
			continue
		}
		values := f.tcpPlan.metrics[i].values(&v, exprVals)
		counters[i] = &fam.With(stats.Key(values), values).Counter
	}
	add := func(i int, n uint64) {
		if counters[i] != nil {
			counters[i].Add(n)
		}
	}
	add(tcpOpened, 1)
	return func(received, sent int64) {
		add(tcpReceived, uint64(max(received, 0)))
		add(tcpSent, uint64(max(sent, 0)))
		add(tcpClosed, 1)
	}
}

func (f *Filter) tcpLabels(inbound bool, conn *filters.Conn, cluster string, v *[numLabels]string) {
	other := unknownPeer
	if conn != nil && conn.PeerMetadata != nil {
		other = peerOf(nodeOf(conn.PeerMetadata))
	}
	src, dst := f.self, other
	v[lReporter] = "source"
	v[lSrcPrincipal], v[lDstPrincipal] = "unknown", "unknown"
	v[lSecurityPolicy] = "unknown"
	svc := clusterHost(cluster)
	if inbound {
		v[lReporter] = "destination"
		v[lSecurityPolicy] = "none"
		peer := *other
		if conn != nil && conn.PeerPrincipal != "" {
			v[lSecurityPolicy] = "mutual_tls"
			p := f.principals(conn.PeerPrincipal)
			v[lSrcPrincipal], v[lDstPrincipal] = p[0], p[1]
			if peer.namespace == "unknown" {
				peer.namespace = principalNamespace(conn.PeerPrincipal)
			}
		}
		src, dst = &peer, f.self
		svc = ""
		if len(f.inboundServices) > 0 {
			svc = f.inboundServices[0]
		}
	}
	v[lSrcWorkload], v[lSrcNamespace], v[lSrcApp], v[lSrcVersion] = src.workload, src.namespace, src.app, src.version
	v[lSrcCanonicalService], v[lSrcCanonicalRevision], v[lSrcCluster] = src.canonicalService, src.canonicalRevision, src.cluster
	v[lDstWorkload], v[lDstNamespace], v[lDstApp], v[lDstVersion] = dst.workload, dst.namespace, dst.app, dst.version
	v[lDstCanonicalService], v[lDstCanonicalRevision], v[lDstCluster] = dst.canonicalService, dst.canonicalRevision, dst.cluster
	if !inbound && svc != "" && v[lDstNamespace] == "unknown" {
		// The service's namespace is the destination workload's.
		_, ns := serviceParts(svc)
		v[lDstNamespace] = ns
	}
	v[lDstService] = orUnknown(svc)
	v[lDstServiceName], v[lDstServiceNamespace] = serviceParts(svc)
	v[lProtocol] = "tcp"
	v[lResponseFlags] = "-"
}

// principalNamespace is the namespace of a SPIFFE identity
// "<trust domain>/ns/<namespace>/sa/<account>"; "unknown" otherwise.
func principalNamespace(principal string) string {
	_, rest, ok := strings.Cut(principal, "/ns/")
	if !ok {
		return "unknown"
	}
	ns, _, _ := strings.Cut(rest, "/")
	return orUnknown(ns)
}
