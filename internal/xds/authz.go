package xds

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
	security "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"

	"github.com/skein-mesh/skein/internal/config"
	"github.com/skein-mesh/skein/internal/model"
)

// Names shared with the proxy's filters.
const (
	RBACFilter        = "envoy.filters.http.rbac"
	NetworkRBACFilter = "envoy.filters.network.rbac"
	JWTAuthnFilter    = "envoy.filters.http.jwt_authn"
	// JWTPayloadKey is where jwt_authn puts a verified payload in the
	// dynamic metadata of JWTAuthnFilter, and where RBAC looks for
	// request principals and claims.
	JWTPayloadKey = "payload"
)

// selectsWorkload reports whether a policy in namespace ns with the given
// selector and target references applies to the proxy: root-namespace
// policies apply mesh-wide, others to their namespace, narrowed by
// selector.matchLabels. targetRef(s) address Gateway API resources this
// mesh does not run, so such policies are skipped with a warning.
func (g *generator) selectsWorkload(o *config.Object, sel *typev1beta1.WorkloadSelector, hasTargetRef bool) bool {
	ns := o.Meta.Namespace
	if ns != g.pc.RootNamespace && ns != g.proxy.Namespace {
		return false
	}
	if hasTargetRef {
		g.warnf("%s %s/%s: targetRef/targetRefs are not supported (no Gateway API or waypoint here); policy ignored", o.GVK.Kind, ns, o.Meta.Name)
		return false
	}
	return model.LabelsMatch(sel.GetMatchLabels(), g.proxy.Labels)
}

// authorizationPolicies returns the AuthorizationPolicies that apply to
// the proxy's workload, by action, in creation order.
func (g *generator) authorizationPolicies() map[security.AuthorizationPolicy_Action][]*config.Object {
	out := map[security.AuthorizationPolicy_Action][]*config.Object{}
	for _, o := range g.pc.AuthorizationPolicies(g.proxy.Namespace) {
		ap := o.Spec.(*security.AuthorizationPolicy)
		if !g.selectsWorkload(o, ap.GetSelector(), ap.GetTargetRef() != nil || len(ap.GetTargetRefs()) > 0) {
			continue
		}
		if ap.GetAction() == security.AuthorizationPolicy_CUSTOM {
			// No extension provider can be configured yet. Istio fails
			// closed when a CUSTOM policy's provider is missing: requests
			// its rules match are denied.
			g.warnf("AuthorizationPolicy %s/%s: action CUSTOM: extension provider %q not found; requests matching its rules are denied",
				o.Meta.Namespace, o.Meta.Name, ap.GetProvider().GetName())
			out[security.AuthorizationPolicy_DENY] = append(out[security.AuthorizationPolicy_DENY], o)
			continue
		}
		out[ap.GetAction()] = append(out[ap.GetAction()], o)
	}
	return out
}

// rbacActions lists the actions in the order their filters run: AUDIT
// first so it sees every request, then DENY, then ALLOW.
var rbacActions = []struct {
	istio security.AuthorizationPolicy_Action
	envoy rbacv3.RBAC_Action
}{
	{security.AuthorizationPolicy_AUDIT, rbacv3.RBAC_LOG},
	{security.AuthorizationPolicy_DENY, rbacv3.RBAC_DENY},
	{security.AuthorizationPolicy_ALLOW, rbacv3.RBAC_ALLOW},
}

// buildRBAC translates the applicable policies into one RBAC config per
// action present. tcp selects the TCP translation, where HTTP-only fields
// cannot be evaluated.
func (g *generator) buildRBAC(policies map[security.AuthorizationPolicy_Action][]*config.Object, tcp bool) []*rbacv3.RBAC {
	var out []*rbacv3.RBAC
	for _, a := range rbacActions {
		objs := policies[a.istio]
		if len(objs) == 0 {
			continue
		}
		rules := &rbacv3.RBAC{Action: a.envoy, Policies: map[string]*rbacv3.Policy{}}
		for _, o := range objs {
			ap := o.Spec.(*security.AuthorizationPolicy)
			for i, r := range ap.GetRules() {
				name := fmt.Sprintf("ns[%s]-policy[%s]-rule[%d]", o.Meta.Namespace, o.Meta.Name, i)
				tr := ruleTranslator{g: g, obj: o, field: fmt.Sprintf("spec.rules[%d]", i), tcp: tcp, deny: a.istio == security.AuthorizationPolicy_DENY}
				p := tr.rule(r)
				if p != nil {
					rules.Policies[name] = p
				}
			}
		}
		out = append(out, rules)
	}
	return out
}

// ruleTranslator turns one AuthorizationPolicy rule into an RBAC policy:
// permissions = and(to, request-side when), principals = and(from,
// source-side when), each field an or of its values and a not of the or
// of its notValues.
type ruleTranslator struct {
	g     *generator
	obj   *config.Object
	field string
	tcp   bool
	deny  bool
	// skip: the rule cannot match (an HTTP-only field on TCP for ALLOW,
	// or an unsupported field); denyAll: an unsupported field in a DENY
	// rule, which then denies everything rather than nothing.
	skip bool
}

func (t *ruleTranslator) warnf(format string, args ...any) {
	t.g.warnf("AuthorizationPolicy %s/%s %s: %s", t.obj.Meta.Namespace, t.obj.Meta.Name, t.field, fmt.Sprintf(format, args...))
}

// invalid handles a field the translation cannot express: ALLOW and AUDIT
// rules never match, DENY rules keep denying (the field is dropped, so
// the rule matches more, never less).
func (t *ruleTranslator) invalid(format string, args ...any) {
	if t.deny {
		t.warnf(format+"; field ignored, so this DENY rule matches more requests", args...)
		return
	}
	t.warnf(format+"; this rule never matches", args...)
	t.skip = true
}

// httpOnly reports (and handles) an HTTP-only field on a TCP port: Istio
// ignores the rule for ALLOW/AUDIT and drops the field for DENY.
func (t *ruleTranslator) httpOnly(present bool) bool {
	if !present || !t.tcp {
		return false
	}
	if !t.deny {
		t.skip = true
	}
	return true
}

func (t *ruleTranslator) rule(r *security.Rule) *rbacv3.Policy {
	var perms []*rbacv3.Permission
	var ids []*rbacv3.Principal
	if len(r.GetTo()) > 0 {
		var ors []*rbacv3.Permission
		for _, to := range r.GetTo() {
			if p := t.operation(to.GetOperation()); p != nil {
				ors = append(ors, p)
			}
		}
		perms = append(perms, orPermissions(ors))
	}
	if len(r.GetFrom()) > 0 {
		var ors []*rbacv3.Principal
		for _, from := range r.GetFrom() {
			if p := t.source(from.GetSource()); p != nil {
				ors = append(ors, p)
			}
		}
		ids = append(ids, orPrincipals(ors))
	}
	for i, c := range r.GetWhen() {
		pm, pr := t.condition(i, c)
		if pm != nil {
			perms = append(perms, pm)
		}
		if pr != nil {
			ids = append(ids, pr)
		}
	}
	if t.skip {
		return nil
	}
	return &rbacv3.Policy{
		Permissions: []*rbacv3.Permission{andPermissions(perms)},
		Principals:  []*rbacv3.Principal{andPrincipals(ids)},
	}
}

func (t *ruleTranslator) operation(op *security.Operation) *rbacv3.Permission {
	var and []*rbacv3.Permission
	field := func(values, notValues []string, http bool, one func(string) *rbacv3.Permission) {
		if len(values) == 0 && len(notValues) == 0 {
			return
		}
		if http && t.httpOnly(true) {
			return
		}
		if len(values) > 0 {
			and = append(and, orPermissions(mapPerm(values, one)))
		}
		if len(notValues) > 0 {
			and = append(and, notPermission(orPermissions(mapPerm(notValues, one))))
		}
	}
	field(op.GetHosts(), op.GetNotHosts(), true, func(h string) *rbacv3.Permission {
		return headerPermission(":authority", h, true)
	})
	field(op.GetPorts(), op.GetNotPorts(), false, func(p string) *rbacv3.Permission {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil {
			t.invalid("port %q is not a port number", p)
			return anyPermission()
		}
		return &rbacv3.Permission{Rule: &rbacv3.Permission_DestinationPort{DestinationPort: uint32(n)}}
	})
	field(op.GetMethods(), op.GetNotMethods(), true, func(m string) *rbacv3.Permission {
		return headerPermission(":method", m, false)
	})
	field(op.GetPaths(), op.GetNotPaths(), true, func(p string) *rbacv3.Permission {
		if strings.Contains(p, "{*}") || strings.Contains(p, "{**}") {
			t.invalid("path template %q is not supported", p)
			return anyPermission()
		}
		return &rbacv3.Permission{Rule: &rbacv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{
			Rule: &matcherv3.PathMatcher_Path{Path: istioString(p, "", false)}}}}
	})
	return andPermissions(and)
}

func (t *ruleTranslator) source(s *security.Source) *rbacv3.Principal {
	var and []*rbacv3.Principal
	field := func(values, notValues []string, http bool, one func(string) *rbacv3.Principal) {
		if len(values) == 0 && len(notValues) == 0 {
			return
		}
		if http && t.httpOnly(true) {
			return
		}
		if len(values) > 0 {
			and = append(and, orPrincipals(mapPrin(values, one)))
		}
		if len(notValues) > 0 {
			and = append(and, notPrincipal(orPrincipals(mapPrin(notValues, one))))
		}
	}
	field(s.GetPrincipals(), s.GetNotPrincipals(), false, peerPrincipal)
	field(s.GetRequestPrincipals(), s.GetNotRequestPrincipals(), true, requestPrincipal)
	field(s.GetNamespaces(), s.GetNotNamespaces(), false, namespacePrincipal)
	field(s.GetServiceAccounts(), s.GetNotServiceAccounts(), false, func(sa string) *rbacv3.Principal {
		ns, name, ok := strings.Cut(sa, "/")
		if !ok {
			ns, name = t.obj.Meta.Namespace, sa
		}
		return authenticatedPrincipal(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: "/ns/" + ns + "/sa/" + name}})
	})
	field(s.GetIpBlocks(), s.GetNotIpBlocks(), false, func(b string) *rbacv3.Principal {
		return t.cidrPrincipal(b, false)
	})
	field(s.GetRemoteIpBlocks(), s.GetNotRemoteIpBlocks(), false, func(b string) *rbacv3.Principal {
		return t.cidrPrincipal(b, true)
	})
	if len(s.GetTrustDomains()) > 0 || len(s.GetNotTrustDomains()) > 0 {
		t.invalid("from.source trustDomains/notTrustDomains are not supported")
	}
	return andPrincipals(and)
}

var claimsKey = regexp.MustCompile(`^request\.auth\.claims((\[[^\[\]]+\])+)$`)

// condition translates a when condition into a permission (request and
// destination attributes) or a principal (source and authentication).
func (t *ruleTranslator) condition(i int, c *security.Condition) (*rbacv3.Permission, *rbacv3.Principal) {
	key := c.GetKey()
	prin := func(http bool, one func(string) *rbacv3.Principal) *rbacv3.Principal {
		if http && t.httpOnly(true) {
			return nil
		}
		var and []*rbacv3.Principal
		if len(c.GetValues()) > 0 {
			and = append(and, orPrincipals(mapPrin(c.GetValues(), one)))
		}
		if len(c.GetNotValues()) > 0 {
			and = append(and, notPrincipal(orPrincipals(mapPrin(c.GetNotValues(), one))))
		}
		return andPrincipals(and)
	}
	perm := func(http bool, one func(string) *rbacv3.Permission) *rbacv3.Permission {
		if http && t.httpOnly(true) {
			return nil
		}
		var and []*rbacv3.Permission
		if len(c.GetValues()) > 0 {
			and = append(and, orPermissions(mapPerm(c.GetValues(), one)))
		}
		if len(c.GetNotValues()) > 0 {
			and = append(and, notPermission(orPermissions(mapPerm(c.GetNotValues(), one))))
		}
		return andPermissions(and)
	}
	switch {
	case strings.HasPrefix(key, "request.headers[") && strings.HasSuffix(key, "]"):
		name := key[len("request.headers[") : len(key)-1]
		return nil, prin(true, func(v string) *rbacv3.Principal {
			return &rbacv3.Principal{Identifier: &rbacv3.Principal_Header{Header: authzHeaderMatcher(name, v, false)}}
		})
	case key == "source.ip":
		return nil, prin(false, func(b string) *rbacv3.Principal { return t.cidrPrincipal(b, false) })
	case key == "remote.ip":
		return nil, prin(false, func(b string) *rbacv3.Principal { return t.cidrPrincipal(b, true) })
	case key == "source.namespace":
		return nil, prin(false, namespacePrincipal)
	case key == "source.principal":
		return nil, prin(false, peerPrincipal)
	case key == "request.auth.principal":
		return nil, prin(true, requestPrincipal)
	case key == "request.auth.audiences":
		return nil, prin(true, func(v string) *rbacv3.Principal { return claimPrincipal([]string{"aud"}, v) })
	case key == "request.auth.presenter":
		return nil, prin(true, func(v string) *rbacv3.Principal { return claimPrincipal([]string{"azp"}, v) })
	case claimsKey.MatchString(key):
		inner := claimsKey.FindStringSubmatch(key)[1]
		path := strings.Split(strings.Trim(inner, "[]"), "][")
		return nil, prin(true, func(v string) *rbacv3.Principal { return claimPrincipal(path, v) })
	case key == "destination.ip":
		return perm(false, func(b string) *rbacv3.Permission {
			r, err := cidrRange(b)
			if err != nil {
				t.invalid("when[%d] destination.ip: %v", i, err)
				return anyPermission()
			}
			return &rbacv3.Permission{Rule: &rbacv3.Permission_DestinationIp{DestinationIp: r}}
		}), nil
	case key == "destination.port":
		return perm(false, func(p string) *rbacv3.Permission {
			n, err := strconv.ParseUint(p, 10, 16)
			if err != nil {
				t.invalid("when[%d] destination.port %q is not a port number", i, p)
				return anyPermission()
			}
			return &rbacv3.Permission{Rule: &rbacv3.Permission_DestinationPort{DestinationPort: uint32(n)}}
		}), nil
	case key == "connection.sni":
		return perm(false, func(v string) *rbacv3.Permission {
			return &rbacv3.Permission{Rule: &rbacv3.Permission_RequestedServerName{RequestedServerName: istioString(v, "", false)}}
		}), nil
	}
	t.invalid("when[%d] key %q is not supported", i, key)
	return nil, nil
}

func (t *ruleTranslator) cidrPrincipal(block string, remote bool) *rbacv3.Principal {
	r, err := cidrRange(block)
	if err != nil {
		t.invalid("%v", err)
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_Any{Any: true}}
	}
	if remote {
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_RemoteIp{RemoteIp: r}}
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_DirectRemoteIp{DirectRemoteIp: r}}
}

// cidrRange parses "1.2.3.4" or "1.2.3.0/24".
func cidrRange(s string) (*corev3.CidrRange, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return &corev3.CidrRange{AddressPrefix: p.Addr().String(), PrefixLen: wrapperspb.UInt32(uint32(p.Bits()))}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not an IP address or CIDR block", s)
	}
	return &corev3.CidrRange{AddressPrefix: a.String(), PrefixLen: wrapperspb.UInt32(uint32(a.BitLen()))}, nil
}

// istioString is Istio's string match: "*" any non-empty value, "x*"
// prefix, "*x" suffix, otherwise exact. addPrefix is prepended to exact
// and prefix patterns (the spiffe:// scheme of principals).
func istioString(v, addPrefix string, fold bool) *matcherv3.StringMatcher {
	m := &matcherv3.StringMatcher{IgnoreCase: fold}
	switch {
	case v == "*":
		m.MatchPattern = &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: ".+"}}
	case strings.HasSuffix(v, "*"):
		m.MatchPattern = &matcherv3.StringMatcher_Prefix{Prefix: addPrefix + strings.TrimSuffix(v, "*")}
	case strings.HasPrefix(v, "*"):
		m.MatchPattern = &matcherv3.StringMatcher_Suffix{Suffix: strings.TrimPrefix(v, "*")}
	default:
		m.MatchPattern = &matcherv3.StringMatcher_Exact{Exact: addPrefix + v}
	}
	return m
}

func authenticatedPrincipal(m *matcherv3.StringMatcher) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Authenticated_{Authenticated: &rbacv3.Principal_Authenticated{PrincipalName: m}}}
}

// peerPrincipal matches the mTLS peer's SPIFFE identity.
func peerPrincipal(v string) *rbacv3.Principal {
	return authenticatedPrincipal(istioString(v, "spiffe://", false))
}

// namespacePrincipal matches peers whose identity names namespace ns.
func namespacePrincipal(ns string) *rbacv3.Principal {
	var seg string
	switch {
	case ns == "*":
		seg = "[^/]+"
	case strings.HasSuffix(ns, "*"):
		seg = regexp.QuoteMeta(strings.TrimSuffix(ns, "*")) + "[^/]*"
	case strings.HasPrefix(ns, "*"):
		seg = "[^/]*" + regexp.QuoteMeta(strings.TrimPrefix(ns, "*"))
	default:
		seg = regexp.QuoteMeta(ns)
	}
	return authenticatedPrincipal(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{
		SafeRegex: &matcherv3.RegexMatcher{Regex: ".*/ns/" + seg + "/.*"}}})
}

// prefixOrAny matches values starting with p; an empty p (Envoy rejects
// empty prefix patterns) means any non-empty value, as Istio's "*" does.
func prefixOrAny(p string) *matcherv3.StringMatcher {
	if p == "" {
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: ".+"}}}
	}
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: p}}
}

// suffixOrAny is prefixOrAny for suffixes.
func suffixOrAny(s string) *matcherv3.StringMatcher {
	if s == "" {
		return prefixOrAny("")
	}
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: s}}
}

// requestPrincipal matches "<iss>/<sub>" of the verified JWT. The payload
// holds iss and sub separately, so the pattern is split at its last "/"
// (subjects have no "/"): "iss/sub", "iss/*", "*/sub", "*".
func requestPrincipal(v string) *rbacv3.Principal {
	md := func(key string, m *matcherv3.StringMatcher) *rbacv3.Principal {
		return metadataPrincipal([]string{key}, &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_StringMatch{StringMatch: m}})
	}
	exact := func(s string) *matcherv3.StringMatcher {
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
	}
	switch {
	case v == "*":
		return metadataPrincipal([]string{"iss"}, &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_PresentMatch{PresentMatch: true}})
	case strings.HasSuffix(v, "*"):
		p := strings.TrimSuffix(v, "*")
		i := strings.LastIndexByte(p, '/')
		if i < 0 {
			return md("iss", &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: p}})
		}
		return andPrincipals([]*rbacv3.Principal{md("iss", exact(p[:i])),
			md("sub", prefixOrAny(p[i+1:]))})
	case strings.HasPrefix(v, "*"):
		s := strings.TrimPrefix(v, "*")
		i := strings.LastIndexByte(s, '/')
		if i < 0 {
			return md("sub", &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: s}})
		}
		return andPrincipals([]*rbacv3.Principal{
			md("iss", suffixOrAny(s[:i])),
			md("sub", exact(s[i+1:]))})
	}
	i := strings.LastIndexByte(v, '/')
	if i < 0 {
		// No separator: no "<iss>/<sub>" can equal it.
		return notPrincipal(&rbacv3.Principal{Identifier: &rbacv3.Principal_Any{Any: true}})
	}
	return andPrincipals([]*rbacv3.Principal{md("iss", exact(v[:i])), md("sub", exact(v[i+1:]))})
}

// claimPrincipal matches a payload claim that is either the value or a
// list containing it, as Istio's claims and audiences conditions do.
func claimPrincipal(path []string, v string) *rbacv3.Principal {
	sm := func() *matcherv3.ValueMatcher {
		return &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_StringMatch{StringMatch: istioString(v, "", false)}}
	}
	return metadataPrincipal(path, &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_OrMatch{OrMatch: &matcherv3.OrMatcher{
		ValueMatchers: []*matcherv3.ValueMatcher{sm(), {MatchPattern: &matcherv3.ValueMatcher_ListMatch{ListMatch: &matcherv3.ListMatcher{
			MatchPattern: &matcherv3.ListMatcher_OneOf{OneOf: sm()}}}}},
	}}})
}

func metadataPrincipal(path []string, v *matcherv3.ValueMatcher) *rbacv3.Principal {
	m := &matcherv3.MetadataMatcher{Filter: JWTAuthnFilter, Value: v}
	for _, k := range append([]string{JWTPayloadKey}, path...) {
		m.Path = append(m.Path, &matcherv3.MetadataMatcher_PathSegment{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: k}})
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Metadata{Metadata: m}}
}

func authzHeaderMatcher(name, v string, fold bool) *routev3.HeaderMatcher {
	if v == "*" {
		return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}
	}
	return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: istioString(v, "", fold)}}
}

func headerPermission(name, v string, fold bool) *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: authzHeaderMatcher(name, v, fold)}}
}

func anyPermission() *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_Any{Any: true}}
}

func mapPerm(vs []string, f func(string) *rbacv3.Permission) []*rbacv3.Permission {
	out := make([]*rbacv3.Permission, 0, len(vs))
	for _, v := range vs {
		out = append(out, f(v))
	}
	return out
}

func mapPrin(vs []string, f func(string) *rbacv3.Principal) []*rbacv3.Principal {
	out := make([]*rbacv3.Principal, 0, len(vs))
	for _, v := range vs {
		out = append(out, f(v))
	}
	return out
}

// andPermissions is any for nothing, the permission itself for one.
func andPermissions(ps []*rbacv3.Permission) *rbacv3.Permission {
	switch len(ps) {
	case 0:
		return anyPermission()
	case 1:
		return ps[0]
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_AndRules{AndRules: &rbacv3.Permission_Set{Rules: ps}}}
}

// orPermissions of nothing matches nothing.
func orPermissions(ps []*rbacv3.Permission) *rbacv3.Permission {
	switch len(ps) {
	case 0:
		return notPermission(anyPermission())
	case 1:
		return ps[0]
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_OrRules{OrRules: &rbacv3.Permission_Set{Rules: ps}}}
}

func notPermission(p *rbacv3.Permission) *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_NotRule{NotRule: p}}
}

func andPrincipals(ps []*rbacv3.Principal) *rbacv3.Principal {
	switch len(ps) {
	case 0:
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_Any{Any: true}}
	case 1:
		return ps[0]
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_AndIds{AndIds: &rbacv3.Principal_Set{Ids: ps}}}
}

func orPrincipals(ps []*rbacv3.Principal) *rbacv3.Principal {
	switch len(ps) {
	case 0:
		return notPrincipal(&rbacv3.Principal{Identifier: &rbacv3.Principal_Any{Any: true}})
	case 1:
		return ps[0]
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_OrIds{OrIds: &rbacv3.Principal_Set{Ids: ps}}}
}

func notPrincipal(p *rbacv3.Principal) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_NotId{NotId: p}}
}
