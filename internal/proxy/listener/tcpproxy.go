package listener

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"

	"github.com/skein-mesh/skein/internal/proxy/cluster"
	"github.com/skein-mesh/skein/internal/proxy/internal/protocheck"
	"github.com/skein-mesh/skein/internal/proxy/stats"
)

var tcpProxyFields = protocheck.Fields(&tcpproxyv3.TcpProxy{}, "stat_prefix", "cluster", "idle_timeout", "max_connect_attempts")

// tcpProxy is a compiled tcp_proxy filter: each connection is copied both
// ways to an endpoint of one cluster.
type tcpProxy struct {
	deps        *deps
	statPrefix  string
	cluster     string
	idleTimeout time.Duration // 0: none
	attempts    int

	cxTotal     *stats.Counter
	cxNoRoute   *stats.Counter
	cxActive    *stats.Gauge
	bytesRx     *stats.Counter
	bytesTx     *stats.Counter
	connectFail *stats.Counter

	rbac []*networkRBAC // network RBAC filters before this one (netrbac.go)

	forwarderOnce sync.Once
	forwarder     *connectionManager
}

// Envoy's tcp_proxy idle timeout when unset.
const defaultTCPIdleTimeout = time.Hour

func newTCPProxy(cfg *tcpproxyv3.TcpProxy, d *deps) (*tcpProxy, error) {
	if err := tcpProxyFields.Check(cfg); err != nil {
		return nil, err
	}
	if cfg.GetStatPrefix() == "" {
		return nil, fmt.Errorf("stat_prefix is required")
	}
	if cfg.GetCluster() == "" {
		return nil, fmt.Errorf("cluster is required (weighted_clusters is not supported yet)")
	}
	t := &tcpProxy{deps: d, statPrefix: cfg.GetStatPrefix(), cluster: cfg.GetCluster(), idleTimeout: defaultTCPIdleTimeout, attempts: 1}
	if it := cfg.GetIdleTimeout(); it != nil {
		t.idleTimeout = it.AsDuration()
	}
	if n := cfg.GetMaxConnectAttempts(); n != nil {
		t.attempts = int(n.GetValue())
	}
	p := "tcp." + t.statPrefix + "."
	t.cxTotal = d.stats.Counter(p + "downstream_cx_total")
	t.cxNoRoute = d.stats.Counter(p + "downstream_cx_no_route")
	t.cxActive = d.stats.Gauge(p + "downstream_cx_active")
	t.bytesRx = d.stats.Counter(p + "downstream_cx_rx_bytes_total")
	t.bytesTx = d.stats.Counter(p + "downstream_cx_tx_bytes_total")
	t.connectFail = d.stats.Counter(p + "upstream_connect_fail")
	return t, nil
}

// dial connects to the cluster for a downstream connection to target (the
// original destination, if known).
func (t *tcpProxy) dial(ctx context.Context, target string) (net.Conn, *cluster.Cluster, error) {
	cl, ok := t.deps.clusters.Get(t.cluster)
	if !ok {
		t.cxNoRoute.Inc()
		return nil, nil, fmt.Errorf("cluster %q not found", t.cluster)
	}
	var lastErr error
	for range max(t.attempts, 1) {
		ep, err := cl.Pick(ctx, target)
		if err != nil {
			return nil, cl, err
		}
		conn, err := cl.Dial(ctx, ep)
		if err == nil {
			return conn, cl, nil
		}
		ep.Failed()
		lastErr = err
	}
	t.connectFail.Inc()
	return nil, cl, lastErr
}

// serve proxies one accepted connection. Listeners bound in local mode
// cannot know an original destination, so ORIGINAL_DST clusters fail here.
func (t *tcpProxy) serve(conn net.Conn, target string) {
	defer conn.Close()
	t.cxTotal.Inc()
	t.cxActive.Inc()
	defer t.cxActive.Dec()
	if !t.authorize(conn) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	up, _, err := t.dial(ctx, target)
	cancel()
	if err != nil {
		t.deps.log.Debug("tcp_proxy: no upstream", "statPrefix", t.statPrefix, "cluster", t.cluster, "error", err)
		return
	}
	defer up.Close()
	rx, tx := pipe(conn, up, t.idleTimeout)
	t.bytesRx.Add(uint64(rx))
	t.bytesTx.Add(uint64(tx))
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
