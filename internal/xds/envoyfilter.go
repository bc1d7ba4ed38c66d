package xds

// EnvoyFilter patching. Istio applies EnvoyFilters to the Envoy config it
// generated for a proxy, as the last step of translation; so do we. Each
// patch names what it applies to (applyTo), where (match: context, proxy,
// listener/filter chain/filter, route configuration/virtual host/route,
// cluster) and how (operation and value). A value that does not parse as
// the target Envoy type skips the whole EnvoyFilter with a warning; values
// that parse but name something the proxy does not implement are sent, and
// the proxy NACKs them, as Envoy would.

import (
	"fmt"
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/skein-mesh/skein/internal/model"
	"github.com/skein-mesh/skein/internal/proxy/nodemeta"
)

// The EnvoyFilters themselves are compiled once per push by the model
// (model.EnvoyFilterWrapper: values decoded, regexes compiled); this file
// and envoyfilter_*.go apply them to one proxy's resources: listeners,
// filter chains and filters (envoyfilter_listeners.go), route
// configurations (envoyfilter_routes.go), clusters and the references
// between resources (envoyfilter_clusters.go).

// patchWarnf warns about one patch, naming its EnvoyFilter and index.
func (g *generator) patchWarnf(p *model.EnvoyFilterPatch, format string, args ...any) {
	g.warnf("EnvoyFilter %s: spec.configPatches[%d]: %s", p.Source, p.Index, fmt.Sprintf(format, args...))
}

// applyToOrder is the order patch kinds are applied in: a listener is
// added before filters are inserted into it, and so on.
var applyToOrder = []networking.EnvoyFilter_ApplyTo{
	networking.EnvoyFilter_LISTENER,
	networking.EnvoyFilter_FILTER_CHAIN,
	networking.EnvoyFilter_NETWORK_FILTER,
	networking.EnvoyFilter_HTTP_FILTER,
	networking.EnvoyFilter_ROUTE_CONFIGURATION,
	networking.EnvoyFilter_VIRTUAL_HOST,
	networking.EnvoyFilter_HTTP_ROUTE,
	networking.EnvoyFilter_CLUSTER,
}

// allowedOps lists, per applyTo, the operations Istio honours.
var allowedOps = map[networking.EnvoyFilter_ApplyTo][]networking.EnvoyFilter_Patch_Operation{
	networking.EnvoyFilter_LISTENER:            {networking.EnvoyFilter_Patch_ADD, networking.EnvoyFilter_Patch_REMOVE, networking.EnvoyFilter_Patch_MERGE},
	networking.EnvoyFilter_FILTER_CHAIN:        {networking.EnvoyFilter_Patch_ADD, networking.EnvoyFilter_Patch_REMOVE, networking.EnvoyFilter_Patch_MERGE},
	networking.EnvoyFilter_NETWORK_FILTER:      allFilterOps,
	networking.EnvoyFilter_HTTP_FILTER:         allFilterOps,
	networking.EnvoyFilter_ROUTE_CONFIGURATION: {networking.EnvoyFilter_Patch_MERGE},
	networking.EnvoyFilter_VIRTUAL_HOST:        {networking.EnvoyFilter_Patch_ADD, networking.EnvoyFilter_Patch_REMOVE, networking.EnvoyFilter_Patch_MERGE},
	networking.EnvoyFilter_HTTP_ROUTE: {networking.EnvoyFilter_Patch_MERGE, networking.EnvoyFilter_Patch_REMOVE,
		networking.EnvoyFilter_Patch_INSERT_BEFORE, networking.EnvoyFilter_Patch_INSERT_AFTER, networking.EnvoyFilter_Patch_INSERT_FIRST},
	networking.EnvoyFilter_CLUSTER: {networking.EnvoyFilter_Patch_ADD, networking.EnvoyFilter_Patch_REMOVE, networking.EnvoyFilter_Patch_MERGE},
}

var allFilterOps = []networking.EnvoyFilter_Patch_Operation{
	networking.EnvoyFilter_Patch_MERGE, networking.EnvoyFilter_Patch_ADD, networking.EnvoyFilter_Patch_REMOVE,
	networking.EnvoyFilter_Patch_INSERT_BEFORE, networking.EnvoyFilter_Patch_INSERT_AFTER,
	networking.EnvoyFilter_Patch_INSERT_FIRST, networking.EnvoyFilter_Patch_REPLACE,
}

// legacyNames maps the deprecated filter names EnvoyFilters still use to
// the canonical ones our resources carry.
var legacyNames = map[string]string{
	"envoy.http_connection_manager": HTTPConnectionManager,
	"envoy.tcp_proxy":               TCPProxy,
	"envoy.router":                  RouterFilter,
	"envoy.cors":                    "envoy.filters.http.cors",
	"envoy.fault":                   "envoy.filters.http.fault",
	"envoy.lua":                     "envoy.filters.http.lua",
}

func canonicalName(n string) string {
	if c, ok := legacyNames[n]; ok {
		return c
	}
	return n
}

// applyEnvoyFilters patches the finished resources with the EnvoyFilters
// that select the proxy, then restores the cross-references (RDS names,
// EDS clusters) the patches may have changed.
func (g *generator) applyEnvoyFilters(res *Resources) {
	filters := g.pc.EnvoyFilters(g.proxy)
	if len(filters) == 0 {
		return
	}
	var patches []*model.EnvoyFilterPatch
	for _, w := range filters {
		if w.Err != nil {
			g.warnf("EnvoyFilter %s/%s skipped: %v", w.Namespace, w.Name, w.Err)
			continue
		}
		patches = append(patches, w.Patches...)
	}
	// Translation shares sub-messages between resources (one filter in
	// several chains); patches must change each place on its own.
	cloneAll(res.Listeners)
	cloneAll(res.Routes)
	cloneAll(res.Clusters)
	for _, kind := range applyToOrder {
		for _, p := range patches {
			if p.ApplyTo != kind || !g.proxyMatches(p) {
				continue
			}
			if !slices.Contains(allowedOps[kind], p.Operation) {
				g.patchWarnf(p, "operation %s is not supported for applyTo %s; patch ignored", p.Operation, kind)
				continue
			}
			switch kind {
			case networking.EnvoyFilter_CLUSTER:
				g.patchClusters(res, p)
			case networking.EnvoyFilter_ROUTE_CONFIGURATION, networking.EnvoyFilter_VIRTUAL_HOST, networking.EnvoyFilter_HTTP_ROUTE:
				g.patchRouteConfigs(res, p)
			default:
				g.patchListeners(res, p)
			}
		}
	}
	for _, p := range patches {
		if !p.Supported {
			g.patchWarnf(p, "applyTo %s is not supported; patch ignored", p.ApplyTo)
		}
	}
	g.reconcileReferences(res)
}

func cloneAll[T proto.Message](list []T) {
	for i, m := range list {
		list[i] = proto.Clone(m).(T)
	}
}

// proxyMatches checks match.proxy: the proxy version regex and metadata.
func (g *generator) proxyMatches(p *model.EnvoyFilterPatch) bool {
	pm := p.Match.GetProxy()
	if pm == nil {
		return true
	}
	if p.ProxyVersion != nil && !p.ProxyVersion.MatchString(g.proxy.Version) {
		return false
	}
	for k, want := range pm.GetMetadata() {
		var got string
		switch k {
		case nodemeta.KeyNamespace:
			got = g.proxy.Namespace
		case nodemeta.KeyServiceAccount:
			got = g.proxy.ServiceAccount
		case nodemeta.KeyWorkloadName:
			got = g.proxy.WorkloadName
		case nodemeta.KeyClusterID:
			got = g.proxy.ClusterID
		case nodemeta.KeyInterceptionMode:
			got = g.proxy.InterceptionMode
		case nodemeta.KeyIstioVersion:
			got = g.proxy.Version
		default:
			return false
		}
		if got != want {
			return false
		}
	}
	return true
}

// contextMatches checks match.context for an object that is (or is not)
// on the inbound path.
func (g *generator) contextMatches(p *model.EnvoyFilterPatch, inbound bool) bool {
	switch p.Match.GetContext() {
	case networking.EnvoyFilter_ANY:
		return true
	case networking.EnvoyFilter_SIDECAR_INBOUND:
		return g.proxy.Type == model.SidecarProxy && inbound
	case networking.EnvoyFilter_SIDECAR_OUTBOUND:
		return g.proxy.Type == model.SidecarProxy && !inbound
	case networking.EnvoyFilter_GATEWAY:
		return g.proxy.Type == model.Router
	}
	return false
}

func (g *generator) inboundListener(l *listenerv3.Listener) bool {
	return g.proxy.Type == model.SidecarProxy &&
		(l.GetName() == VirtualInboundListener || l.GetTrafficDirection() == corev3.TrafficDirection_INBOUND)
}
