package matcher

//lint:file-ignore SA1019 Envoy's legacy header matchers (exact_match, prefix_match, ...) are still sent by control planes and must keep working.

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/skein-mesh/skein/internal/proxy/internal/protocheck"
)

// range_match is left out on purpose: nothing Istio sends uses it, and an
// unsupported field NACKs rather than matching wrongly.
var headerFields = protocheck.Fields(&routev3.HeaderMatcher{}, "name", "string_match", "present_match", "invert_match",
	"treat_missing_header_as_empty",
	"exact_match", "prefix_match", "suffix_match", "contains_match", "safe_regex_match")

type source uint8

const (
	fromHeader source = iota
	fromMethod
	fromAuthority
	fromPath
	fromScheme
)

type headerKind uint8

const (
	headerPresent headerKind = iota
	headerString
)

// Header is a compiled HeaderMatcher.
type Header struct {
	src            source
	key            string // canonical header key, for fromHeader
	kind           headerKind
	present        bool // headerPresent: match when presence equals this
	str            String
	invert         bool
	missingAsEmpty bool
}

// CompileHeader compiles a HeaderMatcher. The name is a header (any case)
// or one of the pseudo-headers :method, :authority (also "host"), :path
// and :scheme; other pseudo-headers are an error.
func CompileHeader(ph *routev3.HeaderMatcher) (Header, error) {
	var h Header
	if err := headerFields.CheckAs(ph, "header matcher"); err != nil {
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
		if !ValidHeaderName(name) {
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
		h.str = String{kind: strExact, value: spec.ExactMatch}
		if spec.ExactMatch == "" {
			h.str.kind = strAny // legacy: an empty exact_match matches any value
		}
	case *routev3.HeaderMatcher_PrefixMatch:
		h.str = String{kind: strPrefix, value: spec.PrefixMatch}
	case *routev3.HeaderMatcher_SuffixMatch:
		h.str = String{kind: strSuffix, value: spec.SuffixMatch}
	case *routev3.HeaderMatcher_ContainsMatch:
		h.str = String{kind: strContains, value: spec.ContainsMatch}
	case *routev3.HeaderMatcher_SafeRegexMatch:
		re, err := CompileRegex(spec.SafeRegexMatch)
		if err != nil {
			return h, fmt.Errorf("safe_regex_match: %w", err)
		}
		h.str = String{kind: strRegex, re: re}
	case *routev3.HeaderMatcher_StringMatch:
		sm, err := CompileString(spec.StringMatch)
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

// Match follows Envoy's HeaderUtility: a missing header fails every
// matcher except present_match: false, unless treat_missing_header_as_empty
// makes it "". invert_match negates the result, but a missing header still
// fails an inverted value match (only an inverted present_match: true
// matches it).
func (m *Header) Match(r *http.Request) bool {
	val, ok := m.value(r)
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
		match = m.str.Match(val)
	}
	return match != m.invert
}

// value is what the matcher reads from r; a header sent several times is
// its values joined with ",", as Envoy does.
func (m *Header) value(r *http.Request) (string, bool) {
	switch m.src {
	case fromMethod:
		return Method(r), true
	case fromAuthority:
		h := Authority(r)
		return h, h != ""
	case fromPath:
		return Path(r), true
	case fromScheme:
		return Scheme(r), true
	}
	vals := r.Header[m.key]
	switch len(vals) {
	case 0:
		return "", false
	case 1:
		return vals[0], true
	default:
		return strings.Join(vals, ","), true
	}
}

// Method is the :method pseudo-header of r.
func Method(r *http.Request) string {
	if r.Method == "" {
		return http.MethodGet // net/http's client treats "" as GET
	}
	return r.Method
}

// Authority is the :authority pseudo-header of r (Host in HTTP/1.1).
func Authority(r *http.Request) string {
	if r.Host != "" {
		return r.Host
	}
	if r.URL != nil {
		return r.URL.Host
	}
	return ""
}

// Path is the :path pseudo-header of r: the escaped path and the query.
func Path(r *http.Request) string {
	if r.URL == nil {
		return "/"
	}
	p := r.URL.EscapedPath()
	if p == "" {
		p = "/"
	}
	if r.URL.RawQuery != "" || r.URL.ForceQuery {
		return p + "?" + r.URL.RawQuery
	}
	return p
}

// Scheme is the :scheme pseudo-header of r.
func Scheme(r *http.Request) string {
	if r.URL != nil && r.URL.Scheme != "" {
		return strings.ToLower(r.URL.Scheme)
	}
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

// ValidHeaderName reports whether name is an RFC 9110 token, which every
// header name Envoy accepts in config is.
func ValidHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
