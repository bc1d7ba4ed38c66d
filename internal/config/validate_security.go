package config

import (
	"fmt"
	"maps"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	security "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
)

// The checks below follow Istio's: the CRD schemas' constraints and CEL
// rules (what the API server enforces) and pkg/config/validation (the
// webhook), with Istio's messages.

func (v *validator) peerAuthentication(pa *security.PeerAuthentication) {
	v.workloadSelector("spec.selector", pa.GetSelector())
	if len(pa.GetPortLevelMtls()) > 0 && len(pa.GetSelector().GetMatchLabels()) == 0 {
		v.errorf("spec.portLevelMtls", "portLevelMtls requires selector (mesh/namespace peer authentication cannot have port level mTLS)")
	}
	for _, port := range sortedUint32Keys(pa.GetPortLevelMtls()) {
		if port < 1 || port > 65535 {
			v.errorf(fmt.Sprintf("spec.portLevelMtls[%d]", port), "port must be between 1-65535")
		}
	}
}

func (v *validator) authorizationPolicy(ap *security.AuthorizationPolicy) {
	v.oneSelector("spec", ap.GetSelector(), ap.GetTargetRef(), ap.GetTargetRefs(), "selector")
	v.workloadSelector("spec.selector", ap.GetSelector())
	v.targetRefs("spec", ap.GetTargetRef(), ap.GetTargetRefs())
	switch ap.GetAction() {
	case security.AuthorizationPolicy_CUSTOM:
		if ap.GetRules() == nil {
			v.errorf("spec.rules", "CUSTOM action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if you want it be triggered for every request")
		} else if ap.GetProvider().GetName() == "" {
			v.errorf("spec.provider.name", "`provider.name` must not be empty")
		}
		for i, r := range ap.GetRules() {
			v.customRule(fieldAt("spec.rules", i), r)
		}
	case security.AuthorizationPolicy_DENY:
		if ap.GetRules() == nil {
			v.errorf("spec.rules", "DENY action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if you want it be triggered for every request")
		}
	}
	if ap.GetProvider() != nil && ap.GetAction() != security.AuthorizationPolicy_CUSTOM {
		v.errorf("spec.provider", "`provider` must not be with non CUSTOM action, found %s", ap.GetAction())
	}
	for i, r := range ap.GetRules() {
		v.authzRule(fieldAt("spec.rules", i), i, r, ap.GetAction() == security.AuthorizationPolicy_DENY)
	}
}

// customRule: what ext_authz cannot see is refused in a CUSTOM policy.
func (v *validator) customRule(f string, r *security.Rule) {
	unsupported := func(field, name string, set bool) {
		if set {
			v.errorf(field, "%s is currently not supported with CUSTOM action", name)
		}
	}
	for j, from := range r.GetFrom() {
		s, ff := from.GetSource(), fmt.Sprintf("%s.from[%d].source", f, j)
		unsupported(ff, "From.Namespaces", len(s.GetNamespaces()) > 0)
		unsupported(ff, "From.NotNamespaces", len(s.GetNotNamespaces()) > 0)
		unsupported(ff, "From.ServiceAccounts", len(s.GetServiceAccounts()) > 0)
		unsupported(ff, "From.NotServiceAccounts", len(s.GetNotServiceAccounts()) > 0)
		unsupported(ff, "From.Principals", len(s.GetPrincipals()) > 0)
		unsupported(ff, "From.NotPrincipals", len(s.GetNotPrincipals()) > 0)
		unsupported(ff, "From.RequestPrincipals", len(s.GetRequestPrincipals()) > 0)
		unsupported(ff, "From.NotRequestPrincipals", len(s.GetNotRequestPrincipals()) > 0)
	}
	for j, c := range r.GetWhen() {
		k := c.GetKey()
		unsupported(fmt.Sprintf("%s.when[%d].key", f, j), k,
			k == "source.namespace" || k == "source.serviceAccount" || k == "source.principal" || strings.HasPrefix(k, "request.auth."))
	}
}

func (v *validator) authzRule(f string, i int, r *security.Rule, deny bool) {
	if r.From != nil && len(r.From) == 0 {
		v.errorf(f+".from", "`from` must not be empty, found at rule %d", i)
	}
	fromRule, toRule, tcpFrom, tcpTo := false, false, false, false
	for j, from := range r.GetFrom() {
		ff := fmt.Sprintf("%s.from[%d].source", f, j)
		s := from.GetSource()
		if s == nil {
			v.errorf(ff, "`from.source` must not be nil, found at rule %d", i)
			continue
		}
		fromRule = true
		if len(s.Principals)+len(s.NotPrincipals)+len(s.Namespaces)+len(s.NotNamespaces) > 0 &&
			len(s.ServiceAccounts)+len(s.NotServiceAccounts) > 0 {
			v.errorf(ff, "cannot set serviceAccounts with namespaces or principals, found at rule %d", i)
		}
		lists := []struct {
			name string
			vals []string
			ips  bool
		}{
			{"principals", s.Principals, false}, {"requestPrincipals", s.RequestPrincipals, false},
			{"namespaces", s.Namespaces, false}, {"serviceAccounts", s.ServiceAccounts, false},
			{"ipBlocks", s.IpBlocks, true}, {"remoteIpBlocks", s.RemoteIpBlocks, true},
			{"notPrincipals", s.NotPrincipals, false}, {"notRequestPrincipals", s.NotRequestPrincipals, false},
			{"notNamespaces", s.NotNamespaces, false}, {"notServiceAccounts", s.NotServiceAccounts, false},
			{"notIpBlocks", s.NotIpBlocks, true}, {"notRemoteIpBlocks", s.NotRemoteIpBlocks, true},
		}
		empty := true
		for _, l := range lists {
			if len(l.vals) > 0 {
				empty = false
			}
			v.nonEmptyValues(ff+"."+l.name, l.name, l.vals)
			for k, val := range l.vals {
				if l.ips && val != "" && !validIPOrCIDR(val) {
					v.errorf(fieldAt(ff+"."+l.name, k), "invalid IP address or CIDR range: %s", val)
				}
			}
			if strings.HasSuffix(strings.ToLower(l.name), "serviceaccounts") {
				for k, val := range l.vals {
					if strings.Contains(val, "*") {
						v.errorf(fieldAt(ff+"."+l.name, k), "wildcard is not allowed in %s (found %q)", l.name, val)
					}
				}
			}
		}
		if empty {
			v.errorf(ff, "`from.source` must not be empty, found at rule %d", i)
		}
		tcpFrom = tcpFrom || s.Principals != nil || s.NotPrincipals != nil || s.Namespaces != nil || s.NotNamespaces != nil ||
			s.IpBlocks != nil || s.NotIpBlocks != nil || s.RemoteIpBlocks != nil || s.NotRemoteIpBlocks != nil ||
			s.ServiceAccounts != nil || s.NotServiceAccounts != nil
	}
	if r.To != nil && len(r.To) == 0 {
		v.errorf(f+".to", "`to` must not be empty, found at rule %d", i)
	}
	for j, to := range r.GetTo() {
		tf := fmt.Sprintf("%s.to[%d].operation", f, j)
		op := to.GetOperation()
		if op == nil {
			v.errorf(tf, "`to.operation` must not be nil, found at rule %d", i)
			continue
		}
		toRule = true
		if len(op.Ports)+len(op.Methods)+len(op.Paths)+len(op.Hosts)+len(op.NotPorts)+len(op.NotMethods)+len(op.NotPaths)+len(op.NotHosts) == 0 {
			v.errorf(tf, "`to.operation` must not be empty, found at rule %d", i)
		}
		for _, l := range []struct {
			name string
			vals []string
		}{{"ports", op.Ports}, {"methods", op.Methods}, {"paths", op.Paths}, {"hosts", op.Hosts},
			{"notPorts", op.NotPorts}, {"notMethods", op.NotMethods}, {"notPaths", op.NotPaths}, {"notHosts", op.NotHosts}} {
			v.nonEmptyValues(tf+"."+l.name, l.name, l.vals)
		}
		for _, ports := range [][]string{op.Ports, op.NotPorts} {
			for _, p := range ports {
				if n, err := parsePort(p); p != "" && (err != nil || n < 1 || n > 65535) {
					v.errorf(tf, "invalid port %q: must be a number between 1 and 65535", p)
				}
			}
		}
		tcpTo = tcpTo || op.Ports != nil || op.NotPorts != nil
	}
	for j, c := range r.GetWhen() {
		cf := fmt.Sprintf("%s.when[%d]", f, j)
		switch {
		case c.GetKey() == "":
			v.errorf(cf+".key", "`key` must not be empty")
		case len(c.GetValues()) == 0 && len(c.GetNotValues()) == 0:
			v.errorf(cf, "at least one of `values` or `notValues` must be set for key %s", c.GetKey())
		}
	}
	if deny && ((fromRule && !toRule && !tcpFrom) || (toRule && !tcpTo)) {
		v.warnf(f, "configured AuthorizationPolicy will deny all traffic to TCP ports under its scope due to the use of only HTTP attributes in a DENY rule; it is recommended to explicitly specify the port")
	}
}

func (v *validator) nonEmptyValues(f, name string, vals []string) {
	for k, val := range vals {
		if val == "" {
			v.errorf(fieldAt(f, k), "empty value not allowed in %s", name)
		}
	}
}

func validIPOrCIDR(s string) bool {
	if _, err := netip.ParseAddr(s); err == nil {
		return true
	}
	_, err := netip.ParsePrefix(s)
	return err == nil
}

func parsePort(s string) (int, error) { return strconv.Atoi(s) }

// headerNameRE is the CRD's pattern for header names Istio writes.
var headerNameRE = regexp.MustCompile(`^[-_A-Za-z0-9]+$`)

func (v *validator) requestAuthentication(ra *security.RequestAuthentication) {
	v.oneSelector("spec", ra.GetSelector(), ra.GetTargetRef(), ra.GetTargetRefs(), "selector")
	v.workloadSelector("spec.selector", ra.GetSelector())
	v.targetRefs("spec", ra.GetTargetRef(), ra.GetTargetRefs())
	for i, r := range ra.GetJwtRules() {
		f := fieldAt("spec.jwtRules", i)
		if r.GetIssuer() == "" && r.GetJwksUri() == "" {
			v.errorf(f+".issuer", "issuer or jwksUri must be non-empty string")
		}
		for j, a := range r.GetAudiences() {
			if a == "" {
				v.errorf(fieldAt(f+".audiences", j), "audiences[%d] in body should be at least 1 chars long", j)
			}
		}
		if u := r.GetJwksUri(); u != "" {
			if pu, err := url.Parse(u); err != nil || pu.Scheme == "" || pu.Host == "" {
				v.errorf(f+".jwksUri", "url must have scheme http:// or https://")
			} else if pu.Scheme != "http" && pu.Scheme != "https" {
				v.errorf(f+".jwksUri", "url must have scheme http:// or https://")
			}
		}
		if r.GetJwksUri() != "" && r.GetJwks() != "" {
			v.errorf(f, "only one of jwksUri and jwks may be set")
		}
		for j, h := range r.GetFromHeaders() {
			if h.GetName() == "" {
				v.errorf(fmt.Sprintf("%s.fromHeaders[%d].name", f, j), "Required value: location header name must be non-empty string")
			}
		}
		for j, p := range r.GetFromParams() {
			if p == "" {
				v.errorf(fieldAt(f+".fromParams", j), "fromParams[%d] in body should be at least 1 chars long", j)
			}
		}
		for j, c := range r.GetFromCookies() {
			if c == "" {
				v.errorf(fieldAt(f+".fromCookies", j), "fromCookies[%d] in body should be at least 1 chars long", j)
			}
		}
		for j, c := range r.GetSpaceDelimitedClaims() {
			if c == "" {
				v.errorf(fieldAt(f+".spaceDelimitedClaims", j), "spaceDelimitedClaims[%d] in body should be at least 1 chars long", j)
			}
		}
		for j, oc := range r.GetOutputClaimToHeaders() {
			of := fieldAt(f+".outputClaimToHeaders", j)
			switch {
			case oc.GetClaim() == "":
				v.errorf(of+".claim", "claim in body should be at least 1 chars long")
			case oc.GetHeader() == "":
				v.errorf(of+".header", "header in body should be at least 1 chars long")
			case !headerNameRE.MatchString(oc.GetHeader()):
				v.errorf(of+".header", "header in body should match '^[-_A-Za-z0-9]+$' (got %q)", oc.GetHeader())
			}
		}
		v.duration(f+".timeout", r.GetTimeout())
	}
}

// targetRef is the common shape of security/telemetry/extension policies.
type targetRef interface {
	GetGroup() string
	GetKind() string
	GetName() string
	GetNamespace() string
}

var (
	groupRE = regexp.MustCompile(`^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	kindRE  = regexp.MustCompile(`^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$`)
)

// oneSelector: a policy picks its workloads by selector or by targetRef(s),
// never both (Istio's CEL rule).
func (v *validator) oneSelector(f string, sel *typev1beta1.WorkloadSelector, ref *typev1beta1.PolicyTargetReference, refs []*typev1beta1.PolicyTargetReference, selName string) {
	n := 0
	for _, set := range []bool{sel != nil, ref != nil, len(refs) > 0} {
		if set {
			n++
		}
	}
	if n > 1 {
		v.errorf(f, "only one of targetRefs or %s can be set", selName)
	}
}

func (v *validator) targetRefs(f string, ref *typev1beta1.PolicyTargetReference, refs []*typev1beta1.PolicyTargetReference) {
	if ref != nil {
		v.targetRef(f+".targetRef", ref)
	}
	for i, r := range refs {
		v.targetRef(fieldAt(f+".targetRefs", i), r)
	}
}

func (v *validator) targetRef(f string, r targetRef) {
	if r.GetName() == "" {
		v.errorf(f+".name", "Required value")
	}
	if r.GetKind() == "" {
		v.errorf(f+".kind", "Required value")
	} else if !kindRE.MatchString(r.GetKind()) {
		v.errorf(f+".kind", "kind in body should match '%s' (got %q)", kindRE, r.GetKind())
	}
	if !groupRE.MatchString(r.GetGroup()) {
		v.errorf(f+".group", "group in body should match '%s' (got %q)", groupRE, r.GetGroup())
	}
	if r.GetNamespace() != "" {
		v.errorf(f+".namespace", "cross namespace referencing is not currently supported")
	}
}

// workloadSelector: Istio's selectors never hold wildcards or empty keys.
func (v *validator) workloadSelector(f string, sel interface{ GetMatchLabels() map[string]string }) {
	if sel == nil {
		return
	}
	v.matchLabels(f+".matchLabels", sel.GetMatchLabels())
}

func (v *validator) matchLabels(f string, labels map[string]string) {
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		switch {
		case k == "":
			v.errorf(f, "key must not be empty")
		case strings.Contains(k, "*"):
			v.errorf(fmt.Sprintf("%s[%s]", f, k), "wildcard not allowed in label key match")
		case strings.Contains(labels[k], "*"):
			v.errorf(fmt.Sprintf("%s[%s]", f, k), "wildcard not allowed in label value match")
		}
	}
	nonEmpty := map[string]string{}
	for k, val := range labels {
		if k != "" && !strings.Contains(k, "*") && !strings.Contains(val, "*") {
			nonEmpty[k] = val
		}
	}
	v.labels(f, nonEmpty)
}

func sortedUint32Keys[V any](m map[uint32]V) []uint32 {
	keys := slices.Collect(maps.Keys(m))
	slices.Sort(keys)
	return keys
}
