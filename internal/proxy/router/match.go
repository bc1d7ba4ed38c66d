package router

//lint:file-ignore SA1019 Envoy's deprecated fields (legacy header matchers, append, total_weight, virtual host cors) are still sent by control planes and must keep working.

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
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

func (v *requestView) host() string {
	if v.r.Host != "" {
		return v.r.Host
	}
	if v.r.URL != nil {
		return v.r.URL.Host
	}
	return ""
}

func (v *requestView) method() string {
	if v.r.Method == "" {
		return http.MethodGet // net/http's client treats "" as GET
	}
	return v.r.Method
}

func (v *requestView) scheme() string {
	if v.r.URL != nil && v.r.URL.Scheme != "" {
		return strings.ToLower(v.r.URL.Scheme)
	}
	if v.r.TLS != nil {
		return "https"
	}
	return "http"
}

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
	headers []headerMatcher
	query   []queryMatcher
}

func (rt *route) matches(v *requestView) bool {
	m := &rt.match
	if !m.matchPath(v) {
		return false
	}
	for i := range m.headers {
		if !m.headers[i].matches(v) {
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
			return hasPrefix(v.path, m.value, m.fold)
		}
		rest := m.value[len(v.path):]
		return v.hasQuery && rest[0] == '?' && equal(v.path, m.value[:len(v.path)], m.fold) &&
			hasPrefix(v.query, rest[1:], m.fold)
	case pathExact:
		return equal(v.path, m.value, m.fold)
	case pathSeparatedPrefix:
		if !hasPrefix(v.path, m.value, m.fold) {
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

type headerSource uint8

const (
	fromHeader headerSource = iota
	fromMethod
	fromAuthority
	fromPath
	fromScheme
)

type headerMatchKind uint8

const (
	headerPresent headerMatchKind = iota
	headerString
)

// headerMatcher is a compiled HeaderMatcher.
type headerMatcher struct {
	src            headerSource
	key            string // canonical header key, for fromHeader
	kind           headerMatchKind
	present        bool // headerPresent: match when presence equals this
	str            stringMatcher
	invert         bool
	missingAsEmpty bool
}

func (m *headerMatcher) value(v *requestView) (string, bool) {
	switch m.src {
	case fromMethod:
		return v.method(), true
	case fromAuthority:
		h := v.host()
		return h, h != ""
	case fromPath:
		return v.fullPath(), true
	case fromScheme:
		return v.scheme(), true
	}
	vals := v.r.Header[m.key]
	switch len(vals) {
	case 0:
		return "", false
	case 1:
		return vals[0], true
	default:
		return strings.Join(vals, ","), true
	}
}

// matches follows Envoy: a missing header fails every matcher except a
// present_match, unless treat_missing_header_as_empty; invert_match negates
// the result for a header that is there.
func (m *headerMatcher) matches(v *requestView) bool {
	val, ok := m.value(v)
	if !ok && !m.missingAsEmpty {
		if m.invert {
			return m.kind == headerPresent && m.present
		}
		return m.kind == headerPresent && !m.present
	}
	var match bool
	switch m.kind {
	case headerPresent:
		match = m.present
	default:
		match = m.str.match(val)
	}
	return match != m.invert
}

// queryMatcher is a compiled QueryParameterMatcher: the first value of the
// parameter is matched; a missing parameter never matches.
type queryMatcher struct {
	name string
	str  *stringMatcher // nil: presence is enough
}

func (m *queryMatcher) matches(v *requestView) bool {
	if !v.hasQuery {
		return false
	}
	val, ok := firstQueryValue(v.query, m.name)
	if !ok {
		return false
	}
	return m.str == nil || m.str.match(val)
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

type stringMatchKind uint8

const (
	strExact stringMatchKind = iota
	strPrefix
	strSuffix
	strContains
	strRegex
	strAny // legacy exact_match "" in a HeaderMatcher: any value
)

// stringMatcher is a compiled StringMatcher. ignore_case compares ASCII
// letters case-insensitively and does not apply to regexes, as in Envoy.
type stringMatcher struct {
	kind  stringMatchKind
	value string
	fold  bool
	re    *regexp.Regexp // anchored: RE2 full match
}

func (m *stringMatcher) match(s string) bool {
	switch m.kind {
	case strExact:
		return equal(s, m.value, m.fold)
	case strPrefix:
		return hasPrefix(s, m.value, m.fold)
	case strSuffix:
		return len(s) >= len(m.value) && equal(s[len(s)-len(m.value):], m.value, m.fold)
	case strContains:
		if !m.fold {
			return strings.Contains(s, m.value)
		}
		for i := 0; i+len(m.value) <= len(s); i++ {
			if equal(s[i:i+len(m.value)], m.value, true) {
				return true
			}
		}
		return false
	case strRegex:
		return m.re.MatchString(s)
	case strAny:
		return true
	}
	return false
}

// equal compares a and b, ignoring ASCII case when fold is set (Envoy folds
// ASCII only, unlike strings.EqualFold).
func equal(a, b string, fold bool) bool {
	if !fold {
		return a == b
	}
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if a[i] != b[i] && lowerASCII(a[i]) != lowerASCII(b[i]) {
			return false
		}
	}
	return true
}

func hasPrefix(s, prefix string, fold bool) bool {
	return len(s) >= len(prefix) && equal(s[:len(prefix)], prefix, fold)
}

// compileFullMatch compiles an RE2 pattern that must match a whole string.
func compileFullMatch(pattern string) (*regexp.Regexp, error) {
	if _, err := regexp.Compile(pattern); err != nil {
		return nil, err // report the error against the pattern as written
	}
	return regexp.Compile(`^(?:` + pattern + `)$`)
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
		re, err := compileRegexMatcher(ps.SafeRegex)
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
		h, err := compileHeaderMatcher(ph)
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

func compileHeaderMatcher(ph *routev3.HeaderMatcher) (headerMatcher, error) {
	var h headerMatcher
	if err := checkFields(ph, "header matcher"); err != nil {
		return h, err
	}
	name := strings.ToLower(ph.GetName())
	switch name {
	case ":method":
		h.src = fromMethod
	case ":authority", "host":
		h.src = fromAuthority
	case ":path":
		h.src = fromPath
	case ":scheme":
		h.src = fromScheme
	default:
		if strings.HasPrefix(name, ":") {
			return h, fmt.Errorf("unsupported pseudo-header %q", ph.GetName())
		}
		if !validHeaderName(name) {
			return h, fmt.Errorf("invalid header name %q", ph.GetName())
		}
		h.src, h.key = fromHeader, http.CanonicalHeaderKey(name)
	}
	h.invert = ph.GetInvertMatch()
	h.missingAsEmpty = ph.GetTreatMissingHeaderAsEmpty()
	h.kind = headerString
	switch spec := ph.GetHeaderMatchSpecifier().(type) {
	case nil:
		// No specifier: the header must be present (Envoy's legacy default).
		h.kind, h.present = headerPresent, true
	case *routev3.HeaderMatcher_PresentMatch:
		h.kind, h.present = headerPresent, spec.PresentMatch
	case *routev3.HeaderMatcher_ExactMatch:
		h.str = stringMatcher{kind: strExact, value: spec.ExactMatch}
		if spec.ExactMatch == "" {
			h.str.kind = strAny // legacy: an empty exact_match matches any value
		}
	case *routev3.HeaderMatcher_PrefixMatch:
		h.str = stringMatcher{kind: strPrefix, value: spec.PrefixMatch}
	case *routev3.HeaderMatcher_SuffixMatch:
		h.str = stringMatcher{kind: strSuffix, value: spec.SuffixMatch}
	case *routev3.HeaderMatcher_ContainsMatch:
		h.str = stringMatcher{kind: strContains, value: spec.ContainsMatch}
	case *routev3.HeaderMatcher_SafeRegexMatch:
		re, err := compileRegexMatcher(spec.SafeRegexMatch)
		if err != nil {
			return h, fmt.Errorf("safe_regex_match: %w", err)
		}
		h.str = stringMatcher{kind: strRegex, re: re}
	case *routev3.HeaderMatcher_StringMatch:
		sm, err := compileStringMatcher(spec.StringMatch)
		if err != nil {
			return h, fmt.Errorf("string_match: %w", err)
		}
		h.str = sm
	default:
		return h, fmt.Errorf("unsupported header match %T", spec)
	}
	if h.kind == headerString && h.str.value == "" && (h.str.kind == strPrefix || h.str.kind == strSuffix || h.str.kind == strContains) {
		return h, errors.New("empty prefix, suffix or contains pattern")
	}
	return h, nil
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
		m, err := compileStringMatcher(sm)
		if err != nil {
			return q, fmt.Errorf("string_match: %w", err)
		}
		q.str = &m
	}
	return q, nil
}

func compileStringMatcher(ps *matcherv3.StringMatcher) (stringMatcher, error) {
	var m stringMatcher
	if err := checkFields(ps, "string matcher"); err != nil {
		return m, err
	}
	m.fold = ps.GetIgnoreCase()
	switch p := ps.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		m.kind, m.value = strExact, p.Exact
	case *matcherv3.StringMatcher_Prefix:
		m.kind, m.value = strPrefix, p.Prefix
	case *matcherv3.StringMatcher_Suffix:
		m.kind, m.value = strSuffix, p.Suffix
	case *matcherv3.StringMatcher_Contains:
		m.kind, m.value = strContains, p.Contains
	case *matcherv3.StringMatcher_SafeRegex:
		re, err := compileRegexMatcher(p.SafeRegex)
		if err != nil {
			return m, fmt.Errorf("safe_regex: %w", err)
		}
		m.kind, m.re, m.fold = strRegex, re, false
	default:
		return m, errors.New("a match pattern (exact, prefix, suffix, contains or safe_regex) is required")
	}
	if m.kind != strExact && m.kind != strRegex && m.value == "" {
		return m, errors.New("empty prefix, suffix or contains pattern")
	}
	return m, nil
}

func compileRegexMatcher(rm *matcherv3.RegexMatcher) (*regexp.Regexp, error) {
	if rm == nil {
		return nil, errors.New("missing regex")
	}
	if err := checkFields(rm, "regex matcher"); err != nil {
		return nil, err
	}
	re, err := compileFullMatch(rm.GetRegex())
	if err != nil {
		return nil, fmt.Errorf("invalid regex %q: %w", rm.GetRegex(), err)
	}
	return re, nil
}
