package listener

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"

	"github.com/skein-mesh/skein/internal/proxy/cluster"
	"github.com/skein-mesh/skein/internal/proxy/internal/protocheck"
)

var mirrorPolicyFields = protocheck.Fields(&routev3.RouteAction_RequestMirrorPolicy{},
	// trace_sampled only matters to tracing, which the proxy does not do.
	"cluster", "runtime_fraction", "trace_sampled", "disable_shadow_host_suffix_append")

// maxShadowsInFlight bounds the mirrored requests outstanding across the
// proxy: a slow mirror target must not pile up goroutines without limit.
// Over the bound, shadows are dropped (mirroring is best effort).
const maxShadowsInFlight = 1024

// defaultShadowTimeout bounds a shadow when its route has no timeout, so a
// mirror target that never answers cannot hold a slot forever.
const defaultShadowTimeout = time.Minute

var shadowSlots = make(chan struct{}, maxShadowsInFlight)

func checkMirrorPolicy(p *routev3.RouteAction_RequestMirrorPolicy) error {
	if err := mirrorPolicyFields.Check(p); err != nil {
		return err
	}
	if p.GetCluster() == "" {
		return errUnsupported("a mirror policy without cluster (cluster_header)")
	}
	// runtime_fraction.runtime_key is accepted: without a runtime layer
	// Envoy too would use default_value, which is what mirror samples by.
	return nil
}

// mirror sends a copy of the upstream request to every mirror cluster of
// the route that samples it, as Envoy's request_mirror_policies do: fire
// and forget, the answer is discarded and never affects the main response.
// The copy's authority gets Envoy's "-shadow" suffix. Bodies are mirrored
// when they were buffered (known length up to maxRetryBuffer); a streamed
// body cannot be read twice, so such requests are not mirrored.
func (ex *exchange) mirror(out *http.Request, body *requestBody) {
	policies := ex.decision.RequestMirrorPolicies
	if len(policies) == 0 || body.stream != nil {
		if len(policies) > 0 {
			ex.hcm.deps.log.Debug("request body not buffered; not mirrored", "route", ex.decision.RouteName)
		}
		return
	}
	timeout := routeTimeout(ex.decision, ex.r)
	if timeout <= 0 {
		timeout = defaultShadowTimeout
	}
	for _, p := range policies {
		if p.GetRuntimeFraction() != nil && !sampled(p.GetRuntimeFraction().GetDefaultValue()) {
			continue
		}
		cl, ok := ex.hcm.deps.clusters.Get(p.GetCluster())
		if !ok {
			continue // Envoy drops a shadow to an unknown cluster
		}
		select {
		case shadowSlots <- struct{}{}:
		default:
			continue
		}
		shadow := out.Clone(context.Background())
		shadow.Trailer = nil
		if !p.GetDisableShadowHostSuffixAppend() {
			shadow.Host = shadowHost(shadow.Host)
		}
		if body.buf != nil {
			shadow.Body = io.NopCloser(bytes.NewReader(body.buf))
		} else {
			shadow.Body, shadow.ContentLength = http.NoBody, 0
		}
		go func() {
			defer func() { <-shadowSlots }()
			sendShadow(cl, shadow, ex.target, ex.r.ProtoMajor == 2, timeout)
		}()
	}
}

// sendShadow delivers one mirrored request and drains its answer; it
// counts in the mirror cluster's stats like any upstream request.
func sendShadow(cl *cluster.Cluster, req *http.Request, target string, h2 bool, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ep, err := cl.Pick(ctx, target)
	if err != nil {
		return
	}
	req.URL.Host = ep.Address
	done := ep.Begin()
	defer done()
	cl.Stats.RqTotal.Inc()
	cl.Stats.RqActive.Inc()
	defer cl.Stats.RqActive.Dec()
	resp, err := cl.RoundTripper(h2).RoundTrip(req.WithContext(ctx))
	if err != nil {
		if ctx.Err() != nil {
			cl.Stats.RqTimeout.Inc()
		}
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	cl.Stats.Response(resp.StatusCode)
}

// shadowHost appends "-shadow" to the host part of an authority, before
// any port: "reviews:9080" → "reviews-shadow:9080".
func shadowHost(authority string) string {
	if host, port, err := net.SplitHostPort(authority); err == nil {
		return net.JoinHostPort(host+"-shadow", port)
	}
	return authority + "-shadow"
}

// sampled draws whether a request falls in a FractionalPercent; a nil
// percent samples nothing.
func sampled(p *typev3.FractionalPercent) bool {
	if p == nil {
		return false
	}
	var denom uint32
	switch p.GetDenominator() {
	case typev3.FractionalPercent_TEN_THOUSAND:
		denom = 10_000
	case typev3.FractionalPercent_MILLION:
		denom = 1_000_000
	default:
		denom = 100
	}
	if p.GetNumerator() >= denom {
		return true
	}
	return rand.Uint32N(denom) < p.GetNumerator()
}
