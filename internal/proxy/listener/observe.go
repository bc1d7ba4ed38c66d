package listener

import (
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/skein-mesh/skein/internal/proxy/filters"
)

// countingWriter counts response body bytes. Unwrap keeps
// http.ResponseController (flush, full duplex, hijack) working through it.
type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// countingReader counts request body bytes read by the proxy.
type countingReader struct {
	io.ReadCloser
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n += int64(n)
	return n, err
}

// observe tells the observers how the request went.
func (ex *exchange) observe(w *countingWriter) {
	flags := ex.flags
	if ex.filterReq != nil && len(ex.filterReq.ResponseFlags) > 0 {
		flags = strings.Trim(strings.Join(ex.filterReq.ResponseFlags, ",")+","+flags, ",")
	}
	if flags == "" {
		flags = "-"
	}
	status := ex.status
	if status == 0 {
		status = http.StatusOK // a handler that wrote a body without a status
	}
	info := &filters.RequestInfo{
		Request:        ex.filterReq,
		StatPrefix:     ex.hcm.statPrefix,
		Inbound:        ex.hcm.inbound,
		Start:          ex.start,
		Duration:       time.Since(ex.start),
		Status:         status,
		ResponseFlags:  flags,
		ResponseHeader: w.Header(),
		Trailer:        trailers(w.Header()),
		Cluster:        ex.cluster,
		UpstreamHost:   ex.upstreamHost,
		Attempts:       ex.attempts,
		BytesSent:      w.n,
	}
	if ex.reqBody != nil {
		info.BytesReceived = ex.reqBody.n
	}
	for _, o := range ex.hcm.observers {
		o.OnComplete(info)
	}
}

// trailers collects the trailers the proxy set with http.TrailerPrefix.
func trailers(h http.Header) http.Header {
	var t http.Header
	for k, vs := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			if t == nil {
				t = http.Header{}
			}
			t[strings.TrimPrefix(k, http.TrailerPrefix)] = vs
		}
	}
	return t
}
