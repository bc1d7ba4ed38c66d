package router

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/skein-mesh/skein/internal/proxy/matcher"
)

// requestView is what route matching reads from a request, computed once
// per Route call.
type requestView struct {
	r        *http.Request
	path     string // escaped path without query; "/" when empty
	query    string // raw query, without '?'
	hasQuery bool
}

func newRequestView(r *http.Request) requestView {
	v := requestView{r: r}
	if r.URL != nil {
		v.path = r.URL.EscapedPath()
		v.query = r.URL.RawQuery
		v.hasQuery = r.URL.RawQuery != "" || r.URL.ForceQuery
	}
	if v.path == "" {
		v.path = "/"
	}
	return v
}

// fullPath is the :path pseudo-header: path and query.
func (v *requestView) fullPath() string {
	if !v.hasQuery {
		return v.path
	}
	return v.path + "?" + v.query
}

func (v *requestView) host() string { return matcher.Authority(v.r) }

func (v *requestView) scheme() string { return matcher.Scheme(v.r) }

// forwardedProto is x-forwarded-proto when set, else the request's scheme;
// Envoy bases redirect port stripping on it.
func (v *requestView) forwardedProto() string {
	if p := v.r.Header.Get("X-Forwarded-Proto"); p != "" {
		return p
	}
	return v.scheme()
}

type pathKind uint8

const (
	pathPrefix pathKind = iota
	pathExact
	pathRegex
	pathSeparatedPrefix
)

// routeMatch is a compiled RouteMatch; every part must match.
type routeMatch struct {
	kind    pathKind
	value   string         // the prefix or path
	fold    bool           // case_sensitive: false
	re      *regexp.Regexp // pathRegex, anchored
	headers []matcher.Header
	query   []queryMatcher
}

func (rt *route) matches(v *requestView) bool {
	m := &rt.match
	if !m.matchPath(v) {
		return false
	}
	for i := range m.headers {
		if !m.headers[i].Match(v.r) {
			return false
		}
	}
	for i := range m.query {
		if !m.query[i].matches(v) {
			return false
		}
	}
	return true
}

func (m *routeMatch) matchPath(v *requestView) bool {
	switch m.kind {
	case pathPrefix:
		// Envoy matches prefixes against the whole :path, query included.
		if len(m.value) <= len(v.path) {
			return matcher.HasPrefix(v.path, m.value, m.fold)
		}
		rest := m.value[len(v.path):]
		return v.hasQuery && rest[0] == '?' && matcher.Equal(v.path, m.value[:len(v.path)], m.fold) &&
			matcher.HasPrefix(v.query, rest[1:], m.fold)
	case pathExact:
		return matcher.Equal(v.path, m.value, m.fold)
	case pathSeparatedPrefix:
		if !matcher.HasPrefix(v.path, m.value, m.fold) {
			return false
		}
		return len(v.path) == len(m.value) || v.path[len(m.value)] == '/'
	case pathRegex:
		return m.re.MatchString(v.path)
	}
	return false
}

// matchedPrefixLen is how much of path the path matcher consumed: what
// prefix_rewrite replaces.
func (m *routeMatch) matchedPrefixLen(path string) int {
	switch m.kind {
	case pathPrefix, pathSeparatedPrefix:
		return min(len(m.value), len(path))
	default:
		return len(path)
	}
}

// queryMatcher is a compiled QueryParameterMatcher: the first value of the
// parameter is matched; a missing parameter never matches.
type queryMatcher struct {
	name string
	str  *matcher.String // nil: presence is enough
}

func (m *queryMatcher) matches(v *requestView) bool {
	if !v.hasQuery {
		return false
	}
	val, ok := firstQueryValue(v.query, m.name)
	if !ok {
		return false
	}
	return m.str == nil || m.str.Match(val)
}

// firstQueryValue finds the first value of name in a raw query without
// building a map; it decodes only what needs decoding.
func firstQueryValue(q, name string) (string, bool) {
	for q != "" {
		var kv string
		kv, q, _ = strings.Cut(q, "&")
		if kv == "" {
			continue
		}
		k, val, _ := strings.Cut(kv, "=")
		if strings.ContainsAny(k, "%+") {
			dk, err := url.QueryUnescape(k)
			if err != nil {
				continue
			}
			k = dk
		}
		if k != name {
			continue
		}
		if strings.ContainsAny(val, "%+") {
			dv, err := url.QueryUnescape(val)
			if err != nil {
				continue
			}
			val = dv
		}
		return val, true
	}
	return "", false
}

func compileRouteMatch(pm *routev3.RouteMatch, m *routeMatch) error {
	if err := checkFields(pm, "match"); err != nil {
		return err
	}
	switch ps := pm.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		m.kind, m.value = pathPrefix, ps.Prefix
	case *routev3.RouteMatch_Path:
		m.kind, m.value = pathExact, ps.Path
	case *routev3.RouteMatch_PathSeparatedPrefix:
		p := ps.PathSeparatedPrefix
		if !strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") || strings.ContainsAny(p, "?#") {
			return fmt.Errorf("match.path_separated_prefix %q: must start with '/', not end with '/' and contain no '?' or '#'", p)
		}
		m.kind, m.value = pathSeparatedPrefix, p
	case *routev3.RouteMatch_SafeRegex:
		re, err := matcher.CompileRegex(ps.SafeRegex)
		if err != nil {
			return fmt.Errorf("match.safe_regex: %w", err)
		}
		m.kind, m.re = pathRegex, re
	default:
		return errors.New("match: a path specifier (prefix, path, safe_regex or path_separated_prefix) is required")
	}
	if cs := pm.GetCaseSensitive(); cs != nil && !cs.GetValue() {
		m.fold = true
	}
	for i, ph := range pm.GetHeaders() {
		h, err := matcher.CompileHeader(ph)
		if err != nil {
			return fmt.Errorf("match.headers[%d]: %w", i, err)
		}
		m.headers = append(m.headers, h)
	}
	for i, pq := range pm.GetQueryParameters() {
		q, err := compileQueryMatcher(pq)
		if err != nil {
			return fmt.Errorf("match.query_parameters[%d]: %w", i, err)
		}
		m.query = append(m.query, q)
	}
	return nil
}

func compileQueryMatcher(pq *routev3.QueryParameterMatcher) (queryMatcher, error) {
	q := queryMatcher{name: pq.GetName()}
	if err := checkFields(pq, "query parameter matcher"); err != nil {
		return q, err
	}
	if q.name == "" {
		return q, errors.New("name is required")
	}
	if sm := pq.GetStringMatch(); sm != nil {
		m, err := matcher.CompileString(sm)
		if err != nil {
			return q, fmt.Errorf("string_match: %w", err)
		}
		q.str = &m
	}
	return q, nil
}
