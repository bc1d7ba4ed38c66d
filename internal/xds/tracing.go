package xds

import (
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tagv3 "github.com/envoyproxy/go-control-plane/envoy/type/tracing/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	telemetry "istio.io/api/telemetry/v1alpha1"
)

// Tracing defaults, Istio's.
const (
	// defaultTraceSampling is PILOT_TRACE_SAMPLING's default: 1% of
	// requests without a sampling decision start a trace.
	defaultTraceSampling = 1.0
	// LocalTraceCollectorCluster reaches the control plane's built-in trace
	// store, the Zipkin backend when the mesh config names none.
	LocalTraceCollectorCluster = "skein-tracestore"
	zipkinSpansPath            = "/api/v2/spans"
	otlpTracesPath             = "/v1/traces"
	defaultMaxPathTagLength    = 256
)

// tracingSpec is the tracing config in force for one connection manager:
// Telemetry tracing merged over the mesh config, as Istio merges them.
type tracingSpec struct {
	providers     []string // provider names (empty: mesh default)
	sampling      *float64
	disabled      bool // disableSpanReporting
	customTags    map[string]*telemetry.Tracing_CustomTag
	fromTelemetry bool
}

// applyTracing configures tracing: the HCM tracing provider and sampling from the mesh config and Telemetry tracing.
func (g *generator) applyTracing(hcm *hcmv3.HttpConnectionManager, kind hcmKind) {
	mesh, _ := g.pc.MeshConfig()
	spec := g.tracingSpec(kind)
	if !spec.fromTelemetry && !mesh.GetEnableTracing() {
		return
	}
	sampling := defaultTraceSampling
	if s := mesh.GetDefaultConfig().GetTracing().GetSampling(); s > 0 {
		sampling = s
	}
	if spec.sampling != nil {
		sampling = *spec.sampling
	}
	t := &hcmv3.HttpConnectionManager_Tracing{
		// Envoy's client_sampling (x-client-trace-id) and overall_sampling
		// stay at their 100% defaults, as Istio leaves them.
		RandomSampling:   &typev3.Percent{Value: sampling},
		MaxPathTagLength: wrapperspb.UInt32(defaultMaxPathTagLength),
	}
	if l := mesh.GetDefaultConfig().GetTracing().GetMaxPathTagLength(); l > 0 {
		t.MaxPathTagLength = wrapperspb.UInt32(l)
	}
	t.CustomTags = g.traceCustomTags(mesh, spec)
	if !spec.disabled {
		// Without a provider the proxy still samples and propagates
		// context but reports nothing: disableSpanReporting.
		if t.Provider = g.traceProvider(mesh, spec); t.Provider == nil {
			return // no backend anywhere: leave tracing off
		}
	}
	hcm.Tracing = t
}

// tracingSpec merges the Telemetry tracing entries that apply to this
// proxy and listener direction: more specific resources override less
// specific ones field by field; custom tags merge by name.
func (g *generator) tracingSpec(kind hcmKind) tracingSpec {
	var s tracingSpec
	for _, tel := range g.pc.Telemetries(g.proxy) {
		for _, tr := range tel.GetTracing() {
			if !workloadModeMatches(tr.GetMatch().GetMode(), kind) {
				continue
			}
			s.fromTelemetry = true
			if len(tr.GetProviders()) > 0 {
				s.providers = nil
				for _, p := range tr.GetProviders() {
					s.providers = append(s.providers, p.GetName())
				}
			}
			if v := tr.GetRandomSamplingPercentage(); v != nil {
				pct := v.GetValue()
				s.sampling = &pct
			}
			if v := tr.GetDisableSpanReporting(); v != nil {
				s.disabled = v.GetValue()
			}
			for k, v := range tr.GetCustomTags() {
				if s.customTags == nil {
					s.customTags = map[string]*telemetry.Tracing_CustomTag{}
				}
				s.customTags[k] = v
			}
		}
	}
	return s
}

// workloadModeMatches says whether a Telemetry match mode selects a
// connection manager: inbound is the SERVER side; outbound and gateway
// listeners are the CLIENT side, as in Istio.
func workloadModeMatches(mode telemetry.WorkloadMode, kind hcmKind) bool {
	switch mode {
	case telemetry.WorkloadMode_SERVER:
		return kind == hcmInbound
	case telemetry.WorkloadMode_CLIENT:
		return kind != hcmInbound
	}
	return true
}

// traceCustomTags builds Istio's standard span tags plus the mesh and
// Telemetry custom tags, sorted by name for stable output.
func (g *generator) traceCustomTags(mesh interface {
	GetDefaultConfig() *meshv1alpha1.ProxyConfig
}, spec tracingSpec) []*tagv3.CustomTag {
	lit := func(name, v string) *tagv3.CustomTag {
		return &tagv3.CustomTag{Tag: name, Type: &tagv3.CustomTag_Literal_{Literal: &tagv3.CustomTag_Literal{Value: v}}}
	}
	svc, rev := canonicalService(g.proxy.Labels, g.proxy.WorkloadName)
	tags := map[string]*tagv3.CustomTag{
		"istio.canonical_revision": lit("istio.canonical_revision", rev),
		"istio.canonical_service":  lit("istio.canonical_service", svc),
		"istio.mesh_id":            lit("istio.mesh_id", "cluster.local"),
		"istio.namespace":          lit("istio.namespace", g.proxy.Namespace),
	}
	if g.proxy.ClusterID != "" {
		tags["istio.cluster_id"] = lit("istio.cluster_id", g.proxy.ClusterID)
	}
	// Legacy mesh-wide tags (defaultConfig.tracing.custom_tags), then
	// Telemetry's, which win.
	for k, v := range mesh.GetDefaultConfig().GetTracing().GetCustomTags() {
		switch {
		case v.GetLiteral() != nil:
			tags[k] = lit(k, v.GetLiteral().GetValue())
		case v.GetEnvironment() != nil:
			tags[k] = envTag(k, v.GetEnvironment().GetName(), v.GetEnvironment().GetDefaultValue())
		case v.GetHeader() != nil:
			tags[k] = headerTag(k, v.GetHeader().GetName(), v.GetHeader().GetDefaultValue())
		}
	}
	for k, v := range spec.customTags {
		switch {
		case v.GetLiteral() != nil:
			tags[k] = lit(k, v.GetLiteral().GetValue())
		case v.GetEnvironment() != nil:
			tags[k] = envTag(k, v.GetEnvironment().GetName(), v.GetEnvironment().GetDefaultValue())
		case v.GetHeader() != nil:
			tags[k] = headerTag(k, v.GetHeader().GetName(), v.GetHeader().GetDefaultValue())
		default:
			g.warnf("Telemetry tracing customTags %q: only literal, environment and header tags are supported; tag ignored", k)
		}
	}
	names := make([]string, 0, len(tags))
	for k := range tags {
		names = append(names, k)
	}
	sort.Strings(names)
	out := make([]*tagv3.CustomTag, 0, len(names))
	for _, k := range names {
		out = append(out, tags[k])
	}
	return out
}

func envTag(name, env, def string) *tagv3.CustomTag {
	return &tagv3.CustomTag{Tag: name, Type: &tagv3.CustomTag_Environment_{Environment: &tagv3.CustomTag_Environment{Name: env, DefaultValue: def}}}
}

func headerTag(name, header, def string) *tagv3.CustomTag {
	return &tagv3.CustomTag{Tag: name, Type: &tagv3.CustomTag_RequestHeader{RequestHeader: &tagv3.CustomTag_Header{Name: header, DefaultValue: def}}}
}

// canonicalService is Istio's canonical service and revision of a workload.
func canonicalService(labels map[string]string, workload string) (string, string) {
	svc := firstNonEmpty(labels["service.istio.io/canonical-name"], labels["app.kubernetes.io/name"], labels["app"], workload)
	rev := firstNonEmpty(labels["service.istio.io/canonical-revision"], labels["app.kubernetes.io/version"], labels["version"], "latest")
	return svc, rev
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// traceProvider picks the tracer: the first Telemetry provider Skein
// supports, else the mesh's default tracing provider, else the legacy
// defaultConfig.tracing.zipkin address, else the built-in trace store.
func (g *generator) traceProvider(mesh interface {
	GetDefaultConfig() *meshv1alpha1.ProxyConfig
	GetDefaultProviders() *meshv1alpha1.MeshConfig_DefaultProviders
	GetExtensionProviders() []*meshv1alpha1.MeshConfig_ExtensionProvider
}, spec tracingSpec) *tracev3.Tracing_Http {
	names := spec.providers
	if len(names) == 0 {
		names = mesh.GetDefaultProviders().GetTracing()
	}
	for _, name := range names {
		var ep *meshv1alpha1.MeshConfig_ExtensionProvider
		for _, p := range mesh.GetExtensionProviders() {
			if p.GetName() == name {
				ep = p
				break
			}
		}
		if ep == nil {
			g.warnf("Telemetry tracing provider %q: no such extensionProvider in the mesh config", name)
			continue
		}
		switch {
		case ep.GetZipkin() != nil:
			z := ep.GetZipkin()
			path := z.GetPath()
			if path == "" {
				path = zipkinSpansPath
			}
			return zipkinProvider(g.collectorCluster(z.GetService(), z.GetPort()), path, !z.GetEnable_64BitTraceId())
		case ep.GetOpentelemetry() != nil:
			return g.otelProvider(ep.GetOpentelemetry())
		default:
			g.warnf("mesh extensionProvider %q: only zipkin and opentelemetry tracing providers are supported; ignored", name)
		}
	}
	if addr := mesh.GetDefaultConfig().GetTracing().GetZipkin().GetAddress(); addr != "" {
		host, portStr, err := net.SplitHostPort(addr)
		port, perr := strconv.ParseUint(portStr, 10, 32)
		if err != nil || perr != nil {
			g.warnf("mesh defaultConfig.tracing.zipkin.address %q: not host:port; using the built-in trace store", addr)
		} else {
			return zipkinProvider(g.collectorCluster(host, uint32(port)), zipkinSpansPath, true)
		}
	}
	if g.pc.TraceCollector == "" {
		return nil
	}
	g.needCollector(LocalTraceCollectorCluster, g.pc.TraceCollector)
	return zipkinProvider(LocalTraceCollectorCluster, zipkinSpansPath, true)
}

func zipkinProvider(cluster, path string, id128 bool) *tracev3.Tracing_Http {
	return &tracev3.Tracing_Http{
		Name: "envoy.tracers.zipkin",
		ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: mustAny(&tracev3.ZipkinConfig{
			CollectorCluster:         cluster,
			CollectorEndpoint:        path,
			TraceId_128Bit:           id128,
			SharedSpanContext:        wrapperspb.Bool(false),
			CollectorEndpointVersion: tracev3.ZipkinConfig_HTTP_JSON,
		})},
	}
}

func (g *generator) otelProvider(o *meshv1alpha1.MeshConfig_ExtensionProvider_OpenTelemetryTracingProvider) *tracev3.Tracing_Http {
	cluster := g.collectorCluster(o.GetService(), o.GetPort())
	svc, _ := canonicalService(g.proxy.Labels, g.proxy.WorkloadName)
	cfg := &tracev3.OpenTelemetryConfig{ServiceName: svc + "." + g.proxy.Namespace}
	if h := o.GetHttp(); h != nil {
		path := h.GetPath()
		if path == "" {
			path = otlpTracesPath
		}
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		timeout := h.GetTimeout().AsDuration()
		if h.GetTimeout() == nil {
			timeout = 5 * time.Second
		}
		hs := &corev3.HttpService{HttpUri: &corev3.HttpUri{
			Uri:              "http://" + net.JoinHostPort(o.GetService(), strconv.Itoa(int(o.GetPort()))) + path,
			HttpUpstreamType: &corev3.HttpUri_Cluster{Cluster: cluster},
			Timeout:          durationpb.New(timeout),
		}}
		for _, hdr := range h.GetHeaders() {
			hs.RequestHeadersToAdd = append(hs.RequestHeadersToAdd, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: hdr.GetName(), Value: hdr.GetValue()}})
		}
		cfg.HttpService = hs
	} else {
		gs := &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{
			ClusterName: cluster, Authority: o.GetService(),
		}}}
		if t := o.GetGrpc().GetTimeout(); t != nil {
			gs.Timeout = durationpb.New(t.AsDuration())
		}
		cfg.GrpcService = gs
	}
	return &tracev3.Tracing_Http{Name: "envoy.tracers.opentelemetry", ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: mustAny(cfg)}}
}

// collectorCluster names the cluster for a collector service as Istio
// does (outbound|port||host, the host resolved like other config hosts).
// A host the registry does not know gets a STRICT_DNS cluster of that name.
func (g *generator) collectorCluster(host string, port uint32) string {
	fqdn := host
	if g.pc.Registry != nil && g.pc.Registry.Service(host) == nil {
		if r := g.pc.ResolveHost(host, g.pc.RootNamespace); g.pc.Registry.Service(r) != nil {
			fqdn = r
		}
	}
	name := fmt.Sprintf("outbound|%d||%s", port, fqdn)
	g.needCollector(name, net.JoinHostPort(fqdn, strconv.Itoa(int(port))))
	return name
}

// needCollector records a collector cluster the proxy must have;
// addTraceCollectors creates those that CDS does not already carry.
func (g *generator) needCollector(name, addr string) {
	if g.collectors == nil {
		g.collectors = map[string]string{}
	}
	g.collectors[name] = addr
}

// addTraceCollectors appends the collector clusters tracing needs and the
// other clusters lack: STATIC for an IP, STRICT_DNS for a name.
func (g *generator) addTraceCollectors(res *Resources) {
	names := make([]string, 0, len(g.collectors))
	for n := range g.collectors {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		// A scan, not a set of every cluster name: there are a few
		// collectors but a thousand clusters, for every proxy of a push.
		if slices.ContainsFunc(res.Clusters, func(c *clusterv3.Cluster) bool { return c.GetName() == name }) {
			continue
		}
		host, portStr, _ := net.SplitHostPort(g.collectors[name])
		port, _ := strconv.ParseUint(portStr, 10, 32)
		typ := clusterv3.Cluster_STRICT_DNS
		if net.ParseIP(host) != nil {
			typ = clusterv3.Cluster_STATIC
		}
		res.Clusters = append(res.Clusters, &clusterv3.Cluster{
			Name:                 name,
			ConnectTimeout:       durationpb.New(defaultConnectTimeout),
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: typ},
			LoadAssignment: &endpointv3.ClusterLoadAssignment{
				ClusterName: name,
				Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
					HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddress(host, uint32(port))}},
				}}}},
			},
		})
	}
}
