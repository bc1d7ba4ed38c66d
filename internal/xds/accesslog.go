package xds

import (
	"encoding/json"
	"sort"
	"strings"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/structpb"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
)

// fileAccessLogName is the Envoy logger Istio configures for file logs.
const fileAccessLogName = "envoy.access_loggers.file"

// istioTextLogFormat is Istio's default text access log format.
const istioTextLogFormat = `[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" ` +
	`%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% ` +
	`"%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% ` +
	`%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" ` +
	`"%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS% ` +
	`%DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%` + "\n"

// istioJSONLogFormat is Istio's default JSON access log format.
var istioJSONLogFormat = map[string]string{
	"start_time":                        "%START_TIME%",
	"route_name":                        "%ROUTE_NAME%",
	"method":                            "%REQ(:METHOD)%",
	"path":                              "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
	"protocol":                          "%PROTOCOL%",
	"response_code":                     "%RESPONSE_CODE%",
	"response_flags":                    "%RESPONSE_FLAGS%",
	"response_code_details":             "%RESPONSE_CODE_DETAILS%",
	"connection_termination_details":    "%CONNECTION_TERMINATION_DETAILS%",
	"bytes_received":                    "%BYTES_RECEIVED%",
	"bytes_sent":                        "%BYTES_SENT%",
	"duration":                          "%DURATION%",
	"upstream_service_time":             "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
	"x_forwarded_for":                   "%REQ(X-FORWARDED-FOR)%",
	"user_agent":                        "%REQ(USER-AGENT)%",
	"request_id":                        "%REQ(X-REQUEST-ID)%",
	"authority":                         "%REQ(:AUTHORITY)%",
	"upstream_host":                     "%UPSTREAM_HOST%",
	"upstream_cluster":                  "%UPSTREAM_CLUSTER_RAW%",
	"upstream_local_address":            "%UPSTREAM_LOCAL_ADDRESS%",
	"downstream_local_address":          "%DOWNSTREAM_LOCAL_ADDRESS%",
	"downstream_remote_address":         "%DOWNSTREAM_REMOTE_ADDRESS%",
	"requested_server_name":             "%REQUESTED_SERVER_NAME%",
	"upstream_transport_failure_reason": "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
}

// accessLogSpec is one access log to configure.
type accessLogSpec struct {
	path   string
	json   bool
	format string // text format, or a JSON object of key → format
	labels *structpb.Struct
}

// applyAccessLog configures access logs: mesh accessLogFile/accessLogEncoding/accessLogFormat or Telemetry accessLogging.
func (g *generator) applyAccessLog(hcm *hcmv3.HttpConnectionManager, kind hcmKind) {
	mesh, _ := g.pc.MeshConfig()
	for _, spec := range g.accessLogSpecs(mesh.MeshConfig, kind) {
		if al := g.fileAccessLog(spec); al != nil {
			hcm.AccessLog = append(hcm.AccessLog, al)
		}
	}
}

// accessLogSpecs resolves which logs apply, as Istio does: Telemetry
// accessLogging (most specific wins; providers name mesh extension
// providers, "envoy" being the built-in stdout logger) when any applies,
// else the mesh default providers, else the mesh accessLogFile.
func (g *generator) accessLogSpecs(mesh *meshv1alpha1.MeshConfig, kind hcmKind) []accessLogSpec {
	var providers []string
	disabled, fromTelemetry := false, false
	for _, tel := range g.pc.Telemetries(g.proxy) {
		for _, al := range tel.GetAccessLogging() {
			if !workloadModeMatches(al.GetMatch().GetMode(), kind) {
				continue
			}
			fromTelemetry = true
			if len(al.GetProviders()) > 0 {
				providers = nil
				for _, p := range al.GetProviders() {
					providers = append(providers, p.GetName())
				}
			}
			if v := al.GetDisabled(); v != nil {
				disabled = v.GetValue()
			}
			if e := al.GetFilter().GetExpression(); e != "" {
				g.warnf("Telemetry accessLogging filter %q: filter expressions are not supported yet; every request is logged", e)
			}
		}
	}
	if fromTelemetry {
		if disabled {
			return nil
		}
		if len(providers) == 0 {
			providers = mesh.GetDefaultProviders().GetAccessLogging()
		}
		if len(providers) == 0 {
			providers = []string{"envoy"}
		}
		return g.accessLogProviders(mesh, providers)
	}
	if p := mesh.GetDefaultProviders().GetAccessLogging(); len(p) > 0 {
		return g.accessLogProviders(mesh, p)
	}
	if mesh.GetAccessLogFile() == "" {
		return nil
	}
	spec := accessLogSpec{path: mesh.GetAccessLogFile(), json: mesh.GetAccessLogEncoding() == meshv1alpha1.MeshConfig_JSON, format: mesh.GetAccessLogFormat()}
	return []accessLogSpec{spec}
}

func (g *generator) accessLogProviders(mesh *meshv1alpha1.MeshConfig, names []string) []accessLogSpec {
	var out []accessLogSpec
	for _, name := range names {
		if name == "envoy" {
			// Istio's built-in provider: stdout, in the mesh's encoding
			// and format.
			out = append(out, accessLogSpec{path: "/dev/stdout", json: mesh.GetAccessLogEncoding() == meshv1alpha1.MeshConfig_JSON, format: mesh.GetAccessLogFormat()})
			continue
		}
		var ep *meshv1alpha1.MeshConfig_ExtensionProvider
		for _, p := range mesh.GetExtensionProviders() {
			if p.GetName() == name {
				ep = p
			}
		}
		switch {
		case ep == nil:
			g.warnf("Telemetry accessLogging provider %q: no such extensionProvider in the mesh config", name)
		case ep.GetEnvoyFileAccessLog() != nil:
			f := ep.GetEnvoyFileAccessLog()
			spec := accessLogSpec{path: f.GetPath()}
			if spec.path == "" {
				spec.path = "/dev/stdout"
			}
			if lf := f.GetLogFormat(); lf != nil {
				if lf.GetLabels() != nil {
					spec.json, spec.labels = true, lf.GetLabels()
				} else {
					spec.format = lf.GetText()
				}
			}
			out = append(out, spec)
		default:
			g.warnf("mesh extensionProvider %q: only envoyFileAccessLog access log providers are supported; ignored", name)
		}
	}
	return out
}

// fileAccessLog builds an envoy.access_loggers.file entry.
func (g *generator) fileAccessLog(spec accessLogSpec) *accesslogv3.AccessLog {
	format := &corev3.SubstitutionFormatString{}
	switch {
	case spec.labels != nil:
		format.Format = &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: spec.labels}
	case spec.json:
		fields := istioJSONLogFormat
		if spec.format != "" {
			var custom map[string]any
			if err := json.Unmarshal([]byte(spec.format), &custom); err != nil {
				g.warnf("mesh accessLogFormat: not a JSON object (%v); using Istio's default JSON format", err)
			} else {
				fields = map[string]string{}
				for k, v := range custom {
					if s, ok := v.(string); ok {
						fields[k] = s
					} else {
						g.warnf("mesh accessLogFormat key %q: only string values are supported; key ignored", k)
					}
				}
			}
		}
		st := &structpb.Struct{Fields: map[string]*structpb.Value{}}
		keys := make([]string, 0, len(fields))
		for k := range fields {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			st.Fields[k] = structpb.NewStringValue(fields[k])
		}
		format.Format = &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: st}
	default:
		text := spec.format
		if text == "" {
			text = istioTextLogFormat
		} else if !strings.HasSuffix(text, "\n") {
			text += "\n" // Istio terminates custom text formats
		}
		format.Format = &corev3.SubstitutionFormatString_TextFormatSource{TextFormatSource: &corev3.DataSource{
			Specifier: &corev3.DataSource_InlineString{InlineString: text},
		}}
	}
	return &accesslogv3.AccessLog{
		Name:       fileAccessLogName,
		ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: mustAny(&filev3.FileAccessLog{Path: spec.path, AccessLogFormat: &filev3.FileAccessLog_LogFormat{LogFormat: format}})},
	}
}
