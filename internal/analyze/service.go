package analyze

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// istioProtocols are the protocol prefixes of Istio's port naming
// convention (<protocol>[-<suffix>]).
var istioProtocols = map[string]bool{
	"http": true, "http2": true, "https": true, "grpc": true, "grpc-web": true, "h2c": true,
	"tcp": true, "tls": true, "udp": true, "mongo": true, "mysql": true, "redis": true,
}

// portProtocol is the Istio protocol a Service port declares, by
// appProtocol or by name, or "".
func portProtocol(p corev1.ServicePort) string {
	if p.AppProtocol != nil && *p.AppProtocol != "" {
		return strings.ToLower(*p.AppProtocol)
	}
	name := strings.ToLower(p.Name)
	if istioProtocols[name] {
		return name
	}
	if strings.HasPrefix(name, "grpc-web-") {
		return "grpc-web"
	}
	if i := strings.IndexByte(name, '-'); i > 0 && istioProtocols[name[:i]] {
		return name[:i]
	}
	return ""
}

// portNameAnalyzer: IST0118 for Service ports whose protocol Istio must
// guess.
func portNameAnalyzer(c *context) {
	for _, e := range c.in.List("Service") {
		svc, ok := e.Obj.Spec.(*corev1.Service)
		if !ok || systemNamespaces[e.Obj.Meta.Namespace] || svc.Spec.Type == corev1.ServiceTypeExternalName {
			continue
		}
		for i, p := range svc.Spec.Ports {
			if p.Protocol == corev1.ProtocolUDP || p.Protocol == corev1.ProtocolSCTP || portProtocol(p) != "" {
				continue
			}
			c.report(PortNameNotUnderNamingConvention, e, pathIndex("spec.ports", i), p.Name, int(p.Port), p.TargetPort.String())
		}
	}
}
