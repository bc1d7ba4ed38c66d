package proxy

import (
	"fmt"
	"net/netip"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/skein-mesh/skein/internal/proxy/nodemeta"
)

// Mode is the proxy type, the first field of Istio's node id.
type Mode string

// Proxy modes.
const (
	Sidecar Mode = "sidecar"
	Router  Mode = "router" // gateways
)

// NodeID is Istio's node id:
// <type>~<podIP>~<podName>.<namespace>~<namespace>.svc.cluster.local.
func (o *Options) NodeID() string {
	return fmt.Sprintf("%s~%s~%s.%s~%s", o.Mode, o.PodIP, o.PodName, o.Namespace, o.Domain)
}

// Node builds the xDS node with Istio's metadata keys.
func (o *Options) Node() *corev3.Node {
	meta := nodemeta.Metadata{
		Name:             o.PodName,
		Namespace:        o.Namespace,
		Labels:           o.Labels,
		InstanceIPs:      []string{o.PodIP},
		ServiceAccount:   o.ServiceAccount,
		WorkloadName:     o.WorkloadName,
		ClusterID:        o.ClusterID,
		InterceptionMode: nodemeta.InterceptionNone,
		IstioVersion:     o.Version,
		AppIP:            o.AppIP,
	}
	return &corev3.Node{
		Id:                   o.NodeID(),
		Cluster:              o.WorkloadName + "." + o.Namespace,
		Metadata:             meta.ToStruct(),
		UserAgentName:        "skein-proxy",
		UserAgentVersionType: &corev3.Node_UserAgentVersion{UserAgentVersion: o.Version},
	}
}

// validate fills defaults and reports the first bad option.
func (o *Options) validate() error {
	switch o.Mode {
	case Sidecar, Router:
	default:
		return fmt.Errorf("proxy mode %q: want sidecar or router", o.Mode)
	}
	if _, err := netip.ParseAddr(o.PodIP); err != nil {
		return fmt.Errorf("pod IP %q is not an IP address", o.PodIP)
	}
	if o.AppIP != "" {
		if _, err := netip.ParseAddr(o.AppIP); err != nil {
			return fmt.Errorf("app IP %q is not an IP address", o.AppIP)
		}
	}
	if o.BindAddress == "" {
		o.BindAddress = o.PodIP
	}
	if _, err := netip.ParseAddr(o.BindAddress); err != nil {
		return fmt.Errorf("bind address %q is not an IP address", o.BindAddress)
	}
	if o.DiscoveryAddress == "" {
		return fmt.Errorf("no discovery address")
	}
	if o.PodName == "" {
		return fmt.Errorf("no pod name")
	}
	if o.Namespace == "" {
		o.Namespace = "default"
	}
	if o.ServiceAccount == "" {
		o.ServiceAccount = "default"
	}
	if o.ClusterID == "" {
		o.ClusterID = "Kubernetes"
	}
	if o.Domain == "" {
		o.Domain = o.Namespace + ".svc.cluster.local"
	}
	if o.WorkloadName == "" {
		o.WorkloadName = WorkloadName(o.PodName, o.Labels)
	}
	for _, p := range []int{o.AdminPort, o.HealthPort, o.PrometheusPort, max(o.MergedMetricsPort, 0)} {
		if p < 0 || p > 65535 {
			return fmt.Errorf("port %d out of range", p)
		}
	}
	return nil
}

// WorkloadName guesses the workload (Deployment) a pod belongs to, as
// Istio's injector would set it: the pod name without the ReplicaSet hash
// and the pod suffix when the pod-template-hash label shows them.
func WorkloadName(podName string, labels map[string]string) string {
	if h := labels["pod-template-hash"]; h != "" {
		if i := strings.LastIndex(podName, "-"+h+"-"); i > 0 {
			return podName[:i]
		}
	}
	return podName
}

// ParseLabels reads "k=v,k=v".
func ParseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("label %q: want key=value", kv)
		}
		out[k] = v
	}
	return out, nil
}
