package config

import (
	"fmt"
	"maps"
	"math"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
	"k8s.io/apimachinery/pkg/util/validation"
)

func (v *validator) gateway(gw *networking.Gateway) {
	if len(gw.GetServers()) == 0 {
		v.errorf("spec.servers", "a Gateway must have at least one server")
	}
	for i, s := range gw.GetServers() {
		f := fieldAt("spec.servers", i)
		if s.GetPort() == nil {
			v.errorf(f+".port", "required field is missing")
		} else {
			v.port(f+".port.number", s.GetPort().GetNumber(), true)
			v.protocol(f+".port.protocol", s.GetPort().GetProtocol(), true)
		}
		if len(s.GetHosts()) == 0 {
			v.errorf(f+".hosts", "a server must have at least one host")
		}
		for j, h := range s.GetHosts() {
			v.namespacedHost(fieldAt(f+".hosts", j), h)
		}
		proto := strings.ToUpper(s.GetPort().GetProtocol())
		tls := s.GetTls()
		if (proto == "HTTPS" || proto == "TLS") && tls == nil {
			v.errorf(f+".tls", "a server with protocol %s must have TLS settings", proto)
		}
		if tls == nil || tls.GetHttpsRedirect() {
			continue
		}
		switch tls.GetMode() {
		case networking.ServerTLSSettings_SIMPLE, networking.ServerTLSSettings_MUTUAL, networking.ServerTLSSettings_OPTIONAL_MUTUAL:
			hasFiles := tls.GetServerCertificate() != "" && tls.GetPrivateKey() != ""
			if tls.GetCredentialName() == "" && len(tls.GetCredentialNames()) == 0 && !hasFiles && len(tls.GetTlsCertificates()) == 0 {
				v.errorf(f+".tls", "TLS mode %s needs credentialName, or serverCertificate and privateKey", tls.GetMode())
			}
		}
	}
}

// namespacedHost checks a Gateway/Sidecar host: "[namespace/]dnsName",
// where namespace is a name, "*", "." or "~".
func (v *validator) namespacedHost(field, h string) {
	ns, host, hasNS := strings.Cut(h, "/")
	if !hasNS {
		v.hostname(field, h)
		return
	}
	switch ns {
	case "*", ".", "~":
	default:
		if ns == "" || strings.Contains(host, "/") {
			v.errorf(field, "invalid host %q: want [namespace/]host", h)
			return
		}
		v.dnsLabel(field, ns)
	}
	v.hostname(field, host)
}

func (v *validator) virtualService(vs *networking.VirtualService) {
	if len(vs.GetHosts()) == 0 {
		// No hosts: a delegate, which Istio allows only for HTTP routes.
		if len(vs.GetGateways()) > 0 {
			v.errorf("spec.gateways", "delegate virtual service must have no gateways specified")
		}
		if len(vs.GetTls()) > 0 {
			v.errorf("spec.tls", "delegate virtual service must have no tls route specified")
		}
		if len(vs.GetTcp()) > 0 {
			v.errorf("spec.tcp", "delegate virtual service must have no tcp route specified")
		}
	}
	toMesh := len(vs.GetGateways()) == 0 || contains(vs.GetGateways(), "mesh")
	for i, h := range vs.GetHosts() {
		if h == "*" && toMesh {
			v.errorf(fieldAt("spec.hosts", i), "wildcard host * is not allowed for virtual services bound to the mesh gateway")
			continue
		}
		v.hostname(fieldAt("spec.hosts", i), h)
	}
	for i, g := range vs.GetGateways() {
		if g == "" || strings.Count(g, "/") > 1 {
			v.errorf(fieldAt("spec.gateways", i), "invalid gateway %q: want \"mesh\", <name> or <namespace>/<name>", g)
		}
	}
	if len(vs.GetHttp()) == 0 && len(vs.GetTcp()) == 0 && len(vs.GetTls()) == 0 {
		v.errorf("spec", "a VirtualService needs http, tcp or tls routes")
	}
	catchAll := ""
	for i, r := range vs.GetHttp() {
		f := fieldAt("spec.http", i)
		if catchAll != "" {
			v.warnf(f, "this route can never be used: %s matches every request before it", catchAll)
		}
		v.httpRoute(f, r)
		if catchAll == "" && isCatchAll(r.GetMatch()) {
			catchAll = f
		}
	}
	for i, r := range vs.GetTcp() {
		f := fieldAt("spec.tcp", i)
		v.routeDestinations(f+".route", r.GetRoute())
		for j, m := range r.GetMatch() {
			v.port(fmt.Sprintf("%s.match[%d].port", f, j), m.GetPort(), false)
		}
	}
	for i, r := range vs.GetTls() {
		f := fieldAt("spec.tls", i)
		if len(r.GetMatch()) == 0 {
			v.errorf(f+".match", "a TLS route must have at least one match")
		}
		for j, m := range r.GetMatch() {
			if len(m.GetSniHosts()) == 0 {
				v.errorf(fmt.Sprintf("%s.match[%d].sniHosts", f, j), "a TLS match must have at least one SNI host")
			}
		}
		v.routeDestinations(f+".route", r.GetRoute())
	}
}

// isCatchAll reports whether a route's matches accept every request.
func isCatchAll(matches []*networking.HTTPMatchRequest) bool {
	if len(matches) == 0 {
		return true
	}
	for _, m := range matches {
		noOther := m.GetScheme() == nil && m.GetMethod() == nil && m.GetAuthority() == nil &&
			len(m.GetHeaders()) == 0 && len(m.GetQueryParams()) == 0 && len(m.GetWithoutHeaders()) == 0 &&
			m.GetPort() == 0 && len(m.GetSourceLabels()) == 0 && len(m.GetGateways()) == 0 && m.GetSourceNamespace() == ""
		prefix, isPrefix := m.GetUri().GetMatchType().(*networking.StringMatch_Prefix)
		anyURI := m.GetUri() == nil || (isPrefix && prefix.Prefix == "/")
		if noOther && anyURI {
			return true
		}
	}
	return false
}

func (v *validator) httpRoute(f string, r *networking.HTTPRoute) {
	actions := 0
	for _, set := range []bool{len(r.GetRoute()) > 0, r.GetRedirect() != nil, r.GetDirectResponse() != nil, r.GetDelegate() != nil} {
		if set {
			actions++
		}
	}
	switch {
	case actions == 0:
		v.errorf(f, "an HTTP route needs one of route, redirect, directResponse or delegate")
	case actions > 1:
		v.errorf(f, "an HTTP route can have only one of route, redirect, directResponse or delegate")
	}
	if r.GetRewrite() != nil && r.GetRedirect() != nil {
		v.errorf(f+".rewrite", "rewrite cannot be combined with redirect")
	}
	for j, m := range r.GetMatch() {
		v.httpMatch(fieldAt(f+".match", j), m)
	}
	v.routeDestinations(f+".route", r.GetRoute())
	if red := r.GetRedirect(); red != nil {
		if c := red.GetRedirectCode(); c != 0 && (c < 300 || c > 399) {
			v.errorf(f+".redirect.redirectCode", "%d is not a redirect code (want 3xx)", c)
		}
	}
	if dr := r.GetDirectResponse(); dr != nil && (dr.GetStatus() < 200 || dr.GetStatus() > 599) {
		v.errorf(f+".directResponse.status", "status %d must be between 200 and 599", dr.GetStatus())
	}
	if rw := r.GetRewrite().GetUriRegexRewrite(); rw != nil {
		if r.GetRewrite().GetUri() != "" {
			v.errorf(f+".rewrite", "only one of uri and uriRegexRewrite may be set")
		}
		v.regex(f+".rewrite.uriRegexRewrite.match", rw.GetMatch())
	}
	v.duration(f+".timeout", r.GetTimeout())
	if rt := r.GetRetries(); rt != nil {
		if rt.GetAttempts() < 0 {
			v.errorf(f+".retries.attempts", "attempts %d must not be negative", rt.GetAttempts())
		}
		v.duration(f+".retries.perTryTimeout", rt.GetPerTryTimeout())
		v.duration(f+".retries.backoff", rt.GetBackoff())
		v.retryOn(f+".retries.retryOn", rt.GetRetryOn())
	}
	if fault := r.GetFault(); fault != nil {
		if d := fault.GetDelay(); d != nil {
			if d.GetFixedDelay() == nil && d.GetExponentialDelay() == nil {
				v.errorf(f+".fault.delay", "a delay needs fixedDelay")
			}
			v.duration(f+".fault.delay.fixedDelay", d.GetFixedDelay())
			v.percent(f+".fault.delay.percentage", d.GetPercentage())
		}
		if a := fault.GetAbort(); a != nil {
			if a.GetErrorType() == nil {
				v.errorf(f+".fault.abort", "an abort needs httpStatus or grpcStatus")
			}
			if s, ok := a.GetErrorType().(*networking.HTTPFaultInjection_Abort_HttpStatus); ok && (s.HttpStatus < 200 || s.HttpStatus > 599) {
				v.errorf(f+".fault.abort.httpStatus", "status %d must be between 200 and 599", s.HttpStatus)
			}
			v.percent(f+".fault.abort.percentage", a.GetPercentage())
		}
	}
	if m := r.GetMirror(); m != nil {
		v.destination(f+".mirror", m)
	}
	for j, m := range r.GetMirrors() {
		v.destination(fmt.Sprintf("%s.mirrors[%d].destination", f, j), m.GetDestination())
		v.percent(fmt.Sprintf("%s.mirrors[%d].percentage", f, j), m.GetPercentage())
	}
	v.percent(f+".mirrorPercentage", r.GetMirrorPercentage())
	for j, o := range r.GetCorsPolicy().GetAllowOrigins() {
		v.stringMatch(fmt.Sprintf("%s.corsPolicy.allowOrigins[%d]", f, j), o, true)
	}
}

func (v *validator) httpMatch(f string, m *networking.HTTPMatchRequest) {
	v.stringMatch(f+".uri", m.GetUri(), true)
	v.stringMatch(f+".scheme", m.GetScheme(), true)
	v.stringMatch(f+".method", m.GetMethod(), true)
	v.stringMatch(f+".authority", m.GetAuthority(), true)
	for _, group := range []struct {
		name string
		m    map[string]*networking.StringMatch
	}{{"headers", m.GetHeaders()}, {"withoutHeaders", m.GetWithoutHeaders()}} {
		for _, h := range slices.Sorted(maps.Keys(group.m)) {
			hf := fmt.Sprintf("%s.%s[%s]", f, group.name, h)
			if h == "" || h != strings.ToLower(h) {
				v.errorf(hf, "header name %q must be lowercase", h)
			}
			// An empty match tests only that the header is present.
			v.stringMatch(hf, group.m[h], false)
		}
	}
	for _, q := range slices.Sorted(maps.Keys(m.GetQueryParams())) {
		v.stringMatch(fmt.Sprintf("%s.queryParams[%s]", f, q), m.GetQueryParams()[q], false)
	}
	v.port(f+".port", m.GetPort(), false)
}

// stringMatch checks an exact/prefix/regex match. requireOne: the match, if
// present at all, must set exactly one of them.
func (v *validator) stringMatch(f string, m *networking.StringMatch, requireOne bool) {
	if m == nil {
		return
	}
	switch t := m.GetMatchType().(type) {
	case nil:
		if requireOne {
			v.errorf(f, "exactly one of exact, prefix or regex must be set")
		}
	case *networking.StringMatch_Regex:
		v.regex(f+".regex", t.Regex)
	}
}

func (v *validator) routeDestinations(f string, routes any) {
	type weighted interface {
		GetDestination() *networking.Destination
		GetWeight() int32
	}
	var list []weighted
	switch rs := routes.(type) {
	case []*networking.HTTPRouteDestination:
		for _, r := range rs {
			list = append(list, r)
		}
	case []*networking.RouteDestination:
		for _, r := range rs {
			list = append(list, r)
		}
	}
	total := int64(0)
	for i, r := range list {
		df := fieldAt(f, i)
		if r.GetDestination() == nil {
			v.errorf(df+".destination", "required field is missing")
		} else {
			v.destination(df+".destination", r.GetDestination())
		}
		if r.GetWeight() < 0 {
			v.errorf(df+".weight", "weight %d must not be negative", r.GetWeight())
		}
		total += int64(r.GetWeight())
	}
	// Weights are relative (Istio normalizes them); only a total of 0 over
	// several destinations leaves nothing to route to.
	if len(list) > 1 && total == 0 {
		v.errorf(f, "total destination weight = 0")
	}
	if total > math.MaxUint32 {
		v.errorf(f, "total destination weight %d > %d", total, uint32(math.MaxUint32))
	}
}

func (v *validator) destination(f string, d *networking.Destination) {
	if d.GetHost() == "" {
		v.errorf(f+".host", "required field is missing")
	} else {
		v.hostname(f+".host", d.GetHost())
	}
	if d.GetSubset() != "" {
		v.dnsLabel(f+".subset", d.GetSubset())
	}
	if d.GetPort() != nil {
		v.port(f+".port.number", d.GetPort().GetNumber(), true)
	}
}

// retryPolicies are the retryOn values Envoy (and so Istio) understands;
// HTTP status codes are accepted too.
var retryPolicies = []string{
	"5xx", "gateway-error", "reset", "reset-before-request", "connect-failure", "envoy-ratelimited",
	"retriable-4xx", "refused-stream", "retriable-status-codes", "retriable-headers", "http3-post-connect-failure",
	"cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable",
}

func (v *validator) retryOn(f, retryOn string) {
	if retryOn == "" {
		return
	}
	for _, p := range strings.Split(retryOn, ",") {
		p = strings.TrimSpace(p)
		if contains(retryPolicies, p) {
			continue
		}
		if code, err := strconv.Atoi(p); err == nil && code >= 100 && code <= 599 {
			continue
		}
		v.errorf(f, "unknown retry policy %q%s (want HTTP status codes or %s)", p, suggest(p, retryPolicies), strings.Join(retryPolicies, ", "))
	}
}

func (v *validator) destinationRule(dr *networking.DestinationRule) {
	if dr.GetHost() == "" {
		v.errorf("spec.host", "required field is missing")
	} else {
		v.hostname("spec.host", dr.GetHost())
	}
	v.trafficPolicy("spec.trafficPolicy", dr.GetTrafficPolicy())
	seen := map[string]int{}
	for i, s := range dr.GetSubsets() {
		f := fieldAt("spec.subsets", i)
		switch prev, dup := seen[s.GetName()]; {
		case s.GetName() == "":
			v.errorf(f+".name", "required field is missing")
		case dup:
			v.errorf(f+".name", "duplicate subset name %q (also spec.subsets[%d])", s.GetName(), prev)
		default:
			v.dnsLabel(f+".name", s.GetName())
		}
		seen[s.GetName()] = i
		v.labels(f+".labels", s.GetLabels())
		v.trafficPolicy(f+".trafficPolicy", s.GetTrafficPolicy())
	}
}

func (v *validator) trafficPolicy(f string, tp *networking.TrafficPolicy) {
	if tp == nil {
		return
	}
	if w := tp.GetLoadBalancer().GetWarmup(); w != nil {
		wf := f + ".loadBalancer.warmup"
		if w.GetDuration() == nil {
			v.errorf(wf+".duration", "Required value")
		}
		v.duration(wf+".duration", w.GetDuration())
		if p := w.GetMinimumPercent(); p != nil && (p.GetValue() < 0 || p.GetValue() > 100) {
			v.errorf(wf+".minimumPercent", "Invalid value: %v: must be between 0 and 100", p.GetValue())
		}
		if a := w.GetAggression(); a != nil && a.GetValue() < 0 {
			v.errorf(wf+".aggression", "Invalid value: %v: should be greater than or equal to 0", a.GetValue())
		}
	}
	if od := tp.GetOutlierDetection(); od != nil {
		v.duration(f+".outlierDetection.interval", od.GetInterval())
		v.duration(f+".outlierDetection.baseEjectionTime", od.GetBaseEjectionTime())
		if p := od.GetMaxEjectionPercent(); p < 0 || p > 100 {
			v.errorf(f+".outlierDetection.maxEjectionPercent", "%d must be between 0 and 100", p)
		}
		if p := od.GetMinHealthPercent(); p < 0 || p > 100 {
			v.errorf(f+".outlierDetection.minHealthPercent", "%d must be between 0 and 100", p)
		}
		if od.GetConsecutiveErrors() < 0 {
			v.errorf(f+".outlierDetection.consecutiveErrors", "must not be negative")
		}
	}
	if cp := tp.GetConnectionPool(); cp != nil {
		v.duration(f+".connectionPool.tcp.connectTimeout", cp.GetTcp().GetConnectTimeout())
		v.duration(f+".connectionPool.http.idleTimeout", cp.GetHttp().GetIdleTimeout())
		if cp.GetTcp().GetMaxConnections() < 0 {
			v.errorf(f+".connectionPool.tcp.maxConnections", "must not be negative")
		}
	}
	if tls := tp.GetTls(); tls != nil && tls.GetMode() == networking.ClientTLSSettings_MUTUAL && tls.GetCredentialName() == "" &&
		(tls.GetClientCertificate() == "" || tls.GetPrivateKey() == "") {
		v.errorf(f+".tls", "TLS mode MUTUAL needs credentialName, or clientCertificate and privateKey")
	}
	for i, pl := range tp.GetPortLevelSettings() {
		pf := fieldAt(f+".portLevelSettings", i)
		if pl.GetPort() == nil {
			v.errorf(pf+".port", "required field is missing")
		} else {
			v.port(pf+".port.number", pl.GetPort().GetNumber(), true)
		}
		sub := &networking.TrafficPolicy{LoadBalancer: pl.GetLoadBalancer(), ConnectionPool: pl.GetConnectionPool(),
			OutlierDetection: pl.GetOutlierDetection(), Tls: pl.GetTls()}
		v.trafficPolicy(pf, sub)
	}
}

func (v *validator) serviceEntry(se *networking.ServiceEntry) {
	if len(se.GetHosts()) == 0 {
		v.errorf("spec.hosts", "Required value: service entry must have at least one host")
	}
	for i, h := range se.GetHosts() {
		if h == "*" {
			v.errorf(fieldAt("spec.hosts", i), "hostname cannot be wildcard")
			continue
		}
		v.hostname(fieldAt("spec.hosts", i), h)
	}
	resolution := se.GetResolution()
	for i, a := range se.GetAddresses() {
		if !validIPOrCIDR(a) {
			v.errorf(fieldAt("spec.addresses", i), "invalid address %q: want an IP or CIDR", a)
		}
		if strings.Contains(a, "/") && resolution != networking.ServiceEntry_NONE && resolution != networking.ServiceEntry_STATIC {
			v.errorf(fieldAt("spec.addresses", i), "CIDR addresses are allowed only for NONE/STATIC resolution types")
		}
	}
	portNames, portNumbers := map[string]bool{}, map[uint32]bool{}
	for i, p := range se.GetPorts() {
		f := fieldAt("spec.ports", i)
		if p.GetNumber() < 1 || p.GetNumber() > 65535 {
			v.errorf(f+".number", "port must be between 1-65535")
		} else if portNumbers[p.GetNumber()] {
			v.errorf(f+".number", "port number cannot be duplicated")
		}
		portNumbers[p.GetNumber()] = true
		if t := p.GetTargetPort(); t != 0 && t > 65535 {
			v.errorf(f+".targetPort", "port must be between 1-65535")
		}
		v.protocol(f+".protocol", p.GetProtocol(), false)
		switch {
		case p.GetName() == "":
			v.errorf(f+".name", "Required value")
		case portNames[p.GetName()]:
			v.errorf(f+".name", "Duplicate value: port name %q", p.GetName())
		}
		portNames[p.GetName()] = true
	}
	if sel := se.GetWorkloadSelector(); sel != nil {
		for _, k := range slices.Sorted(maps.Keys(sel.GetLabels())) {
			if strings.Contains(sel.GetLabels()[k], "*") {
				v.errorf(fmt.Sprintf("spec.workloadSelector.labels[%s]", k), "wildcard is not supported in selector")
			}
		}
		v.labels("spec.workloadSelector.labels", sel.GetLabels())
	}
	if se.GetWorkloadSelector() != nil && len(se.GetEndpoints()) > 0 {
		v.errorf("spec", "only one of WorkloadSelector or Endpoints can be set")
	}
	switch resolution {
	case networking.ServiceEntry_NONE:
		if len(se.GetEndpoints()) > 0 {
			v.errorf("spec.endpoints", "NONE mode cannot set endpoints")
		}
	case networking.ServiceEntry_DNS_ROUND_ROBIN:
		if len(se.GetEndpoints()) > 1 {
			v.errorf("spec.endpoints", "DNS_ROUND_ROBIN mode cannot have multiple endpoints")
		}
	}
	if (resolution == networking.ServiceEntry_DNS || resolution == networking.ServiceEntry_DNS_ROUND_ROBIN) && len(se.GetEndpoints()) == 0 {
		for i, h := range se.GetHosts() {
			if strings.HasPrefix(h, "*") {
				v.errorf(fieldAt("spec.hosts", i), "wildcard host %q cannot be resolved with DNS: add endpoints or use resolution NONE", h)
			}
		}
	}
	for i, ep := range se.GetEndpoints() {
		f := fieldAt("spec.endpoints", i)
		v.workloadEntry(ep, f, resolution == networking.ServiceEntry_STATIC)
		for _, name := range slices.Sorted(maps.Keys(ep.GetPorts())) {
			if !portNames[name] {
				v.errorf(fmt.Sprintf("%s.ports[%s]", f, name), "endpoint port %q is not defined by the service entry", name)
			}
		}
	}
}

// portNameRE is the CRD's rule for WorkloadEntry port names.
var portNameRE = regexp.MustCompile(`^[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?$`)

// workloadEntry checks a WorkloadEntry spec, or a ServiceEntry endpoint.
// needIP: the address must be an IP (or a Unix socket), not a hostname.
func (v *validator) workloadEntry(we *networking.WorkloadEntry, f string, needIP bool) {
	addr := we.GetAddress()
	switch {
	case addr == "" && we.GetNetwork() == "":
		v.errorf(f+".address", "Address is required")
	case addr == "":
	case strings.HasPrefix(addr, "unix://"):
		path := strings.TrimPrefix(addr, "unix://")
		if !strings.HasPrefix(path, "/") && !strings.HasPrefix(path, "@") {
			v.errorf(f+".address", "UDS must be an absolute path or abstract socket")
		} else if strings.HasSuffix(path, "/") {
			v.errorf(f+".address", "UDS may not be a dir")
		}
		if len(we.GetPorts()) > 0 {
			v.errorf(f+".ports", "UDS may not include ports")
		}
	case len(addr) > 256:
		v.errorf(f+".address", "address must be at most 256 characters")
	default:
		if _, err := netip.ParseAddr(addr); err != nil {
			if needIP {
				v.errorf(f+".address", "invalid address %q: want an IP address", addr)
			} else {
				v.fqdn(f+".address", addr)
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(we.GetPorts())) {
		pf := fmt.Sprintf("%s.ports[%s]", f, name)
		if len(name) >= 63 || !portNameRE.MatchString(name) {
			v.errorf(f+".ports", "Invalid value: port name must be valid (got %q)", name)
		}
		if p := we.GetPorts()[name]; p < 1 || p > 65535 {
			v.errorf(pf, "port must be between 1-65535")
		}
	}
	v.labels(f+".labels", we.GetLabels())
}

// fqdn checks a DNS name with no wildcard.
func (v *validator) fqdn(f, name string) {
	for _, label := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		if len(validation.IsDNS1123Label(strings.ToLower(label))) > 0 {
			v.errorf(f, "invalid address %q: want an IP address or a DNS name", name)
			return
		}
	}
}

func (v *validator) sidecar(sc *networking.Sidecar) {
	for i, eg := range sc.GetEgress() {
		f := fieldAt("spec.egress", i)
		if len(eg.GetHosts()) == 0 {
			v.errorf(f+".hosts", "an egress listener must have at least one host")
		}
		for j, h := range eg.GetHosts() {
			if !strings.Contains(h, "/") {
				v.errorf(fieldAt(f+".hosts", j), "invalid host %q: want namespace/host", h)
				continue
			}
			v.namespacedHost(fieldAt(f+".hosts", j), h)
		}
		if eg.GetPort() != nil {
			v.port(f+".port.number", eg.GetPort().GetNumber(), true)
		}
	}
	for i, in := range sc.GetIngress() {
		f := fieldAt("spec.ingress", i)
		if in.GetPort() == nil {
			v.errorf(f+".port", "required field is missing")
		} else {
			v.port(f+".port.number", in.GetPort().GetNumber(), true)
		}
	}
}

func (v *validator) envoyFilter(ef *networking.EnvoyFilter) {
	for i, cp := range ef.GetConfigPatches() {
		f := fieldAt("spec.configPatches", i)
		if cp.GetApplyTo() == networking.EnvoyFilter_INVALID {
			v.errorf(f+".applyTo", "required field is missing")
		}
		m := cp.GetMatch()
		if waypoint := m.GetContext() == networking.EnvoyFilter_WAYPOINT; waypoint != (m.GetWaypoint() != nil) {
			v.errorf(f+".match", "only support waypointMatch when context is WAYPOINT")
		}
		if wp := m.GetWaypoint(); wp != nil && wp.GetPortNumber() > 65535 {
			v.errorf(f+".match.waypoint.portNumber", "port must be between 1-65535")
		}
		p := cp.GetPatch()
		if p == nil {
			v.errorf(f+".patch", "required field is missing")
			continue
		}
		switch p.GetOperation() {
		case networking.EnvoyFilter_Patch_INVALID:
			v.errorf(f+".patch.operation", "required field is missing")
		case networking.EnvoyFilter_Patch_REMOVE:
		default:
			if p.GetValue() == nil {
				v.errorf(f+".patch.value", "operation %s needs a value", p.GetOperation())
			}
		}
	}
}
