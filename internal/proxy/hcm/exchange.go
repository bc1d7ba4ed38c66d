package hcm

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"github.com/skein-mesh/skein/internal/proxy/filters"
	"github.com/skein-mesh/skein/internal/proxy/router"
	"github.com/skein-mesh/skein/internal/proxy/upstream"
)

// Server header transformations, shortened.
const (
	hcmOverwrite      = hcmv3.HttpConnectionManager_OVERWRITE
	hcmAppendIfAbsent = hcmv3.HttpConnectionManager_APPEND_IF_ABSENT
	hcmPassThrough    = hcmv3.HttpConnectionManager_PASS_THROUGH
)

// exchange is one downstream request on its way through the proxy.
type exchange struct {
	hcm      *ConnectionManager
	w        http.ResponseWriter
	r        *http.Request
	start    time.Time
	target   string // original destination host:port
	decision *router.Decision
	// filterReq is the filter chain's view of the request (nil without
	// filters or observers).
	filterReq *filters.Request
	// reqBody counts request body bytes when observers need them.
	reqBody *countingReader

	// Result is the outcome: status and flags (also of local replies),
	// and what the upstream side did.
	upstream.Result
}

var _ upstream.Downstream = (*exchange)(nil)

// LocalReply implements upstream.Downstream.
func (ex *exchange) LocalReply(status int, flag, body string) {
	ex.localReply(status, flag, body, ex.decision)
}

// ResponseHeader implements upstream.Downstream: the server header as
// configured, then the filters' response side.
func (ex *exchange) ResponseHeader(status int, h http.Header) {
	switch ex.hcm.serverHeader {
	case hcmOverwrite:
		h.Set("Server", ex.hcm.serverName)
	case hcmAppendIfAbsent:
		if h.Get("Server") == "" {
			h.Set("Server", ex.hcm.serverName)
		}
	}
	if ex.filterReq != nil {
		ex.hcm.chain.OnResponse(ex.filterReq, status, h)
	}
}

// localReply answers without an upstream, like Envoy's local replies.
func (ex *exchange) localReply(status int, flag, body string, d *router.Decision) {
	ex.Status, ex.Flags = status, flag
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
	log := ex.hcm.env.Log
	if log == nil || !log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	route := ""
	if ex.decision != nil {
		route = ex.decision.RouteName
	}
	flags := ex.Flags
	if ex.filterReq != nil && len(ex.filterReq.ResponseFlags) > 0 {
		// flags set by filters (fault delay "DI") come first, as in Envoy
		flags = strings.Trim(strings.Join(ex.filterReq.ResponseFlags, ",")+","+flags, ",")
	}
	if flags == "" {
		flags = "-"
	}
	log.Debug("access",
		"statPrefix", ex.hcm.statPrefix, "method", ex.r.Method, "authority", ex.r.Host,
		"path", ex.r.URL.RequestURI(), "protocol", ex.r.Proto, "status", ex.Status,
		"responseFlags", flags, "route", route, "cluster", ex.Cluster,
		"upstreamHost", ex.UpstreamHost, "attempts", ex.Attempts,
		"durationMs", time.Since(ex.start).Milliseconds(),
		"requestID", ex.r.Header.Get("X-Request-Id"))
}

// prepareHeaders makes the connection manager's edits to a request about
// to be forwarded: x-forwarded-for/-proto, x-request-id, and dropping an
// untrusted x-forwarded-client-cert. A transparent manager adds nothing.
func (h *ConnectionManager) prepareHeaders(r *http.Request) {
	if h.transparent {
		return
	}
	if h.useRemoteAddress {
		r.Header.Set("X-Forwarded-Proto", "http")
		if prior := r.Header.Values("X-Forwarded-For"); len(prior) > 0 {
			r.Header.Set("X-Forwarded-For", strings.Join(prior, ", ")+", "+remoteIP(r))
		} else {
			r.Header.Set("X-Forwarded-For", remoteIP(r))
		}
	} else if r.Header.Get("X-Forwarded-Proto") == "" {
		r.Header["X-Forwarded-Proto"] = forwardedProtoHTTP
	}
	if h.generateRequestID && r.Header.Get("X-Request-Id") == "" {
		r.Header.Set("X-Request-Id", newRequestID())
	}
	if h.sanitizeClientCert {
		r.Header.Del("X-Forwarded-Client-Cert")
	}
}

// forwardedProtoHTTP is shared rather than allocated per request: the
// upstream request's header is a copy, and nothing writes into a value
// slice in place.
var forwardedProtoHTTP = []string{"http"}

// newRequestID returns a random (version 4) UUID, as Envoy generates for
// x-request-id.
func newRequestID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:36], b[10:16])
	return string(out[:])
}

// remoteIP is the downstream peer's IP without the port.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
