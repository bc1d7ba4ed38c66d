package model

import (
	"sort"
	"strings"
	"sync"

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
type PushContext struct {
	Version       string
	Config        config.Reader
	Registry      ServiceDiscovery
	Domain        string // cluster DNS domain, "cluster.local"
	RootNamespace string // mesh-wide config namespace, "istio-system"
	// TraceCollector is host:port of the control plane's built-in trace
	// store (Zipkin API), the tracing backend when the mesh names none;
	// empty disables that default.
	TraceCollector string

	virtualServices  []*config.Object
	destinationRules []*config.Object
	gateways         []*config.Object
	envoyFilters     []*config.Object

	meshOnce sync.Once
	mesh     *Mesh
	meshErr  error
}

// NewPushContext indexes the config for translation.
func NewPushContext(version string, cfg config.Reader, reg ServiceDiscovery, domain, rootNamespace string) *PushContext {
	return &PushContext{
		Version: version, Config: cfg, Registry: reg, Domain: domain, RootNamespace: rootNamespace,
		virtualServices:  cfg.List("VirtualService"),
		destinationRules: cfg.List("DestinationRule"),
		gateways:         cfg.List("Gateway"),
		envoyFilters:     cfg.List("EnvoyFilter"),
	}
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

// EnvoyFilters returns the EnvoyFilters that patch proxy p, in the order
// Istio applies them: by priority, then those of the root namespace before
// those of p's namespace, then by creation time. A filter selects p when it
// lives in the root namespace or p's namespace and its workloadSelector
// (or a targetRef naming p's Gateway) matches; without either it selects
// every workload of its namespace.
func (pc *PushContext) EnvoyFilters(p *Proxy) []*config.Object {
	var out []*config.Object
	for _, o := range pc.envoyFilters {
		ns := o.Meta.Namespace
		if ns != pc.RootNamespace && ns != p.Namespace {
			continue
		}
		ef := o.Spec.(*networking.EnvoyFilter)
		switch {
		case len(ef.GetTargetRefs()) > 0:
			if !envoyFilterTargets(ef, ns, p) {
				continue
			}
		case len(ef.GetWorkloadSelector().GetLabels()) > 0:
			if !LabelsMatch(ef.GetWorkloadSelector().GetLabels(), p.Labels) {
				continue
			}
		}
		out = append(out, o)
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		pa, pb := a.Spec.(*networking.EnvoyFilter).GetPriority(), b.Spec.(*networking.EnvoyFilter).GetPriority()
		if pa != pb {
			return pa < pb
		}
		if ra, rb := a.Meta.Namespace == pc.RootNamespace, b.Meta.Namespace == pc.RootNamespace; ra != rb {
			return ra
		}
		if !a.Meta.CreationTimestamp.Equal(b.Meta.CreationTimestamp) {
			return a.Meta.CreationTimestamp.Before(b.Meta.CreationTimestamp)
		}
		return a.Meta.Namespace+"/"+a.Meta.Name < b.Meta.Namespace+"/"+b.Meta.Name
	})
	return out
}

// envoyFilterTargets reports whether a targetRef names p: Istio attaches
// EnvoyFilters by targetRef to Kubernetes Gateway API gateways, whose pods
// carry the gateway's name as a label.
func envoyFilterTargets(ef *networking.EnvoyFilter, ns string, p *Proxy) bool {
	for _, ref := range ef.GetTargetRefs() {
		refNS := ref.GetNamespace()
		if refNS == "" {
			refNS = ns
		}
		if ref.GetKind() == "Gateway" && refNS == p.Namespace && p.Labels["gateway.networking.k8s.io/gateway-name"] == ref.GetName() {
			return true
		}
	}
	return false
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
