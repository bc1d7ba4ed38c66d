// Package cors is Envoy's CORS filter (envoy.filters.http.cors), what
// Istio's VirtualService corsPolicy becomes. The policy comes from the
// route's typed_per_filter_config (a route.v3.CorsPolicy), else from the
// virtual host's cors field. Preflights (OPTIONS with Origin and
// Access-Control-Request-Method) from an allowed origin are answered
// locally; other requests from an allowed origin get the CORS response
// headers. Origins that match nothing are left to the application.
package cors

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/skein-mesh/skein/internal/proxy/filters"
	"github.com/skein-mesh/skein/internal/proxy/internal/confparse"
	"github.com/skein-mesh/skein/internal/proxy/internal/protocheck"
	"github.com/skein-mesh/skein/internal/proxy/stats"
)

// Name is the filter's canonical name, under which routes carry their policy.
const Name = "envoy.filters.http.cors"

var (
	corsFields = protocheck.Fields(&corsv3.Cors{})
	// allow_origin_string_match is the only origin list of v3 CorsPolicy.
	policyFields = protocheck.Fields(&routev3.CorsPolicy{}, "allow_origin_string_match",
		"allow_methods", "allow_headers", "expose_headers", "max_age", "allow_credentials",
		"filter_enabled", "shadow_enabled", "forward_not_matching_preflights")
	runtimeFields = protocheck.Fields(&corev3.RuntimeFractionalPercent{}, "default_value", "runtime_key")
	matcherFields = protocheck.Fields(&matcherv3.StringMatcher{}, "exact", "prefix", "suffix", "contains", "safe_regex", "ignore_case")
	regexFields   = protocheck.Fields(&matcherv3.RegexMatcher{}, "regex", "google_re2")
)

// Register adds the filter to reg, with route.v3.CorsPolicy as its
// per-route config (also what a virtual host's cors field compiles to).
func Register(reg *filters.Registry) {
	reg.Register(Name, &corsv3.Cors{}, New)
	reg.RegisterPerRoute(&routev3.CorsPolicy{}, func(a *anypb.Any) (any, error) {
		var p routev3.CorsPolicy
		if err := confparse.Unmarshal(a, &p); err != nil {
			return nil, err
		}
		return compile(&p)
	})
}

// policy is a compiled CorsPolicy.
type policy struct {
	origins                                        []matcher
	allowMethods, allowHeaders, exposeHeaders, age string
	credentials                                    bool
	enabled, shadow                                *typev3.FractionalPercent // nil enabled: always; nil shadow: never
	forwardUnmatched                               bool
}

// matcher is a compiled StringMatcher.
type matcher func(string) bool

func compile(p *routev3.CorsPolicy) (*policy, error) {
	if err := policyFields.Check(p); err != nil {
		return nil, err
	}
	out := &policy{
		allowMethods: p.GetAllowMethods(), allowHeaders: p.GetAllowHeaders(),
		exposeHeaders: p.GetExposeHeaders(), age: p.GetMaxAge(),
		credentials:      p.GetAllowCredentials().GetValue(),
		forwardUnmatched: p.GetForwardNotMatchingPreflights() == nil || p.GetForwardNotMatchingPreflights().GetValue(),
	}
	for i, sm := range p.GetAllowOriginStringMatch() {
		m, err := compileMatcher(sm)
		if err != nil {
			return nil, fmt.Errorf("allow_origin_string_match[%d]: %v", i, err)
		}
		out.origins = append(out.origins, m)
	}
	var err error
	if fe := p.GetFilterEnabled(); fe != nil {
		if out.enabled, err = fraction(fe); err != nil {
			return nil, fmt.Errorf("filter_enabled: %v", err)
		}
	}
	if se := p.GetShadowEnabled(); se != nil {
		if out.shadow, err = fraction(se); err != nil {
			return nil, fmt.Errorf("shadow_enabled: %v", err)
		}
	}
	return out, nil
}

// fraction reads a RuntimeFractionalPercent; with no runtime layer, the
// runtime key always falls back to default_value, as in Envoy without one.
func fraction(r *corev3.RuntimeFractionalPercent) (*typev3.FractionalPercent, error) {
	if err := runtimeFields.Check(r); err != nil {
		return nil, err
	}
	if r.GetDefaultValue() == nil {
		return nil, fmt.Errorf("default_value is required")
	}
	return r.GetDefaultValue(), nil
}

func compileMatcher(sm *matcherv3.StringMatcher) (matcher, error) {
	if err := matcherFields.Check(sm); err != nil {
		return nil, err
	}
	fold := sm.GetIgnoreCase()
	eq := func(a, b string) bool { return a == b || fold && strings.EqualFold(a, b) }
	lower := func(s string) string {
		if fold {
			return strings.ToLower(s)
		}
		return s
	}
	switch m := sm.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		return func(s string) bool { return eq(s, m.Exact) }, nil
	case *matcherv3.StringMatcher_Prefix:
		return func(s string) bool { return strings.HasPrefix(lower(s), lower(m.Prefix)) }, nil
	case *matcherv3.StringMatcher_Suffix:
		return func(s string) bool { return strings.HasSuffix(lower(s), lower(m.Suffix)) }, nil
	case *matcherv3.StringMatcher_Contains:
		return func(s string) bool { return strings.Contains(lower(s), lower(m.Contains)) }, nil
	case *matcherv3.StringMatcher_SafeRegex:
		if err := regexFields.Check(m.SafeRegex); err != nil {
			return nil, fmt.Errorf("safe_regex: %v", err)
		}
		// Envoy's safe_regex matches the whole string (RE2 full match).
		re, err := confparse.Regexp("^(?:" + m.SafeRegex.GetRegex() + ")$")
		if err != nil {
			return nil, fmt.Errorf("safe_regex: %v", err)
		}
		return re.MatchString, nil
	}
	return nil, fmt.Errorf("a match pattern is required")
}

// Filter applies the CORS policy of the matched route.
type Filter struct {
	valid, invalid *stats.Counter
}

var (
	_ filters.HTTPFilter     = (*Filter)(nil)
	_ filters.ResponseFilter = (*Filter)(nil)
	_ filters.StatsUser      = (*Filter)(nil)
)

// New builds the filter; its own config (envoy.extensions.filters.http.cors.v3.Cors) is empty.
func New(a *anypb.Any) (filters.HTTPFilter, error) {
	var c corsv3.Cors
	if err := confparse.Unmarshal(a, &c); err != nil {
		return nil, err
	}
	if err := corsFields.Check(&c); err != nil {
		return nil, err
	}
	return &Filter{valid: &stats.Counter{}, invalid: &stats.Counter{}}, nil
}

// UseStats registers Envoy's CORS statistics under prefix.
func (f *Filter) UseStats(s *stats.Store, prefix string) {
	f.valid = s.Counter(prefix + "cors.origin_valid")
	f.invalid = s.Counter(prefix + "cors.origin_invalid")
}

// Metadata keys where OnRequest leaves the policy and the allowed origin
// for OnResponse.
const (
	metadataKey = "policy"
	originKey   = "origin"
)

// policyFor returns the route's compiled policy: its typed_per_filter_config
// entry, else the virtual host's cors field; nil when there is none.
func policyFor(req *filters.Request) *policy {
	if req.Route == nil {
		return nil
	}
	p, _ := req.Route.FilterConfig[Name].(*policy)
	return p
}

// OnRequest answers preflights and remembers an allowed origin.
func (f *Filter) OnRequest(req *filters.Request) *filters.LocalReply {
	r := req.HTTP
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	p := policyFor(req)
	if p == nil {
		return nil
	}
	enabled := p.enabled == nil || sampled(p.enabled)
	if !enabled && (p.shadow == nil || !sampled(p.shadow)) {
		return nil
	}
	allowed := false
	for _, m := range p.origins {
		if m("*") || m(origin) {
			allowed = true
			break
		}
	}
	if allowed {
		f.valid.Inc()
	} else {
		f.invalid.Inc()
	}
	if !enabled { // shadow mode: count only
		return nil
	}
	if r.Method != http.MethodOptions || r.Header.Get("Access-Control-Request-Method") == "" {
		if allowed { // a simple or actual request: headers on the response
			req.SetMetadata(Name, metadataKey, p)
			req.SetMetadata(Name, originKey, origin)
		}
		return nil
	}
	if !allowed && p.forwardUnmatched {
		return nil
	}
	h := http.Header{}
	if allowed {
		h.Set("Access-Control-Allow-Origin", origin)
	}
	if p.credentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	switch p.allowMethods {
	case "":
	case "*":
		h.Set("Access-Control-Allow-Methods", r.Header.Get("Access-Control-Request-Method"))
	default:
		h.Set("Access-Control-Allow-Methods", p.allowMethods)
	}
	switch p.allowHeaders {
	case "":
	case "*":
		h.Set("Access-Control-Allow-Headers", r.Header.Get("Access-Control-Request-Headers"))
	default:
		h.Set("Access-Control-Allow-Headers", p.allowHeaders)
	}
	if p.age != "" {
		h.Set("Access-Control-Max-Age", p.age)
	}
	return &filters.LocalReply{Status: http.StatusOK, Headers: h}
}

// OnResponse adds the CORS headers for a request from an allowed origin.
func (f *Filter) OnResponse(req *filters.Request, _ int, h http.Header) {
	p, ok := req.Metadata[Name][metadataKey].(*policy)
	if !ok {
		return
	}
	h.Set("Access-Control-Allow-Origin", req.Metadata[Name][originKey].(string))
	if p.credentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	if p.exposeHeaders != "" {
		h.Set("Access-Control-Expose-Headers", p.exposeHeaders)
	}
}

// sampled draws whether a request falls in p.
func sampled(p *typev3.FractionalPercent) bool {
	denom := map[typev3.FractionalPercent_DenominatorType]uint32{
		typev3.FractionalPercent_HUNDRED: 100, typev3.FractionalPercent_TEN_THOUSAND: 10_000,
		typev3.FractionalPercent_MILLION: 1_000_000,
	}[p.GetDenominator()]
	if p.GetNumerator() >= denom {
		return true
	}
	return p.GetNumerator() > 0 && rand.Uint32N(denom) < p.GetNumerator()
}
