package proxy

import (
	"github.com/skein-mesh/skein/internal/proxy/filters"
	"github.com/skein-mesh/skein/internal/proxy/filters/cors"
	"github.com/skein-mesh/skein/internal/proxy/filters/fault"
	"github.com/skein-mesh/skein/internal/proxy/filters/istiostats"
	"github.com/skein-mesh/skein/internal/proxy/filters/jwtauthn"
	"github.com/skein-mesh/skein/internal/proxy/filters/localratelimit"
	"github.com/skein-mesh/skein/internal/proxy/filters/rbac"
	"github.com/skein-mesh/skein/internal/proxy/stats"
)

// httpFilters lists every HTTP filter the proxy implements. Filters not
// registered here are NACKed by name.
func httpFilters(opts *Options, store *stats.Store) *filters.Registry {
	reg := filters.NewRegistry()
	fault.Register(reg)
	cors.Register(reg)
	localratelimit.Register(reg, localratelimit.Options{Stats: store})
	jwtauthn.Register(reg, jwtauthn.Options{})
	rbac.Register(reg, rbac.Options{})
	istiostats.Register(reg, istiostats.Options{Logger: opts.Logger, Node: istioNode(opts)})
	return reg
}

// istioNode is the proxy's identity as Istio's metadata exchange and
// metrics see it.
func istioNode(opts *Options) istiostats.Node {
	return istiostats.Node{
		ID: opts.NodeID(), Name: opts.PodName, Namespace: opts.Namespace, WorkloadName: opts.WorkloadName,
		ServiceAccount: opts.ServiceAccount, ClusterID: opts.ClusterID, Labels: opts.Labels,
	}
}
