package xds

import (
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
)

// applyTracing configures tracing: the HCM tracing provider and sampling from the mesh config and Telemetry tracing.
func (g *generator) applyTracing(hcm *hcmv3.HttpConnectionManager, kind hcmKind) {
}
