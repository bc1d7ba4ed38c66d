package rbac

import (
	"fmt"
	"net/http"
	"net/netip"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/skein-mesh/skein/internal/proxy/internal/protocheck"
	"github.com/skein-mesh/skein/internal/proxy/matcher"
)

var (
	pathMatcherFields     = protocheck.Fields(&matcherv3.PathMatcher{}, "path")
	metadataMatcherFields = protocheck.Fields(&matcherv3.MetadataMatcher{}, "filter", "path", "value", "invert")
	valueMatcherFields    = protocheck.Fields(&matcherv3.ValueMatcher{}, "null_match", "double_match", "string_match", "bool_match", "present_match", "list_match", "or_match")
	doubleMatcherFields   = protocheck.Fields(&matcherv3.DoubleMatcher{}, "exact", "range")
	listMatcherFields     = protocheck.Fields(&matcherv3.ListMatcher{}, "one_of")
)

type stringKind uint8

const (
	strOther stringKind = iota
	strExact
)

// stringMatcher is a compiled envoy.type.matcher.v3.StringMatcher: the
// router's (package matcher), plus an exact pattern spelled out so that
// principals can be compared without building "spiffe://"+principal.
type stringMatcher struct {
	m       matcher.String
	kind    stringKind
	fold    bool   // strExact: ignore_case
	pattern string // strExact: the value
}

func compileString(m *matcherv3.StringMatcher) (stringMatcher, error) {
	if m == nil {
		return stringMatcher{}, fmt.Errorf("string matcher is required")
	}
	c, err := matcher.CompileString(m)
	if err != nil {
		return stringMatcher{}, err
	}
	sm := stringMatcher{m: c}
	if v, fold, ok := c.Exact(); ok {
		sm.kind, sm.fold, sm.pattern = strExact, fold, v
	}
	return sm, nil
}

func (m *stringMatcher) match(s string) bool { return m.m.Match(s) }

// headerMatcher is a compiled route.v3.HeaderMatcher, matched as the router
// matches one (package matcher); a rule without an HTTP request (network
// RBAC) never matches it.
type headerMatcher struct{ m matcher.Header }

func compileHeader(h *routev3.HeaderMatcher) (headerMatcher, error) {
	c, err := matcher.CompileHeader(h)
	if err != nil {
		return headerMatcher{}, fmt.Errorf("header matcher %q: %v", h.GetName(), err)
	}
	return headerMatcher{m: c}, nil
}

func (m *headerMatcher) match(r *http.Request) bool { return r != nil && m.m.Match(r) }

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
