package xds

import (
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	rbacnetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
)

// inboundHTTPFilters are the HTTP filters before the router on an inbound
// port: request authentication (RequestAuthentication → jwt_authn) and
// authorization (AuthorizationPolicy → rbac: AUDIT, then DENY, then ALLOW).
func (g *generator) inboundHTTPFilters(ip inboundPort) []*hcmv3.HttpFilter {
	var out []*hcmv3.HttpFilter
	if jwt := g.buildJWTAuthn(); jwt != nil {
		out = append(out, &hcmv3.HttpFilter{Name: JWTAuthnFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(jwt)}})
	}
	for _, rules := range g.buildRBAC(g.authorizationPolicies(), false) {
		out = append(out, &hcmv3.HttpFilter{Name: RBACFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{
			TypedConfig: mustAny(&rbacfilterv3.RBAC{Rules: rules})}})
	}
	return out
}

// inboundNetworkFilters are the network filters before tcp_proxy on an
// inbound TCP port (AuthorizationPolicy → network rbac).
func (g *generator) inboundNetworkFilters(ip inboundPort) []*listenerv3.Filter {
	var out []*listenerv3.Filter
	for _, rules := range g.buildRBAC(g.authorizationPolicies(), true) {
		out = append(out, &listenerv3.Filter{Name: NetworkRBACFilter, ConfigType: &listenerv3.Filter_TypedConfig{
			TypedConfig: mustAny(&rbacnetv3.RBAC{Rules: rules, StatPrefix: "tcp."})}})
	}
	return out
}

// gatewayHTTPFilters are a gateway's HTTP filters: the authentication and
// authorization of policies selecting the gateway workload (as Istio
// enforces AuthorizationPolicy at ingress gateways), then fault and CORS.
func (g *generator) gatewayHTTPFilters() []*hcmv3.HttpFilter {
	return append(g.inboundHTTPFilters(inboundPort{}), g.outboundHTTPFilters()...)
}
