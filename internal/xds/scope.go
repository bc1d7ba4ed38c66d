package xds

import "github.com/skein-mesh/skein/internal/model"

// scope is the proxy's Sidecar egress scope (model.EgressScope), looked up
// once per generation; nil lets everything in.
func (g *generator) scope() *model.EgressScope {
	if !g.scopeDone {
		g.egress, g.scopeDone = g.pc.EgressScope(g.proxy), true
	}
	return g.egress
}

// scopedServices lists the services whose clusters and endpoints the proxy
// gets.
func (g *generator) scopedServices() []*model.Service {
	all := g.pc.Registry.Services()
	es := g.scope()
	if es == nil {
		return all
	}
	var out []*model.Service
	for _, svc := range all {
		if es.Includes(svc) {
			out = append(out, svc)
		}
	}
	return out
}
