package xds

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/skein-mesh/skein/internal/model"
)

// Most of a proxy's config — the outbound clusters, their endpoints and the
// sidecar's outbound route configurations — does not depend on which pod the
// proxy runs in, only on its type, namespace and the few labels some config
// selects on. At scale (1000 services × 2000 sidecars) building it once per
// proxy dominated every push, so it is built once per distinct sharedKey per
// push context and handed to every such proxy (the same proto pointers:
// nothing mutates a resource once built; applyEnvoyFilters patches copies).
//
// The key covers every input by construction: the shared part is generated
// for a synthetic proxy that holds only the key's fields (see keyProxy), so
// anything it reads about the proxy is in the key. Listeners, inbound
// clusters, well-known and trace collector clusters stay per proxy (they
// read the pod's IP, instances, name and telemetry selection).

// shared is the proxy-independent part of one Generate, with the warnings
// each step produced so Generate can keep them in their original order.
type shared struct {
	clusters         []*clusterv3.Cluster
	clusterWarnings  []string
	routes           []*routev3.RouteConfiguration // sidecars only
	routeWarnings    []string
	endpoints        []*endpointv3.ClusterLoadAssignment
	endpointWarnings []string
}

// sharedKey names everything the shared part reads about a proxy.
type sharedKey struct {
	typ       model.ProxyType
	namespace string
	// labels are the proxy's labels restricted to the keys some selector in
	// the push context reads (VirtualService sourceLabels, Sidecar
	// workloadSelector), encoded unambiguously.
	labels string
}

// pushCache holds the shared parts built for one push context (and kept
// in it: model.Memo).
type pushCache struct {
	// selectorKeys are the label keys any selector the shared part
	// evaluates can read; other labels cannot change it.
	selectorKeys []string

	mu      sync.Mutex
	entries map[sharedKey]*sharedEntry

	// builds counts what was generated for this push, by type (tests and
	// profiles: a VirtualService change builds routes only).
	builds BuildCounts
}

// BuildCounts is how many shared parts a push generated, by type.
type BuildCounts struct {
	Clusters, Routes, Endpoints atomic.Int64
}

// Builds returns the shared generation counts of pc.
func Builds(pc *model.PushContext) *BuildCounts { return &cacheFor(pc).builds }

type sharedEntry struct {
	once sync.Once
	val  *shared
	// done is val once built, for a later push to reuse without waiting.
	done atomic.Pointer[shared]
}

// sharedCaches is where each push context keeps its pushCache: the cache
// lives and dies with the push it was built from.
var sharedCaches = model.NewMemoKey[pushCache]("xds shared translation")

func cacheFor(pc *model.PushContext) *pushCache {
	return model.Memo(pc, sharedCaches, func() *pushCache {
		return &pushCache{selectorKeys: selectorKeys(pc), entries: map[sharedKey]*sharedEntry{}}
	})
}

// selectorKeys lists the label keys read by the selectors the shared part
// evaluates against the proxy's labels (VirtualService match sourceLabels,
// Sidecar workloadSelectors; model.PushContext.ProxyLabelSelectors).
func selectorKeys(pc *model.PushContext) []string {
	set := map[string]bool{}
	for _, sel := range pc.ProxyLabelSelectors() {
		for k := range sel {
			set[k] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

func (c *pushCache) key(p *model.Proxy) sharedKey {
	var b strings.Builder
	for _, k := range c.selectorKeys {
		if v, ok := p.Labels[k]; ok {
			b.WriteString(strconv.Quote(k))
			b.WriteByte('=')
			b.WriteString(strconv.Quote(v))
			b.WriteByte(',')
		}
	}
	return sharedKey{typ: p.Type, namespace: p.Namespace, labels: b.String()}
}

// keyProxy is the synthetic proxy the shared part is built for: only the
// key's fields are set, so the result cannot depend on anything else.
func (c *pushCache) keyProxy(p *model.Proxy) *model.Proxy {
	var labels map[string]string
	for _, k := range c.selectorKeys {
		if v, ok := p.Labels[k]; ok {
			if labels == nil {
				labels = map[string]string{}
			}
			labels[k] = v
		}
	}
	return &model.Proxy{Type: p.Type, Namespace: p.Namespace, Labels: labels}
}

// sharedFor returns the shared part for proxy, building it on first use.
// Concurrent callers with the same key wait for one build.
func sharedFor(pc *model.PushContext, proxy *model.Proxy) *shared {
	c := cacheFor(pc)
	k := c.key(proxy)
	c.mu.Lock()
	e := c.entries[k]
	if e == nil {
		e = &sharedEntry{}
		c.entries[k] = e
	}
	c.mu.Unlock()
	e.once.Do(func() {
		e.val = buildShared(pc, c, c.keyProxy(proxy), reusable(pc, k))
		e.done.Store(e.val)
	})
	return e.val
}

// routeOnlyKinds are the kinds whose changes cannot change outbound
// clusters or endpoints (Istio's PushRequest.ConfigsUpdated check): routes
// read VirtualServices, gateways and policies build per proxy.
var routeOnlyKinds = map[string]bool{"VirtualService": true, "Gateway": true, "AuthorizationPolicy": true, "RequestAuthentication": true}

// reusable returns the previous push's shared part for key k when only
// kinds that cannot change its clusters and endpoints changed since.
func reusable(pc *model.PushContext, k sharedKey) *shared {
	prev := pc.Previous()
	if prev == nil {
		return nil
	}
	for kind := range pc.ConfigsUpdated() {
		if !routeOnlyKinds[kind] {
			return nil
		}
	}
	// A Sidecar egress scope imports VirtualService destinations.
	if pc.ConfigsUpdated()["VirtualService"] && (pc.HasEgressScopes() || prev.HasEgressScopes()) {
		return nil
	}
	pcache := cacheFor(prev)
	if !slices.Equal(pcache.selectorKeys, cacheFor(pc).selectorKeys) {
		return nil
	}
	pcache.mu.Lock()
	e := pcache.entries[k]
	pcache.mu.Unlock()
	if e == nil {
		return nil
	}
	return e.done.Load()
}

// buildShared builds the shared part for kp; with prev (reusable), only
// its routes.
func buildShared(pc *model.PushContext, c *pushCache, kp *model.Proxy, prev *shared) *shared {
	g := &generator{pc: pc, proxy: kp}
	s := &shared{}
	if prev != nil {
		s.clusters, s.clusterWarnings = prev.clusters, prev.clusterWarnings
		s.endpoints, s.endpointWarnings = prev.endpoints, prev.endpointWarnings
	} else {
		c.builds.Clusters.Add(1)
		s.clusters = g.buildOutboundClusters()
		s.clusterWarnings, g.warnings = g.warnings, nil
	}
	if kp.Type == model.SidecarProxy {
		c.builds.Routes.Add(1)
		for _, port := range g.outboundHTTPPorts() {
			s.routes = append(s.routes, g.buildSidecarRoute(port))
		}
		s.routeWarnings, g.warnings = g.warnings, nil
	}
	if prev != nil {
		return s
	}
	c.builds.Endpoints.Add(1)
	for _, ref := range g.edsClusters {
		s.endpoints = append(s.endpoints, g.loadAssignment(ref.cluster, ref.svc, ref.port, ref.subset))
	}
	s.endpointWarnings = g.warnings
	return s
}
