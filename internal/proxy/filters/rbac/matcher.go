package rbac

import (
	"fmt"
	"net/http"
	"net/netip"
	"regexp"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/skein-mesh/skein/internal/proxy/internal/protocheck"
)

var (
	stringMatcherFields = protocheck.Fields(&matcherv3.StringMatcher{}, "exact", "prefix", "suffix", "contains", "safe_regex", "ignore_case")
	regexFields         = protocheck.Fields(&matcherv3.RegexMatcher{}, "regex", "google_re2")
	headerMatcherFields = protocheck.Fields(&routev3.HeaderMatcher{}, "name", "exact_match", "safe_regex_match",
		"present_match", "prefix_match", "suffix_match", "contains_match", "string_match", "invert_match", "treat_missing_header_as_empty")
	pathMatcherFields     = protocheck.Fields(&matcherv3.PathMatcher{}, "path")
	metadataMatcherFields = protocheck.Fields(&matcherv3.MetadataMatcher{}, "filter", "path", "value", "invert")
	valueMatcherFields    = protocheck.Fields(&matcherv3.ValueMatcher{}, "null_match", "double_match", "string_match", "bool_match", "present_match", "list_match", "or_match")
	doubleMatcherFields   = protocheck.Fields(&matcherv3.DoubleMatcher{}, "exact", "range")
	listMatcherFields     = protocheck.Fields(&matcherv3.ListMatcher{}, "one_of")
)

type stringKind uint8

const (
	strExact stringKind = iota
	strPrefix
	strSuffix
	strContains
	strRegex
)

// stringMatcher is a compiled envoy.type.matcher.v3.StringMatcher.
type stringMatcher struct {
	kind    stringKind
	fold    bool
	pattern string // lower-cased for contains with ignore_case
	re      *regexp.Regexp
}

func compileString(m *matcherv3.StringMatcher) (stringMatcher, error) {
	if m == nil {
		return stringMatcher{}, fmt.Errorf("string matcher is required")
	}
	if err := stringMatcherFields.Check(m); err != nil {
		return stringMatcher{}, err
	}
	sm := stringMatcher{fold: m.GetIgnoreCase()}
	switch p := m.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		sm.kind, sm.pattern = strExact, p.Exact
	case *matcherv3.StringMatcher_Prefix:
		sm.kind, sm.pattern = strPrefix, p.Prefix
	case *matcherv3.StringMatcher_Suffix:
		sm.kind, sm.pattern = strSuffix, p.Suffix
	case *matcherv3.StringMatcher_Contains:
		sm.kind, sm.pattern = strContains, p.Contains
		if sm.fold {
			sm.pattern = strings.ToLower(sm.pattern)
		}
	case *matcherv3.StringMatcher_SafeRegex:
		if err := regexFields.Check(p.SafeRegex); err != nil {
			return sm, fmt.Errorf("safe_regex: %v", err)
		}
		expr := "^(?:" + p.SafeRegex.GetRegex() + ")$"
		if sm.fold {
			expr = "(?i)" + expr
		}
		re, err := regexp.Compile(expr)
		if err != nil {
			return sm, fmt.Errorf("safe_regex %q: %v", p.SafeRegex.GetRegex(), err)
		}
		sm.kind, sm.re = strRegex, re
	default:
		return sm, fmt.Errorf("string matcher needs one of exact, prefix, suffix, contains, safe_regex")
	}
	return sm, nil
}

func (m *stringMatcher) match(s string) bool {
	switch m.kind {
	case strExact:
		if m.fold {
			return strings.EqualFold(s, m.pattern)
		}
		return s == m.pattern
	case strPrefix:
		if len(s) < len(m.pattern) {
			return false
		}
		if m.fold {
			return strings.EqualFold(s[:len(m.pattern)], m.pattern)
		}
		return s[:len(m.pattern)] == m.pattern
	case strSuffix:
		if len(s) < len(m.pattern) {
			return false
		}
		if m.fold {
			return strings.EqualFold(s[len(s)-len(m.pattern):], m.pattern)
		}
		return s[len(s)-len(m.pattern):] == m.pattern
	case strContains:
		if m.fold {
			return strings.Contains(strings.ToLower(s), m.pattern)
		}
		return strings.Contains(s, m.pattern)
	case strRegex:
		return m.re.MatchString(s)
	}
	return false
}

type headerKind uint8

const (
	hdrString headerKind = iota
	hdrPresent
)

// headerMatcher is a compiled route.v3.HeaderMatcher as RBAC uses it:
// several values of one header are joined with "," before matching.
type headerMatcher struct {
	name          string // canonical header name or a pseudo-header
	kind          headerKind
	str           stringMatcher
	present       bool
	invert        bool
	missingIsEmpt bool
}

func compileHeader(h *routev3.HeaderMatcher) (headerMatcher, error) {
	if err := headerMatcherFields.Check(h); err != nil {
		return headerMatcher{}, err
	}
	if h.GetName() == "" {
		return headerMatcher{}, fmt.Errorf("header matcher: name is required")
	}
	hm := headerMatcher{name: h.GetName(), invert: h.GetInvertMatch(), missingIsEmpt: h.GetTreatMissingHeaderAsEmpty()}
	if !strings.HasPrefix(hm.name, ":") {
		hm.name = http.CanonicalHeaderKey(hm.name)
	}
	var err error
	switch s := h.GetHeaderMatchSpecifier().(type) {
	case *routev3.HeaderMatcher_StringMatch:
		hm.str, err = compileString(s.StringMatch)
	case *routev3.HeaderMatcher_ExactMatch:
		hm.str = stringMatcher{kind: strExact, pattern: s.ExactMatch}
	case *routev3.HeaderMatcher_PrefixMatch:
		hm.str = stringMatcher{kind: strPrefix, pattern: s.PrefixMatch}
	case *routev3.HeaderMatcher_SuffixMatch:
		hm.str = stringMatcher{kind: strSuffix, pattern: s.SuffixMatch}
	case *routev3.HeaderMatcher_ContainsMatch:
		hm.str = stringMatcher{kind: strContains, pattern: s.ContainsMatch}
	case *routev3.HeaderMatcher_SafeRegexMatch:
		hm.str, err = compileString(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: s.SafeRegexMatch}})
	case *routev3.HeaderMatcher_PresentMatch:
		hm.kind, hm.present = hdrPresent, s.PresentMatch
	case nil:
		// No specifier: Envoy matches when the header is present.
		hm.kind, hm.present = hdrPresent, true
	default:
		return hm, fmt.Errorf("header matcher %q: %T is not supported", h.GetName(), s)
	}
	if err != nil {
		return hm, fmt.Errorf("header matcher %q: %v", h.GetName(), err)
	}
	return hm, nil
}

// headerValue returns the value of a header or pseudo-header of r.
func headerValue(r *http.Request, name string) (string, bool) {
	switch name {
	case ":authority":
		return r.Host, r.Host != ""
	case ":method":
		return r.Method, true
	case ":path":
		return r.URL.RequestURI(), true
	case ":scheme":
		if r.TLS != nil {
			return "https", true
		}
		return "http", true
	}
	vs := r.Header[name]
	switch len(vs) {
	case 0:
		return "", false
	case 1:
		return vs[0], true
	}
	return strings.Join(vs, ","), true
}

func (m *headerMatcher) match(r *http.Request) bool {
	if r == nil {
		return false
	}
	v, ok := headerValue(r, m.name)
	if !ok && m.missingIsEmpt {
		v, ok = "", true
	}
	var res bool
	switch m.kind {
	case hdrPresent:
		res = ok == m.present
	default:
		res = ok && m.str.match(v)
	}
	return res != m.invert
}

func compilePath(p *matcherv3.PathMatcher) (stringMatcher, error) {
	if err := pathMatcherFields.Check(p); err != nil {
		return stringMatcher{}, err
	}
	if p.GetPath() == nil {
		return stringMatcher{}, fmt.Errorf("url_path: path is required")
	}
	return compileString(p.GetPath())
}

// requestPath is the path RBAC's url_path matches: without the query,
// still escaped as received.
func requestPath(r *http.Request) string {
	if r.URL.RawPath != "" {
		return r.URL.RawPath
	}
	return r.URL.Path
}

// cidr is a compiled core.v3.CidrRange.
type cidr struct{ prefix netip.Prefix }

func (c cidr) contains(a netip.Addr) bool { return a.IsValid() && c.prefix.Contains(a.Unmap()) }

// metadataMatcher is a compiled MetadataMatcher over Request.Metadata.
type metadataMatcher struct {
	filter string
	path   []string
	value  valueMatcher
	invert bool
}

func compileMetadata(m *matcherv3.MetadataMatcher) (metadataMatcher, error) {
	if err := metadataMatcherFields.Check(m); err != nil {
		return metadataMatcher{}, err
	}
	if m.GetFilter() == "" || len(m.GetPath()) == 0 {
		return metadataMatcher{}, fmt.Errorf("metadata matcher: filter and path are required")
	}
	mm := metadataMatcher{filter: m.GetFilter(), invert: m.GetInvert()}
	for _, seg := range m.GetPath() {
		if seg.GetKey() == "" {
			return mm, fmt.Errorf("metadata matcher: path segment needs a key")
		}
		mm.path = append(mm.path, seg.GetKey())
	}
	v, err := compileValue(m.GetValue())
	if err != nil {
		return mm, fmt.Errorf("metadata matcher %s: %v", m.GetFilter(), err)
	}
	mm.value = v
	return mm, nil
}

func (m *metadataMatcher) match(md map[string]map[string]any) bool {
	var v any
	found := false
	if f, ok := md[m.filter]; ok {
		v, found = f[m.path[0]]
		for _, k := range m.path[1:] {
			if !found {
				break
			}
			obj, ok := v.(map[string]any)
			if !ok {
				found = false
				break
			}
			v, found = obj[k]
		}
	}
	return m.value.match(v, found) != m.invert
}

type valueKind uint8

const (
	valNull valueKind = iota
	valDouble
	valString
	valBool
	valPresent
	valList
	valOr
)

// valueMatcher is a compiled ValueMatcher over JSON-like values (what a
// JWT payload decodes to: string, float64, bool, []any, map[string]any).
type valueMatcher struct {
	kind    valueKind
	str     stringMatcher
	b       bool
	dExact  *float64
	dLo     float64
	dHi     float64
	present bool
	sub     []valueMatcher // list one_of (1) or or_match (n)
}

func compileValue(v *matcherv3.ValueMatcher) (valueMatcher, error) {
	if v == nil {
		return valueMatcher{}, fmt.Errorf("value matcher is required")
	}
	if err := valueMatcherFields.Check(v); err != nil {
		return valueMatcher{}, err
	}
	var err error
	var vm valueMatcher
	switch p := v.GetMatchPattern().(type) {
	case *matcherv3.ValueMatcher_NullMatch_:
		vm.kind = valNull
	case *matcherv3.ValueMatcher_StringMatch:
		vm.kind = valString
		vm.str, err = compileString(p.StringMatch)
	case *matcherv3.ValueMatcher_BoolMatch:
		vm.kind, vm.b = valBool, p.BoolMatch
	case *matcherv3.ValueMatcher_PresentMatch:
		vm.kind, vm.present = valPresent, p.PresentMatch
	case *matcherv3.ValueMatcher_DoubleMatch:
		if err := doubleMatcherFields.Check(p.DoubleMatch); err != nil {
			return vm, err
		}
		vm.kind = valDouble
		if r := p.DoubleMatch.GetRange(); r != nil {
			vm.dLo, vm.dHi = r.GetStart(), r.GetEnd()
		} else {
			e := p.DoubleMatch.GetExact()
			vm.dExact = &e
		}
	case *matcherv3.ValueMatcher_ListMatch:
		if err := listMatcherFields.Check(p.ListMatch); err != nil {
			return vm, err
		}
		vm.kind = valList
		sub, err := compileValue(p.ListMatch.GetOneOf())
		if err != nil {
			return vm, fmt.Errorf("list_match.one_of: %v", err)
		}
		vm.sub = []valueMatcher{sub}
	case *matcherv3.ValueMatcher_OrMatch:
		vm.kind = valOr
		for i, s := range p.OrMatch.GetValueMatchers() {
			sub, err := compileValue(s)
			if err != nil {
				return vm, fmt.Errorf("or_match[%d]: %v", i, err)
			}
			vm.sub = append(vm.sub, sub)
		}
		if len(vm.sub) < 2 {
			return vm, fmt.Errorf("or_match needs at least two value matchers")
		}
	default:
		return vm, fmt.Errorf("value matcher needs a match pattern")
	}
	return vm, err
}

func (m *valueMatcher) match(v any, found bool) bool {
	switch m.kind {
	case valPresent:
		return found == m.present
	case valNull:
		return found && v == nil
	case valOr:
		for i := range m.sub {
			if m.sub[i].match(v, found) {
				return true
			}
		}
		return false
	}
	if !found {
		return false
	}
	switch m.kind {
	case valString:
		s, ok := v.(string)
		return ok && m.str.match(s)
	case valBool:
		b, ok := v.(bool)
		return ok && b == m.b
	case valDouble:
		f, ok := v.(float64)
		if !ok {
			return false
		}
		if m.dExact != nil {
			return f == *m.dExact
		}
		return f >= m.dLo && f < m.dHi
	case valList:
		list, ok := v.([]any)
		if !ok {
			return false
		}
		for _, e := range list {
			if m.sub[0].match(e, true) {
				return true
			}
		}
	}
	return false
}
