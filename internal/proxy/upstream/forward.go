// Package upstream sends a routed request to its cluster: circuit breaker
// admission, host pick (with the route's hash and the retry host
// predicate), retries with back-off, per-try and route timeouts, outlier
// reports, request mirroring, and streaming the answer back. Each try is
// an attempt whose finish releases everything it took, on every path.
//
// The connection manager (package hcm) decides where a request goes and
// answers locally; this package only forwards, and tells it about the
// response through Downstream.
package upstream

import (
	"context"
	"errors"
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
	bodyTimeout   = "upstream request timeout"
	bodyNoHealthy = "no healthy upstream"
	// BodyConnectFail is also what a CONNECT tunnel that cannot reach its target answers.
	BodyConnectFail = "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
	bodyReset       = "upstream connect error or disconnect/reset before headers. reset reason: connection termination"
	// bodyOverflow is Envoy's local reply text for a circuit breaker overflow.
	bodyOverflow = "upstream connect error or disconnect/reset before headers. reset reason: overflow"
)

// maxRetryBuffer bounds the request body kept in memory to allow retries.
const maxRetryBuffer = 64 << 10

// noRetries stands for a route without a retry policy.
var noRetries router.RetryPolicy

// Clusters finds upstream clusters by name (mirror targets).
type Clusters interface {
	Get(name string) (*cluster.Cluster, bool)
}

// Downstream is the connection manager's side of a forwarded request.
type Downstream interface {
	// LocalReply answers the client without an upstream response, as
	// Envoy's local replies (503 UH, 504 UT, ...).
	LocalReply(status int, flag, body string)
	// ResponseHeader completes the header of an upstream response before
	// it is written: the connection manager's own headers (server) and
	// its filters' response side.
	ResponseHeader(status int, h http.Header)
}

// Result is what the access log and stats learn about the upstream side.
type Result struct {
	Status       int
	Flags        string // Envoy response flags, e.g. "UF", "UT"
	Cluster      string
	UpstreamHost string
	Attempts     int
}

// Forwarder forwards requests for one connection manager.
type Forwarder struct {
	Clusters Clusters
	Log      *slog.Logger
	// SuppressEnvoyHeaders drops x-envoy-* headers (router filter's
	// suppress_envoy_headers).
	SuppressEnvoyHeaders bool
	// WebSocket allows websocket upgrades (upgrade_configs).
	WebSocket bool
}

// Request is one request to forward.
type Request struct {
	W        http.ResponseWriter
	R        *http.Request // the downstream request, headers as the connection manager left them
	Target   string        // the original destination host:port
	Decision *router.Decision
	Cluster  *cluster.Cluster
	Down     Downstream
	// Result is filled in as the request goes.
	Result *Result
}

// Forward sends the request to its cluster, retrying as the route's retry
// policy allows, and streams the response back.
func (f *Forwarder) Forward(req *Request) {
	d, r, cl := req.Decision, req.R, req.Cluster
	res := req.Result
	res.Cluster = cl.Name()
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

	out := f.upstreamRequest(ctx, r, d, timeout)
	body, err := newRequestBody(r, policy.NumRetries > 0 || len(d.Mirrors) > 0)
	if err != nil {
		f.reply(req, nil, http.StatusBadRequest, "DPE", "")
		return
	}
	f.mirror(req, out, body)
	if r.ProtoMajor == 1 && r.ContentLength != 0 {
		// Let the upstream answer stream back while the request body is
		// still arriving (gRPC bidi, echo servers), as Envoy does.
		http.NewResponseController(req.W).EnableFullDuplex()
	}

	var tried []string
	hash, hasHash, setCookie := d.Hash.Hash(r)
	var retrySlot func() // circuit breakers' retry slot, held until the retried attempt ends
	defer func() { releaseRetry(&retrySlot) }()
	for n := 1; ; n++ {
		res.Attempts = n
		a, err := begin(ctx, cl, req.Target, r.ProtoMajor == 2, tried, policy, hash, hasHash)
		if err != nil {
			f.notAdmitted(req, err)
			return
		}
		tried = append(tried, a.ep.Address)
		res.UpstreamHost = a.ep.Address
		out.URL.Host = a.ep.Address
		out.Body, out.GetBody = body.attempt()
		if d.IncludeRequestAttemptCount {
			out.Header.Set("X-Envoy-Attempt-Count", strconv.Itoa(n))
		}
		attemptReq := out // already carries ctx: a first attempt needs no copy
		if policy.PerTryTimeout > 0 || n > 1 {
			attemptReq = out.WithContext(a.ctx)
		}
		resp, err := a.roundTrip(attemptReq, r.ProtoMajor == 2)
		if err != nil {
			if r.Context().Err() == nil && body.downstreamFailed() {
				// The client's body is malformed (invalid chunked encoding):
				// a downstream protocol error, not the upstream's failure.
				a.finish()
				req.W.Header().Set("Connection", "close")
				f.reply(req, nil, http.StatusBadRequest, "DPE", "")
				return
			}
			status, flag, text, retryOn := f.classify(r, err, ctx, a.ctx, a.ep)
			if status == 0 { // the client went away
				a.finish()
				res.Status, res.Flags = 499, "DC"
				return
			}
			a.report(outlierResult(flag), status)
			a.finish()
			if flag == "UT" {
				cl.Stats.RqTimeout.Inc()
			}
			if n <= policy.NumRetries && policy.On(retryOn) && body.replayable() && ctx.Err() == nil && takeRetry(cl, &retrySlot) {
				cl.Stats.RqRetry.Inc()
				jitteredBackoff(ctx, policy.BackOffBase, policy.BackOffMax, n)
				continue
			}
			f.reply(req, cl.Stats, status, flag, text)
			return
		}
		a.report(cluster.ResultResponse, resp.StatusCode)
		if n <= policy.NumRetries && policy.RetriableResponse(resp) && body.replayable() && takeRetry(cl, &retrySlot) {
			io.Copy(io.Discard, io.LimitReader(resp.Body, maxRetryBuffer))
			resp.Body.Close()
			a.finish()
			cl.Stats.Response(resp.StatusCode)
			cl.Stats.RqRetry.Inc()
			jitteredBackoff(ctx, policy.BackOffBase, policy.BackOffMax, n)
			continue
		}
		func() {
			defer a.finish()
			if setCookie != "" {
				resp.Header.Add("Set-Cookie", setCookie)
			}
			f.respond(req, resp, time.Since(a.sent), ctx)
		}()
		return
	}
}

// reply is a local reply that stands for the upstream's answer in the
// cluster's stats (nil: none), as in Envoy.
func (f *Forwarder) reply(req *Request, s *cluster.Stats, status int, flag, body string) {
	if s != nil {
		s.Response(status)
	}
	req.Down.LocalReply(status, flag, body)
}

// upstreamRequest builds the request to send upstream (without endpoint).
func (f *Forwarder) upstreamRequest(ctx context.Context, r *http.Request, d *router.Decision, timeout time.Duration) *http.Request {
	out := r.Clone(ctx)
	out.RequestURI = ""
	out.URL.Scheme = "http"
	out.URL.User = nil
	out.Close = false
	upgrade := upgradeType(r.Header)
	removeHopByHop(out.Header)
	if upgrade == "websocket" && f.WebSocket && r.ProtoMajor == 1 {
		out.Header.Set("Connection", "Upgrade")
		out.Header.Set("Upgrade", r.Header.Get("Upgrade"))
	}
	if timeout > 0 && !f.SuppressEnvoyHeaders {
		out.Header.Set("X-Envoy-Expected-Rq-Timeout-Ms", strconv.FormatInt(timeout.Milliseconds(), 10))
	}
	d.ApplyRequest(out)
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

// emptyUserAgent is shared rather than allocated per request. Header.Add
// appends to a copy (len == cap), so sharing is safe as long as nothing
// writes into a value slice in place.
var emptyUserAgent = []string{""}

// classify maps a transport error to Envoy's local reply. status 0 means the
// downstream client cancelled. retryOn is the retry condition it meets.
func (f *Forwarder) classify(r *http.Request, err error, ctx, attemptCtx context.Context, ep *cluster.Endpoint) (status int, flag, body, retryOn string) {
	var connectErr *cluster.ConnectError
	switch {
	case r.Context().Err() != nil:
		return 0, "", "", ""
	case errors.As(err, &connectErr):
		ep.Failed()
		return http.StatusServiceUnavailable, "UF", BodyConnectFail, "connect-failure"
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
func (f *Forwarder) respond(req *Request, resp *http.Response, serviceTime time.Duration, ctx context.Context) {
	defer resp.Body.Close()
	cl, res := req.Cluster, req.Result
	cl.Stats.Response(resp.StatusCode)
	res.Status = resp.StatusCode
	h := req.W.Header()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		f.upgrade(req, resp)
		return
	}
	removeHopByHop(resp.Header)
	req.Decision.ApplyResponse(resp.Header)
	for k, vs := range resp.Header {
		h[k] = vs
	}
	if _, ok := h["Content-Type"]; !ok {
		h["Content-Type"] = nil // pass the absence through: no sniffing
	}
	if !f.SuppressEnvoyHeaders {
		h.Set("X-Envoy-Upstream-Service-Time", strconv.FormatInt(serviceTime.Milliseconds(), 10))
	}
	req.Down.ResponseHeader(resp.StatusCode, h)
	req.W.WriteHeader(resp.StatusCode)

	// Stream: flush each read when the length is unknown (gRPC, SSE, chunked).
	flush := resp.ContentLength == -1
	rc := http.NewResponseController(req.W)
	if flush {
		rc.Flush()
	}
	if err := CopyBody(req.W, resp.Body, rc, flush); err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			cl.Stats.RqTimeout.Inc()
			res.Flags = "UT"
		} else if req.R.Context().Err() != nil {
			res.Flags = "DC"
		} else {
			res.Flags = "UR" // upstream reset mid-response
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

// CopyBody copies an answer to w, flushing after each read when flush is set
// (streams of unknown length: gRPC, SSE, tunnels).
func CopyBody(w io.Writer, body io.Reader, rc *http.ResponseController, flush bool) error {
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
func (f *Forwarder) upgrade(req *Request, resp *http.Response) {
	up, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		req.Down.LocalReply(http.StatusBadGateway, "UPE", "")
		return
	}
	conn, brw, err := http.NewResponseController(req.W).Hijack()
	if err != nil {
		req.Down.LocalReply(http.StatusInternalServerError, "", "")
		return
	}
	defer conn.Close()
	req.Decision.ApplyResponse(resp.Header)
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

// notAdmitted answers a request the circuit breakers refused (503, UO), for
// which no host was healthy (503, UH), or that gave up waiting for a
// connection (client gone, or route timeout).
func (f *Forwarder) notAdmitted(req *Request, err error) {
	s := req.Cluster.Stats
	switch {
	case errors.Is(err, errNoHost):
		f.reply(req, s, http.StatusServiceUnavailable, "UH", bodyNoHealthy)
	case errors.Is(err, cluster.ErrOverflow):
		f.reply(req, s, http.StatusServiceUnavailable, "UO", bodyOverflow)
	case req.R.Context().Err() != nil:
		req.Result.Status, req.Result.Flags = 499, "DC"
	default:
		s.RqTimeout.Inc()
		f.reply(req, s, http.StatusGatewayTimeout, "UT", bodyTimeout)
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
