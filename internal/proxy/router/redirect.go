package router

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
)

// redirectAction is a compiled RedirectAction.
type redirectAction struct {
	status       int
	scheme       string // "" keeps the request's
	host         string // "" keeps the request's
	port         string // ":<port>" or ""
	path         string // path_redirect
	pathSet      bool
	pathHasQuery bool         // path_redirect carries its own query
	rewrite      *pathRewrite // prefix_rewrite or regex_rewrite
	stripQuery   bool
}

// location builds the Location header as Envoy does:
// scheme://host[port]path[?query].
func (a *redirectAction) location(v *requestView) string {
	proto := v.forwardedProto()
	scheme := a.scheme
	if scheme == "" {
		scheme = proto
	}
	host := a.host
	if host == "" {
		host = redirectHost(v.host(), scheme, a.port, proto)
	}
	query := ""
	if v.hasQuery && !a.stripQuery {
		query = "?" + v.query
	}
	var path string
	switch {
	case a.pathSet && a.pathHasQuery:
		path, query = a.path, "" // path_redirect's own query replaces the request's
	case a.pathSet:
		path = a.path
	case a.rewrite != nil:
		path = a.rewrite.apply(v.path)
	default:
		path = v.path
	}
	var b strings.Builder
	b.Grow(len(scheme) + 3 + len(host) + len(a.port) + len(path) + len(query))
	b.WriteString(scheme)
	b.WriteString("://")
	b.WriteString(host)
	b.WriteString(a.port)
	b.WriteString(path)
	b.WriteString(query)
	return b.String()
}

// redirectHost is the request host for a redirect: its port is dropped when
// port_redirect replaces it, or when the scheme changes and the port was the
// default one of the request's protocol (so http://foo:80 → https://foo).
func redirectHost(host, newScheme, newPort, proto string) string {
	var end int
	if strings.HasPrefix(host, "[") {
		end = strings.LastIndex(host, "]:")
		if end >= 0 {
			end++
		}
	} else {
		end = strings.LastIndexByte(host, ':')
	}
	if end < 0 {
		return host
	}
	port := host[end:]
	remove := newPort != ""
	if newScheme != proto {
		remove = remove || (proto == "https" && port == ":443") || (proto == "http" && port == ":80")
	}
	if remove {
		return host[:end]
	}
	return host
}

var redirectStatus = map[routev3.RedirectAction_RedirectResponseCode]int{
	routev3.RedirectAction_MOVED_PERMANENTLY:  http.StatusMovedPermanently,
	routev3.RedirectAction_FOUND:              http.StatusFound,
	routev3.RedirectAction_SEE_OTHER:          http.StatusSeeOther,
	routev3.RedirectAction_TEMPORARY_REDIRECT: http.StatusTemporaryRedirect,
	routev3.RedirectAction_PERMANENT_REDIRECT: http.StatusPermanentRedirect,
}

func compileRedirect(pr *routev3.RedirectAction, m *routeMatch) (*redirectAction, error) {
	if err := checkFields(pr, "redirect"); err != nil {
		return nil, err
	}
	a := &redirectAction{}
	var ok bool
	if a.status, ok = redirectStatus[pr.GetResponseCode()]; !ok {
		return nil, fmt.Errorf("response_code: unknown value %d", pr.GetResponseCode())
	}
	switch {
	case pr.GetHttpsRedirect():
		a.scheme = "https"
	case pr.GetSchemeRedirect() != "":
		a.scheme = strings.ToLower(pr.GetSchemeRedirect())
	}
	a.host = pr.GetHostRedirect()
	if p := pr.GetPortRedirect(); p != 0 {
		if p > 65535 {
			return nil, fmt.Errorf("port_redirect %d out of range", p)
		}
		a.port = ":" + strconv.FormatUint(uint64(p), 10)
	}
	switch ps := pr.GetPathRewriteSpecifier().(type) {
	case *routev3.RedirectAction_PathRedirect:
		a.path, a.pathSet = ps.PathRedirect, true
		a.pathHasQuery = strings.Contains(ps.PathRedirect, "?")
	case *routev3.RedirectAction_PrefixRewrite:
		a.rewrite = &pathRewrite{match: m, prefix: ps.PrefixRewrite}
	case *routev3.RedirectAction_RegexRewrite:
		rw, err := compileRegexRewrite(ps.RegexRewrite)
		if err != nil {
			return nil, fmt.Errorf("regex_rewrite: %w", err)
		}
		a.rewrite = rw
	}
	a.stripQuery = pr.GetStripQuery()
	return a, nil
}
