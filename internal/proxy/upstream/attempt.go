package upstream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/skein-mesh/skein/internal/proxy/cluster"
	"github.com/skein-mesh/skein/internal/proxy/router"
)

// errNoHost marks a pick that found no healthy host.
var errNoHost = errors.New("no healthy upstream")

// attempt is one try of a request at one upstream host. begin takes its
// resources; finish gives every one of them back, once, on every path
// (answer streamed, failure, retry, client gone).
type attempt struct {
	cl   *cluster.Cluster
	ep   *cluster.Endpoint
	ctx  context.Context // the request's, bounded by the per-try timeout
	sent time.Time

	release func()             // circuit breaker request slot
	cancel  context.CancelFunc // per-try timeout
	done    func()             // the endpoint's active request (nil until sent)

	reported, finished bool
}

// begin admits a request to cl's circuit breakers and picks a host for it,
// preferring one not tried yet (Envoy's previous_hosts retry predicate)
// within the policy's host selection attempts. hash is the route's
// hash_policy hash, for RING_HASH and MAGLEV clusters.
func begin(ctx context.Context, cl *cluster.Cluster, target string, h2 bool, tried []string, policy *router.RetryPolicy, hash uint64, hasHash bool) (*attempt, error) {
	release, err := cl.Admit(ctx, h2)
	if err != nil {
		return nil, err
	}
	var ep *cluster.Endpoint
	for range max(policy.HostAttempts, 1) {
		if ep, err = cl.PickHash(ctx, target, hash, hasHash); err != nil {
			release()
			return nil, fmt.Errorf("%w: %v", errNoHost, err)
		}
		seen := false
		for _, t := range tried {
			seen = seen || t == ep.Address
		}
		if !seen {
			break
		}
	}
	a := &attempt{cl: cl, ep: ep, ctx: ctx, release: release, cancel: func() {}}
	if policy.PerTryTimeout > 0 {
		a.ctx, a.cancel = context.WithTimeout(ctx, policy.PerTryTimeout)
	}
	return a, nil
}

// roundTrip sends req (carrying a.ctx) and counts it in the cluster's
// stats and the endpoint's active requests.
func (a *attempt) roundTrip(req *http.Request, h2 bool) (*http.Response, error) {
	a.sent = time.Now()
	a.done = a.ep.Begin()
	a.cl.Stats.RqTotal.Inc()
	a.cl.Stats.RqActive.Inc()
	return a.cl.RoundTripper(h2).RoundTrip(req)
}

// report tells outlier detection how the attempt went; only the first
// report of an attempt counts.
func (a *attempt) report(result cluster.Result, status int) {
	if a.reported {
		return
	}
	a.reported = true
	a.cl.Report(a.ep, result, status)
}

// finish releases what the attempt holds: the per-try timer, the endpoint's
// active request and the cluster's active-request gauge (when it was sent)
// and the circuit breaker slot.
func (a *attempt) finish() {
	if a.finished {
		return
	}
	a.finished = true
	a.cancel()
	if a.done != nil {
		a.done()
		a.cl.Stats.RqActive.Dec()
	}
	a.release()
}
