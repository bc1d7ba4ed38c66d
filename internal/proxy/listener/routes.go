package listener

import (
	"fmt"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/skein-mesh/skein/internal/proxy/router"
)

// CompileRoutes compiles a RouteConfiguration (RDS or inline) and also
// rejects the route fields the router only carries but this connection
// manager does not implement yet (request mirroring, some retry settings).
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
		for i, r := range vh.GetRoutes() {
			ra := r.GetRoute()
			if ra == nil {
				continue
			}
			rwhere := fmt.Sprintf("%s: route[%d]", where, i)
			if r.GetName() != "" {
				rwhere = fmt.Sprintf("%s: route %q", where, r.GetName())
			}
			if len(ra.GetRequestMirrorPolicies()) > 0 {
				return nil, fmt.Errorf("%s: request_mirror_policies are not supported yet", rwhere)
			}
			if p := ra.GetRetryPolicy(); p != nil {
				if err := checkRetryPolicy(p); err != nil {
					return nil, fmt.Errorf("%s: retry_policy: %v", rwhere, err)
				}
			}
		}
	}
	return t, nil
}
