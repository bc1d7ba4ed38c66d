package xds

import (
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
)

// applyAccessLog configures access logs: mesh accessLogFile/accessLogEncoding/accessLogFormat or Telemetry accessLogging.
func (g *generator) applyAccessLog(hcm *hcmv3.HttpConnectionManager, kind hcmKind) {
}
