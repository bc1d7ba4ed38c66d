package hcm

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/skein-mesh/skein/internal/proxy/stats"
)

// serveHCM serves a connection manager routing everything to a backend
// that echoes the request body, on a real TCP socket; it returns the
// proxy's address.
func serveHCM(t *testing.T, change func(*hcmv3.HttpConnectionManager)) string {
	t.Helper()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "got %q", b)
	}))
	t.Cleanup(backend.Close)
	clusters := backendClusters(t, backend.Listener.Addr())
	cfg := &hcmv3.HttpConnectionManager{
		StatPrefix: "limits",
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{Name: "r",
			VirtualHosts: []*routev3.VirtualHost{{Name: "all", Domains: []string{"*"}, Routes: []*routev3.Route{{
				Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "backend"}}},
			}}}}}},
		HttpFilters: []*hcmv3.HttpFilter{{Name: RouterFilterName}},
	}
	if change != nil {
		change(cfg)
	}
	cm, err := New(cfg, &Env{Clusters: clusters, Stats: stats.NewStore()})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(cm)
	t.Cleanup(front.Close)
	return front.Listener.Addr().String()
}

// exchangeRaw writes raw bytes on a new connection and reads the first
// response; closed reports whether the proxy then closed the connection.
func exchangeRaw(t *testing.T, addr, raw string) (resp *http.Response, closed bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	go io.WriteString(c, raw) // the server may answer before reading it all
	br := bufio.NewReader(c)
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	c.SetReadDeadline(time.Now().Add(time.Second))
	_, err = br.ReadByte()
	return resp, err == io.EOF || err != nil && !isTimeout(err)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func headers(n, size int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "X-H%d: %s\r\n", i, strings.Repeat("v", size))
	}
	return b.String()
}

// TestRequestHeaderLimits: Envoy's defaults (100 headers, 60 KiB) and the
// HttpConnectionManager settings that change them, over a real connection.
func TestRequestHeaderLimits(t *testing.T) {
	def := serveHCM(t, nil)
	custom := serveHCM(t, func(c *hcmv3.HttpConnectionManager) {
		c.MaxRequestHeadersKb = wrapperspb.UInt32(2)
		c.CommonHttpProtocolOptions = &corev3.HttpProtocolOptions{MaxHeadersCount: wrapperspb.UInt32(5)}
	})
	for _, tc := range []struct {
		name, addr, raw string
		want            int
	}{
		{"99 headers and host", def, "GET / HTTP/1.1\r\nHost: a\r\n" + headers(99, 1) + "\r\n", 200},
		{"101 headers", def, "GET / HTTP/1.1\r\nHost: a\r\n" + headers(101, 1) + "\r\n", 431},
		{"59 KiB of headers", def, "GET / HTTP/1.1\r\nHost: a\r\n" + headers(59, 1000) + "\r\n", 200},
		{"a 61 KiB header", def, "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("b", 61<<10) + "\r\n\r\n", 431},
		{"a 100 KiB URL", def, "GET /" + strings.Repeat("u", 100<<10) + " HTTP/1.1\r\nHost: a\r\n\r\n", 431},
		{"max_headers_count 5", custom, "GET / HTTP/1.1\r\nHost: a\r\n" + headers(5, 1) + "\r\n", 431},
		{"max_request_headers_kb 2", custom, "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("b", 2100) + "\r\n\r\n", 431},
		{"within custom limits", custom, "GET / HTTP/1.1\r\nHost: a\r\n" + headers(4, 100) + "\r\n", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, closed := exchangeRaw(t, tc.addr, tc.raw)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if tc.want == 431 && !closed {
				t.Errorf("connection left open after 431")
			}
		})
	}
}

// TestInvalidChunkedBody: a body whose chunked framing is broken is the
// client's protocol error: 400 (DPE), not an upstream failure, and the
// connection is closed.
func TestInvalidChunkedBody(t *testing.T) {
	addr := serveHCM(t, nil)
	resp, closed := exchangeRaw(t, addr, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nxx\r\n0\r\n\r\n")
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d, want 400", resp.StatusCode)
	}
	if !closed {
		t.Errorf("connection left open after a framing error")
	}
	resp, _ = exchangeRaw(t, addr, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
	if resp.StatusCode != http.StatusOK {
		t.Errorf("valid chunked body: status %d", resp.StatusCode)
	}
}
