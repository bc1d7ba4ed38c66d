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

// tcpLabels are Istio's TCP metric labels: the HTTP ones without
// response_code and grpc_response_status.
var tcpLabels = func() []string {
	var out []string
	for i, l := range standardLabels {
		if i != lResponseCode && i != lGRPCStatus {
			out = append(out, l)
		}
	}
	return out
}()

// tcpMeter is the filter's network-filter side.
type tcpMeter struct {
	inbound  bool
	families [len(tcpMetricNames)]*stats.Family
}

var _ filters.TCPObserver = (*Filter)(nil)

// BindTCP binds the filter, as a network filter, to the proxy's store.
// Telemetry metric overrides apply to the HTTP metrics only.
func (f *Filter) BindTCP(store *stats.Store, inbound bool) {
	m := &tcpMeter{inbound: inbound}
	for i, name := range tcpMetricNames {
		m.families[i] = store.Family(name, stats.KindCounter, tcpLabels, nil)
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
	values := make([]string, 0, len(tcpLabels))
	for i, val := range v {
		if i != lResponseCode && i != lGRPCStatus {
			values = append(values, val)
		}
	}
	key := stats.Key(values)
	var series [len(tcpMetricNames)]*stats.Series
	for i, fam := range m.families {
		series[i] = fam.With(key, values)
	}
	series[tcpOpened].Counter.Inc()
	return func(received, sent int64) {
		series[tcpReceived].Counter.Add(uint64(max(received, 0)))
		series[tcpSent].Counter.Add(uint64(max(sent, 0)))
		series[tcpClosed].Counter.Inc()
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
