package listener

import (
	"context"
	"errors"
	"github.com/skein-mesh/skein/internal/proxy/filters"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/skein-mesh/skein/internal/proxy/cluster"
	"github.com/skein-mesh/skein/internal/proxy/router"
)

// Envoy's texts for local replies.
const (
	bodyTimeout     = "upstream request timeout"
	bodyNoHealthy   = "no healthy upstream"
	bodyConnectFail = "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
	bodyReset       = "upstream connect error or disconnect/reset before headers. reset reason: connection termination"
)

// noRetries stands for a route without a retry policy.
var noRetries router.RetryPolicy

// maxRetryBuffer bounds the request body kept in memory to allow retries.
const maxRetryBuffer = 64 << 10

// exchange is one downstream request on its way through the proxy.
type exchange struct {
	hcm      *connectionManager
	w        http.ResponseWriter
	r        *http.Request
	start    time.Time
	target   string // original destination host:port
	decision *router.Decision
	cluster  string
	// filterReq is the filter chain's view of the request (nil without
	// filters or observers).
	filterReq *filters.Request
	// reqBody counts request body bytes when observers need them.
	reqBody *countingReader

	status       int
	flags        string
	upstreamHost string
	attempts     int
}

// localReply answers without an upstream, like Envoy's local replies.
func (ex *exchange) localReply(status int, flag, body string, d *router.Decision) {
	ex.status, ex.flags = status, flag
	h := ex.w.Header()
	if d != nil {
		d.ApplyResponse(h)
	}
	if body != "" {
		h.Set("Content-Type", "text/plain")
		h.Set("Content-Length", strconv.Itoa(len(body)))
	}
	if ex.hcm.serverHeader != hcmPassThrough {
		h.Set("Server", ex.hcm.serverName)
	}
	if ex.filterReq != nil {
		ex.hcm.chain.OnResponse(ex.filterReq, status, h)
	}
	ex.w.WriteHeader(status)
	io.WriteString(ex.w, body)
}

// log writes an access log line with Envoy's fields and response flags.
func (ex *exchange) log() {
	log := ex.hcm.deps.log
	if !log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	route := ""
	if ex.decision != nil {
		route = ex.decision.RouteName
	}
	flags := ex.flags
	if ex.filterReq != nil && len(ex.filterReq.ResponseFlags) > 0 {
		// flags set by filters (fault delay "DI") come first, as in Envoy
		flags = strings.Trim(strings.Join(ex.filterReq.ResponseFlags, ",")+","+flags, ",")
	}
	if flags == "" {
		flags = "-"
	}
	log.Debug("access",
		"statPrefix", ex.hcm.statPrefix, "method", ex.r.Method, "authority", ex.r.Host,
		"path", ex.r.URL.RequestURI(), "protocol", ex.r.Proto, "status", ex.status,
		"responseFlags", flags, "route", route, "cluster", ex.cluster,
		"upstreamHost", ex.upstreamHost, "attempts", ex.attempts,
		"durationMs", time.Since(ex.start).Milliseconds(),
		"requestID", ex.r.Header.Get("X-Request-Id"))
}

// forward sends the request to cl, retrying as the route's retry policy
// allows, and streams the response back.
func (ex *exchange) forward(cl *cluster.Cluster) {
	d, r := ex.decision, ex.r
	ex.cluster = cl.Name()
	policy := d.Retry
	if policy == nil {
		policy = &noRetries
	}

	timeout := routeTimeout(d, r)
	ctx := r.Context()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}

	out := ex.upstreamRequest(ctx, timeout)
	body, err := newRequestBody(r, policy.NumRetries > 0 || len(d.Mirrors) > 0)
	if err != nil {
		ex.localReply(http.StatusBadRequest, "DPE", "", d)
		return
	}
	ex.mirror(out, body)
	if ex.r.ProtoMajor == 1 && r.ContentLength != 0 {
		// Let the upstream answer stream back while the request body is
		// still arriving (gRPC bidi, echo servers), as Envoy does.
		http.NewResponseController(ex.w).EnableFullDuplex()
	}

	stats := cl.Stats
	var tried []string
	hash, hasHash, setCookie := d.Hash.Hash(r)
	var retrySlot func() // circuit breakers' retry slot, held until the retried attempt ends
	defer func() { releaseRetry(&retrySlot) }()
	for attempt := 1; ; attempt++ {
		ex.attempts = attempt
		release, err := cl.Admit(ctx, r.ProtoMajor == 2)
		if err != nil {
			ex.notAdmitted(stats, err)
			return
		}
		ep, err := pickAvoidingHash(ctx, cl, ex.target, tried, policy.HostAttempts, hash, hasHash)
		if err != nil {
			release()
			ex.reply(stats, http.StatusServiceUnavailable, "UH", bodyNoHealthy)
			return
		}
		tried = append(tried, ep.Address)
		ex.upstreamHost = ep.Address
		out.URL.Host = ep.Address
		out.Body, out.GetBody = body.attempt()
		if d.IncludeRequestAttemptCount {
			out.Header.Set("X-Envoy-Attempt-Count", strconv.Itoa(attempt))
		}

		actx, acancel := ctx, context.CancelFunc(func() {})
		attemptReq := out // already carries ctx: a first attempt needs no copy
		if policy.PerTryTimeout > 0 {
			actx, acancel = context.WithTimeout(ctx, policy.PerTryTimeout)
		}
		if policy.PerTryTimeout > 0 || attempt > 1 {
			attemptReq = out.WithContext(actx)
		}
		sent := time.Now()
		done := ep.Begin()
		stats.RqTotal.Inc()
		stats.RqActive.Inc()
		resp, err := cl.RoundTripper(r.ProtoMajor == 2).RoundTrip(attemptReq)
		if err != nil {
			done()
			release()
			stats.RqActive.Dec()
			acancel()
			status, flag, text, retryOn := ex.classify(err, ctx, actx, ep)
			if status == 0 { // the client went away
				ex.status, ex.flags = 499, "DC"
				return
			}
			cl.Report(ep, outlierResult(flag), status)
			if flag == "UT" {
				stats.RqTimeout.Inc()
			}
			if attempt <= policy.NumRetries && policy.On(retryOn) && body.replayable() && ctx.Err() == nil && takeRetry(cl, &retrySlot) {
				stats.RqRetry.Inc()
				jitteredBackoff(ctx, policy.BackOffBase, policy.BackOffMax, attempt)
				continue
			}
			ex.reply(stats, status, flag, text)
			return
		}
		cl.Report(ep, cluster.ResultResponse, resp.StatusCode)
		if attempt <= policy.NumRetries && policy.RetriableResponse(resp) && body.replayable() && takeRetry(cl, &retrySlot) {
			io.Copy(io.Discard, io.LimitReader(resp.Body, maxRetryBuffer))
			resp.Body.Close()
			release()
			done()
			stats.RqActive.Dec()
			acancel()
			stats.Response(resp.StatusCode)
			stats.RqRetry.Inc()
			jitteredBackoff(ctx, policy.BackOffBase, policy.BackOffMax, attempt)
			continue
		}
		func() {
			defer acancel()
			defer stats.RqActive.Dec()
			defer done()
			defer release()
			if setCookie != "" {
				resp.Header.Add("Set-Cookie", setCookie)
			}
			ex.respond(cl, resp, time.Since(sent), ctx)
		}()
		return
	}
}

// reply is a local reply that stands for the upstream's answer in the
// cluster's stats, as in Envoy.
func (ex *exchange) reply(s *cluster.Stats, status int, flag, body string) {
	s.Response(status)
	ex.localReply(status, flag, body, ex.decision)
}

// upstreamRequest builds the request to send upstream (without endpoint).
func (ex *exchange) upstreamRequest(ctx context.Context, timeout time.Duration) *http.Request {
	r, h := ex.r, ex.hcm
	out := r.Clone(ctx)
	out.RequestURI = ""
	out.URL.Scheme = "http"
	out.URL.User = nil
	out.Close = false
	upgrade := upgradeType(r.Header)
	removeHopByHop(out.Header)
	if upgrade == "websocket" && h.websocket && r.ProtoMajor == 1 {
		out.Header.Set("Connection", "Upgrade")
		out.Header.Set("Upgrade", r.Header.Get("Upgrade"))
	}
	if h.transparent {
		// nothing added: a passthrough forwards the request as it came
	} else if h.useRemoteAddress {
		out.Header.Set("X-Forwarded-Proto", "http")
		if prior := out.Header.Values("X-Forwarded-For"); len(prior) > 0 {
			out.Header.Set("X-Forwarded-For", strings.Join(prior, ", ")+", "+remoteIP(r))
		} else {
			out.Header.Set("X-Forwarded-For", remoteIP(r))
		}
	} else if out.Header.Get("X-Forwarded-Proto") == "" {
		out.Header["X-Forwarded-Proto"] = forwardedProtoHTTP
	}
	if h.generateRequestID && !h.transparent && out.Header.Get("X-Request-Id") == "" {
		id := newRequestID()
		out.Header.Set("X-Request-Id", id)
		r.Header.Set("X-Request-Id", id) // for the access log
	}
	if h.sanitizeClientCert {
		out.Header.Del("X-Forwarded-Client-Cert")
	}
	if timeout > 0 && !h.suppressEnvoyHeader {
		out.Header.Set("X-Envoy-Expected-Rq-Timeout-Ms", strconv.FormatInt(timeout.Milliseconds(), 10))
	}
	ex.decision.ApplyRequest(out)
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = emptyUserAgent // keep Go's transport from adding its own
	}
	// Shared, not copied: the server fills in request trailers at body EOF
	// and the transport sends them after the body.
	out.Trailer = r.Trailer
	if r.ContentLength == 0 {
		out.Body = http.NoBody
	}
	return out
}

// Header values the proxy sets on every request, shared rather than
// allocated each time. Header.Add appends to a copy (len == cap), so
// sharing is safe as long as nothing writes into a value slice in place.
var (
	forwardedProtoHTTP = []string{"http"}
	emptyUserAgent     = []string{""}
)

// classify maps a transport error to Envoy's local reply. status 0 means the
// downstream client cancelled. retryOn is the retry condition it meets.
func (ex *exchange) classify(err error, ctx, attemptCtx context.Context, ep *cluster.Endpoint) (status int, flag, body, retryOn string) {
	var connectErr *cluster.ConnectError
	switch {
	case ex.r.Context().Err() != nil:
		return 0, "", "", ""
	case errors.As(err, &connectErr):
		ep.Failed()
		return http.StatusServiceUnavailable, "UF", bodyConnectFail, "connect-failure"
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return http.StatusGatewayTimeout, "UT", bodyTimeout, ""
	case errors.Is(attemptCtx.Err(), context.DeadlineExceeded):
		return http.StatusGatewayTimeout, "UT", bodyTimeout, "per-try-timeout"
	case strings.Contains(err.Error(), "REFUSED_STREAM"):
		ep.Failed()
		return http.StatusServiceUnavailable, "UC", bodyReset, "refused-stream"
	default:
		ep.Failed()
		return http.StatusServiceUnavailable, "UC", bodyReset, "reset"
	}
}

// respond streams the upstream response to the client.
func (ex *exchange) respond(cl *cluster.Cluster, resp *http.Response, serviceTime time.Duration, ctx context.Context) {
	defer resp.Body.Close()
	cl.Stats.Response(resp.StatusCode)
	ex.status = resp.StatusCode
	h := ex.w.Header()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		ex.upgrade(resp)
		return
	}
	removeHopByHop(resp.Header)
	ex.decision.ApplyResponse(resp.Header)
	for k, vs := range resp.Header {
		h[k] = vs
	}
	if _, ok := h["Content-Type"]; !ok {
		h["Content-Type"] = nil // pass the absence through: no sniffing
	}
	if !ex.hcm.suppressEnvoyHeader {
		h.Set("X-Envoy-Upstream-Service-Time", strconv.FormatInt(serviceTime.Milliseconds(), 10))
	}
	switch ex.hcm.serverHeader {
	case hcmOverwrite:
		h.Set("Server", ex.hcm.serverName)
	case hcmAppendIfAbsent:
		if h.Get("Server") == "" {
			h.Set("Server", ex.hcm.serverName)
		}
	}
	if ex.filterReq != nil {
		ex.hcm.chain.OnResponse(ex.filterReq, resp.StatusCode, h)
	}
	ex.w.WriteHeader(resp.StatusCode)

	// Stream: flush each read when the length is unknown (gRPC, SSE, chunked).
	flush := resp.ContentLength == -1
	rc := http.NewResponseController(ex.w)
	if flush {
		rc.Flush()
	}
	if err := copyBody(ex.w, resp.Body, rc, flush); err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			cl.Stats.RqTimeout.Inc()
			ex.flags = "UT"
		} else if ex.r.Context().Err() != nil {
			ex.flags = "DC"
		} else {
			ex.flags = "UR" // upstream reset mid-response
		}
		// Abort the downstream stream so the client sees the failure
		// instead of a truncated response that looks complete.
		panic(http.ErrAbortHandler)
	}
	for k, vs := range resp.Trailer {
		h[http.TrailerPrefix+k] = vs
	}
}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func copyBody(w io.Writer, body io.Reader, rc *http.ResponseController, flush bool) error {
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	buf := *bp
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			if flush {
				rc.Flush()
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// upgrade completes a websocket upgrade: the client connection is taken
// over and bytes are copied both ways until either side closes.
func (ex *exchange) upgrade(resp *http.Response) {
	up, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		ex.localReply(http.StatusBadGateway, "UPE", "", ex.decision)
		return
	}
	conn, brw, err := http.NewResponseController(ex.w).Hijack()
	if err != nil {
		ex.localReply(http.StatusInternalServerError, "", "", ex.decision)
		return
	}
	defer conn.Close()
	ex.decision.ApplyResponse(resp.Header)
	resp.Body = nil
	if err := resp.Write(brw); err != nil {
		return
	}
	if err := brw.Flush(); err != nil {
		return
	}
	errc := make(chan error, 2)
	go func() { _, err := io.Copy(up, brw); errc <- err }()
	go func() { _, err := io.Copy(conn, up); errc <- err }()
	<-errc
}

// pickAvoidingHash picks an endpoint, preferring one not tried yet (Envoy's
// previous_hosts retry predicate) within maxAttempts picks. hash is the
// request's hash_policy hash, for RING_HASH and MAGLEV clusters.
func pickAvoidingHash(ctx context.Context, cl *cluster.Cluster, target string, tried []string, maxAttempts int, hash uint64, hasHash bool) (*cluster.Endpoint, error) {
	var ep *cluster.Endpoint
	var err error
	for range max(maxAttempts, 1) {
		if ep, err = cl.PickHash(ctx, target, hash, hasHash); err != nil {
			return nil, err
		}
		seen := false
		for _, t := range tried {
			seen = seen || t == ep.Address
		}
		if !seen {
			break
		}
	}
	return ep, nil
}

// bodyOverflow is Envoy's local reply text for a circuit breaker overflow.
const bodyOverflow = "upstream connect error or disconnect/reset before headers. reset reason: overflow"

// notAdmitted answers a request the circuit breakers refused (503, UO) or
// that gave up waiting for a connection (client gone, or route timeout).
func (ex *exchange) notAdmitted(s *cluster.Stats, err error) {
	switch {
	case errors.Is(err, cluster.ErrOverflow):
		ex.reply(s, http.StatusServiceUnavailable, "UO", bodyOverflow)
	case ex.r.Context().Err() != nil:
		ex.status, ex.flags = 499, "DC"
	default:
		s.RqTimeout.Inc()
		ex.reply(s, http.StatusGatewayTimeout, "UT", bodyTimeout)
	}
}

// takeRetry takes a circuit breaker retry slot for the next attempt,
// returning the one the previous retry held; false means max_retries
// overflowed and the current result stands.
func takeRetry(cl *cluster.Cluster, slot *func()) bool {
	releaseRetry(slot)
	done, ok := cl.BeginRetry()
	*slot = done
	return ok
}

func releaseRetry(slot *func()) {
	if *slot != nil {
		(*slot)()
		*slot = nil
	}
}

// outlierResult maps a local reply's response flag to what outlier
// detection counts.
func outlierResult(flag string) cluster.Result {
	switch flag {
	case "UF":
		return cluster.ResultConnectFailed
	case "UT":
		return cluster.ResultTimeout
	}
	return cluster.ResultReset
}
