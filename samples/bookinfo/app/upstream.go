package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// DefaultPort is the port every Bookinfo service listens on and calls its
// peers on, as in Istio's sample.
const DefaultPort = "9080"

// Upstreams holds the host:port addresses productpage and reviews call.
// They are names for the mesh to route, never resolved by the app itself:
// with HTTP_PROXY set the request goes to the sidecar as
// http://reviews:9080/..., exactly as Istio's sample sends it.
type Upstreams struct {
	Details string
	Reviews string
	Ratings string
}

// UpstreamsFromEnv reads Istio's variables: DETAILS_HOSTNAME,
// REVIEWS_HOSTNAME and RATINGS_HOSTNAME (defaults details, reviews,
// ratings), SERVICES_DOMAIN (a suffix appended after a dot) and always port
// 9080. As a Skein extension a hostname may carry its own port
// ("127.0.0.1:19080"), which lets tests and laptops point anywhere.
func UpstreamsFromEnv(getenv func(string) string) Upstreams {
	domain := getenv("SERVICES_DOMAIN")
	pick := func(key, def string) string {
		host := getenv(key)
		if host == "" {
			host = def
		}
		return upstreamAddr(host, domain)
	}
	return Upstreams{
		Details: pick("DETAILS_HOSTNAME", "details"),
		Reviews: pick("REVIEWS_HOSTNAME", "reviews"),
		Ratings: pick("RATINGS_HOSTNAME", "ratings"),
	}
}

func upstreamAddr(host, domain string) string {
	port := DefaultPort
	if h, p, err := net.SplitHostPort(host); err == nil {
		host, port = h, p
	}
	if domain != "" {
		host += "." + strings.TrimPrefix(domain, ".")
	}
	return net.JoinHostPort(host, port)
}

// propagatedHeaders are copied from an incoming request to every call it
// causes, so the mesh can route by user (end-user) and stitch traces
// together. The list is Istio's; cookie is deliberately absent.
var propagatedHeaders = []string{
	"end-user",
	"x-request-id",
	"x-b3-traceid",
	"x-b3-spanid",
	"x-b3-parentspanid",
	"x-b3-sampled",
	"x-b3-flags",
	"b3",
	"x-ot-span-context",
	"traceparent",
	"tracestate",
	"x-cloud-trace-context",
	"grpc-trace-bin",
	"sw8",
	"x-datadog-trace-id",
	"x-datadog-parent-id",
	"x-datadog-sampling-priority",
	"user-agent",
}

// forwardHeaders returns the subset of in that must travel on outbound calls.
func forwardHeaders(in http.Header) http.Header {
	out := http.Header{}
	for _, name := range propagatedHeaders {
		if vs := in.Values(name); len(vs) > 0 {
			out[http.CanonicalHeaderKey(name)] = append([]string(nil), vs...)
		}
	}
	return out
}

// NewTransport is the outbound transport the services use by default: it
// honours HTTP_PROXY/NO_PROXY, so inside the mesh every call goes through
// the sidecar.
func NewTransport() *http.Transport {
	return &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:        100,
		MaxIdleConnsPerHost: 10,
		IdleConnTimeout:     90 * time.Second,
	}
}

// caller sends GET/POST requests to peers and decodes their JSON answers.
type caller struct {
	client *http.Client
}

func newCaller(rt http.RoundTripper) caller {
	if rt == nil {
		rt = NewTransport()
	}
	// No client-wide timeout: each call sets its own, as Istio's sample does.
	return caller{client: &http.Client{Transport: rt}}
}

// callResult is one upstream answer: the status and the raw JSON body.
type callResult struct {
	Status int
	Body   []byte
}

// maxUpstreamBody bounds what we read from a peer; Bookinfo answers are tiny.
const maxUpstreamBody = 1 << 20

// do calls http://addr/path with the propagated headers and a per-call
// timeout. A transport failure or timeout is an error; any HTTP status is a
// result for the caller to judge.
func (c caller) do(ctx context.Context, method, addr, path string, headers http.Header, body []byte, timeout time.Duration) (callResult, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, rd)
	if err != nil {
		return callResult{}, fmt.Errorf("building request to %s: %w", addr, err)
	}
	for k, vs := range headers {
		req.Header[k] = vs
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return callResult{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxUpstreamBody))
	if err != nil {
		return callResult{}, fmt.Errorf("reading answer from %s: %w", addr, err)
	}
	return callResult{Status: resp.StatusCode, Body: data}, nil
}

// writeJSON answers with v as JSON and the given status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeRawJSON answers with an already encoded JSON body.
func writeRawJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
