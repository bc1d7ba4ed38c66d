package model

import (
	"fmt"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/skein-mesh/skein/internal/proxy/nodemeta"
)

// ProxyType is a proxy's role, the first field of Istio's node ID.
type ProxyType string

const (
	SidecarProxy ProxyType = "sidecar"
	Router       ProxyType = "router"
)

// Proxy is the identity and metadata of one connected proxy, parsed from
// its xDS node.
type Proxy struct {
	ID               string // node.id
	Type             ProxyType
	IP               string // pod IP
	PodName          string
	Namespace        string
	DNSDomain        string
	Labels           map[string]string
	ServiceAccount   string
	WorkloadName     string
	ClusterID        string
	InterceptionMode string
	// AppIP is where the application listens in local mode (INTERCEPTION_MODE
	// NONE); empty on Kubernetes where the app shares the pod's network.
	AppIP   string
	Version string
}

// ParseNode turns an xDS node into a Proxy. The node ID has Istio's form
// type~ip~podName.namespace~namespace.svc.cluster.local.
func ParseNode(node *corev3.Node) (*Proxy, error) {
	if node == nil || node.GetId() == "" {
		return nil, fmt.Errorf("xDS request without node id")
	}
	parts := strings.Split(node.GetId(), "~")
	if len(parts) != 4 {
		return nil, fmt.Errorf("node id %q: want type~ip~pod.namespace~domain", node.GetId())
	}
	p := &Proxy{ID: node.GetId(), Type: ProxyType(parts[0]), IP: parts[1], DNSDomain: parts[3]}
	if p.Type != SidecarProxy && p.Type != Router {
		return nil, fmt.Errorf("node id %q: unknown proxy type %q", node.GetId(), parts[0])
	}
	if i := strings.LastIndexByte(parts[2], '.'); i > 0 {
		p.PodName, p.Namespace = parts[2][:i], parts[2][i+1:]
	} else {
		p.PodName = parts[2]
	}
	md := nodemeta.FromStruct(node.GetMetadata())
	if md.Namespace != "" {
		p.Namespace = md.Namespace
	}
	if p.Namespace == "" {
		return nil, fmt.Errorf("node id %q: no namespace", node.GetId())
	}
	p.ServiceAccount = md.ServiceAccount
	p.WorkloadName = md.WorkloadName
	p.ClusterID = md.ClusterID
	p.InterceptionMode = md.InterceptionMode
	p.AppIP = md.AppIP
	p.Version = md.IstioVersion
	p.Labels = md.Labels
	if len(md.InstanceIPs) > 0 && p.IP == "" {
		p.IP = md.InstanceIPs[0]
	}
	return p, nil
}

// FQDNSuffix is the cluster DNS suffix for a namespace.
func FQDNSuffix(namespace, domain string) string {
	return namespace + ".svc." + domain
}
