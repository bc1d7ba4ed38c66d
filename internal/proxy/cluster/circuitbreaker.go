package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/skein-mesh/skein/internal/proxy/internal/protocheck"
	"github.com/skein-mesh/skein/internal/proxy/stats"
)

// ErrOverflow is a request refused by the cluster's circuit breakers
// (Envoy's response flag UO).
var ErrOverflow = errors.New("upstream overflow")

// Envoy's circuit breaker defaults, used when the cluster sets none.
const (
	defaultMaxConnections = 1024
	defaultMaxPending     = 1024
	defaultMaxRequests    = 1024
	defaultMaxRetries     = 3
)

var (
	breakersFields   = protocheck.Fields(&clusterv3.CircuitBreakers{}, "thresholds")
	thresholdsFields = protocheck.Fields(&clusterv3.CircuitBreakers_Thresholds{}, "priority",
		"max_connections", "max_pending_requests", "max_requests", "max_retries", "track_remaining")
)

type thresholds struct {
	maxConns, maxPending, maxRequests, maxRetries int64
	trackRemaining                                bool
}

// parseBreakers reads the DEFAULT priority thresholds. Requests here are all
// of default priority (routes cannot ask for HIGH), so HIGH thresholds are
// validated but never apply.
func parseBreakers(cb *clusterv3.CircuitBreakers) (thresholds, error) {
	th := thresholds{maxConns: defaultMaxConnections, maxPending: defaultMaxPending,
		maxRequests: defaultMaxRequests, maxRetries: defaultMaxRetries}
	if err := breakersFields.Check(cb); err != nil {
		return th, err
	}
	for i, t := range cb.GetThresholds() {
		if err := thresholdsFields.Check(t); err != nil {
			return th, fmt.Errorf("thresholds[%d]: %v", i, err)
		}
		if t.GetPriority() != corev3.RoutingPriority_DEFAULT {
			continue
		}
		set := func(dst *int64, v interface{ GetValue() uint32 }) {
			if v != nil {
				*dst = int64(v.GetValue())
			}
		}
		if t.MaxConnections != nil {
			set(&th.maxConns, t.MaxConnections)
		}
		if t.MaxPendingRequests != nil {
			set(&th.maxPending, t.MaxPendingRequests)
		}
		if t.MaxRequests != nil {
			set(&th.maxRequests, t.MaxRequests)
		}
		if t.MaxRetries != nil {
			set(&th.maxRetries, t.MaxRetries)
		}
		th.trackRemaining = t.GetTrackRemaining()
	}
	return th, nil
}

// breaker is a cluster's admission control, Envoy's resource manager plus
// the HTTP/1.1 connection pool's queue: an HTTP/1.1 connection carries one
// request at a time, so at most max_connections requests are in flight and
// up to max_pending_requests more wait, first come first served, for one
// of them to finish. Go's http.Transport would queue without bound.
type breaker struct {
	th thresholds
	st breakerStats

	mu       sync.Mutex
	busy     int64 // HTTP/1.1 connections carrying a request
	requests int64 // requests in flight, all protocols
	waiters  []*waiter
	retries  atomic.Int64
}

type waiter struct {
	ready   chan struct{}
	granted bool
}

type breakerStats struct {
	pendingTotal, pendingOverflow, cxOverflow, retryOverflow *stats.Counter
	pendingActive, cxOpen, pendingOpen, rqOpen, retryOpen    *stats.Gauge
	remCx, remPending, remRq, remRetries                     *stats.Gauge
}

func newBreaker(th thresholds, store *stats.Store, prefix string) *breaker {
	cb := prefix + "circuit_breakers.default."
	b := &breaker{th: th, st: breakerStats{
		pendingTotal:    store.Counter(prefix + "upstream_rq_pending_total"),
		pendingOverflow: store.Counter(prefix + "upstream_rq_pending_overflow"),
		cxOverflow:      store.Counter(prefix + "upstream_cx_overflow"),
		retryOverflow:   store.Counter(prefix + "upstream_rq_retry_overflow"),
		pendingActive:   store.Gauge(prefix + "upstream_rq_pending_active"),
		cxOpen:          store.Gauge(cb + "cx_open"),
		pendingOpen:     store.Gauge(cb + "rq_pending_open"),
		rqOpen:          store.Gauge(cb + "rq_open"),
		retryOpen:       store.Gauge(cb + "rq_retry_open"),
	}}
	if th.trackRemaining {
		b.st.remCx = store.Gauge(cb + "remaining_cx")
		b.st.remPending = store.Gauge(cb + "remaining_pending")
		b.st.remRq = store.Gauge(cb + "remaining_rq")
		b.st.remRetries = store.Gauge(cb + "remaining_retries")
	}
	b.mu.Lock()
	b.publishLocked()
	b.mu.Unlock()
	b.publishRetries()
	return b
}

func open(v, limit int64) int64 {
	if v >= limit {
		return 1
	}
	return 0
}

// publishLocked refreshes the gauges; b.mu is held.
func (b *breaker) publishLocked() {
	pending := int64(len(b.waiters))
	b.st.pendingActive.Set(pending)
	b.st.cxOpen.Set(open(b.busy, b.th.maxConns))
	b.st.pendingOpen.Set(open(pending, b.th.maxPending))
	b.st.rqOpen.Set(open(b.requests, b.th.maxRequests))
	if b.th.trackRemaining {
		b.st.remCx.Set(max(b.th.maxConns-b.busy, 0))
		b.st.remPending.Set(max(b.th.maxPending-pending, 0))
		b.st.remRq.Set(max(b.th.maxRequests-b.requests, 0))
	}
}

func (b *breaker) publishRetries() {
	n := b.retries.Load()
	b.st.retryOpen.Set(open(n, b.th.maxRetries))
	if b.th.trackRemaining {
		b.st.remRetries.Set(max(b.th.maxRetries-n, 0))
	}
}

// admit takes a request slot. HTTP/1.1 requests (needConn) also take a
// connection, waiting for one while the pending queue has room. It returns
// ErrOverflow, or ctx's error if the request gave up while pending.
func (b *breaker) admit(ctx context.Context, needConn bool) (release func(), err error) {
	b.mu.Lock()
	if b.requests >= b.th.maxRequests {
		b.mu.Unlock()
		b.st.pendingOverflow.Inc()
		return nil, ErrOverflow
	}
	if !needConn {
		b.requests++
		b.publishLocked()
		b.mu.Unlock()
		return b.releaseRequest, nil
	}
	if b.busy < b.th.maxConns {
		b.busy++
		b.requests++
		b.publishLocked()
		b.mu.Unlock()
		return b.onceRelease(), nil
	}
	// No connection free and none may be opened: wait, if the queue has room.
	b.st.cxOverflow.Inc()
	if int64(len(b.waiters)) >= b.th.maxPending {
		b.mu.Unlock()
		b.st.pendingOverflow.Inc()
		return nil, ErrOverflow
	}
	w := &waiter{ready: make(chan struct{})}
	b.waiters = append(b.waiters, w)
	b.st.pendingTotal.Inc()
	b.publishLocked()
	b.mu.Unlock()

	select {
	case <-w.ready:
		return b.onceRelease(), nil
	case <-ctx.Done():
		b.mu.Lock()
		if w.granted {
			// The slot arrived as we gave up: pass it on.
			b.mu.Unlock()
			b.releaseConn()
			return nil, ctx.Err()
		}
		for i, x := range b.waiters {
			if x == w {
				b.waiters = append(b.waiters[:i], b.waiters[i+1:]...)
				break
			}
		}
		b.publishLocked()
		b.mu.Unlock()
		return nil, ctx.Err()
	}
}

func (b *breaker) onceRelease() func() {
	var once sync.Once
	return func() { once.Do(b.releaseConn) }
}

func (b *breaker) releaseRequest() {
	b.mu.Lock()
	b.requests--
	b.publishLocked()
	b.mu.Unlock()
}

// releaseConn ends an HTTP/1.1 request: its connection goes to the first
// waiter, whose request then counts in place of this one.
func (b *breaker) releaseConn() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.waiters) > 0 {
		w := b.waiters[0]
		b.waiters = b.waiters[1:]
		w.granted = true
		close(w.ready)
	} else {
		b.busy--
		b.requests--
	}
	b.publishLocked()
}

// beginRetry takes a retry slot (max_retries retries in flight at once).
func (b *breaker) beginRetry() (done func(), ok bool) {
	if b.retries.Add(1) > b.th.maxRetries {
		b.retries.Add(-1)
		b.st.retryOverflow.Inc()
		return nil, false
	}
	b.publishRetries()
	var once sync.Once
	return func() {
		once.Do(func() { b.retries.Add(-1); b.publishRetries() })
	}, true
}

// Admit asks the circuit breakers for one upstream request attempt.
// downstreamHTTP2 is as for RoundTripper. Call release once the response
// has been read (or the attempt failed). An HTTP/1.1 attempt may wait
// here for a connection; ErrOverflow means answer 503 with flag UO.
func (c *Cluster) Admit(ctx context.Context, downstreamHTTP2 bool) (release func(), err error) {
	return c.breaker.admit(ctx, !c.usesHTTP2(downstreamHTTP2))
}

// BeginRetry asks for a retry slot; ok is false, and
// upstream_rq_retry_overflow counted, when max_retries retries are already
// in flight. Call done when the retried attempt ends.
func (c *Cluster) BeginRetry() (done func(), ok bool) { return c.breaker.beginRetry() }

// connLimiter is the transport side of max_requests_per_connection: it
// counts requests per connection and closes a connection once it has
// carried its share and is idle.
type connLimiter struct {
	rt  http.RoundTripper
	max uint64
}

func (l connLimiter) RoundTrip(req *http.Request) (*http.Response, error) {
	var conn *countedConn
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		if cc, ok := info.Conn.(*countedConn); ok {
			conn = cc
			cc.uses.Add(1)
			cc.inflight.Add(1)
		}
	}}
	ctx := httptrace.WithClientTrace(req.Context(), trace)
	resp, err := l.rt.RoundTrip(req.WithContext(ctx))
	if conn == nil {
		return resp, err
	}
	end := func() {
		if conn.inflight.Add(-1) == 0 && conn.uses.Load() >= l.max {
			conn.Close()
		}
	}
	if err != nil || resp.StatusCode == http.StatusSwitchingProtocols {
		// An upgraded connection belongs to the tunnel now.
		if err != nil {
			end()
		}
		return resp, err
	}
	resp.Body = &endNotifier{ReadCloser: resp.Body, end: end}
	return resp, nil
}

// endNotifier calls end once, at EOF or Close, whichever comes first.
type endNotifier struct {
	io.ReadCloser
	end  func()
	once sync.Once
}

func (e *endNotifier) Read(p []byte) (int, error) {
	n, err := e.ReadCloser.Read(p)
	if err != nil {
		e.once.Do(e.end)
	}
	return n, err
}

func (e *endNotifier) Close() error {
	err := e.ReadCloser.Close()
	e.once.Do(e.end)
	return err
}
