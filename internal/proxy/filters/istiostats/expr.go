package istiostats

import (
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/skein-mesh/skein/internal/proxy/attribute"
	"github.com/skein-mesh/skein/internal/proxy/filters"
)

// expr is a dimension value expression (Telemetry tagOverrides), in the
// grammar of package attribute. An attribute with no value in a request
// is "unknown", as Istio's stats report a failed or empty expression.
type expr func(info *filters.RequestInfo) string

func parseExpr(s string) (expr, error) {
	e, err := attribute.Parse(s)
	if err != nil {
		return nil, err
	}
	if e.IsLiteral {
		lit := e.Literal
		return func(*filters.RequestInfo) string { return lit }, nil
	}
	if e.Key != "" {
		key := http.CanonicalHeaderKey(e.Key)
		var header func(info *filters.RequestInfo) http.Header
		switch e.Attribute {
		case "request.headers":
			header = func(info *filters.RequestInfo) http.Header { return httpReq(info).Header }
		case "response.headers":
			header = func(info *filters.RequestInfo) http.Header { return info.ResponseHeader }
		case "response.trailers":
			header = func(info *filters.RequestInfo) http.Header { return info.Trailer }
		}
		return func(info *filters.RequestInfo) string { return orUnknown(header(info).Get(key)) }, nil
	}
	get, ok := attributes[e.Attribute]
	if !ok {
		// attribute.Names and this table must agree.
		return nil, fmt.Errorf("expression %q: attribute %s is not implemented", s, e.Attribute)
	}
	return func(info *filters.RequestInfo) string { return orUnknown(get(info)) }, nil
}

// attributes evaluate Envoy's scalar attributes (attribute.Names).
var attributes = map[string]func(info *filters.RequestInfo) string{
	"request.host":   func(info *filters.RequestInfo) string { return httpReq(info).Host },
	"request.method": func(info *filters.RequestInfo) string { return httpReq(info).Method },
	"request.path": func(info *filters.RequestInfo) string {
		if u := httpReq(info).URL; u != nil {
			return u.RequestURI()
		}
		return ""
	},
	"request.url_path": func(info *filters.RequestInfo) string {
		if u := httpReq(info).URL; u != nil {
			return u.Path
		}
		return ""
	},
	"request.query": func(info *filters.RequestInfo) string {
		if u := httpReq(info).URL; u != nil {
			return u.RawQuery
		}
		return ""
	},
	"request.id":        func(info *filters.RequestInfo) string { return httpReq(info).Header.Get("X-Request-Id") },
	"request.referer":   func(info *filters.RequestInfo) string { return httpReq(info).Header.Get("Referer") },
	"request.useragent": func(info *filters.RequestInfo) string { return httpReq(info).Header.Get("User-Agent") },
	"request.protocol": func(info *filters.RequestInfo) string {
		// Envoy's spelling: HTTP/1.0, HTTP/1.1, HTTP/2.
		if p := httpReq(info).Proto; p != "HTTP/2.0" {
			return p
		}
		return "HTTP/2"
	},
	"request.size":         func(info *filters.RequestInfo) string { return strconv.FormatInt(info.BytesReceived, 10) },
	"response.code":        func(info *filters.RequestInfo) string { return statusText(info.Status) },
	"response.flags":       func(info *filters.RequestInfo) string { return info.ResponseFlags },
	"response.size":        func(info *filters.RequestInfo) string { return strconv.FormatInt(info.BytesSent, 10) },
	"response.grpc_status": grpcStatus,
	"source.address":       func(info *filters.RequestInfo) string { return addrText(conn(info).Source) },
	"source.port":          func(info *filters.RequestInfo) string { return portText(conn(info).Source) },
	"destination.address":  func(info *filters.RequestInfo) string { return addrText(conn(info).Destination) },
	"destination.port":     func(info *filters.RequestInfo) string { return portText(conn(info).Destination) },
	"connection.mtls": func(info *filters.RequestInfo) string {
		return strconv.FormatBool(conn(info).TLS && conn(info).PeerCertificate != nil)
	},
	"connection.requested_server_name": func(info *filters.RequestInfo) string { return conn(info).SNI },
	"connection.uri_san_peer_certificate": func(info *filters.RequestInfo) string {
		if p := conn(info).PeerPrincipal; p != "" {
			return "spiffe://" + p
		}
		return ""
	},
	"upstream.address": func(info *filters.RequestInfo) string { return info.UpstreamHost },
	"upstream.port": func(info *filters.RequestInfo) string {
		if i := strings.LastIndexByte(info.UpstreamHost, ':'); i >= 0 {
			return info.UpstreamHost[i+1:]
		}
		return ""
	},
	"xds.cluster_name": func(info *filters.RequestInfo) string { return info.Cluster },
}

// grpcStatus is the response's grpc-status: the trailer, or the header of
// a trailers-only response.
func grpcStatus(info *filters.RequestInfo) string {
	if s := info.Trailer.Get("Grpc-Status"); s != "" {
		return s
	}
	return info.ResponseHeader.Get("Grpc-Status")
}

var (
	emptyRequest = &http.Request{Header: http.Header{}}
	emptyConn    = &filters.Conn{}
)

func httpReq(info *filters.RequestInfo) *http.Request {
	if info.Request == nil || info.Request.HTTP == nil {
		return emptyRequest
	}
	return info.Request.HTTP
}

func conn(info *filters.RequestInfo) *filters.Conn {
	if info.Request == nil || info.Request.Conn == nil {
		return emptyConn
	}
	return info.Request.Conn
}

func addrText(ap netip.AddrPort) string {
	if !ap.IsValid() {
		return ""
	}
	return ap.String()
}

func portText(ap netip.AddrPort) string {
	if !ap.IsValid() {
		return ""
	}
	return strconv.Itoa(int(ap.Port()))
}

// statusTexts avoids formatting status codes per request.
var statusTexts = func() (t [600]string) {
	for i := range t {
		t[i] = strconv.Itoa(i)
	}
	return t
}()

func statusText(code int) string {
	if code >= 0 && code < len(statusTexts) {
		return statusTexts[code]
	}
	return strconv.Itoa(code)
}
