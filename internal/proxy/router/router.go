// Package router is the HTTP routing engine of Skein's proxy. Compile turns an
// Envoy v3 RouteConfiguration into an immutable Table; Table.Route answers
// which virtual host, route and upstream cluster a request goes to, with
// Envoy's matching semantics; Decision.ApplyRequest and ApplyResponse carry
// out the route's rewrites and header mutations.
//
// Anything in a RouteConfiguration that the router does not implement is a
// Compile error (the caller NACKs it), never silently ignored. Fields owned
// by other parts of the proxy (retries, hashing, mirroring, per-filter
// config, CORS) are accepted and exposed on the Decision untouched.
package router

import (
	"math/bits"
	"math/rand/v2"
	"net/http"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
)

// Table is a compiled RouteConfiguration. It is immutable after Compile and
// safe for concurrent use.
type Table struct {
	name  string
	hosts domainIndex
	// ignorePort strips ":port" from the request host before domain
	// matching (RouteConfiguration.ignore_port_in_host_matching; Istio sets it).
	ignorePort bool
	// pick maps the k-th weighted choice of a route to a number in [0, n);
	// lowDiscrepancyPick except in tests.
	pick func(n, k uint64) uint64
}

// Name is the RouteConfiguration's name.
func (t *Table) Name() string { return t.name }

// Decision is where a request goes and what to do to it on the way. A
// Decision returned by Route may be shared between requests: treat it and
// everything it points to as read-only.
type Decision struct {
	VirtualHost string // virtual host name
	RouteName   string // route name ("" if unnamed)
	// Cluster is the chosen upstream cluster; for weighted_clusters it is
	// picked by weight on every Route call. Empty for redirects and direct
	// responses.
	Cluster string
	// Timeout is the route timeout; 0 means none. Envoy's default, 15s,
	// applies when the route sets no timeout.
	Timeout        time.Duration
	DirectResponse *DirectResponse // non-nil: answer locally
	Redirect       *Redirect       // non-nil: answer with a redirect

	// Compiled route settings other proxy components act on.

	// Retry is the route's retry_policy, else the virtual host's (nil:
	// no retries).
	Retry *RetryPolicy
	// Hash is the route's hash_policy (nil: none).
	Hash    *HashPolicy
	Mirrors []MirrorPolicy
	// StreamDuration is max_stream_duration (nil: none).
	StreamDuration *StreamDuration
	// FilterConfig holds each HTTP filter's per-route config, compiled by
	// the filter when the route arrived (see PerFilterCompiler), by filter
	// name: virtual host, route and weighted cluster typed_per_filter_config
	// merged, the most specific entry winning; a virtual host's cors is the
	// CORS filter's least specific entry.
	FilterConfig map[string]any
	Metadata     *corev3.Metadata   // route metadata
	Decorator    *routev3.Decorator // route decorator
	// IncludeRequestAttemptCount asks the upstream side to send
	// x-envoy-attempt-count (virtual host include_request_attempt_count).
	IncludeRequestAttemptCount bool
	// ClusterNotFoundStatus is the status to answer when Cluster does not
	// exist: 503 (Envoy's default), 404 or 500.
	ClusterNotFoundStatus int

	rewrite     *pathRewrite // prefix_rewrite or regex_rewrite, nil if none
	hostRewrite string       // host_rewrite_literal ("" if none)
	// Header mutations, in the order Envoy evaluates them (later wins).
	requestMutations  []*headerMutations
	responseMutations []*headerMutations
}

// DirectResponse is a response the proxy answers itself.
type DirectResponse struct {
	Status int    `json:"status"`
	Body   string `json:"body"`
}

// Redirect is a redirect answer; Location is computed from the request.
type Redirect struct {
	Status   int    `json:"status"`
	Location string `json:"location"`
}

// Route finds the virtual host for r's host (exact domain, then the longest
// suffix wildcard "*.foo", then the longest prefix wildcard "foo.*", then
// "*"), then the first of its routes that matches r. ok is false when no
// virtual host or no route matches.
func (t *Table) Route(r *http.Request) (d *Decision, ok bool) {
	host := r.Host
	if host == "" && r.URL != nil {
		host = r.URL.Host
	}
	if t.ignorePort {
		host = stripPort(host)
	}
	vh := t.hosts.find(host)
	if vh == nil {
		return nil, false
	}
	req := newRequestView(r)
	for _, rt := range vh.routes {
		if !rt.matches(&req) {
			continue
		}
		return rt.decide(t, &req), true
	}
	return nil, false
}

// virtualHost is a compiled VirtualHost.
type virtualHost struct {
	name   string
	routes []*route
}

// route is a compiled Route: its matcher and what it decides.
type route struct {
	match routeMatch
	// fixed is the decision for single-cluster routes and direct responses;
	// for redirects it is the template a per-request Location is added to.
	fixed    *Decision
	weighted []weightedChoice // non-empty for weighted_clusters
	total    uint64           // sum of weights
	picks    *atomic.Uint64   // weighted choices made so far (random start)
	redirect *redirectAction
}

type weightedChoice struct {
	end      uint64 // exclusive upper bound of this cluster's weight range
	decision *Decision
}

func (rt *route) decide(t *Table, req *requestView) *Decision {
	switch {
	case rt.redirect != nil:
		d := *rt.fixed
		d.Redirect = &Redirect{Status: rt.redirect.status, Location: rt.redirect.location(req)}
		return &d
	case len(rt.weighted) > 0:
		v := t.pick(rt.total, rt.picks.Add(1))
		for i := range rt.weighted {
			if v < rt.weighted[i].end {
				return rt.weighted[i].decision
			}
		}
		return rt.weighted[len(rt.weighted)-1].decision
	default:
		return rt.fixed
	}
}

// lowDiscrepancyPick spreads weighted choices by the golden-ratio (Weyl)
// sequence frac(k/φ): every window of requests gets its weights' share
// within a request or two, where independent random picks drift by several
// percent over a few hundred requests (a 50/50 split measured over 400
// requests would leave 45-55% about one time in twenty). The sequence has no
// short period, so no cluster sees a regular pattern, and each route starts
// at a random k so proxies do not move in lockstep.
func lowDiscrepancyPick(n, k uint64) uint64 {
	const goldenFraction = 0x9E3779B97F4A7C15 // 2^64/φ
	hi, _ := bits.Mul64(k*goldenFraction, n)
	return hi
}

func newPickCounter() *atomic.Uint64 {
	c := new(atomic.Uint64)
	c.Store(rand.Uint64())
	return c
}
