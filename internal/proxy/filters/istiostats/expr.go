package istiostats

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/skein-mesh/skein/internal/proxy/filters"
)

// expr is a dimension value expression. Istio takes CEL; the proxy
// implements the forms Telemetry tagOverrides use in practice: a string
// literal, request.headers['name'], request.host, request.method,
// request.path, request.url_path and response.code. Anything else is
// rejected so the config is NACKed rather than silently mislabelled.
type expr func(info *filters.RequestInfo) string

func parseExpr(s string) (expr, error) {
	s = strings.TrimSpace(s)
	if lit, ok := quoted(s); ok {
		return func(*filters.RequestInfo) string { return lit }, nil
	}
	if rest, ok := strings.CutPrefix(s, "request.headers["); ok {
		name, ok := quoted(strings.TrimSuffix(rest, "]"))
		if !ok || !strings.HasSuffix(rest, "]") || name == "" {
			return nil, fmt.Errorf("expression %q: want request.headers['name']", s)
		}
		key := http.CanonicalHeaderKey(name)
		return func(info *filters.RequestInfo) string {
			if info.Request == nil || info.Request.HTTP == nil {
				return "unknown"
			}
			return orUnknown(info.Request.HTTP.Header.Get(key))
		}, nil
	}
	switch s {
	case "request.host":
		return func(info *filters.RequestInfo) string { return orUnknown(httpReq(info).Host) }, nil
	case "request.method":
		return func(info *filters.RequestInfo) string { return orUnknown(httpReq(info).Method) }, nil
	case "request.path":
		return func(info *filters.RequestInfo) string {
			if u := httpReq(info).URL; u != nil {
				return orUnknown(u.RequestURI())
			}
			return "unknown"
		}, nil
	case "request.url_path":
		return func(info *filters.RequestInfo) string {
			if u := httpReq(info).URL; u != nil {
				return orUnknown(u.Path)
			}
			return "unknown"
		}, nil
	case "response.code":
		return func(info *filters.RequestInfo) string { return statusText(info.Status) }, nil
	}
	return nil, fmt.Errorf("expression %q is not supported (string literal, request.headers['name'], request.host, request.method, request.path, request.url_path, response.code)", s)
}

var emptyRequest = &http.Request{Header: http.Header{}}

func httpReq(info *filters.RequestInfo) *http.Request {
	if info.Request == nil || info.Request.HTTP == nil {
		return emptyRequest
	}
	return info.Request.HTTP
}

// quoted unquotes a single- or double-quoted string literal.
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
