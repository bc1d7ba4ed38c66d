package listener

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"time"

	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"

	"github.com/skein-mesh/skein/internal/proxy/cluster"
	"github.com/skein-mesh/skein/internal/proxy/filters"
	"github.com/skein-mesh/skein/internal/proxy/filters/metadataexchange"
	"github.com/skein-mesh/skein/internal/proxy/hcm"
	"github.com/skein-mesh/skein/internal/proxy/internal/protocheck"
	"github.com/skein-mesh/skein/internal/proxy/stats"
)

var (
	tcpProxyFields      = protocheck.Fields(&tcpproxyv3.TcpProxy{}, "stat_prefix", "cluster", "weighted_clusters", "idle_timeout", "max_connect_attempts")
	weightedFields      = protocheck.Fields(&tcpproxyv3.TcpProxy_WeightedCluster{}, "clusters")
	clusterWeightFields = protocheck.Fields(&tcpproxyv3.TcpProxy_WeightedCluster_ClusterWeight{}, "name", "weight")
)

// clusterWeight is one entry of weighted_clusters.
type clusterWeight struct {
	name   string
	weight uint32
}

// tcpProxy is a compiled tcp_proxy filter: each connection is copied both
// ways to an endpoint of one cluster.
type tcpProxy struct {
	deps        *deps
	statPrefix  string
	cluster     string          // set unless weighted is
	weighted    []clusterWeight // weighted_clusters: one is picked per connection
	totalWeight uint32
	idleTimeout time.Duration // 0: none
	attempts    int

	cxTotal     *stats.Counter
	cxNoRoute   *stats.Counter
	cxActive    *stats.Gauge
	bytesRx     *stats.Counter
	bytesTx     *stats.Counter
	connectFail *stats.Counter

	rbac []*networkRBAC // network RBAC filters before this one (netrbac.go)
	// observers are network filters told about each proxied connection
	// (istio.stats: Istio's TCP metrics).
	observers []filters.TCPObserver
	// exchange is set when istio.metadata_exchange precedes the filters:
	// the downstream proxy's identity is read on connections that
	// negotiated the exchange.
	exchange *metadataexchange.Exchanger

	forwarderOnce sync.Once
	forwarder     *hcm.ConnectionManager
}

// Envoy's tcp_proxy idle timeout when unset.
const defaultTCPIdleTimeout = time.Hour

// exchangeTimeout bounds the wait for the other proxy's metadata exchange
// frame; a peer that sends none is served without its identity.
const exchangeTimeout = 5 * time.Second

func newTCPProxy(cfg *tcpproxyv3.TcpProxy, d *deps) (*tcpProxy, error) {
	if err := tcpProxyFields.Check(cfg); err != nil {
		return nil, err
	}
	if cfg.GetStatPrefix() == "" {
		return nil, fmt.Errorf("stat_prefix is required")
	}
	t := &tcpProxy{deps: d, statPrefix: cfg.GetStatPrefix(), cluster: cfg.GetCluster(), idleTimeout: defaultTCPIdleTimeout, attempts: 1}
	if wc := cfg.GetWeightedClusters(); wc != nil {
		if err := weightedFields.Check(wc); err != nil {
			return nil, fmt.Errorf("weighted_clusters: %v", err)
		}
		for i, c := range wc.GetClusters() {
			if err := clusterWeightFields.Check(c); err != nil {
				return nil, fmt.Errorf("weighted_clusters.clusters[%d]: %v", i, err)
			}
			if c.GetName() == "" {
				return nil, fmt.Errorf("weighted_clusters.clusters[%d].name is required", i)
			}
			t.weighted = append(t.weighted, clusterWeight{name: c.GetName(), weight: c.GetWeight()})
			t.totalWeight += c.GetWeight()
		}
		if t.totalWeight == 0 {
			return nil, fmt.Errorf("weighted_clusters: the weights must not all be 0")
		}
	} else if t.cluster == "" {
		return nil, fmt.Errorf("cluster or weighted_clusters is required")
	}
	if it := cfg.GetIdleTimeout(); it != nil {
		t.idleTimeout = it.AsDuration()
	}
	if n := cfg.GetMaxConnectAttempts(); n != nil {
		t.attempts = int(n.GetValue())
	}
	p := "tcp." + t.statPrefix + "."
	t.cxTotal = d.Stats.Counter(p + "downstream_cx_total")
	t.cxNoRoute = d.Stats.Counter(p + "downstream_cx_no_route")
	t.cxActive = d.Stats.Gauge(p + "downstream_cx_active")
	t.bytesRx = d.Stats.Counter(p + "downstream_cx_rx_bytes_total")
	t.bytesTx = d.Stats.Counter(p + "downstream_cx_tx_bytes_total")
	t.connectFail = d.Stats.Counter(p + "upstream_connect_fail")
	return t, nil
}

// dial connects to the cluster for a downstream connection to target (the
// original destination, if known). On a cluster with the metadata
// exchange it runs the client side and returns the upstream proxy's
// identity (nil when there is none).
func (t *tcpProxy) dial(ctx context.Context, target string) (net.Conn, *cluster.Cluster, *metadataexchange.Peer, error) {
	name := t.pickCluster()
	cl, ok := t.deps.Clusters.Get(name)
	if !ok {
		t.cxNoRoute.Inc()
		return nil, nil, nil, fmt.Errorf("cluster %q not found", name)
	}
	var lastErr error
	for range max(t.attempts, 1) {
		ep, err := cl.Pick(ctx, target)
		if err != nil {
			return nil, cl, nil, err
		}
		conn, err := cl.Dial(ctx, ep)
		if err == nil {
			ex := cl.PeerExchange()
			if ex == nil || !metadataexchange.Negotiated(conn) {
				return conn, cl, nil, nil
			}
			var peer *metadataexchange.Peer
			if conn, peer, err = ex.Connect(conn, exchangeTimeout); err == nil {
				return conn, cl, peer, nil
			}
			conn.Close()
		}
		ep.Failed()
		lastErr = err
	}
	t.connectFail.Inc()
	return nil, cl, nil, lastErr
}

// inbound reports whether the proxy serves its own workload here (Istio's
// inbound|port|| stat prefix), so metrics report as the destination.
func (t *tcpProxy) inbound() bool { return strings.HasPrefix(t.statPrefix, "inbound|") }

// pickCluster chooses the cluster of one connection: the weighted choice
// among weighted_clusters, as Envoy makes it per connection.
func (t *tcpProxy) pickCluster() string {
	if len(t.weighted) == 0 {
		return t.cluster
	}
	n := rand.Uint32N(t.totalWeight)
	for _, c := range t.weighted {
		if n < c.weight {
			return c.name
		}
		n -= c.weight
	}
	return t.weighted[len(t.weighted)-1].name
}

// serve proxies one accepted connection. Listeners bound in local mode
// cannot know an original destination, so ORIGINAL_DST clusters fail here.
func (t *tcpProxy) serve(conn net.Conn, target string) {
	defer conn.Close()
	t.cxTotal.Inc()
	t.cxActive.Inc()
	defer t.cxActive.Dec()
	var peer *metadataexchange.Peer
	if t.exchange != nil && metadataexchange.Negotiated(conn) {
		var err error
		if conn, peer, err = t.exchange.Accept(conn, exchangeTimeout); err != nil {
			t.deps.Log.Debug("tcp_proxy: metadata exchange failed", "statPrefix", t.statPrefix, "remote", conn.RemoteAddr().String(), "error", err)
			return
		}
	}
	if !t.authorize(conn) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	up, cl, upPeer, err := t.dial(ctx, target)
	cancel()
	if err != nil {
		t.deps.Log.Debug("tcp_proxy: no upstream", "statPrefix", t.statPrefix, "cluster", t.cluster, "error", err)
		return
	}
	defer up.Close()
	if !t.inbound() {
		peer = upPeer // metrics of outbound connections label the upstream
	}
	closed := t.open(conn, peer, cl.Name())
	rx, tx := pipe(conn, up, t.idleTimeout)
	t.bytesRx.Add(uint64(rx))
	t.bytesTx.Add(uint64(tx))
	closed(rx, tx)
}

// open tells the observers about a connection proxied to cluster, with
// the peer proxy's identity when the metadata exchange found one; the
// returned function reports its end.
func (t *tcpProxy) open(down net.Conn, peer *metadataexchange.Peer, cluster string) func(rx, tx int64) {
	if len(t.observers) == 0 {
		return func(int64, int64) {}
	}
	info := netConnInfo(down)
	if peer != nil {
		info.PeerMetadata = peer.Metadata
	}
	closers := make([]func(int64, int64), len(t.observers))
	for i, o := range t.observers {
		closers[i] = o.OpenTCP(info, cluster)
	}
	return func(rx, tx int64) {
		for _, c := range closers {
			c(rx, tx)
		}
	}
}

// pipe copies a→b and b→a until both directions end, half-closing each
// side's write when the other side's read ends. With an idle timeout, a
// direction with no traffic for that long ends the connection.
func pipe(a, b net.Conn, idle time.Duration) (aToB, bToA int64) {
	done := make(chan int64, 1)
	go func() {
		n := copyIdle(b, a, idle)
		closeWrite(b)
		done <- n
	}()
	bToA = copyIdle(a, b, idle)
	closeWrite(a)
	aToB = <-done
	return aToB, bToA
}

func copyIdle(dst, src net.Conn, idle time.Duration) int64 {
	if idle <= 0 {
		n, _ := io.Copy(dst, src)
		return n
	}
	buf := make([]byte, 32<<10)
	var total int64
	for {
		src.SetReadDeadline(time.Now().Add(idle))
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return total
			}
			total += int64(n)
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Idle: end both directions.
				dst.Close()
				src.Close()
			}
			return total
		}
	}
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}
