package filters

import (
	"net/http"
	"time"
)

// RequestInfo is what the connection manager knows when a request is done:
// the inputs of access logs, Istio's request metrics and trace spans.
type RequestInfo struct {
	Request *Request // HTTP request (as forwarded), connection, route, metadata
	// StatPrefix names the connection manager ("inbound_0.0.0.0_9080").
	StatPrefix string
	// Inbound is true on a sidecar's inbound listener (reporter=destination).
	Inbound bool

	Start    time.Time
	Duration time.Duration

	Status         int
	ResponseFlags  string // Envoy's flags, "-" when none
	ResponseHeader http.Header
	// Trailer is the response trailer (grpc-status lives here for gRPC).
	Trailer http.Header

	Cluster      string // upstream cluster, "" for local replies
	UpstreamHost string // host:port of the last attempt
	Attempts     int

	BytesReceived int64 // request body bytes read from the client
	BytesSent     int64 // response body bytes written to the client
	// RequestMessages and ResponseMessages count the gRPC messages of the
	// two bodies (zero unless the request is gRPC), as Envoy's grpc_stats
	// filter does for Istio's message metrics.
	RequestMessages, ResponseMessages int64
}

// Observer is told about every completed request. Filters in the chain
// that implement it are called, as are observers the connection manager
// builds from its own config (access_log, tracing). Observers run on the
// request's goroutine after the response is written: keep them cheap.
type Observer interface {
	OnComplete(info *RequestInfo)
}
