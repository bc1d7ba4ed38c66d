package model

import (
	"strings"
	"sync"
	"sync/atomic"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/skein-mesh/skein/internal/config"
)

// ServiceDiscovery is what translation needs from the registry.
type ServiceDiscovery interface {
	Services() []*Service
	Service(host string) *Service
	Endpoints(host string, servicePort uint32) []*Endpoint
	// InstancesAt returns every endpoint, ready or not, whose address is ip:
	// the services a proxy's own workload serves.
	InstancesAt(ip string) []*Endpoint
}

// PushContext is one immutable generation of everything translation reads.
// It is built once per config/registry change and shared by all proxies.
// Translation reads config only through its indexes; the store snapshot it
// was built from stays private, so no reader can reorder what the store
// shares with its other readers.
type PushContext struct {
	Version       string
	Registry      ServiceDiscovery
	Domain        string // cluster DNS domain, "cluster.local"
	RootNamespace string // mesh-wide config namespace, "istio-system"
	// TraceCollector is host:port of the control plane's built-in trace
	// store (Zipkin API), the tracing backend when the mesh names none;
	// empty disables that default.
	TraceCollector string

	cfg config.Reader // the store snapshot: read only by this package

	// Indexes, built once in NewPushContext and never written after.
	virtualServices  []*config.Object // store order; MeshVirtualServices sorts a copy
	destinationRules []*config.Object
	gateways         []*config.Object
	envoyFilters     []*EnvoyFilterWrapper // in Istio's application order
	sidecarObjs      []*config.Object
	authzPolicies    byNamespace // each in CreationOrder
	requestAuthn     byNamespace // each in CreationOrder
	peerAuthn        byNamespace // each oldest first
	sidecars         byNamespace // store order
	egress           map[*networking.Sidecar]*compiledEgress
	telemetries      byNamespace // store order
	proxySelectors   []map[string]string

	meshOnce sync.Once
	mesh     *Mesh
	meshErr  error

	memos sync.Map // *MemoKey[T] → *memoEntry; see Memo

	// previous and changed: see SetPrevious (changes.go).
	previous atomic.Pointer[PushContext]
	changed  map[string]bool
}

// NewPushContext indexes the config for translation. cfg is read here and
// by lookups of single objects (Secrets, Pods, the mesh ConfigMap), never
// modified.
func NewPushContext(version string, cfg config.Reader, reg ServiceDiscovery, domain, rootNamespace string) *PushContext {
	pc := &PushContext{
		Version: version, cfg: cfg, Registry: reg, Domain: domain, RootNamespace: rootNamespace,
		virtualServices:  cfg.List("VirtualService"),
		destinationRules: cfg.List("DestinationRule"),
		gateways:         cfg.List("Gateway"),
		sidecarObjs:      cfg.List("Sidecar"),
		authzPolicies:    indexByNamespace(sortedCopy(cfg.List("AuthorizationPolicy"), CreationOrder)),
		requestAuthn:     indexByNamespace(sortedCopy(cfg.List("RequestAuthentication"), CreationOrder)),
		peerAuthn:        indexByNamespace(sortedCopy(cfg.List("PeerAuthentication"), olderThan)),
		sidecars:         indexByNamespace(cfg.List("Sidecar")),
		telemetries:      indexByNamespace(cfg.List("Telemetry")),
	}
	pc.envoyFilters = pc.indexEnvoyFilters(cfg.List("EnvoyFilter"))
	pc.proxySelectors = proxyLabelSelectors(pc.virtualServices, pc.sidecarObjs)
	pc.egress = map[*networking.Sidecar]*compiledEgress{}
	for _, o := range pc.sidecarObjs {
		sc := o.Spec.(*networking.Sidecar)
		pc.egress[sc] = compileEgress(sc)
	}
	return pc
}

// ResolveHost turns a host as written in config in namespace ns into the
// fully qualified name: short names ("reviews") become
// reviews.<ns>.svc.<domain>; "name.ns" and "name.ns.svc" are completed when
// they name a known Kubernetes service; anything else is taken literally.
func (pc *PushContext) ResolveHost(host, ns string) string {
	if host == "" || strings.HasPrefix(host, "*") {
		return host
	}
	if !strings.Contains(host, ".") {
		return host + "." + ns + ".svc." + pc.Domain
	}
	for _, candidate := range []string{host + ".svc." + pc.Domain, host + "." + pc.Domain} {
		if pc.Registry != nil && pc.Registry.Service(candidate) != nil {
			return candidate
		}
	}
	return host
}

// exportedTo reports whether an object with the given exportTo list is
// visible from namespace ns ("." = own namespace, "*" or empty = all).
func exportedTo(exportTo []string, objNS, ns string) bool {
	if len(exportTo) == 0 {
		return true
	}
	for _, e := range exportTo {
		if e == "*" || e == ns || e == "." && objNS == ns {
			return true
		}
	}
	return false
}

// MeshVirtualServices returns the VirtualServices that apply to sidecars in
// namespace ns (gateways empty or containing "mesh"), in creation order as
// Istio merges them.
func (pc *PushContext) MeshVirtualServices(ns string) []*config.Object {
	var out []*config.Object
	for _, o := range pc.virtualServices {
		vs := o.Spec.(*networking.VirtualService)
		if !exportedTo(vs.GetExportTo(), o.Meta.Namespace, ns) {
			continue
		}
		if len(vs.GetGateways()) == 0 || contains(vs.GetGateways(), "mesh") {
			out = append(out, o)
		}
	}
	sortByCreation(out)
	return out
}

// VirtualServices returns every VirtualService, in the store's
// namespace/name order. The slice is shared: do not modify it.
func (pc *PushContext) VirtualServices() []*config.Object { return pc.virtualServices }

// GatewayVirtualServices returns the VirtualServices bound to the gateway
// named "namespace/name".
func (pc *PushContext) GatewayVirtualServices(gateway string) []*config.Object {
	var out []*config.Object
	for _, o := range pc.virtualServices {
		vs := o.Spec.(*networking.VirtualService)
		for _, g := range vs.GetGateways() {
			if pc.QualifyGateway(g, o.Meta.Namespace) == gateway {
				out = append(out, o)
				break
			}
		}
	}
	sortByCreation(out)
	return out
}

// QualifyGateway turns a gateway reference into "namespace/name".
func (pc *PushContext) QualifyGateway(ref, ns string) string {
	if ref == "mesh" {
		return ref
	}
	if i := strings.IndexByte(ref, '/'); i >= 0 {
		return ref
	}
	// "name.namespace.svc.cluster.local"-style references are legacy; the
	// first label is the name, the second the namespace.
	if parts := strings.Split(ref, "."); len(parts) >= 2 {
		return parts[1] + "/" + parts[0]
	}
	return ns + "/" + ref
}

// GatewaysFor returns the Gateways whose selector matches a gateway proxy's
// labels.
func (pc *PushContext) GatewaysFor(p *Proxy) []*config.Object {
	var out []*config.Object
	for _, o := range pc.gateways {
		gw := o.Spec.(*networking.Gateway)
		if len(gw.GetSelector()) > 0 && LabelsMatch(gw.GetSelector(), p.Labels) {
			out = append(out, o)
		}
	}
	return out
}

// DestinationRule returns the rule for host as seen from namespace ns:
// Istio's lookup order is the client's namespace, then the service's
// namespace, then the root namespace.
func (pc *PushContext) DestinationRule(ns string, svc *Service) *config.Object {
	var inService, inRoot *config.Object
	for _, o := range pc.destinationRules {
		dr := o.Spec.(*networking.DestinationRule)
		if pc.ResolveHost(dr.GetHost(), o.Meta.Namespace) != svc.Hostname || !exportedTo(dr.GetExportTo(), o.Meta.Namespace, ns) {
			continue
		}
		switch o.Meta.Namespace {
		case ns:
			return o
		case svc.Namespace:
			if inService == nil {
				inService = o
			}
		case pc.RootNamespace:
			if inRoot == nil {
				inRoot = o
			}
		}
	}
	if inService != nil {
		return inService
	}
	return inRoot
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func sortByCreation(objs []*config.Object) {
	for i := 1; i < len(objs); i++ {
		for j := i; j > 0 && objs[j].Meta.CreationTimestamp.Before(objs[j-1].Meta.CreationTimestamp); j-- {
			objs[j], objs[j-1] = objs[j-1], objs[j]
		}
	}
}
