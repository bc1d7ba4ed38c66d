// Package matcher compiles Envoy's type.matcher.v3.StringMatcher and
// config.route.v3.HeaderMatcher into Go matchers for the data plane.
//
// It is one package because the router (which route a request takes) and
// RBAC (whether the request is allowed) must agree on Envoy's matching
// semantics: a header that sends a request to reviews-v2 must match the
// same way when an AuthorizationPolicy tests it, with the same ASCII-only
// ignore_case, the same "," join of a header sent several times, the same
// handling of a missing header under invert_match, and the same NACK for
// a matcher the proxy cannot honour.
//
// Matching does not allocate, except to join a header sent several times
// and to build a :path that has a query.
package matcher

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/skein-mesh/skein/internal/proxy/internal/confparse"
	"github.com/skein-mesh/skein/internal/proxy/internal/protocheck"
)

var (
	stringFields = protocheck.Fields(&matcherv3.StringMatcher{}, "exact", "prefix", "suffix", "contains", "safe_regex", "ignore_case")
	regexFields  = protocheck.Fields(&matcherv3.RegexMatcher{}, "regex", "google_re2")
)

type stringKind uint8

const (
	strExact stringKind = iota
	strPrefix
	strSuffix
	strContains
	strRegex
	strAny // legacy exact_match "" in a HeaderMatcher: any value
)

// String is a compiled StringMatcher. ignore_case compares ASCII letters
// case-insensitively and does not apply to safe_regex, as in Envoy.
type String struct {
	kind  stringKind
	value string
	fold  bool
	re    *regexp.Regexp // anchored: RE2 full match
}

// CompileString compiles a StringMatcher; the errors read well after the
// caller's field name ("string_match: ...").
func CompileString(ps *matcherv3.StringMatcher) (String, error) {
	var m String
	if err := stringFields.CheckAs(ps, "string matcher"); err != nil {
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
		re, err := CompileRegex(p.SafeRegex)
		if err != nil {
			return m, fmt.Errorf("safe_regex: %w", err)
		}
		m.kind, m.re, m.fold = strRegex, re, false
	default:
		return m, errors.New("a match pattern (exact, prefix, suffix, contains or safe_regex) is required")
	}
	if m.kind != strExact && m.kind != strRegex && m.value == "" {
		// Envoy's proto validation rejects these (min_len 1).
		return m, errors.New("empty prefix, suffix or contains pattern")
	}
	return m, nil
}

// Match reports whether s matches.
func (m *String) Match(s string) bool {
	switch m.kind {
	case strExact:
		return Equal(s, m.value, m.fold)
	case strPrefix:
		return HasPrefix(s, m.value, m.fold)
	case strSuffix:
		return len(s) >= len(m.value) && Equal(s[len(s)-len(m.value):], m.value, m.fold)
	case strContains:
		if !m.fold {
			return strings.Contains(s, m.value)
		}
		for i := 0; i+len(m.value) <= len(s); i++ {
			if Equal(s[i:i+len(m.value)], m.value, true) {
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

// Exact returns the pattern of an exact match, so that a caller can
// compare against a value it would otherwise have to build.
func (m *String) Exact() (value string, ignoreCase, ok bool) {
	if m.kind != strExact {
		return "", false, false
	}
	return m.value, m.fold, true
}

// CompileRegex compiles a RegexMatcher to match whole strings, as every
// Envoy safe_regex match does.
func CompileRegex(rm *matcherv3.RegexMatcher) (*regexp.Regexp, error) {
	if rm == nil {
		return nil, errors.New("missing regex")
	}
	if err := regexFields.CheckAs(rm, "regex matcher"); err != nil {
		return nil, err
	}
	// Compile the pattern as written first, so its error quotes it.
	if _, err := confparse.Regexp(rm.GetRegex()); err != nil {
		return nil, fmt.Errorf("invalid regex %q: %w", rm.GetRegex(), err)
	}
	return confparse.Regexp(`^(?:` + rm.GetRegex() + `)$`)
}

// Equal compares a and b, ignoring ASCII case when fold is set: Envoy
// folds ASCII only, unlike strings.EqualFold.
func Equal(a, b string, fold bool) bool {
	if !fold {
		return a == b
	}
	return equalFold(a, b)
}

// equalFold is apart from Equal, and not inlined, so that Equal and
// HasPrefix stay small enough to inline into the router's path matching,
// where case-sensitive comparison is the common case.
//
//go:noinline
func equalFold(a, b string) bool {
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

// HasPrefix is strings.HasPrefix with Equal's folding.
func HasPrefix(s, prefix string, fold bool) bool {
	return len(s) >= len(prefix) && Equal(s[:len(prefix)], prefix, fold)
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}
