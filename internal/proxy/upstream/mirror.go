package upstream

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"time"

	"github.com/skein-mesh/skein/internal/proxy/cluster"
)

// maxShadowsInFlight bounds the mirrored requests outstanding across the
// proxy: a slow mirror target must not pile up goroutines without limit.
// Over the bound, shadows are dropped (mirroring is best effort).
const maxShadowsInFlight = 1024

// defaultShadowTimeout bounds a shadow when its route has no timeout, so a
// mirror target that never answers cannot hold a slot forever.
const defaultShadowTimeout = time.Minute

var shadowSlots = make(chan struct{}, maxShadowsInFlight)

// mirror sends a copy of the upstream request to every mirror cluster of
// the route that samples it, as Envoy's request_mirror_policies do: fire
// and forget, the answer is discarded and never affects the main response.
// The copy's authority gets Envoy's "-shadow" suffix. Bodies are mirrored
// when they were buffered (known length up to maxRetryBuffer); a streamed
// body cannot be read twice, so such requests are not mirrored.
func (f *Forwarder) mirror(req *Request, out *http.Request, body *requestBody) {
	policies := req.Decision.Mirrors
	if len(policies) == 0 || body.stream != nil {
		if len(policies) > 0 && f.Log != nil {
			f.Log.Debug("request body not buffered; not mirrored", "route", req.Decision.RouteName)
		}
		return
	}
	timeout := routeTimeout(req.Decision, req.R)
	if timeout <= 0 {
		timeout = defaultShadowTimeout
	}
	for _, p := range policies {
		if !sampled(p.PerMillion) {
			continue
		}
		cl, ok := f.Clusters.Get(p.Cluster)
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
		if !p.KeepHost {
			shadow.Host = shadowHost(shadow.Host)
		}
		if body.buf != nil {
			shadow.Body = io.NopCloser(bytes.NewReader(body.buf))
		} else {
			shadow.Body, shadow.ContentLength = http.NoBody, 0
		}
		go func() {
			defer func() { <-shadowSlots }()
			sendShadow(cl, shadow, req.Target, req.R.ProtoMajor == 2, timeout)
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

// sampled draws whether a request falls in a share given in millionths.
func sampled(perMillion uint32) bool {
	return perMillion >= 1_000_000 || perMillion > 0 && rand.Uint32N(1_000_000) < perMillion
}
