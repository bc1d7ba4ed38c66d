package xds

import (
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
)

// inboundHTTPFilters are the HTTP filters before the router on an inbound
// port: request authentication (RequestAuthentication → jwt_authn) and
// authorization (AuthorizationPolicy → rbac).
func (g *generator) inboundHTTPFilters(ip inboundPort) []*hcmv3.HttpFilter {
	return nil
}

// inboundNetworkFilters are the network filters before tcp_proxy on an
// inbound TCP port (AuthorizationPolicy → network rbac).
func (g *generator) inboundNetworkFilters(ip inboundPort) []*listenerv3.Filter {
	return nil
}
