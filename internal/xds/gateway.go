package xds

import (
	"fmt"
	"sort"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"
)

// gatewayServer is one Gateway server bound to a listener port.
type gatewayServer struct {
	gateway string // namespace/name
	gwNS    string
	server  *networking.Server
	// redirect: an HTTP server with tls.httpsRedirect, answering 301 to https.
	redirect bool
}

// gatewayPort is everything served on one gateway listener port: plaintext
// HTTP servers share one chain, each TLS-terminating server gets a chain by
// SNI, and PASSTHROUGH servers proxy TLS by SNI.
type gatewayPort struct {
	http        []gatewayServer
	https       []gatewayServer
	passthrough []gatewayServer
}

// buildGateway returns the listeners and routes of a gateway proxy: one
// listener per distinct target port of the selected Gateways' servers.
func (g *generator) buildGateway() ([]*listenerv3.Listener, []*routev3.RouteConfiguration) {
	byPort := map[uint32]*gatewayPort{}
	for _, obj := range g.pc.GatewaysFor(g.proxy) {
		gw := obj.Spec.(*networking.Gateway)
		for i, s := range gw.GetServers() {
			where := fmt.Sprintf("Gateway %s/%s servers[%d]", obj.Meta.Namespace, obj.Meta.Name, i)
			gs := gatewayServer{gateway: obj.Meta.Namespace + "/" + obj.Meta.Name, gwNS: obj.Meta.Namespace, server: s}
			target := g.gatewayTargetPort(s.GetPort().GetNumber())
			gp := byPort[target]
			if gp == nil {
				gp = &gatewayPort{}
			}
			if !g.classifyServer(where, gs, gp) {
				continue
			}
			byPort[target] = gp
		}
	}
	ports := make([]uint32, 0, len(byPort))
	for p := range byPort {
		ports = append(ports, p)
	}
	sort.Slice(ports, func(i, j int) bool { return ports[i] < ports[j] })

	var listeners []*listenerv3.Listener
	var routes []*routev3.RouteConfiguration
	for _, port := range ports {
		gp := byPort[port]
		l := &listenerv3.Listener{
			Name:             OutboundListener(port),
			Address:          socketAddress("0.0.0.0", port),
			TrafficDirection: corev3.TrafficDirection_OUTBOUND,
		}
		if len(gp.https)+len(gp.passthrough) > 0 {
			l.ListenerFilters = inboundListenerFilters()
		}
		for _, srv := range gp.https {
			name := gatewayHTTPSRoute(srv)
			if fc := g.httpsChain(port, name, srv); fc != nil {
				l.FilterChains = append(l.FilterChains, fc)
				g.routeNames = append(g.routeNames, name)
				routes = append(routes, g.gatewayRoute(name, port, []gatewayServer{srv}))
			}
		}
		for _, srv := range gp.passthrough {
			l.FilterChains = append(l.FilterChains, g.passthroughChains(srv)...)
		}
		if len(gp.http) > 0 {
			name := GatewayRoute(port)
			l.FilterChains = append(l.FilterChains, &listenerv3.FilterChain{
				Filters: []*listenerv3.Filter{g.gatewayHCM(port, name)},
			})
			g.routeNames = append(g.routeNames, name)
			routes = append(routes, g.gatewayRoute(name, port, gp.http))
		}
		if len(l.FilterChains) == 0 {
			continue
		}
		listeners = append(listeners, l)
	}
	return listeners, routes
}

// gatewayHCM is a gateway's HTTP connection manager using RDS route name.
func (g *generator) gatewayHCM(port uint32, route string) *listenerv3.Filter {
	return hcmFilter(g.withTelemetry(&hcmv3.HttpConnectionManager{
		StatPrefix: fmt.Sprintf("outbound_0.0.0.0_%d", port),
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			RouteConfigName: route, ConfigSource: adsConfigSource(),
		}},
		HttpFilters: g.gatewayHTTPFilters(),
	}, hcmGateway))
}

// gatewayTargetPort maps a Gateway server port to the port the gateway
// proxy listens on: the targetPort of the gateway Service port with that
// number (Istio's ingress gateway maps 80 to 8080), else the port itself.
func (g *generator) gatewayTargetPort(port uint32) uint32 {
	for _, ep := range g.pc.Registry.InstancesAt(g.proxy.IP) {
		if ep.ServicePort == port {
			return ep.Port
		}
	}
	return port
}

// gatewayRoute builds RDS http.<port>: one virtual host per host that a
// bound VirtualService claims and a server on this port admits.
func (g *generator) gatewayRoute(name string, port uint32, servers []gatewayServer) *routev3.RouteConfiguration {
	rc := &routev3.RouteConfiguration{Name: name, ValidateClusters: wrapperspb.Bool(false)}
	vhosts := map[string]*routev3.VirtualHost{}
	var order []string
	for _, srv := range servers {
		ctx := routeContext{gateway: srv.gateway, port: srv.server.GetPort().GetNumber(), listenPort: port}
		for _, vsObj := range g.pc.GatewayVirtualServices(srv.gateway) {
			vs := vsObj.Spec.(*networking.VirtualService)
			var hosts []string
			for _, h := range vs.GetHosts() {
				if serverAdmits(srv.server.GetHosts(), vsObj.Meta.Namespace, h) {
					hosts = append(hosts, h)
				}
			}
			if len(hosts) == 0 {
				continue
			}
			routes := g.translateHTTPRoutes(vsObj, ctx)
			if srv.redirect {
				routes = []*routev3.Route{httpsRedirectRoute()}
			}
			for _, h := range hosts {
				key := fmt.Sprintf("%s:%d", h, ctx.port)
				vh, ok := vhosts[key]
				if !ok {
					domains := []string{h}
					if h != "*" {
						domains = append(domains, fmt.Sprintf("%s:%d", h, ctx.port))
					}
					vh = &routev3.VirtualHost{Name: key, Domains: domains}
					vhosts[key] = vh
					order = append(order, key)
				} else if len(vh.Routes) > 0 {
					// Istio keeps the first VirtualService for a host on a gateway.
					g.warnf("VirtualService %s/%s: host %q on gateway %s is already claimed; ignored", vsObj.Meta.Namespace, vsObj.Meta.Name, h, srv.gateway)
					continue
				}
				vh.Routes = append(vh.Routes, routes...)
			}
		}
	}
	for _, k := range order {
		rc.VirtualHosts = append(rc.VirtualHosts, vhosts[k])
	}
	return rc
}

// serverAdmits reports whether a Gateway server's hosts ("*", "ns/host",
// "*/host", "*.example.com") admit VirtualService host h from namespace vsNS.
func serverAdmits(serverHosts []string, vsNS, h string) bool {
	for _, sh := range serverHosts {
		ns, host := "*", sh
		if i := strings.IndexByte(sh, '/'); i >= 0 {
			ns, host = sh[:i], sh[i+1:]
		}
		if ns != "*" && ns != "." && ns != vsNS {
			continue
		}
		if hostMatches(host, h) || hostMatches(h, host) {
			return true
		}
	}
	return false
}
