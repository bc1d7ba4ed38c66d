package xds

import (
	"slices"
	"strconv"
	"strings"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/skein-mesh/skein/internal/model"
)

// --- route configurations, virtual hosts and routes ---

// routeConfigRef is one route configuration a proxy has: sent by RDS, or
// inline in an inbound connection manager (then save repacks it).
type routeConfigRef struct {
	rc      *routev3.RouteConfiguration
	inbound bool
	save    func()
}

func (g *generator) routeConfigs(res *Resources) []routeConfigRef {
	var out []routeConfigRef
	for _, rc := range res.Routes {
		out = append(out, routeConfigRef{rc: rc, save: func() {}})
	}
	for _, l := range res.Listeners {
		inbound := g.inboundListener(l)
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				hcm := unpackHCM(f)
				if hcm.GetRouteConfig() == nil {
					continue
				}
				out = append(out, routeConfigRef{rc: hcm.GetRouteConfig(), inbound: inbound, save: func() {
					f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(hcm)}
				}})
			}
		}
	}
	return out
}

// routeConfigPort is the port a route configuration serves, from its name
// ("9080", "http.8080", "inbound|9080||").
func routeConfigPort(name string) uint32 {
	name = strings.TrimPrefix(name, "http.")
	name = strings.TrimPrefix(name, "inbound|")
	name, _, _ = strings.Cut(name, "|")
	n, _ := strconv.ParseUint(name, 10, 32)
	return uint32(n)
}

func (g *generator) routeConfigMatches(p *model.EnvoyFilterPatch, rc *routev3.RouteConfiguration) bool {
	m := p.Match.GetRouteConfiguration()
	if m == nil {
		return true
	}
	if m.GetName() != "" && m.GetName() != rc.GetName() {
		return false
	}
	if m.GetPortNumber() != 0 && m.GetPortNumber() != routeConfigPort(rc.GetName()) {
		return false
	}
	if m.GetPortName() != "" {
		g.patchWarnf(p, "match.routeConfiguration.portName is not supported; patch ignored")
		return false
	}
	if gw := m.GetGateway(); gw != "" {
		found := false
		for _, o := range g.pc.GatewaysFor(g.proxy) {
			if g.pc.QualifyGateway(gw, o.Meta.Namespace) == o.Meta.Namespace+"/"+o.Meta.Name {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func vhostMatches(vh *routev3.VirtualHost, m *networking.EnvoyFilter_RouteConfigurationMatch_VirtualHostMatch) bool {
	if m == nil {
		return true
	}
	if m.GetName() != "" && m.GetName() != vh.GetName() {
		return false
	}
	if m.GetDomainName() != "" && !slices.Contains(vh.GetDomains(), m.GetDomainName()) {
		return false
	}
	return true
}

func routeMatches(r *routev3.Route, m *networking.EnvoyFilter_RouteConfigurationMatch_RouteMatch) bool {
	if m == nil {
		return true
	}
	if m.GetName() != "" && m.GetName() != r.GetName() {
		return false
	}
	switch m.GetAction() {
	case networking.EnvoyFilter_RouteConfigurationMatch_RouteMatch_ROUTE:
		return r.GetRoute() != nil
	case networking.EnvoyFilter_RouteConfigurationMatch_RouteMatch_REDIRECT:
		return r.GetRedirect() != nil
	case networking.EnvoyFilter_RouteConfigurationMatch_RouteMatch_DIRECT_RESPONSE:
		return r.GetDirectResponse() != nil
	}
	return true
}

func (g *generator) patchRouteConfigs(res *Resources, p *model.EnvoyFilterPatch) {
	vm := p.Match.GetRouteConfiguration().GetVhost()
	for _, ref := range g.routeConfigs(res) {
		if !g.contextMatches(p, ref.inbound) || !g.routeConfigMatches(p, ref.rc) {
			continue
		}
		rc := ref.rc
		switch p.ApplyTo {
		case networking.EnvoyFilter_ROUTE_CONFIGURATION:
			proto.Merge(rc, p.Value)
		case networking.EnvoyFilter_VIRTUAL_HOST:
			if p.Operation == networking.EnvoyFilter_Patch_ADD {
				add := proto.Clone(p.Value).(*routev3.VirtualHost)
				if slices.ContainsFunc(rc.GetVirtualHosts(), func(vh *routev3.VirtualHost) bool { return vh.GetName() == add.GetName() }) {
					g.patchWarnf(p, "virtual host %q already exists in route configuration %q; ADD ignored", add.GetName(), rc.GetName())
					continue
				}
				rc.VirtualHosts = append(rc.VirtualHosts, add)
				break
			}
			var kept []*routev3.VirtualHost
			for _, vh := range rc.GetVirtualHosts() {
				if vhostMatches(vh, vm) {
					if p.Operation == networking.EnvoyFilter_Patch_REMOVE {
						continue
					}
					proto.Merge(vh, p.Value)
				}
				kept = append(kept, vh)
			}
			rc.VirtualHosts = kept
		case networking.EnvoyFilter_HTTP_ROUTE:
			rm := vm.GetRoute()
			// Without a route selector Istio applies REMOVE and MERGE to
			// every route of the selected virtual hosts.
			hasMatch := rm.GetName() != "" || rm.GetAction() != networking.EnvoyFilter_RouteConfigurationMatch_RouteMatch_ANY
			for _, vh := range rc.GetVirtualHosts() {
				if !vhostMatches(vh, vm) {
					continue
				}
				vh.Routes = patchList(g, p, vh.GetRoutes(), hasMatch || p.Operation == networking.EnvoyFilter_Patch_REMOVE || p.Operation == networking.EnvoyFilter_Patch_MERGE,
					func(r *routev3.Route) bool { return routeMatches(r, rm) },
					func() *routev3.Route { return proto.Clone(p.Value).(*routev3.Route) },
					func(r *routev3.Route) { proto.Merge(r, p.Value) })
			}
		}
		ref.save()
	}
}
