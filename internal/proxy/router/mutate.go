package router

//lint:file-ignore SA1019 Envoy's deprecated fields (legacy header matchers, append, total_weight, virtual host cors) are still sent by control planes and must keep working.

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/skein-mesh/skein/internal/proxy/internal/confparse"
	"github.com/skein-mesh/skein/internal/proxy/matcher"
)

type appendAction uint8

// The HeaderValueOption append actions.
const (
	appendIfExistsOrAdd appendAction = iota
	addIfAbsent
	overwriteIfExistsOrAdd
	overwriteIfExists
)

// headerMutations is one level's (route config, virtual host, route or
// weighted cluster) headers_to_remove and headers_to_add. Envoy removes
// first, then adds.
type headerMutations struct {
	remove []string // canonical keys
	add    []headerAdd
}

type headerAdd struct {
	key    string // canonical
	value  string
	action appendAction
}

func (m *headerMutations) apply(h http.Header) {
	for _, k := range m.remove {
		delete(h, k)
	}
	for _, a := range m.add {
		switch a.action {
		case appendIfExistsOrAdd:
			h[a.key] = append(h[a.key], a.value)
		case addIfAbsent:
			if len(h[a.key]) == 0 {
				h[a.key] = []string{a.value}
			}
		case overwriteIfExistsOrAdd:
			h[a.key] = []string{a.value}
		case overwriteIfExists:
			if len(h[a.key]) > 0 {
				h[a.key] = []string{a.value}
			}
		}
	}
}

// pathRewrite is a route's prefix_rewrite or regex_rewrite.
type pathRewrite struct {
	match *routeMatch // the route's matcher: how much prefix_rewrite replaces
	// prefix_rewrite
	prefix string
	// regex_rewrite: every match of re in the path is replaced by
	// template (in regexp.Expand syntax).
	re       *regexp.Regexp
	template string
}

// apply rewrites an escaped path (no query).
func (p *pathRewrite) apply(path string) string {
	if p.re != nil {
		return p.re.ReplaceAllString(path, p.template)
	}
	return p.prefix + path[p.match.matchedPrefixLen(path):]
}

// ApplyRequest applies the decision's request-side changes to r in place:
// path rewrite (query preserved; the original :path goes to
// x-envoy-original-path as Envoy does), host_rewrite_literal, and
// request_headers_to_remove/add of every level in Envoy's order.
func (d *Decision) ApplyRequest(r *http.Request) {
	if r.Header == nil {
		r.Header = make(http.Header)
	}
	for _, m := range d.requestMutations {
		m.apply(r.Header)
	}
	if d.rewrite != nil && r.URL != nil {
		v := newRequestView(r)
		r.Header.Set("X-Envoy-Original-Path", v.fullPath())
		setEscapedPath(r, d.rewrite.apply(v.path))
	}
	if d.hostRewrite != "" {
		r.Host = d.hostRewrite
	}
}

// ApplyResponse applies response_headers_to_remove/add of every level to h.
func (d *Decision) ApplyResponse(h http.Header) {
	for _, m := range d.responseMutations {
		m.apply(h)
	}
}

// setEscapedPath replaces r's path, keeping its query; RequestURI, when set,
// follows so it stays consistent with r.URL.
func setEscapedPath(r *http.Request, escaped string) {
	if p, err := url.PathUnescape(escaped); err == nil {
		r.URL.Path, r.URL.RawPath = p, escaped
	} else {
		r.URL.Path, r.URL.RawPath = escaped, ""
	}
	if r.RequestURI != "" && strings.HasPrefix(r.RequestURI, "/") {
		r.RequestURI = r.URL.RequestURI()
	}
}

// compileMutations compiles one level's headers_to_add/remove; prefix is ""
// or "response_" to name the fields in errors. It returns nil when the
// level mutates nothing.
func compileMutations(prefix string, add []*corev3.HeaderValueOption, remove []string) (*headerMutations, error) {
	if len(add) == 0 && len(remove) == 0 {
		return nil, nil
	}
	m := &headerMutations{}
	for i, name := range remove {
		if err := modifiableHeader(name); err != nil {
			return nil, fmt.Errorf("%sheaders_to_remove[%d]: %w", prefix, i, err)
		}
		m.remove = append(m.remove, http.CanonicalHeaderKey(name))
	}
	for i, opt := range add {
		a, keep, err := compileHeaderAdd(opt)
		if err != nil {
			return nil, fmt.Errorf("%sheaders_to_add[%d]: %w", prefix, i, err)
		}
		if keep {
			m.add = append(m.add, a)
		}
	}
	return m, nil
}

// compileHeaderAdd compiles a HeaderValueOption; keep is false for an empty
// value without keep_empty_value, which Envoy drops.
func compileHeaderAdd(opt *corev3.HeaderValueOption) (a headerAdd, keep bool, err error) {
	if err := checkFields(opt, "header value option"); err != nil {
		return a, false, err
	}
	hv := opt.GetHeader()
	if hv == nil {
		return a, false, errors.New("header is required")
	}
	if err := checkFields(hv, "header"); err != nil {
		return a, false, err
	}
	if err := modifiableHeader(hv.GetKey()); err != nil {
		return a, false, err
	}
	if hv.GetValue() != "" && len(hv.GetRawValue()) > 0 {
		return a, false, errors.New("only one of value and raw_value may be set")
	}
	value := hv.GetValue()
	if len(hv.GetRawValue()) > 0 {
		value = string(hv.GetRawValue())
	}
	if value, err = literalHeaderValue(value); err != nil {
		return a, false, err
	}
	if strings.ContainsAny(value, "\r\n\x00") {
		return a, false, fmt.Errorf("header %q: value contains CR, LF or NUL", hv.GetKey())
	}
	a = headerAdd{key: http.CanonicalHeaderKey(hv.GetKey()), value: value}
	switch {
	case opt.GetAppend() != nil && opt.GetAppendAction() != corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
		return a, false, errors.New("append and append_action are mutually exclusive")
	case opt.GetAppend() != nil && opt.GetAppend().GetValue():
		a.action = appendIfExistsOrAdd
	case opt.GetAppend() != nil:
		a.action = overwriteIfExistsOrAdd
	default:
		switch opt.GetAppendAction() {
		case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
			a.action = appendIfExistsOrAdd
		case corev3.HeaderValueOption_ADD_IF_ABSENT:
			a.action = addIfAbsent
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
			a.action = overwriteIfExistsOrAdd
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
			a.action = overwriteIfExists
		default:
			return a, false, fmt.Errorf("append_action: unknown value %d", opt.GetAppendAction())
		}
	}
	return a, value != "" || opt.GetKeepEmptyValue(), nil
}

// literalHeaderValue resolves Envoy's header value formatting: "%%" is a
// literal '%'; any %COMMAND% needs a formatter the router does not have.
func literalHeaderValue(v string) (string, error) {
	if !strings.Contains(v, "%") {
		return v, nil
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] != '%' {
			b.WriteByte(v[i])
			continue
		}
		if i+1 < len(v) && v[i+1] == '%' {
			b.WriteByte('%')
			i++
			continue
		}
		cmd := v[i:]
		if end := strings.IndexByte(v[i+1:], '%'); end >= 0 {
			cmd = v[i : i+end+2]
		}
		return "", fmt.Errorf("unsupported header value formatter %q in %q (write a literal %% as %%%%)", cmd, v)
	}
	return b.String(), nil
}

// modifiableHeader rejects what Envoy does not let route config add or
// remove: pseudo-headers and Host.
func modifiableHeader(name string) error {
	switch {
	case name == "":
		return errors.New("empty header name")
	case strings.HasPrefix(name, ":") || strings.EqualFold(name, "host"):
		return fmt.Errorf("header %q cannot be modified", name)
	case !matcher.ValidHeaderName(name):
		return fmt.Errorf("invalid header name %q", name)
	}
	return nil
}

// compileRegexRewrite compiles a regex_rewrite: every match of the pattern
// in the path is replaced; RE2's \N group references become regexp's ${N}.
func compileRegexRewrite(rr *matcherv3.RegexMatchAndSubstitute) (*pathRewrite, error) {
	if err := checkFields(rr, "regex_rewrite"); err != nil {
		return nil, err
	}
	if rr.GetPattern() == nil {
		return nil, errors.New("pattern is required")
	}
	if err := checkFields(rr.GetPattern(), "regex matcher"); err != nil {
		return nil, err
	}
	re, err := confparse.Regexp(rr.GetPattern().GetRegex())
	if err != nil {
		return nil, fmt.Errorf("invalid regex %q: %w", rr.GetPattern().GetRegex(), err)
	}
	tmpl, err := expandTemplate(rr.GetSubstitution(), re.NumSubexp())
	if err != nil {
		return nil, fmt.Errorf("substitution %q: %w", rr.GetSubstitution(), err)
	}
	return &pathRewrite{re: re, template: tmpl}, nil
}

// expandTemplate turns an RE2 rewrite string (\0-\9 groups, \\ backslash)
// into regexp.Expand syntax.
func expandTemplate(sub string, groups int) (string, error) {
	var b strings.Builder
	for i := 0; i < len(sub); i++ {
		switch c := sub[i]; c {
		case '$':
			b.WriteString("$$")
		case '\\':
			if i+1 >= len(sub) {
				return "", errors.New("trailing backslash")
			}
			i++
			n := sub[i]
			switch {
			case n == '\\':
				b.WriteByte('\\')
			case n >= '0' && n <= '9':
				if int(n-'0') > groups {
					return "", fmt.Errorf(`\%c refers to a group the pattern does not have (it has %d)`, n, groups)
				}
				b.WriteString("${" + string(n) + "}")
			default:
				return "", fmt.Errorf(`invalid escape \%c`, n)
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}
