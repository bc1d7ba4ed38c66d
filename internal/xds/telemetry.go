package xds

import (
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
)

// hcmKind says which connection manager telemetry is being set up for; it
// decides Istio's reporter (destination for inbound, source otherwise).
type hcmKind int

const (
	hcmInbound hcmKind = iota
	hcmOutbound
	hcmGateway
)

// applyTelemetry adds metrics, access logs and tracing to a connection
// manager, from the mesh config and the Telemetry resources in force.
func (g *generator) applyTelemetry(hcm *hcmv3.HttpConnectionManager, kind hcmKind) {
	g.applyStats(hcm, kind)
	g.applyAccessLog(hcm, kind)
	g.applyTracing(hcm, kind)
}

// withTelemetry applies telemetry to hcm and returns it, for use inline.
func (g *generator) withTelemetry(hcm *hcmv3.HttpConnectionManager, kind hcmKind) *hcmv3.HttpConnectionManager {
	g.applyTelemetry(hcm, kind)
	return hcm
}
