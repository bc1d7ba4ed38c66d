package dashboard

import (
	"context"
	"sort"
	"strings"

	"github.com/skein-mesh/skein/internal/config"
	corev1 "k8s.io/api/core/v1"
)

// ConfigLister is the slice of the control plane's config API the
// dashboard reads (internal/apiclient.Client implements it).
type ConfigLister interface {
	List(ctx context.Context, kind, namespace string) ([]*config.Object, int64, error)
}

// podInfo is what the dashboard needs of a Pod.
type podInfo struct {
	Name, Namespace string
	Workload        string
	IP              string
	Labels          map[string]string
	Proxy           bool // has a sidecar or is a gateway proxy
}

// workloadOf derives the workload name the way Istio's telemetry does:
// from the controlling ReplicaSet, minus its pod-template hash.
func workloadOf(pod *corev1.Pod) string {
	hash := pod.Labels["pod-template-hash"]
	for _, o := range pod.OwnerReferences {
		if o.Controller == nil || !*o.Controller {
			continue
		}
		if o.Kind == "ReplicaSet" && hash != "" && strings.HasSuffix(o.Name, "-"+hash) {
			return strings.TrimSuffix(o.Name, "-"+hash)
		}
		return o.Name
	}
	return pod.Name
}

func listPods(ctx context.Context, api ConfigLister) ([]podInfo, error) {
	objs, _, err := api.List(ctx, "Pod", "")
	if err != nil {
		return nil, err
	}
	out := make([]podInfo, 0, len(objs))
	for _, o := range objs {
		pod, ok := o.Spec.(*corev1.Pod)
		if !ok {
			continue
		}
		p := podInfo{Name: o.Meta.Name, Namespace: o.Meta.Namespace, Workload: workloadOf(pod), IP: pod.Status.PodIP, Labels: pod.Labels}
		if _, ok := pod.Annotations["sidecar.istio.io/status"]; ok {
			p.Proxy = true
		}
		for _, c := range pod.Spec.Containers {
			if c.Name == "istio-proxy" {
				p.Proxy = true
			}
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Namespace+"/"+out[i].Name < out[j].Namespace+"/"+out[j].Name })
	return out, nil
}

// serviceInfo is a Kubernetes Service and the workloads its selector picks.
type serviceInfo struct {
	Name, Namespace string
	Selector        map[string]string
	Ports           []int32
}

func listServices(ctx context.Context, api ConfigLister) ([]serviceInfo, error) {
	objs, _, err := api.List(ctx, "Service", "")
	if err != nil {
		return nil, err
	}
	var out []serviceInfo
	for _, o := range objs {
		svc, ok := o.Spec.(*corev1.Service)
		if !ok {
			continue
		}
		si := serviceInfo{Name: o.Meta.Name, Namespace: o.Meta.Namespace, Selector: svc.Spec.Selector}
		for _, p := range svc.Spec.Ports {
			si.Ports = append(si.Ports, p.Port)
		}
		out = append(out, si)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Namespace+"/"+out[i].Name < out[j].Namespace+"/"+out[j].Name })
	return out, nil
}

// selects reports whether a (non-empty) selector picks these labels.
func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func (s serviceInfo) fqdn() string { return s.Name + "." + s.Namespace + ".svc.cluster.local" }

// hostMatches reports whether a host written in a VirtualService or
// DestinationRule in namespace cfgNS refers to the service: short names are
// qualified with the config's namespace, as Istio does; "*" and "*.suffix"
// wildcards match by suffix.
func hostMatches(host, cfgNS string, svc serviceInfo) bool {
	fqdn := svc.fqdn()
	switch {
	case host == "*":
		return true
	case strings.HasPrefix(host, "*."):
		return strings.HasSuffix(fqdn, host[1:])
	case !strings.Contains(host, "."):
		return host+"."+cfgNS+".svc.cluster.local" == fqdn
	case host == fqdn:
		return true
	case strings.Count(host, ".") == 1: // name.namespace
		return host+".svc.cluster.local" == fqdn
	case strings.HasSuffix(host, ".svc"):
		return host+".cluster.local" == fqdn
	}
	return false
}
