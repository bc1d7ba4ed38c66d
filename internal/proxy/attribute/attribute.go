// Package attribute parses the expressions Istio's Telemetry API takes as
// metric tag values. Istio evaluates them as CEL over Envoy's request and
// connection attributes; Skein implements the forms tag overrides use: a
// string literal, an attribute (request.host, destination.port, ...), a
// header or trailer lookup (request.headers['x-user']), each optionally
// converted with string(...). The proxy's istio.stats evaluates them;
// the control plane parses them with this same grammar to leave out, with a
// warning, what the proxy would otherwise NACK.
package attribute

import (
	"fmt"
	"slices"
	"strings"
)

// Expr is one parsed expression: a literal, or an attribute with a key
// for the map-valued ones (headers, trailers).
type Expr struct {
	Literal   string
	IsLiteral bool
	Attribute string // "request.host", "request.headers", ...
	Key       string // the header name of a map lookup
}

// Names are the scalar attributes, as Envoy names them.
var Names = []string{
	"connection.mtls", "connection.requested_server_name", "connection.uri_san_peer_certificate",
	"destination.address", "destination.port",
	"request.host", "request.id", "request.method", "request.path", "request.protocol", "request.query",
	"request.referer", "request.size", "request.url_path", "request.useragent",
	"response.code", "response.flags", "response.grpc_status", "response.size",
	"source.address", "source.port",
	"upstream.address", "upstream.port",
	"xds.cluster_name",
}

// Maps are the map-valued attributes, looked up by a header name.
var Maps = []string{"request.headers", "response.headers", "response.trailers"}

// Parse reads one expression.
func Parse(s string) (Expr, error) {
	e := strings.TrimSpace(s)
	if inner, ok := strings.CutPrefix(e, "string("); ok && strings.HasSuffix(inner, ")") {
		e = strings.TrimSpace(strings.TrimSuffix(inner, ")"))
	}
	if lit, ok := quoted(e); ok {
		return Expr{Literal: lit, IsLiteral: true}, nil
	}
	if slices.Contains(Names, e) {
		return Expr{Attribute: e}, nil
	}
	if name, rest, ok := strings.Cut(e, "["); ok && slices.Contains(Maps, name) {
		key, ok := quoted(strings.TrimSuffix(rest, "]"))
		if !ok || !strings.HasSuffix(rest, "]") || key == "" {
			return Expr{}, fmt.Errorf("expression %q: want %s['name']", s, name)
		}
		return Expr{Attribute: name, Key: key}, nil
	}
	return Expr{}, fmt.Errorf("expression %q is not supported: %s", s, Supported)
}

// Supported describes the grammar for error messages.
var Supported = "a string literal, one of " + strings.Join(Names, ", ") + ", or " +
	strings.Join(Maps, "['name'], ") + "['name'], optionally inside string(...)"

// quoted unquotes a single- or double-quoted string literal without
// escapes.
func quoted(s string) (string, bool) {
	if len(s) < 2 {
		return "", false
	}
	q := s[0]
	if (q != '\'' && q != '"') || s[len(s)-1] != q {
		return "", false
	}
	inner := s[1 : len(s)-1]
	if strings.IndexByte(inner, q) >= 0 || strings.IndexByte(inner, '\\') >= 0 {
		return "", false
	}
	return inner, true
}
