package xds

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/skein-mesh/skein/internal/config"
	"github.com/skein-mesh/skein/internal/model"
)

// routeContext says where routes are being built: on a sidecar's outbound
// port ("mesh") or on a gateway listener.
type routeContext struct {
	gateway    string // "mesh" or "namespace/name" of the Gateway
	port       uint32 // the service port (sidecar) or Gateway server port
	listenPort uint32
}

// buildSidecarRoute builds RDS "<port>": a virtual host per HTTP service on
// that port, routed by the VirtualServices that claim it.
func (g *generator) buildSidecarRoute(port uint32) *routev3.RouteConfiguration {
	rc := &routev3.RouteConfiguration{Name: OutboundRoute(port), ValidateClusters: wrapperspb.Bool(false)}
	vsList := g.pc.MeshVirtualServices(g.proxy.Namespace)
	ctx := routeContext{gateway: "mesh", port: port, listenPort: port}
	for _, svc := range g.pc.Registry.Services() {
		sp, ok := svc.PortByNumber(port)
		if !ok || !sp.Protocol.IsHTTP() || !g.scope().IncludesPort(svc, port) {
			continue
		}
		vh := &routev3.VirtualHost{
			Name:    fmt.Sprintf("%s:%d", svc.Hostname, port),
			Domains: g.serviceDomains(svc, port),
		}
		if vsObj := g.virtualServiceFor(vsList, svc.Hostname); vsObj != nil {
			vh.Routes = g.translateHTTPRoutes(vsObj, ctx)
		} else {
			vh.Routes = []*routev3.Route{defaultRoute(OutboundCluster(port, "", svc.Hostname))}
			vh.Routes[0].GetRoute().HashPolicy = g.serviceHashPolicy(svc, port)
		}
		rc.VirtualHosts = append(rc.VirtualHosts, vh)
	}
	rc.VirtualHosts = append(rc.VirtualHosts, g.catchAllVirtualHost()) // egress.go
	return rc
}

// virtualServiceFor returns the first VirtualService (oldest wins, as in
// Istio) whose hosts include hostname.
func (g *generator) virtualServiceFor(vsList []*config.Object, hostname string) *config.Object {
	for _, o := range vsList {
		for _, h := range o.Spec.(*networking.VirtualService).GetHosts() {
			if hostMatches(g.pc.ResolveHost(h, o.Meta.Namespace), hostname) {
				return o
			}
		}
	}
	return nil
}

// hostMatches reports whether a config host (possibly "*" or "*.suffix")
// covers hostname.
func hostMatches(pattern, hostname string) bool {
	switch {
	case pattern == "*":
		return true
	case strings.HasPrefix(pattern, "*."):
		return strings.HasSuffix(hostname, pattern[1:])
	}
	return pattern == hostname
}

// serviceDomains lists the Host header values that reach svc on port: the
// FQDN everywhere, and the short forms from the service's own namespace.
func (g *generator) serviceDomains(svc *model.Service, port uint32) []string {
	names := []string{svc.Hostname}
	if svc.Namespace == g.proxy.Namespace && strings.HasSuffix(svc.Hostname, ".svc."+g.pc.Domain) {
		short := strings.TrimSuffix(svc.Hostname, "."+svc.Namespace+".svc."+g.pc.Domain)
		names = append(names, short, short+"."+svc.Namespace, short+"."+svc.Namespace+".svc")
	} else if strings.HasSuffix(svc.Hostname, ".svc."+g.pc.Domain) {
		base := strings.TrimSuffix(svc.Hostname, ".svc."+g.pc.Domain)
		names = append(names, base, base+".svc")
	}
	var out []string
	for _, n := range names {
		out = append(out, n, fmt.Sprintf("%s:%d", n, port))
	}
	return out
}

func defaultRoute(cluster string) *routev3.Route {
	return &routev3.Route{
		Name:  "default",
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster},
			Timeout:          durationpb.New(0),
			RetryPolicy:      defaultRetryPolicy(),
		}},
	}
}

// defaultRetryPolicy is Istio's policy when a route sets no retries.
func defaultRetryPolicy() *routev3.RetryPolicy {
	return &routev3.RetryPolicy{
		RetryOn:              "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
		NumRetries:           wrapperspb.UInt32(2),
		RetriableStatusCodes: []uint32{503},
	}
}

// translateHTTPRoutes turns a VirtualService's http section into Envoy
// routes for one context. A HTTPRoute with n matches becomes n routes, in
// order; matches that cannot apply here (other port, gateway, source) drop out.
func (g *generator) translateHTTPRoutes(vsObj *config.Object, ctx routeContext) []*routev3.Route {
	vs := vsObj.Spec.(*networking.VirtualService)
	var out []*routev3.Route
	for i, hr := range vs.GetHttp() {
		action := g.routeAction(vsObj, hr, ctx, i)
		if action == nil {
			continue
		}
		matches := hr.GetMatch()
		if len(matches) == 0 {
			matches = []*networking.HTTPMatchRequest{nil}
		}
		for _, m := range matches {
			if !g.matchApplies(m, vsObj.Meta.Namespace, ctx) {
				continue
			}
			r := &routev3.Route{Name: hr.GetName(), Match: translateMatch(m)}
			if m.GetName() != "" {
				r.Name = m.GetName()
				if hr.GetName() != "" {
					r.Name = hr.GetName() + "." + m.GetName()
				}
			}
			action(r)
			out = append(out, r)
		}
	}
	return out
}

// matchApplies filters a match by its port, gateways, sourceLabels and
// sourceNamespace against where the routes are being built.
func (g *generator) matchApplies(m *networking.HTTPMatchRequest, vsNamespace string, ctx routeContext) bool {
	if m == nil {
		return true
	}
	if m.GetPort() != 0 && m.GetPort() != ctx.port {
		return false
	}
	if len(m.GetGateways()) > 0 {
		found := false
		for _, gw := range m.GetGateways() {
			if g.pc.QualifyGateway(gw, vsNamespace) == ctx.gateway {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	if len(m.GetSourceLabels()) > 0 && !model.LabelsMatch(m.GetSourceLabels(), g.proxy.Labels) {
		return false
	}
	if ns := m.GetSourceNamespace(); ns != "" && ns != g.proxy.Namespace {
		return false
	}
	return true
}

func translateMatch(m *networking.HTTPMatchRequest) *routev3.RouteMatch {
	rm := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}
	if m == nil {
		return rm
	}
	switch u := m.GetUri().GetMatchType().(type) {
	case *networking.StringMatch_Exact:
		rm.PathSpecifier = &routev3.RouteMatch_Path{Path: u.Exact}
	case *networking.StringMatch_Prefix:
		rm.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: u.Prefix}
	case *networking.StringMatch_Regex:
		rm.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: regexMatcher(u.Regex)}
	}
	if m.GetIgnoreUriCase() {
		rm.CaseSensitive = wrapperspb.Bool(false)
	}
	for _, name := range slices.Sorted(maps.Keys(m.GetHeaders())) {
		rm.Headers = append(rm.Headers, headerMatcher(name, m.GetHeaders()[name], false))
	}
	for _, name := range slices.Sorted(maps.Keys(m.GetWithoutHeaders())) {
		rm.Headers = append(rm.Headers, headerMatcher(name, m.GetWithoutHeaders()[name], true))
	}
	if m.GetMethod() != nil {
		rm.Headers = append(rm.Headers, headerMatcher(":method", m.GetMethod(), false))
	}
	if m.GetAuthority() != nil {
		rm.Headers = append(rm.Headers, headerMatcher(":authority", m.GetAuthority(), false))
	}
	if m.GetScheme() != nil {
		rm.Headers = append(rm.Headers, headerMatcher(":scheme", m.GetScheme(), false))
	}
	for _, name := range slices.Sorted(maps.Keys(m.GetQueryParams())) {
		sm := m.GetQueryParams()[name]
		qm := &routev3.QueryParameterMatcher{Name: name}
		if isEmptyMatch(sm) {
			qm.QueryParameterMatchSpecifier = &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: true}
		} else {
			qm.QueryParameterMatchSpecifier = &routev3.QueryParameterMatcher_StringMatch{StringMatch: stringMatcher(sm)}
		}
		rm.QueryParameters = append(rm.QueryParameters, qm)
	}
	return rm
}

func isEmptyMatch(sm *networking.StringMatch) bool { return sm == nil || sm.GetMatchType() == nil }

func headerMatcher(name string, sm *networking.StringMatch, invert bool) *routev3.HeaderMatcher {
	hm := &routev3.HeaderMatcher{Name: strings.ToLower(name), InvertMatch: invert}
	if isEmptyMatch(sm) {
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}
	} else {
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: stringMatcher(sm)}
	}
	return hm
}

func stringMatcher(sm *networking.StringMatch) *matcherv3.StringMatcher {
	switch v := sm.GetMatchType().(type) {
	case *networking.StringMatch_Exact:
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: v.Exact}}
	case *networking.StringMatch_Prefix:
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: v.Prefix}}
	case *networking.StringMatch_Regex:
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: regexMatcher(v.Regex)}}
	}
	return nil
}

func regexMatcher(re string) *matcherv3.RegexMatcher {
	return &matcherv3.RegexMatcher{Regex: re}
}

// routeAction returns a function that fills in the action part of a route
// (shared by every match of the HTTPRoute), or nil when the route has no
// usable action.
func (g *generator) routeAction(vsObj *config.Object, hr *networking.HTTPRoute, ctx routeContext, index int) func(*routev3.Route) {
	where := fmt.Sprintf("VirtualService %s/%s http[%d]", vsObj.Meta.Namespace, vsObj.Meta.Name, index)
	g.warnUnsupported(hr, where)
	reqAdd, reqRemove := headerOps(hr.GetHeaders().GetRequest())
	respAdd, respRemove := headerOps(hr.GetHeaders().GetResponse())
	perFilter := g.routeFilterConfig(hr, where)
	common := func(r *routev3.Route) {
		r.RequestHeadersToAdd, r.RequestHeadersToRemove = reqAdd, reqRemove
		r.ResponseHeadersToAdd, r.ResponseHeadersToRemove = respAdd, respRemove
		r.TypedPerFilterConfig = perFilter
	}
	switch {
	case hr.GetRedirect() != nil:
		redirect := translateRedirect(hr.GetRedirect())
		return func(r *routev3.Route) { common(r); r.Action = &routev3.Route_Redirect{Redirect: redirect} }
	case hr.GetDirectResponse() != nil:
		dr := hr.GetDirectResponse()
		action := &routev3.DirectResponseAction{Status: dr.GetStatus()}
		switch b := dr.GetBody().GetSpecifier().(type) {
		case *networking.HTTPBody_String_:
			action.Body = &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: b.String_}}
		case *networking.HTTPBody_Bytes:
			action.Body = &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b.Bytes}}
		}
		return func(r *routev3.Route) { common(r); r.Action = &routev3.Route_DirectResponse{DirectResponse: action} }
	case len(hr.GetRoute()) == 0:
		g.warnf("%s: no route, redirect or directResponse; skipped", where)
		return nil
	}
	ra := &routev3.RouteAction{Timeout: durationpb.New(0)}
	if hr.GetTimeout() != nil {
		ra.Timeout = hr.GetTimeout()
	}
	ra.RetryPolicy = translateRetries(hr.GetRetries())
	ra.RequestMirrorPolicies = g.mirrorPolicies(vsObj, hr, ctx, where)
	if rw := hr.GetRewrite(); rw != nil {
		if rw.GetUri() != "" {
			ra.PrefixRewrite = rw.GetUri()
		}
		if rw.GetAuthority() != "" {
			ra.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: rw.GetAuthority()}
		}
		if rr := rw.GetUriRegexRewrite(); rr != nil {
			ra.RegexRewrite = &matcherv3.RegexMatchAndSubstitute{Pattern: regexMatcher(rr.GetMatch()), Substitution: rr.GetRewrite()}
		}
	}
	dests := hr.GetRoute()
	if len(dests) == 1 {
		d := dests[0]
		ra.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: g.destinationCluster(vsObj, d.GetDestination(), ctx, where)}
		dAdd, dRemove := headerOps(d.GetHeaders().GetRequest())
		rAdd, rRemove := headerOps(d.GetHeaders().GetResponse())
		reqAdd, reqRemove = append(reqAdd, dAdd...), append(reqRemove, dRemove...)
		respAdd, respRemove = append(respAdd, rAdd...), append(respRemove, rRemove...)
	} else {
		wc := &routev3.WeightedCluster{}
		for _, d := range dests {
			c := &routev3.WeightedCluster_ClusterWeight{
				Name:   g.destinationCluster(vsObj, d.GetDestination(), ctx, where),
				Weight: wrapperspb.UInt32(uint32(d.GetWeight())),
			}
			c.RequestHeadersToAdd, c.RequestHeadersToRemove = headerOps(d.GetHeaders().GetRequest())
			c.ResponseHeadersToAdd, c.ResponseHeadersToRemove = headerOps(d.GetHeaders().GetResponse())
			if d.GetWeight() == 0 {
				continue // Istio drops zero-weight destinations
			}
			wc.Clusters = append(wc.Clusters, c)
		}
		ra.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}
	}
	ra.HashPolicy = g.routeHashPolicy(vsObj, dests)
	return func(r *routev3.Route) { common(r); r.Action = &routev3.Route_Route{Route: ra} }
}

// destinationCluster resolves a VirtualService destination to a cluster name.
func (g *generator) destinationCluster(vsObj *config.Object, d *networking.Destination, ctx routeContext, where string) string {
	host := g.pc.ResolveHost(d.GetHost(), vsObj.Meta.Namespace)
	port := d.GetPort().GetNumber()
	svc := g.pc.Registry.Service(host)
	if port == 0 {
		switch {
		case svc != nil && len(svc.Ports) == 1:
			port = svc.Ports[0].Port
		case ctx.gateway == "mesh":
			port = ctx.port
		case svc != nil:
			g.warnf("%s: destination %s has several ports; set destination.port", where, d.GetHost())
			port = svc.Ports[0].Port
		}
	}
	if svc == nil {
		g.warnf("%s: destination host %q is not a known service", where, d.GetHost())
	}
	return OutboundCluster(port, d.GetSubset(), host)
}

func translateRedirect(rd *networking.HTTPRedirect) *routev3.RedirectAction {
	ra := &routev3.RedirectAction{HostRedirect: rd.GetAuthority()}
	if rd.GetUri() != "" {
		ra.PathRewriteSpecifier = &routev3.RedirectAction_PathRedirect{PathRedirect: rd.GetUri()}
	}
	if rd.GetScheme() != "" {
		ra.SchemeRewriteSpecifier = &routev3.RedirectAction_SchemeRedirect{SchemeRedirect: rd.GetScheme()}
	}
	if p, ok := rd.GetRedirectPort().(*networking.HTTPRedirect_Port); ok {
		ra.PortRedirect = p.Port
	}
	switch rd.GetRedirectCode() {
	case 302:
		ra.ResponseCode = routev3.RedirectAction_FOUND
	case 303:
		ra.ResponseCode = routev3.RedirectAction_SEE_OTHER
	case 307:
		ra.ResponseCode = routev3.RedirectAction_TEMPORARY_REDIRECT
	case 308:
		ra.ResponseCode = routev3.RedirectAction_PERMANENT_REDIRECT
	}
	return ra
}

func translateRetries(r *networking.HTTPRetry) *routev3.RetryPolicy {
	if r == nil {
		return defaultRetryPolicy()
	}
	if r.GetAttempts() == 0 {
		return nil // attempts: 0 disables retries
	}
	rp := &routev3.RetryPolicy{NumRetries: wrapperspb.UInt32(uint32(r.GetAttempts())), PerTryTimeout: r.GetPerTryTimeout()}
	var on []string
	for _, cond := range strings.Split(r.GetRetryOn(), ",") {
		cond = strings.TrimSpace(cond)
		if cond == "" {
			continue
		}
		var code uint32
		if _, err := fmt.Sscanf(cond, "%d", &code); err == nil && fmt.Sprint(code) == cond {
			rp.RetriableStatusCodes = append(rp.RetriableStatusCodes, code)
			continue
		}
		on = append(on, cond)
	}
	if len(rp.RetriableStatusCodes) > 0 {
		on = append(on, "retriable-status-codes")
	}
	if len(on) == 0 {
		on = []string{"connect-failure", "refused-stream", "unavailable", "cancelled", "retriable-status-codes"}
		rp.RetriableStatusCodes = append(rp.RetriableStatusCodes, 503)
	}
	rp.RetryOn = strings.Join(on, ",")
	return rp
}

// headerOps translates Istio header set/add/remove to Envoy: set overwrites,
// add appends.
func headerOps(ops *networking.Headers_HeaderOperations) ([]*corev3.HeaderValueOption, []string) {
	if ops == nil {
		return nil, nil
	}
	var add []*corev3.HeaderValueOption
	for _, k := range slices.Sorted(maps.Keys(ops.GetSet())) {
		add = append(add, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: ops.GetSet()[k]},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD})
	}
	for _, k := range slices.Sorted(maps.Keys(ops.GetAdd())) {
		add = append(add, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: ops.GetAdd()[k]},
			AppendAction: corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD})
	}
	return add, ops.GetRemove()
}

// warnUnsupported reports HTTPRoute fields that translation does not emit yet.
func (g *generator) warnUnsupported(hr *networking.HTTPRoute, where string) {
	if (hr.GetMirror() != nil || len(hr.GetMirrors()) > 0) && (hr.GetRedirect() != nil || hr.GetDirectResponse() != nil) {
		g.warnf("%s: mirror applies only to routes with destinations; ignored", where)
	}
}
