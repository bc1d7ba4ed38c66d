package hcm

import (
	"encoding/binary"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/skein-mesh/skein/internal/proxy/filters"
)

// countingWriter counts response body bytes, and gRPC messages when grpc
// is set. Unwrap keeps http.ResponseController (flush, full duplex,
// hijack) working through it.
type countingWriter struct {
	http.ResponseWriter
	n    int64
	grpc *grpcMessages
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	if c.grpc != nil {
		c.grpc.feed(p[:n])
	}
	return n, err
}

func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// countingReader counts request body bytes read by the proxy, and gRPC
// messages when grpc is set.
type countingReader struct {
	io.ReadCloser
	n    int64
	grpc *grpcMessages
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n += int64(n)
	if c.grpc != nil {
		c.grpc.feed(p[:n])
	}
	return n, err
}

// grpcMessages counts the messages of a gRPC body as its bytes pass: each
// message is a 5-byte prefix (compressed flag, big-endian length) and that
// many bytes, and writes split them anywhere.
type grpcMessages struct {
	count  int64
	prefix [5]byte
	have   int    // prefix bytes seen of the current message
	left   uint32 // message bytes still to come
}

func (g *grpcMessages) feed(p []byte) {
	for len(p) > 0 {
		if g.left > 0 {
			n := uint32(min(uint64(len(p)), uint64(g.left)))
			p, g.left = p[n:], g.left-n
			continue
		}
		n := copy(g.prefix[g.have:], p)
		p, g.have = p[n:], g.have+n
		if g.have == len(g.prefix) {
			g.count++
			g.have, g.left = 0, binary.BigEndian.Uint32(g.prefix[1:])
		}
	}
}

func (g *grpcMessages) total() int64 {
	if g == nil {
		return 0
	}
	return g.count
}

// isGRPC reports whether a request is gRPC (any application/grpc content
// type: +proto, +json, ...), whose bodies are message streams.
func isGRPC(r *http.Request) bool {
	return strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc")
}

// observe tells the observers how the request went.
func (ex *exchange) observe(w *countingWriter) {
	flags := ex.Flags
	if ex.filterReq != nil && len(ex.filterReq.ResponseFlags) > 0 {
		flags = strings.Trim(strings.Join(ex.filterReq.ResponseFlags, ",")+","+flags, ",")
	}
	if flags == "" {
		flags = "-"
	}
	status := ex.Status
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
		Cluster:        ex.Cluster,
		UpstreamHost:   ex.UpstreamHost,
		Attempts:       ex.Attempts,
		BytesSent:      w.n,
	}
	info.ResponseMessages = w.grpc.total()
	if ex.reqBody != nil {
		info.BytesReceived = ex.reqBody.n
		info.RequestMessages = ex.reqBody.grpc.total()
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
