package xds

import (
	"fmt"
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/skein-mesh/skein/internal/model"
)

// Resources is everything one proxy receives at one push.
type Resources struct {
	Listeners []*listenerv3.Listener
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
	Endpoints []*endpointv3.ClusterLoadAssignment
	// SharedClusters is how many of the first Clusters are the ones every
	// proxy with the same shared key gets (the same pointers, in the same
	// order; cache.go), so a server can hash and encode them once for all
	// of those proxies. 0 when an EnvoyFilter changed them.
	SharedClusters int
	// Warnings name config that translation could not honour.
	Warnings []string
}

// edsRef remembers an EDS cluster so its endpoints can be built.
type edsRef struct {
	cluster string
	svc     *model.Service
	port    model.Port
	subset  string
}

type generator struct {
	pc          *model.PushContext
	proxy       *model.Proxy
	edsClusters []edsRef
	routeNames  []string
	warnings    []string
	// collectors are telemetry collector clusters (name → host:port) that
	// tracing config refers to; see addTraceCollectors.
	collectors map[string]string
	// egress is the Sidecar egress scope, once scopeDone (scope.go).
	egress    *model.EgressScope
	scopeDone bool
}

func (g *generator) warnf(format string, args ...any) {
	g.warnings = append(g.warnings, fmt.Sprintf(format, args...))
}

// Generate translates the push context into the resources for one proxy.
// The parts that do not depend on the individual pod are shared between
// proxies of one push (cache.go); callers must not mutate the result.
func Generate(pc *model.PushContext, proxy *model.Proxy) *Resources {
	g := &generator{pc: pc, proxy: proxy}
	sh := sharedFor(pc, proxy)
	res := &Resources{}
	// Appending to nil slices copies: the shared slices' backing arrays are
	// never written (applyEnvoyFilters replaces elements in place).
	res.Clusters = append(res.Clusters, sh.clusters...)
	g.warnings = append(g.warnings, sh.clusterWarnings...)
	switch proxy.Type {
	case model.SidecarProxy:
		inbound := g.inboundPorts()
		res.Clusters = append(res.Clusters, g.buildInboundClusters(inbound)...)
		res.Listeners = g.buildSidecarListeners(inbound)
		res.Routes = append(res.Routes, sh.routes...)
		g.warnings = append(g.warnings, sh.routeWarnings...)
	case model.Router:
		res.Listeners, res.Routes = g.buildGateway()
	}
	res.Clusters = append(res.Clusters, wellKnownClusters(proxy)...)
	g.addTraceCollectors(res)
	// The shared endpoints themselves: nothing writes a Resources' Endpoints
	// in place (reconcileReferences builds a new list), and the capacity
	// limit makes any append copy.
	res.Endpoints = sh.endpoints[:len(sh.endpoints):len(sh.endpoints)]
	g.warnings = append(g.warnings, sh.endpointWarnings...)
	g.applyEnvoyFilters(res)
	if len(res.Clusters) >= len(sh.clusters) && slices.Equal(res.Clusters[:len(sh.clusters)], sh.clusters) {
		res.SharedClusters = len(sh.clusters)
	}
	res.Warnings = dedupe(g.warnings)
	return res
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// mustAny packs a message whose type is always registered; failure is a
// programming error.
func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(fmt.Sprintf("pack %T: %v", m, err))
	}
	return a
}
