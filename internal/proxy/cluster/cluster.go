// Package cluster is the proxy's upstream side: it turns CDS clusters and EDS
// load assignments into Clusters that pick a healthy endpoint (round robin,
// least request, random, ring hash or Maglev), enforce circuit breakers and
// outlier detection, and carry a pooled, keep-alive HTTP transport
// (HTTP/1.1 or h2c) and a dialer for TCP proxying.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"

	"github.com/skein-mesh/skein/internal/proxy/filters/metadataexchange"
	"github.com/skein-mesh/skein/internal/proxy/stats"
)

// ErrNoHealthyUpstream is returned by Pick when the cluster has no healthy
// endpoint (Envoy's response flag UH).
var ErrNoHealthyUpstream = errors.New("no healthy upstream")

// ConnectError is a failure to open a connection to an endpoint (Envoy's
// response flag UF). Transports return it wrapped.
type ConnectError struct {
	Address string
	Err     error
}

func (e *ConnectError) Error() string {
	return fmt.Sprintf("connect to %s: %v", e.Address, e.Err)
}

func (e *ConnectError) Unwrap() error { return e.Err }

// Protocol is how a cluster speaks HTTP to its endpoints.
type Protocol int

// Upstream protocols.
const (
	HTTP1      Protocol = iota // HTTP/1.1 with keep-alive
	HTTP2                      // h2c with prior knowledge
	Downstream                 // whatever the downstream request used
)

// Cluster is one upstream cluster. It is immutable except for its endpoints,
// which EDS replaces atomically, and its counters.
type Cluster struct {
	name    string
	kind    clusterv3.Cluster_DiscoveryType
	config  *clusterv3.Cluster
	edsName string // load assignment name for EDS clusters
	lb      balancer

	endpoints atomic.Pointer[endpointSet] // EDS and STATIC
	dns       *dnsHosts                   // STRICT_DNS and LOGICAL_DNS

	protocol Protocol
	dialer   *net.Dialer
	h1, h2   *http.Transport
	// sockets: plaintext or TLS per endpoint, and the source address.
	sockets *upstreamSockets
	// perConn wraps the transports when max_requests_per_connection is set.
	perConn uint64

	breaker *breaker
	outlier *outlierDetector // nil without outlier_detection
	// panicPct is healthy_panic_threshold: below this share of available
	// hosts the balancer ignores health and ejections (0 disables).
	panicPct float64
	// exchange is set when the cluster has the istio.metadata_exchange
	// upstream filter.
	exchange *metadataexchange.Exchanger

	Stats *Stats
}

// Name is the cluster's name.
func (c *Cluster) Name() string { return c.name }

// PeerExchange is the exchanger of Istio's TCP metadata exchange when the
// cluster's config asks for it (the istio.metadata_exchange upstream
// filter), else nil. tcp_proxy runs it on connections that negotiated it.
func (c *Cluster) PeerExchange() *metadataexchange.Exchanger { return c.exchange }

// Pick chooses the endpoint for one request or connection. target is the
// host:port the client asked for; only ORIGINAL_DST clusters use it.
func (c *Cluster) Pick(ctx context.Context, target string) (*Endpoint, error) {
	return c.PickHash(ctx, target, 0, false)
}

// PickHash is Pick for a request with a hash from the route's hash_policy
// (hasHash false: none), which RING_HASH and MAGLEV clusters use.
func (c *Cluster) PickHash(ctx context.Context, target string, hash uint64, hasHash bool) (*Endpoint, error) {
	if c.kind == clusterv3.Cluster_ORIGINAL_DST {
		if target == "" {
			return nil, errors.New("no original destination known for this connection")
		}
		return &Endpoint{Address: target, Healthy: true}, nil
	}
	set, err := c.endpointSet(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoHealthyUpstream, err)
	}
	if set == nil || len(set.all) == 0 {
		c.Stats.NoneHealthy.Inc()
		return nil, ErrNoHealthyUpstream
	}
	eps := set.preferred
	if c.outlier != nil {
		eps = withoutEjected(eps)
	}
	// Envoy's panic mode: with too few hosts available (counted with the
	// default overprovisioning factor of 1.4) load goes to all hosts.
	if c.panicPct > 0 && float64(len(eps))*140/float64(len(set.all)) < c.panicPct {
		c.Stats.HealthyPanic.Inc()
		return c.lb.pick(set.all, hash, hasHash), nil
	}
	if len(eps) == 0 {
		c.Stats.NoneHealthy.Inc()
		return nil, ErrNoHealthyUpstream
	}
	return c.lb.pick(eps, hash, hasHash), nil
}

func withoutEjected(eps []*Endpoint) []*Endpoint {
	for i, e := range eps {
		if e.ejected.Load() {
			out := append([]*Endpoint(nil), eps[:i]...)
			for _, e := range eps[i+1:] {
				if !e.ejected.Load() {
					out = append(out, e)
				}
			}
			return out
		}
	}
	return eps
}

func (c *Cluster) endpointSet(ctx context.Context) (*endpointSet, error) {
	if c.dns != nil {
		return c.dns.current(ctx)
	}
	return c.endpoints.Load(), nil
}

// Endpoints lists the cluster's hosts as last known (DNS clusters: as last
// resolved), for the admin interface.
func (c *Cluster) Endpoints() []*Endpoint {
	var set *endpointSet
	if c.dns != nil {
		set = c.dns.snapshot()
	} else {
		set = c.endpoints.Load()
	}
	if set == nil {
		return nil
	}
	return set.all
}

// RoundTripper returns the transport for a request that arrived over HTTP/2
// (downstreamHTTP2) or not. Requests must name an endpoint's address as
// their URL host.
func (c *Cluster) RoundTripper(downstreamHTTP2 bool) http.RoundTripper {
	t := c.h1
	if c.usesHTTP2(downstreamHTTP2) {
		t = c.h2
	}
	if c.perConn > 1 || (c.perConn == 1 && t == c.h2) {
		return connLimiter{rt: t, max: c.perConn}
	}
	return t
}

func (c *Cluster) usesHTTP2(downstreamHTTP2 bool) bool {
	return c.protocol == HTTP2 || (c.protocol == Downstream && downstreamHTTP2)
}

// Dial opens a TCP connection to ep (for tcp_proxy and CONNECT tunnels),
// counted in the cluster's connection stats.
func (c *Cluster) Dial(ctx context.Context, ep *Endpoint) (net.Conn, error) {
	return c.dial(ctx, "tcp", ep.Address)
}

func (c *Cluster) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if c.breaker != nil && c.Stats.CxActive.Value() >= c.breaker.th.maxConns {
		// max_connections reached: make room by closing idle connections
		// (other hosts' pools), as Envoy's pools drain idle clients first.
		c.breaker.st.cxOverflow.Inc()
		c.closeIdle()
	}
	conn, err := c.sockets.dialer(c.dialer, addr).DialContext(ctx, network, addr)
	if err != nil {
		c.Stats.CxConnectFail.Inc()
		return nil, &ConnectError{Address: addr, Err: err}
	}
	c.Stats.CxTotal.Inc()
	c.Stats.CxActive.Inc()
	return c.secure(ctx, addr, &countedConn{Conn: conn, active: c.Stats.CxActive})
}

// start begins the cluster's background work (the outlier interval timer)
// once the cluster is in service; stop ends it when the cluster is retired.
func (c *Cluster) start() {
	if c.outlier != nil {
		c.outlier.start()
	}
}

func (c *Cluster) stop() {
	if c.outlier != nil {
		c.outlier.stopTimer()
	}
}

// closeIdle drops pooled connections; in-flight requests are not affected.
func (c *Cluster) closeIdle() {
	c.h1.CloseIdleConnections()
	c.h2.CloseIdleConnections()
}

// countedConn keeps upstream_cx_active right however often Close is called.
type countedConn struct {
	net.Conn
	active *stats.Gauge
	once   sync.Once
	// For max_requests_per_connection (see connLimiter).
	uses     atomic.Uint64
	inflight atomic.Int64
}

func (c *countedConn) Close() error {
	c.once.Do(c.active.Dec)
	return c.Conn.Close()
}

// CloseWrite half-closes TCP connections (tcp_proxy relies on it).
func (c *countedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// Stats are a cluster's counters, named like Envoy's
// (cluster.<name>.upstream_rq_total, ...).
type Stats struct {
	RqTotal       *stats.Counter
	RqActive      *stats.Gauge
	RqTimeout     *stats.Counter
	RqRetry       *stats.Counter
	CxTotal       *stats.Counter
	CxActive      *stats.Gauge
	CxConnectFail *stats.Counter
	NoneHealthy   *stats.Counter // upstream_cx_none_healthy
	HealthyPanic  *stats.Counter // upstream_rq_lb_healthy_panic

	store  *stats.Store
	prefix string
	codes  sync.Map // int → *stats.Counter (upstream_rq_<code>)
	class  [6]*stats.Counter
}

func newStats(store *stats.Store, name string) *Stats {
	p := "cluster." + name + "."
	s := &Stats{
		RqTotal:       store.Counter(p + "upstream_rq_total"),
		RqActive:      store.Gauge(p + "upstream_rq_active"),
		RqTimeout:     store.Counter(p + "upstream_rq_timeout"),
		RqRetry:       store.Counter(p + "upstream_rq_retry"),
		CxTotal:       store.Counter(p + "upstream_cx_total"),
		CxActive:      store.Gauge(p + "upstream_cx_active"),
		CxConnectFail: store.Counter(p + "upstream_cx_connect_fail"),
		NoneHealthy:   store.Counter(p + "upstream_cx_none_healthy"),
		HealthyPanic:  store.Counter(p + "upstream_rq_lb_healthy_panic"),
		store:         store,
		prefix:        p,
	}
	for i := 1; i <= 5; i++ {
		s.class[i] = store.Counter(p + "upstream_rq_" + strconv.Itoa(i) + "xx")
	}
	return s
}

// Response counts an upstream response (or a local reply standing in for
// one, as Envoy does for 503 and 504) by code and class.
func (s *Stats) Response(code int) {
	c, ok := s.codes.Load(code)
	if !ok {
		c, _ = s.codes.LoadOrStore(code, s.store.Counter(s.prefix+"upstream_rq_"+strconv.Itoa(code)))
	}
	c.(*stats.Counter).Inc()
	if class := code / 100; class >= 1 && class <= 5 {
		s.class[class].Inc()
	}
}

// newTransport builds one pooled transport speaking only the given protocol.
func newTransport(dial func(context.Context, string, string) (net.Conn, error), idle time.Duration, h2 bool) *http.Transport {
	var p http.Protocols
	if h2 {
		p.SetUnencryptedHTTP2(true)
	} else {
		p.SetHTTP1(true)
	}
	return &http.Transport{
		DialContext:         dial,
		Protocols:           &p,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     idle,
		// A proxy passes bodies through untouched.
		DisableCompression: true,
	}
}
