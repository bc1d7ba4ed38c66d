// Package xds translates the mesh model into Envoy v3 resources for one
// proxy: clusters (cds.go), endpoints (eds.go), listeners (lds.go) and routes
// (rds.go). It is pure: the same PushContext and Proxy always give the same
// resources, which the golden tests pin.
package xds

import (
	"fmt"
	"strconv"
	"strings"
)

// Well-known names, as Istio spells them.
const (
	VirtualOutboundListener = "virtualOutbound"
	VirtualInboundListener  = "virtualInbound"
	PassthroughCluster      = "PassthroughCluster"
	BlackHoleCluster        = "BlackHoleCluster"
	PassthroughFilterChain  = "PassthroughFilterChain"
	// Inbound traffic to ports no service declares is passed to its original
	// destination, as Istio's virtualInbound does.
	InboundPassthroughFilterChain = "InboundPassthroughFilterChain"
	InboundPassthroughCluster     = "InboundPassthroughCluster"

	VirtualOutboundPort = 15001
	VirtualInboundPort  = 15006

	HTTPConnectionManager = "envoy.filters.network.http_connection_manager"
	TCPProxy              = "envoy.filters.network.tcp_proxy"
	RouterFilter          = "envoy.filters.http.router"
	HTTPProtocolOptions   = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
)

// OutboundCluster names an outbound cluster: outbound|9080|v1|reviews.ns.svc.cluster.local.
func OutboundCluster(port uint32, subset, host string) string {
	return fmt.Sprintf("outbound|%d|%s|%s", port, subset, host)
}

// InboundCluster names the cluster that delivers to the local app on port.
func InboundCluster(port uint32) string { return fmt.Sprintf("inbound|%d||", port) }

// ParseOutboundCluster splits an outbound cluster name; ok=false for others.
func ParseOutboundCluster(name string) (port uint32, subset, host string, ok bool) {
	parts := strings.Split(name, "|")
	if len(parts) != 4 || parts[0] != "outbound" {
		return 0, "", "", false
	}
	n, err := strconv.ParseUint(parts[1], 10, 32)
	if err != nil {
		return 0, "", "", false
	}
	return uint32(n), parts[2], parts[3], true
}

// OutboundListener names the per-port outbound listener: 0.0.0.0_9080.
func OutboundListener(port uint32) string { return fmt.Sprintf("0.0.0.0_%d", port) }

// OutboundRoute names the sidecar's RDS for a port ("9080").
func OutboundRoute(port uint32) string { return strconv.FormatUint(uint64(port), 10) }

// GatewayRoute names a gateway's RDS for a listener port ("http.8080").
func GatewayRoute(port uint32) string { return fmt.Sprintf("http.%d", port) }
