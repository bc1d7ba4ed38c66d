package xds

import (
	"regexp"
	"sort"
	"strconv"
	"strings"

	udpav1 "github.com/cncf/xds/go/udpa/type/v1"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/structpb"
	telemetry "istio.io/api/telemetry/v1alpha1"

	"github.com/skein-mesh/skein/internal/proxy/attribute"
)

// Istio's stats filter, configured by a TypedStruct as Istio emits it.
const (
	IstioStatsFilter  = "istio.stats"
	IstioStatsTypeURL = "type.googleapis.com/stats.PluginConfig"
)

// Istio's proxyStatsMatcher annotations on the pod.
const (
	annoStatsInclusionPrefixes = "sidecar.istio.io/statsInclusionPrefixes"
	annoStatsInclusionSuffixes = "sidecar.istio.io/statsInclusionSuffixes"
	annoStatsInclusionRegexps  = "sidecar.istio.io/statsInclusionRegexps"
	annoStatsExclusionRegexps  = "sidecar.istio.io/statsExclusionRegexps"
)

// Istio's bootstrap always includes these Envoy stats; proxyStatsMatcher
// and the annotations add to them.
var (
	defaultStatsPrefixes = []string{"reporter=", "cluster_manager", "listener_manager", "server", "cluster.xds-grpc", "wasm", "component", "istio"}
	defaultStatsSuffixes = []string{"rbac.allowed", "rbac.denied", "shadow_allowed", "shadow_denied", "downstream_cx_active"}
)

// istioMetricNames maps Telemetry's IstioMetric to the PluginConfig metric
// names (Istio's metric names without "istio_").
var istioMetricNames = map[telemetry.MetricSelector_IstioMetric]string{
	telemetry.MetricSelector_ALL_METRICS:            "",
	telemetry.MetricSelector_REQUEST_COUNT:          "requests_total",
	telemetry.MetricSelector_REQUEST_DURATION:       "request_duration_milliseconds",
	telemetry.MetricSelector_REQUEST_SIZE:           "request_bytes",
	telemetry.MetricSelector_RESPONSE_SIZE:          "response_bytes",
	telemetry.MetricSelector_GRPC_REQUEST_MESSAGES:  "request_messages_total",
	telemetry.MetricSelector_GRPC_RESPONSE_MESSAGES: "response_messages_total",
	telemetry.MetricSelector_TCP_OPENED_CONNECTIONS: "tcp_connections_opened_total",
	telemetry.MetricSelector_TCP_CLOSED_CONNECTIONS: "tcp_connections_closed_total",
	telemetry.MetricSelector_TCP_SENT_BYTES:         "tcp_sent_bytes_total",
	telemetry.MetricSelector_TCP_RECEIVED_BYTES:     "tcp_received_bytes_total",
}

// applyStats configures Istio's standard metrics: the istio.stats filter
// (requests, durations, sizes, and the metadata exchange that labels them)
// first in the chain, configured from Telemetry metrics overrides for this
// side (inbound: SERVER, outbound and gateways: CLIENT) and the
// proxyStatsMatcher (mesh config and pod annotations), which the proxy
// applies to its /stats/prometheus output.
func (g *generator) applyStats(hcm *hcmv3.HttpConnectionManager, kind hcmKind) {
	cfg := map[string]any{}
	if metrics := g.metricOverrides(kind); len(metrics) > 0 {
		cfg["metrics"] = metrics
	}
	cfg["stats_matcher"] = g.statsMatcher()
	if kind == hcmInbound {
		if svcs := g.inboundServices(hcm.GetStatPrefix()); len(svcs) > 0 {
			cfg["inbound_services"] = toAny(svcs)
		}
	}
	value, err := structpb.NewStruct(cfg)
	if err != nil {
		g.warnf("istio.stats config for %s: %v", hcm.GetStatPrefix(), err)
		return
	}
	f := &hcmv3.HttpFilter{
		Name:       IstioStatsFilter,
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&udpav1.TypedStruct{TypeUrl: IstioStatsTypeURL, Value: value})},
	}
	hcm.HttpFilters = append([]*hcmv3.HttpFilter{f}, hcm.HttpFilters...)
}

// metricOverrides turns the Telemetry metrics overrides for the prometheus
// provider that apply to this side into PluginConfig metrics entries,
// least specific Telemetry first so later entries win.
func (g *generator) metricOverrides(kind hcmKind) []any {
	var out []any
	for _, t := range g.pc.Telemetries(g.proxy) {
		for _, m := range t.GetMetrics() {
			if !usesPrometheus(m.GetProviders()) {
				continue
			}
			for _, o := range m.GetOverrides() {
				if !modeApplies(o.GetMatch().GetMode(), kind) {
					continue
				}
				if o.GetMatch().GetCustomMetric() != "" {
					g.warnf("Telemetry metrics override for custom metric %q: custom metrics are not supported", o.GetMatch().GetCustomMetric())
					continue
				}
				name, ok := istioMetricNames[o.GetMatch().GetMetric()]
				if !ok {
					g.warnf("Telemetry metrics override for %s: unknown metric; it is ignored", o.GetMatch().GetMetric())
					continue
				}
				entry := map[string]any{"name": name}
				if o.GetDisabled().GetValue() {
					entry["drop"] = true
				}
				dims := map[string]any{}
				var remove []any
				tags := make([]string, 0, len(o.GetTagOverrides()))
				for tag := range o.GetTagOverrides() {
					tags = append(tags, tag)
				}
				sort.Strings(tags)
				for _, tag := range tags {
					to := o.GetTagOverrides()[tag]
					switch to.GetOperation() {
					case telemetry.MetricsOverrides_TagOverride_REMOVE:
						remove = append(remove, tag)
					case telemetry.MetricsOverrides_TagOverride_UPSERT:
						if _, err := attribute.Parse(to.GetValue()); err != nil {
							g.warnf("Telemetry metrics tagOverrides[%q].value: %v; the override is ignored", tag, err)
							continue
						}
						dims[tag] = to.GetValue()
					}
				}
				if len(dims) > 0 {
					entry["dimensions"] = dims
				}
				if len(remove) > 0 {
					entry["tags_to_remove"] = remove
				}
				out = append(out, entry)
			}
		}
	}
	return out
}

// inboundServices lists the services whose endpoints at this proxy have
// the connection manager's port ("inbound_0.0.0.0_<port>"): Istio's inbound
// cluster metadata, from which the server side takes destination_service.
func (g *generator) inboundServices(statPrefix string) []string {
	i := strings.LastIndexByte(statPrefix, '_')
	port, err := strconv.ParseUint(statPrefix[i+1:], 10, 32)
	if i < 0 || err != nil {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for _, ep := range g.pc.Registry.InstancesAt(g.proxy.IP) {
		host := string(ep.Hostname)
		if ep.Namespace != g.proxy.Namespace || ep.Port != uint32(port) || seen[host] {
			continue
		}
		seen[host] = true
		out = append(out, host)
	}
	sort.Strings(out)
	return out
}

// usesPrometheus: no providers means the mesh default (prometheus).
func usesPrometheus(ps []*telemetry.ProviderRef) bool {
	if len(ps) == 0 {
		return true
	}
	for _, p := range ps {
		if p.GetName() == "prometheus" {
			return true
		}
	}
	return false
}

func modeApplies(mode telemetry.WorkloadMode, kind hcmKind) bool {
	switch mode {
	case telemetry.WorkloadMode_CLIENT:
		return kind != hcmInbound
	case telemetry.WorkloadMode_SERVER:
		return kind == hcmInbound
	}
	return true
}

// statsMatcher is the proxyStatsMatcher: Istio's default inclusions plus
// the pod's annotations, or else the mesh defaultConfig's lists.
func (g *generator) statsMatcher() map[string]any {
	pc := g.pc
	mesh, _ := pc.MeshConfig() // a bad mesh config still yields defaults; reported elsewhere
	psm := mesh.GetDefaultConfig().GetProxyStatsMatcher()
	prefixes, suffixes, regexps := psm.GetInclusionPrefixes(), psm.GetInclusionSuffixes(), psm.GetInclusionRegexps()
	exclusions := mesh.StatsExclusionRegexps
	if ann, ok := pc.PodAnnotations(g.proxy.Namespace, g.proxy.PodName); ok {
		if v, ok := ann[annoStatsInclusionPrefixes]; ok {
			prefixes = splitList(v)
		}
		if v, ok := ann[annoStatsInclusionSuffixes]; ok {
			suffixes = splitList(v)
		}
		if v, ok := ann[annoStatsInclusionRegexps]; ok {
			regexps = splitList(v)
		}
		if v, ok := ann[annoStatsExclusionRegexps]; ok {
			exclusions = splitList(v)
		}
	}
	m := map[string]any{
		"inclusion_prefixes": toAny(append(append([]string(nil), defaultStatsPrefixes...), prefixes...)),
		"inclusion_suffixes": toAny(append(append([]string(nil), defaultStatsSuffixes...), suffixes...)),
	}
	if v := g.validRegexps("inclusionRegexps", regexps); len(v) > 0 {
		m["inclusion_regexps"] = v
	}
	if v := g.validRegexps("exclusionRegexps", exclusions); len(v) > 0 {
		m["exclusion_regexps"] = v
	}
	return m
}

// validRegexps drops (with a warning) regexps the proxy would NACK.
func (g *generator) validRegexps(field string, res []string) []any {
	var out []any
	for i, re := range res {
		if _, err := regexp.Compile(re); err != nil {
			g.warnf("proxyStatsMatcher %s[%d] %q: %v", field, i, re, err)
			continue
		}
		out = append(out, re)
	}
	return out
}

// splitList reads Istio's comma-separated annotation lists.
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
