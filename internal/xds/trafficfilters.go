package xds

import (
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
)

// outboundHTTPFilters are the HTTP filters before the router on sidecar
// outbound and gateway connection managers (fault injection, CORS), whose
// per-route settings come from VirtualServices.
func (g *generator) outboundHTTPFilters() []*hcmv3.HttpFilter {
	return nil
}
