package listener

import (
	"fmt"
	"sort"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/skein-mesh/skein/internal/proxy/cluster"
	"github.com/skein-mesh/skein/internal/proxy/filters"
	"github.com/skein-mesh/skein/internal/proxy/router"
)

// CompileRoutes compiles a RouteConfiguration (RDS or inline) and also
// rejects the route fields the router only carries but this connection
// manager does not implement yet (some retry and mirror settings), and
// per-route filter configs their filters would reject.
func CompileRoutes(rc *routev3.RouteConfiguration) (*router.Table, error) {
	t, err := router.Compile(rc)
	if err != nil {
		return nil, err
	}
	for _, vh := range rc.GetVirtualHosts() {
		where := fmt.Sprintf("route_config %q: virtual_host %q", rc.GetName(), vh.GetName())
		if p := vh.GetRetryPolicy(); p != nil {
			if err := checkRetryPolicy(p); err != nil {
				return nil, fmt.Errorf("%s: retry_policy: %v", where, err)
			}
		}
		if err := checkPerFilterConfig(vh.GetTypedPerFilterConfig()); err != nil {
			return nil, fmt.Errorf("%s: %v", where, err)
		}
		if c := vh.GetCors(); c != nil {
			// the deprecated virtual host policy, read by the CORS filter
			a, err := anypb.New(c)
			if err == nil {
				err = filters.CheckPerRoute("cors", a)
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %v", where, err)
			}
		}
		for i, r := range vh.GetRoutes() {
			rwhere := fmt.Sprintf("%s: route[%d]", where, i)
			if r.GetName() != "" {
				rwhere = fmt.Sprintf("%s: route %q", where, r.GetName())
			}
			if err := checkPerFilterConfig(r.GetTypedPerFilterConfig()); err != nil {
				return nil, fmt.Errorf("%s: %v", rwhere, err)
			}
			ra := r.GetRoute()
			if ra == nil {
				continue
			}
			for _, cw := range ra.GetWeightedClusters().GetClusters() {
				if err := checkPerFilterConfig(cw.GetTypedPerFilterConfig()); err != nil {
					return nil, fmt.Errorf("%s: weighted cluster %q: %v", rwhere, cw.GetName(), err)
				}
			}
			for j, mp := range ra.GetRequestMirrorPolicies() {
				if err := checkMirrorPolicy(mp); err != nil {
					return nil, fmt.Errorf("%s: request_mirror_policies[%d]: %v", rwhere, j, err)
				}
			}
			if p := ra.GetRetryPolicy(); p != nil {
				if err := checkRetryPolicy(p); err != nil {
					return nil, fmt.Errorf("%s: retry_policy: %v", rwhere, err)
				}
			}
			if err := cluster.CheckHashPolicies(ra.GetHashPolicy()); err != nil {
				return nil, fmt.Errorf("%s: %v", rwhere, err)
			}
		}
	}
	return t, nil
}

// checkPerFilterConfig validates per-route filter configs with the checkers
// the filters registered, in name order so the error is stable.
func checkPerFilterConfig(m map[string]*anypb.Any) error {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := filters.CheckPerRoute(n, m[n]); err != nil {
			return err
		}
	}
	return nil
}
