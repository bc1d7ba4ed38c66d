package router

//lint:file-ignore SA1019 Envoy's deprecated fields (legacy header matchers, append, total_weight, virtual host cors) are still sent by control planes and must keep working.

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"
)

// Envoy's defaults.
const (
	defaultRouteTimeout          = 15 * time.Second
	defaultMaxDirectResponseBody = 4096
)

// Compile validates and compiles a RouteConfiguration. Any field or
// match/action kind the router does not implement is an error naming the
// route config, virtual host, route (by name or index) and field, e.g.
//
//	route_config "9080": virtual_host "reviews:9080": route[2]: unsupported match field "grpc"
//
// Per-filter configs are compiled by filters (nil: a route config may carry
// none). The Table keeps a private copy of rc.
func Compile(rc *routev3.RouteConfiguration, filters PerFilterCompiler) (*Table, error) {
	if rc == nil {
		return nil, errors.New("route_config: nil")
	}
	rc = proto.Clone(rc).(*routev3.RouteConfiguration)
	scope := fmt.Sprintf("route_config %q", rc.GetName())
	wrap := func(err error) error { return fmt.Errorf("%s: %w", scope, err) }
	if err := checkFields(rc, "route_config"); err != nil {
		return nil, wrap(err)
	}
	c := compiler{
		maxBody:          defaultMaxDirectResponseBody,
		mostSpecificWins: rc.GetMostSpecificHeaderMutationsWins(),
		perFilter:        perFilter{compiler: filters},
	}
	if m := rc.GetMaxDirectResponseBodySizeBytes(); m != nil {
		c.maxBody = int(m.GetValue())
	}
	var err error
	c.rcMutations, err = compileMutations("", rc.GetRequestHeadersToAdd(), rc.GetRequestHeadersToRemove())
	if err != nil {
		return nil, wrap(err)
	}
	c.rcRespMutations, err = compileMutations("response_", rc.GetResponseHeadersToAdd(), rc.GetResponseHeadersToRemove())
	if err != nil {
		return nil, wrap(err)
	}
	t := &Table{name: rc.GetName(), ignorePort: rc.GetIgnorePortInHostMatching(), pick: lowDiscrepancyPick}
	for i, pvh := range rc.GetVirtualHosts() {
		if err := c.virtualHost(pvh, &t.hosts); err != nil {
			if pvh.GetName() == "" {
				return nil, fmt.Errorf("%s: virtual_host[%d]: %w", scope, i, err)
			}
			return nil, fmt.Errorf("%s: virtual_host %q: %w", scope, pvh.GetName(), err)
		}
	}
	return t, nil
}

// compiler carries route-config-wide settings down to routes.
type compiler struct {
	maxBody          int
	mostSpecificWins bool
	rcMutations      *headerMutations
	rcRespMutations  *headerMutations
	perFilter        perFilter
}

// vhostContext is what a virtual host contributes to its routes' decisions.
type vhostContext struct {
	pb            *routev3.VirtualHost
	retry         *RetryPolicy
	filterConfig  map[string]any
	reqMutations  *headerMutations
	respMutations *headerMutations
}

// virtualHost compiles pvh and registers it under its domains in index.
func (c *compiler) virtualHost(pvh *routev3.VirtualHost, index *domainIndex) error {
	if err := checkFields(pvh, "virtual_host"); err != nil {
		return err
	}
	if pvh.GetName() == "" {
		return errors.New("name is required")
	}
	if len(pvh.GetDomains()) == 0 {
		return errors.New("domains: at least one domain is required")
	}
	vh := &virtualHost{name: pvh.GetName()}
	vctx := vhostContext{pb: pvh}
	var err error
	if vctx.reqMutations, err = compileMutations("", pvh.GetRequestHeadersToAdd(), pvh.GetRequestHeadersToRemove()); err != nil {
		return err
	}
	if vctx.respMutations, err = compileMutations("response_", pvh.GetResponseHeadersToAdd(), pvh.GetResponseHeadersToRemove()); err != nil {
		return err
	}
	if vctx.retry, err = compileRetryPolicy(pvh.GetRetryPolicy()); err != nil {
		return fmt.Errorf("retry_policy: %w", err)
	}
	cors, err := c.perFilter.vhostCors(pvh.GetCors())
	if err != nil {
		return err
	}
	own, err := c.perFilter.compile(pvh.GetTypedPerFilterConfig())
	if err != nil {
		return err
	}
	vctx.filterConfig = mergeFilterConfig(cors, own)
	for i, pr := range pvh.GetRoutes() {
		rt, err := c.route(pr, &vctx)
		if err != nil {
			if pr.GetName() == "" {
				return fmt.Errorf("route[%d]: %w", i, err)
			}
			return fmt.Errorf("route %q: %w", pr.GetName(), err)
		}
		vh.routes = append(vh.routes, rt)
	}
	for i, d := range pvh.GetDomains() {
		if err := index.add(d, vh); err != nil {
			return fmt.Errorf("domains[%d]: %w", i, err)
		}
	}
	return nil
}

func (c *compiler) route(pr *routev3.Route, vctx *vhostContext) (*route, error) {
	if err := checkFields(pr, "route"); err != nil {
		return nil, err
	}
	rt := &route{}
	if pr.GetMatch() == nil {
		return nil, errors.New("match is required")
	}
	if err := compileRouteMatch(pr.GetMatch(), &rt.match); err != nil {
		return nil, err
	}
	reqMut, err := compileMutations("", pr.GetRequestHeadersToAdd(), pr.GetRequestHeadersToRemove())
	if err != nil {
		return nil, err
	}
	respMut, err := compileMutations("response_", pr.GetResponseHeadersToAdd(), pr.GetResponseHeadersToRemove())
	if err != nil {
		return nil, err
	}
	own, err := c.perFilter.compile(pr.GetTypedPerFilterConfig())
	if err != nil {
		return nil, err
	}
	vpb := vctx.pb
	base := Decision{
		VirtualHost:                vpb.GetName(),
		RouteName:                  pr.GetName(),
		Retry:                      vctx.retry,
		FilterConfig:               mergeFilterConfig(vctx.filterConfig, own),
		Metadata:                   pr.GetMetadata(),
		Decorator:                  pr.GetDecorator(),
		IncludeRequestAttemptCount: vpb.GetIncludeRequestAttemptCount(),
		ClusterNotFoundStatus:      http.StatusServiceUnavailable,
	}
	levels := func(cluster, clusterResp *headerMutations) ([]*headerMutations, []*headerMutations) {
		return c.order(c.rcMutations, vctx.reqMutations, reqMut, cluster),
			c.order(c.rcRespMutations, vctx.respMutations, respMut, clusterResp)
	}
	switch action := pr.GetAction().(type) {
	case *routev3.Route_Route:
		return rt, c.routeAction(rt, action.Route, base, levels)
	case *routev3.Route_Redirect:
		a, err := compileRedirect(action.Redirect, &rt.match)
		if err != nil {
			return nil, fmt.Errorf("redirect: %w", err)
		}
		rt.redirect = a
		base.requestMutations, base.responseMutations = levels(nil, nil)
		rt.fixed = &base
		return rt, nil
	case *routev3.Route_DirectResponse:
		dr, err := c.directResponse(action.DirectResponse)
		if err != nil {
			return nil, fmt.Errorf("direct_response: %w", err)
		}
		base.DirectResponse = dr
		base.requestMutations, base.responseMutations = levels(nil, nil)
		rt.fixed = &base
		return rt, nil
	default:
		return nil, errors.New("no action: one of route, redirect or direct_response is required")
	}
}

// order lists the levels' mutations in Envoy's evaluation order, later
// evaluated winning: by default most specific first, so the route
// configuration level wins; with most_specific_header_mutations_wins the
// reverse. Levels come most general first; empty ones are dropped.
func (c *compiler) order(levels ...*headerMutations) []*headerMutations {
	var out []*headerMutations
	for _, m := range levels {
		if m != nil {
			out = append(out, m)
		}
	}
	if !c.mostSpecificWins {
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	}
	return out
}

type levelsFunc func(cluster, clusterResp *headerMutations) ([]*headerMutations, []*headerMutations)

func (c *compiler) routeAction(rt *route, ra *routev3.RouteAction, base Decision, levels levelsFunc) error {
	wrap := func(err error) error { return fmt.Errorf("route: %w", err) }
	if err := checkFields(ra, "route action"); err != nil {
		return err
	}
	base.Timeout = defaultRouteTimeout
	if ra.GetTimeout() != nil {
		if err := ra.GetTimeout().CheckValid(); err != nil {
			return wrap(fmt.Errorf("timeout: %w", err))
		}
		base.Timeout = ra.GetTimeout().AsDuration()
		if base.Timeout < 0 {
			return wrap(fmt.Errorf("timeout: negative duration %s", base.Timeout))
		}
	}
	if rp := ra.GetRetryPolicy(); rp != nil {
		retry, err := compileRetryPolicy(rp)
		if err != nil {
			return fmt.Errorf("retry_policy: %w", err)
		}
		base.Retry = retry
	}
	var err error
	if base.Hash, err = compileHashPolicy(ra.GetHashPolicy()); err != nil {
		return err
	}
	if base.Mirrors, err = compileMirrorPolicies(ra.GetRequestMirrorPolicies()); err != nil {
		return err
	}
	base.StreamDuration = compileStreamDuration(ra.GetMaxStreamDuration())
	switch ra.GetClusterNotFoundResponseCode() {
	case routev3.RouteAction_SERVICE_UNAVAILABLE:
		base.ClusterNotFoundStatus = http.StatusServiceUnavailable
	case routev3.RouteAction_NOT_FOUND:
		base.ClusterNotFoundStatus = http.StatusNotFound
	case routev3.RouteAction_INTERNAL_SERVER_ERROR:
		base.ClusterNotFoundStatus = http.StatusInternalServerError
	default:
		return wrap(fmt.Errorf("cluster_not_found_response_code: unknown value %d", ra.GetClusterNotFoundResponseCode()))
	}
	base.hostRewrite = ra.GetHostRewriteLiteral()
	if ra.GetPrefixRewrite() != "" && ra.GetRegexRewrite() != nil {
		return wrap(errors.New("prefix_rewrite and regex_rewrite are mutually exclusive"))
	}
	if p := ra.GetPrefixRewrite(); p != "" {
		base.rewrite = &pathRewrite{match: &rt.match, prefix: p}
	}
	if rr := ra.GetRegexRewrite(); rr != nil {
		pr, err := compileRegexRewrite(rr)
		if err != nil {
			return wrap(fmt.Errorf("regex_rewrite: %w", err))
		}
		base.rewrite = pr
	}

	switch cs := ra.GetClusterSpecifier().(type) {
	case *routev3.RouteAction_Cluster:
		if cs.Cluster == "" {
			return wrap(errors.New("cluster: empty name"))
		}
		base.Cluster = cs.Cluster
		base.requestMutations, base.responseMutations = levels(nil, nil)
		rt.fixed = &base
		return nil
	case *routev3.RouteAction_WeightedClusters:
		if err := c.compileWeighted(rt, cs.WeightedClusters, base, levels); err != nil {
			return wrap(fmt.Errorf("weighted_clusters: %w", err))
		}
		return nil
	default:
		return wrap(errors.New("no cluster: cluster or weighted_clusters is required"))
	}
}

func (c *compiler) compileWeighted(rt *route, wc *routev3.WeightedCluster, base Decision, levels levelsFunc) error {
	if err := checkFields(wc, "weighted_clusters"); err != nil {
		return err
	}
	if len(wc.GetClusters()) == 0 {
		return errors.New("clusters: at least one cluster is required")
	}
	var sum uint64
	for i, cw := range wc.GetClusters() {
		if err := checkFields(cw, "weighted cluster"); err != nil {
			return fmt.Errorf("clusters[%d]: %w", i, err)
		}
		if cw.GetName() == "" {
			return fmt.Errorf("clusters[%d]: name is required", i)
		}
		reqMut, err := compileMutations("", cw.GetRequestHeadersToAdd(), cw.GetRequestHeadersToRemove())
		if err != nil {
			return fmt.Errorf("clusters[%d]: %w", i, err)
		}
		respMut, err := compileMutations("response_", cw.GetResponseHeadersToAdd(), cw.GetResponseHeadersToRemove())
		if err != nil {
			return fmt.Errorf("clusters[%d]: %w", i, err)
		}
		w := uint64(cw.GetWeight().GetValue())
		if w == 0 {
			continue // never picked
		}
		sum += w
		d := base
		d.Cluster = cw.GetName()
		own, err := c.perFilter.compile(cw.GetTypedPerFilterConfig())
		if err != nil {
			return fmt.Errorf("clusters[%d]: %w", i, err)
		}
		d.FilterConfig = mergeFilterConfig(base.FilterConfig, own)
		if h := cw.GetHostRewriteLiteral(); h != "" {
			d.hostRewrite = h
		}
		d.requestMutations, d.responseMutations = levels(reqMut, respMut)
		rt.weighted = append(rt.weighted, weightedChoice{end: sum, decision: &d})
	}
	if tw := wc.GetTotalWeight(); tw != nil && uint64(tw.GetValue()) != sum {
		return fmt.Errorf("sum of weights %d does not equal total_weight %d", sum, tw.GetValue())
	}
	if sum == 0 {
		return errors.New("sum of weights is 0")
	}
	rt.total = sum
	rt.picks = newPickCounter()
	return nil
}

func (c *compiler) directResponse(pd *routev3.DirectResponseAction) (*DirectResponse, error) {
	if err := checkFields(pd, "direct_response"); err != nil {
		return nil, err
	}
	status := int(pd.GetStatus())
	if status < 200 || status > 599 {
		return nil, fmt.Errorf("status %d out of range [200, 599]", status)
	}
	dr := &DirectResponse{Status: status}
	if body := pd.GetBody(); body != nil {
		if err := checkFields(body, "body"); err != nil {
			return nil, err
		}
		switch s := body.GetSpecifier().(type) {
		case *corev3.DataSource_InlineString:
			dr.Body = s.InlineString
		case *corev3.DataSource_InlineBytes:
			dr.Body = string(s.InlineBytes)
		}
		if len(dr.Body) > c.maxBody {
			return nil, fmt.Errorf("body is %d bytes, more than max_direct_response_body_size_bytes %d", len(dr.Body), c.maxBody)
		}
	}
	return dr, nil
}
