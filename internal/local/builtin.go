package local

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skein-mesh/skein/internal/config"
	"github.com/skein-mesh/skein/internal/install"
)

// The ingress gateway `skein up` installs, named as in Istio's default
// profile so that samples selecting `istio: ingressgateway` work unchanged.
const (
	systemNamespace       = install.SystemNamespace
	ingressName           = install.IngressName
	ingressServiceAccount = install.IngressServiceAccount
	// annotationBuiltin marks objects `skein up` installed itself, so that
	// --no-gateway can remove them again without touching a user's own.
	annotationBuiltin = "local.skein.dev/builtin"
)

// builtinGatewayKeys are the ingress gateway objects systemManifests adds.
var builtinGatewayKeys = []config.Key{
	{Kind: "Deployment", Namespace: systemNamespace, Name: ingressName},
	{Kind: "Service", Namespace: systemNamespace, Name: ingressName},
	{Kind: "ServiceAccount", Namespace: systemNamespace, Name: ingressServiceAccount},
}

// The egress gateway, as in Istio's demo profile: outbound traffic that a
// VirtualService sends to it leaves the mesh from its pod IP.
const (
	egressName           = install.EgressName
	egressServiceAccount = install.EgressServiceAccount
)

// builtinEgressKeys are the egress gateway objects systemManifests adds.
var builtinEgressKeys = []config.Key{
	{Kind: "Deployment", Namespace: systemNamespace, Name: egressName},
	{Kind: "Service", Namespace: systemNamespace, Name: egressName},
	{Kind: "ServiceAccount", Namespace: systemNamespace, Name: egressServiceAccount},
}

// systemManifests returns istio-system's Namespace and, unless noGateway,
// the egress and ingress gateways' ServiceAccount, Service and Deployment
// (the ingress gateway's Deployment last). The Deployments are
// gateway-injected pods (Istio's "gateway" template): their istio-proxy
// container is replaced by `skein proxy router`.
func systemManifests(noGateway bool) []*config.Object {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: systemNamespace}}
	objs := []*config.Object{kubeObject("", "Namespace", ns)}
	if noGateway {
		return objs
	}
	objs = append(objs, gatewayManifests(install.Egress)...)
	return append(objs, gatewayManifests(install.Ingress)...)
}

// gatewayManifests returns one gateway's ServiceAccount, Service and
// Deployment: install's definitions (shared with `skein install`), marked
// as built in.
func gatewayManifests(g install.GatewaySpec) []*config.Object {
	sa, svc, dep := install.Gateway(g, systemNamespace)
	for _, m := range []*metav1.ObjectMeta{&sa.ObjectMeta, &svc.ObjectMeta, &dep.ObjectMeta} {
		m.Annotations = map[string]string{annotationBuiltin: "true"}
	}
	return []*config.Object{
		kubeObject("", "ServiceAccount", sa),
		kubeObject("", "Service", svc),
		kubeObject("apps", "Deployment", dep)}
}

// kubeObject wraps a k8s.io/api object as a config.Object.
func kubeObject(group, kind string, o interface {
	metav1.Object
}) *config.Object {
	return &config.Object{
		GVK: config.GVK{Group: group, Version: "v1", Kind: kind},
		Meta: config.Meta{
			Name: o.GetName(), Namespace: o.GetNamespace(),
			Labels: o.GetLabels(), Annotations: o.GetAnnotations(),
		},
		Spec: o,
	}
}
