// Package registry is the service registry: it turns Kubernetes Services and
// Pods, ServiceEntries and WorkloadEntries into model services and
// endpoints. The same code serves local mode (Pods written by the runner) and
// Kubernetes mode (Pods/Services mirrored from the API server).
package registry

import (
	"fmt"
	"sort"

	networking "istio.io/api/networking/v1alpha3"
	corev1 "k8s.io/api/core/v1"

	"github.com/skein-mesh/skein/internal/config"
	"github.com/skein-mesh/skein/internal/model"
)

// Snapshot is an immutable registry view built from one config revision.
type Snapshot struct {
	services  []*model.Service
	byHost    map[string]*model.Service
	endpoints map[string][]*model.Endpoint // by hostname
}

// Services returns every service sorted by hostname.
func (s *Snapshot) Services() []*model.Service { return s.services }

// Service looks a service up by its fully qualified hostname.
func (s *Snapshot) Service(host string) *model.Service { return s.byHost[host] }

// Endpoints returns the ready endpoints of host serving servicePort.
func (s *Snapshot) Endpoints(host string, servicePort uint32) []*model.Endpoint {
	var out []*model.Endpoint
	for _, ep := range s.endpoints[host] {
		if ep.ServicePort == servicePort && ep.Ready {
			out = append(out, ep)
		}
	}
	return out
}

// Build derives services and endpoints from the stored objects. domain is
// the cluster DNS domain ("cluster.local").
func Build(cfg config.Reader, domain string) *Snapshot {
	s := &Snapshot{byHost: map[string]*model.Service{}, endpoints: map[string][]*model.Endpoint{}}
	pods := cfg.List("Pod")
	workloadEntries := cfg.List("WorkloadEntry")

	for _, obj := range cfg.List("Service") {
		svc, ok := obj.Spec.(*corev1.Service)
		if !ok {
			continue
		}
		ms := fromKubeService(obj, svc, domain)
		s.add(ms)
		if svc.Spec.Selector == nil {
			continue
		}
		for _, p := range pods {
			pod := p.Spec.(*corev1.Pod)
			if pod.Namespace != obj.Meta.Namespace || !model.LabelsMatch(svc.Spec.Selector, pod.Labels) {
				continue
			}
			s.endpoints[ms.Hostname] = append(s.endpoints[ms.Hostname], podEndpoints(pod, svc)...)
		}
		for _, we := range workloadEntries {
			if we.Meta.Namespace != obj.Meta.Namespace {
				continue
			}
			w := we.Spec.(*networking.WorkloadEntry)
			if !model.LabelsMatch(svc.Spec.Selector, w.GetLabels()) {
				continue
			}
			for _, sp := range ms.Ports {
				s.endpoints[ms.Hostname] = append(s.endpoints[ms.Hostname], workloadEntryEndpoint(we, w, sp, sp.TargetPort))
			}
		}
	}
	for _, obj := range cfg.List("ServiceEntry") {
		se := obj.Spec.(*networking.ServiceEntry)
		for _, ms := range fromServiceEntry(obj, se) {
			s.add(ms)
			s.endpoints[ms.Hostname] = append(s.endpoints[ms.Hostname], serviceEntryEndpoints(obj, se, ms, pods, workloadEntries)...)
		}
	}
	sort.Slice(s.services, func(i, j int) bool { return s.services[i].Hostname < s.services[j].Hostname })
	for host, eps := range s.endpoints {
		for _, ep := range eps {
			ep.Hostname = host
		}
		sort.SliceStable(eps, func(i, j int) bool {
			if eps[i].Address != eps[j].Address {
				return eps[i].Address < eps[j].Address
			}
			return eps[i].Port < eps[j].Port
		})
	}
	return s
}

// add registers a service; the first source of a hostname wins, as Istio
// prefers the Kubernetes Service over a ServiceEntry for the same host.
func (s *Snapshot) add(ms *model.Service) {
	if _, dup := s.byHost[ms.Hostname]; dup {
		return
	}
	s.byHost[ms.Hostname] = ms
	s.services = append(s.services, ms)
}

// InstancesAt returns every service endpoint at ip, ready or not.
func (s *Snapshot) InstancesAt(ip string) []*model.Endpoint {
	var out []*model.Endpoint
	for _, svc := range s.services {
		for _, ep := range s.endpoints[svc.Hostname] {
			if ep.Address == ip {
				out = append(out, ep)
			}
		}
	}
	return out
}

func fromKubeService(obj *config.Object, svc *corev1.Service, domain string) *model.Service {
	ms := &model.Service{
		Hostname:  fmt.Sprintf("%s.%s.svc.%s", obj.Meta.Name, obj.Meta.Namespace, domain),
		Name:      obj.Meta.Name,
		Namespace: obj.Meta.Namespace,
		Labels:    svc.Labels,
		Selector:  svc.Spec.Selector,
		Source:    "Service/" + obj.Meta.Namespace + "/" + obj.Meta.Name,
	}
	if svc.Spec.ClusterIP == corev1.ClusterIPNone {
		ms.Resolution = model.Passthrough
	}
	for _, p := range svc.Spec.Ports {
		proto := model.ParseProtocol(p.Name)
		if p.AppProtocol != nil {
			proto = model.ParseProtocol(*p.AppProtocol)
		}
		if p.Protocol == corev1.ProtocolUDP {
			continue
		}
		mp := model.Port{Name: p.Name, Port: uint32(p.Port), Protocol: proto}
		if p.TargetPort.Type == 0 && p.TargetPort.IntVal != 0 {
			mp.TargetPort = uint32(p.TargetPort.IntVal)
		}
		ms.Ports = append(ms.Ports, mp)
	}
	return ms
}

// podEndpoints lists the pod's endpoints for each service port, resolving
// named target ports against the pod's container ports.
func podEndpoints(pod *corev1.Pod, svc *corev1.Service) []*model.Endpoint {
	if pod.Status.PodIP == "" {
		return nil
	}
	var out []*model.Endpoint
	for _, sp := range svc.Spec.Ports {
		target := resolveTargetPort(pod, sp)
		if target == 0 {
			continue
		}
		out = append(out, &model.Endpoint{
			Address: pod.Status.PodIP, Port: target, ServicePort: uint32(sp.Port),
			Labels: pod.Labels, ServiceAccount: serviceAccount(pod.Spec.ServiceAccountName),
			Namespace: pod.Namespace, WorkloadName: pod.Name, Ready: podReady(pod),
			HasSidecar: hasSidecar(pod),
		})
	}
	return out
}

func resolveTargetPort(pod *corev1.Pod, sp corev1.ServicePort) uint32 {
	switch {
	case sp.TargetPort.Type == 1: // named
		for _, c := range pod.Spec.Containers {
			for _, cp := range c.Ports {
				if cp.Name == sp.TargetPort.StrVal {
					return uint32(cp.ContainerPort)
				}
			}
		}
		return 0
	case sp.TargetPort.IntVal != 0:
		return uint32(sp.TargetPort.IntVal)
	default:
		return uint32(sp.Port)
	}
}

func podReady(pod *corev1.Pod) bool {
	if pod.DeletionTimestamp != nil || pod.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// hasSidecar reports whether the pod runs a mesh proxy that takes mTLS
// (auto mTLS sends it Istio certificates): an istio-proxy container or
// Istio's injection status annotation. Gateway pods (the "gateway"
// injection template) serve their Gateway servers' own protocol, and like
// Istio's gateways carry no tlsMode, so clients talk to them in plaintext;
// the security.istio.io/tlsMode label says so explicitly.
func hasSidecar(pod *corev1.Pod) bool {
	if pod.Labels["security.istio.io/tlsMode"] == "disabled" || pod.Annotations["inject.istio.io/templates"] == "gateway" {
		return false
	}
	if _, ok := pod.Annotations["sidecar.istio.io/status"]; ok {
		return true
	}
	for _, c := range pod.Spec.Containers {
		if c.Name == "istio-proxy" {
			return true
		}
	}
	return false
}

func serviceAccount(sa string) string {
	if sa == "" {
		return "default"
	}
	return sa
}

func fromServiceEntry(obj *config.Object, se *networking.ServiceEntry) []*model.Service {
	var out []*model.Service
	for _, host := range se.GetHosts() {
		ms := &model.Service{
			Hostname:     host,
			Name:         host,
			Namespace:    obj.Meta.Namespace,
			Labels:       obj.Meta.Labels,
			MeshExternal: se.GetLocation() == networking.ServiceEntry_MESH_EXTERNAL,
			Source:       "ServiceEntry/" + obj.Meta.Namespace + "/" + obj.Meta.Name,
		}
		switch se.GetResolution() {
		case networking.ServiceEntry_DNS, networking.ServiceEntry_DNS_ROUND_ROBIN:
			ms.Resolution = model.DNSLB
		case networking.ServiceEntry_NONE:
			ms.Resolution = model.Passthrough
		}
		if sel := se.GetWorkloadSelector(); sel != nil {
			ms.Selector = sel.GetLabels()
		}
		for _, p := range se.GetPorts() {
			ms.Ports = append(ms.Ports, model.Port{Name: p.GetName(), Port: p.GetNumber(),
				Protocol: model.ParseProtocol(p.GetProtocol()), TargetPort: p.GetTargetPort()})
		}
		out = append(out, ms)
	}
	return out
}

func serviceEntryEndpoints(obj *config.Object, se *networking.ServiceEntry, ms *model.Service, pods, wes []*config.Object) []*model.Endpoint {
	var out []*model.Endpoint
	for _, sp := range ms.Ports {
		for _, we := range se.GetEndpoints() {
			out = append(out, workloadEntryEndpoint(obj, we, sp, sp.TargetPort))
		}
		if ms.Selector == nil {
			if len(se.GetEndpoints()) == 0 && ms.Resolution == model.DNSLB {
				// DNS resolution without endpoints: the hostname itself.
				out = append(out, &model.Endpoint{Address: ms.Hostname, Port: targetOr(sp.TargetPort, sp.Port),
					ServicePort: sp.Port, Namespace: ms.Namespace, Ready: true})
			}
			continue
		}
		for _, w := range wes {
			e := w.Spec.(*networking.WorkloadEntry)
			if w.Meta.Namespace == obj.Meta.Namespace && model.LabelsMatch(ms.Selector, e.GetLabels()) {
				out = append(out, workloadEntryEndpoint(w, e, sp, sp.TargetPort))
			}
		}
		for _, p := range pods {
			pod := p.Spec.(*corev1.Pod)
			if pod.Namespace == obj.Meta.Namespace && pod.Status.PodIP != "" && model.LabelsMatch(ms.Selector, pod.Labels) {
				out = append(out, &model.Endpoint{Address: pod.Status.PodIP, Port: targetOr(sp.TargetPort, sp.Port),
					ServicePort: sp.Port, Labels: pod.Labels, ServiceAccount: serviceAccount(pod.Spec.ServiceAccountName),
					Namespace: pod.Namespace, WorkloadName: pod.Name, Ready: podReady(pod), HasSidecar: hasSidecar(pod)})
			}
		}
	}
	return out
}

// workloadEntryEndpoint builds the endpoint of a WorkloadEntry (standalone
// or inline in a ServiceEntry) for one service port. The entry's ports map
// overrides the target port by port name.
func workloadEntryEndpoint(obj *config.Object, we *networking.WorkloadEntry, sp model.Port, target uint32) *model.Endpoint {
	port := targetOr(target, sp.Port)
	if p, ok := we.GetPorts()[sp.Name]; ok && p != 0 {
		port = p
	}
	w := we.GetWeight()
	return &model.Endpoint{
		Address: we.GetAddress(), Port: port, ServicePort: sp.Port, Labels: we.GetLabels(),
		ServiceAccount: serviceAccount(we.GetServiceAccount()), Namespace: obj.Meta.Namespace,
		WorkloadName: obj.Meta.Name, Ready: true, Weight: w,
	}
}

func targetOr(target, port uint32) uint32 {
	if target != 0 {
		return target
	}
	return port
}
