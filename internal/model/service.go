// Package model is the control plane's immutable view of the mesh at one
// push: services and endpoints from the registry, Istio config indexed for
// translation, and the identity of the proxy being served. Translation
// (internal/xds) reads only this package.
package model

import (
	"strings"
)

// Protocol is a service port's application protocol, as Istio derives it
// from the port name prefix or appProtocol.
type Protocol string

const (
	ProtocolHTTP  Protocol = "HTTP"
	ProtocolHTTP2 Protocol = "HTTP2"
	ProtocolGRPC  Protocol = "GRPC"
	ProtocolHTTPS Protocol = "HTTPS"
	ProtocolTLS   Protocol = "TLS"
	ProtocolTCP   Protocol = "TCP"
	// ProtocolUnsupported is Istio's "auto-detect": sniffed at runtime.
	ProtocolUnsupported Protocol = "UnsupportedProtocol"
)

// IsHTTP reports whether the protocol is served by an HTTP connection manager.
func (p Protocol) IsHTTP() bool {
	switch p {
	case ProtocolHTTP, ProtocolHTTP2, ProtocolGRPC, ProtocolUnsupported:
		return true
	}
	return false
}

// IsHTTP2 reports whether upstream connections must speak HTTP/2.
func (p Protocol) IsHTTP2() bool { return p == ProtocolHTTP2 || p == ProtocolGRPC }

// ParseProtocol maps a port name / appProtocol / Istio protocol name to a
// Protocol, following Istio's rules: the part before the first '-' decides.
func ParseProtocol(s string) Protocol {
	name := strings.ToLower(s)
	if i := strings.IndexByte(name, '-'); i >= 0 {
		name = name[:i]
	}
	switch name {
	case "http", "http1", "http/1.1":
		return ProtocolHTTP
	case "http2", "h2c", "kubernetes.io/h2c":
		return ProtocolHTTP2
	case "grpc", "grpc-web":
		return ProtocolGRPC
	case "https":
		return ProtocolHTTPS
	case "tls":
		return ProtocolTLS
	case "tcp", "mongo", "mysql", "redis":
		return ProtocolTCP
	}
	return ProtocolUnsupported
}

// Port is one port of a service.
type Port struct {
	Name       string
	Port       uint32
	Protocol   Protocol
	TargetPort uint32 // 0: same as Port, or resolved per endpoint
}

// Resolution says how a proxy finds a service's endpoints.
type Resolution int

const (
	ClientSideLB Resolution = iota // EDS
	DNSLB                          // STRICT_DNS
	Passthrough                    // ORIGINAL_DST
)

// Service is one hostname in the mesh, from a Kubernetes Service or a
// ServiceEntry host.
type Service struct {
	Hostname     string // fully qualified, e.g. reviews.bookinfo.svc.cluster.local
	Name         string // short name (Kubernetes Service name; ServiceEntry host)
	Namespace    string
	Ports        []Port
	Labels       map[string]string
	Selector     map[string]string // nil: endpoints are not selected by labels
	Resolution   Resolution
	MeshExternal bool
	// Source names the config object the service came from, for messages.
	Source string
}

// PortByNumber returns the service port with the given number.
func (s *Service) PortByNumber(n uint32) (Port, bool) {
	for _, p := range s.Ports {
		if p.Port == n {
			return p, true
		}
	}
	return Port{}, false
}

// Endpoint is one network address serving one port of a service.
type Endpoint struct {
	Hostname       string // the service this endpoint belongs to
	Address        string
	Port           uint32 // the port to dial (target port)
	ServicePort    uint32 // the service port this endpoint serves
	Labels         map[string]string
	ServiceAccount string
	Namespace      string
	WorkloadName   string
	Ready          bool
	Weight         uint32
	// HasSidecar is true when the endpoint's workload runs a Skein proxy
	// (used for auto-mTLS).
	HasSidecar bool
}

// LabelsMatch reports whether labels contain every key/value of selector.
// An empty selector matches everything.
func LabelsMatch(selector, labels map[string]string) bool {
	for k, v := range selector {
		if lv, ok := labels[k]; !ok || lv != v {
			return false
		}
	}
	return true
}
