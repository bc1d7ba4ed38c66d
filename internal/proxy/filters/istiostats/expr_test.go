package istiostats

import (
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/skein-mesh/skein/internal/proxy/attribute"
	"github.com/skein-mesh/skein/internal/proxy/filters"
)

// TestEveryAttributeIsImplemented: the grammar the control plane accepts
// is what the proxy evaluates.
func TestEveryAttributeIsImplemented(t *testing.T) {
	for _, name := range attribute.Names {
		if _, ok := attributes[name]; !ok {
			t.Errorf("attribute %s parses but is not evaluated", name)
		}
	}
	if len(attributes) != len(attribute.Names) {
		t.Errorf("%d attributes evaluated, %d in the grammar", len(attributes), len(attribute.Names))
	}
}

func TestExprValues(t *testing.T) {
	r := httptest.NewRequest("GET", "http://reviews:9080/reviews/0?x=1", nil)
	r.Header.Set("X-Request-Id", "rid-1")
	r.Header.Set("User-Agent", "curl/8")
	r.Header.Set("X-User", "jason")
	info := &filters.RequestInfo{
		Request: &filters.Request{HTTP: r, Conn: &filters.Conn{
			Source: netip.MustParseAddrPort("127.0.0.5:41000"), Destination: netip.MustParseAddrPort("127.0.0.7:9080"),
			TLS: true, SNI: "outbound_.9080_._.reviews", PeerCertificate: &x509.Certificate{}, PeerPrincipal: "cluster.local/ns/default/sa/productpage",
		}},
		Status: 503, ResponseFlags: "UF", BytesReceived: 12, BytesSent: 345,
		ResponseHeader: http.Header{"X-Served-By": {"v2"}}, Trailer: http.Header{"Grpc-Status": {"14"}},
		Cluster: "outbound|9080|v2|reviews.default.svc.cluster.local", UpstreamHost: "127.0.0.9:9080",
	}
	for _, tc := range []struct{ expr, want string }{
		{`'fixed'`, "fixed"},
		{`request.host`, "reviews:9080"},
		{`request.method`, "GET"},
		{`request.path`, "/reviews/0?x=1"},
		{`request.url_path`, "/reviews/0"},
		{`request.query`, "x=1"},
		{`request.id`, "rid-1"},
		{`request.useragent`, "curl/8"},
		{`request.referer`, "unknown"},
		{`request.protocol`, "HTTP/1.1"},
		{`request.size`, "12"},
		{`request.headers['x-user']`, "jason"},
		{`request.headers['x-none']`, "unknown"},
		{`response.code`, "503"},
		{`string(response.code)`, "503"},
		{`response.flags`, "UF"},
		{`response.size`, "345"},
		{`response.grpc_status`, "14"},
		{`response.headers['x-served-by']`, "v2"},
		{`response.trailers['grpc-status']`, "14"},
		{`source.address`, "127.0.0.5:41000"},
		{`source.port`, "41000"},
		{`destination.address`, "127.0.0.7:9080"},
		{`string(destination.port)`, "9080"},
		{`connection.mtls`, "true"},
		{`connection.requested_server_name`, "outbound_.9080_._.reviews"},
		{`connection.uri_san_peer_certificate`, "spiffe://cluster.local/ns/default/sa/productpage"},
		{`upstream.address`, "127.0.0.9:9080"},
		{`upstream.port`, "9080"},
		{`xds.cluster_name`, "outbound|9080|v2|reviews.default.svc.cluster.local"},
	} {
		e, err := parseExpr(tc.expr)
		if err != nil {
			t.Errorf("%s: %v", tc.expr, err)
			continue
		}
		if got := e(info); got != tc.want {
			t.Errorf("%s = %q, want %q", tc.expr, got, tc.want)
		}
	}
	// A local reply has no request connection or upstream: unknown, not a panic.
	empty := &filters.RequestInfo{Status: 404}
	for _, name := range attribute.Names {
		e, _ := parseExpr(name)
		if got := e(empty); got == "" {
			t.Errorf("%s on an empty request = %q, want a value (unknown)", name, got)
		}
	}
	if _, err := parseExpr(`upstream_peer.labels['app'].value`); err == nil {
		t.Error("an unsupported expression parsed")
	}
}
