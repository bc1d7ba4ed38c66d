package upstream

import (
	"bytes"
	"io"
	"net/http"
	"sync/atomic"
)

// requestBody hands out the request body for each attempt. Small bodies are
// buffered when retries are possible; a streamed body can be retried only
// if no byte of it was sent yet (a connect failure).
type requestBody struct {
	buf    []byte // buffered body, or nil
	stream *guardedBody
	empty  bool
}

func newRequestBody(r *http.Request, retries bool) (*requestBody, error) {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return &requestBody{empty: true}, nil
	}
	if retries && r.ContentLength > 0 && r.ContentLength <= maxRetryBuffer {
		buf, err := io.ReadAll(io.LimitReader(r.Body, r.ContentLength))
		if err != nil {
			return nil, err
		}
		return &requestBody{buf: buf}, nil
	}
	return &requestBody{stream: &guardedBody{r: r.Body}}, nil
}

func (b *requestBody) attempt() (io.ReadCloser, func() (io.ReadCloser, error)) {
	switch {
	case b.empty:
		return http.NoBody, nil
	case b.buf != nil:
		get := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b.buf)), nil }
		rc, _ := get()
		return rc, get
	default:
		return b.stream, nil
	}
}

func (b *requestBody) replayable() bool {
	return b.stream == nil || !b.stream.touched.Load()
}

// guardedBody records whether the transport read from the downstream body
// and keeps the transport from closing it (the server does that).
type guardedBody struct {
	r       io.ReadCloser
	touched atomic.Bool
	failed  atomic.Bool
}

func (g *guardedBody) Read(p []byte) (int, error) {
	g.touched.Store(true)
	n, err := g.r.Read(p)
	if err != nil && err != io.EOF {
		g.failed.Store(true)
	}
	return n, err
}

// downstreamFailed reports whether reading the client's body failed (bad
// chunked encoding, a length the body does not have): the client's fault,
// not the upstream's.
func (b *requestBody) downstreamFailed() bool {
	return b.stream != nil && b.stream.failed.Load()
}

func (g *guardedBody) Close() error { return nil }
