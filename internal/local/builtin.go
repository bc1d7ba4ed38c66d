package local

import (
	"github.com/skein-mesh/skein/internal/config"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The ingress gateway `skein up` installs, named as in Istio's default
// profile so that samples selecting `istio: ingressgateway` work unchanged.
const (
	systemNamespace       = "istio-system"
	ingressName           = "istio-ingressgateway"
	ingressServiceAccount = "istio-ingressgateway-service-account"
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
	egressName           = "istio-egressgateway"
	egressServiceAccount = "istio-egressgateway-service-account"
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
	objs = append(objs, gatewayManifests(egressName, egressServiceAccount, "egressgateway", corev1.ServiceTypeClusterIP)...)
	return append(objs, gatewayManifests(ingressName, ingressServiceAccount, "ingressgateway", corev1.ServiceTypeLoadBalancer)...)
}

// gatewayManifests returns one gateway's ServiceAccount, Service (Istio's
// ports: 80 → 8080, 443 → 8443) and Deployment, labelled istio: <istio>.
func gatewayManifests(name, serviceAccount, istio string, svcType corev1.ServiceType) []*config.Object {
	labels := map[string]string{"app": name, "istio": istio}
	builtin := map[string]string{annotationBuiltin: "true"}
	meta := metav1.ObjectMeta{Name: name, Namespace: systemNamespace, Labels: labels, Annotations: builtin}

	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: serviceAccount, Namespace: systemNamespace, Labels: labels, Annotations: builtin}}
	svc := &corev1.Service{
		ObjectMeta: meta,
		Spec: corev1.ServiceSpec{
			Type:     svcType,
			Selector: labels,
			Ports: []corev1.ServicePort{
				{Name: "http2", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP},
				{Name: "https", Port: 443, TargetPort: intstr.FromInt32(8443), Protocol: corev1.ProtocolTCP},
			},
		},
	}
	podLabels := map[string]string{"app": name, "istio": istio, keySidecarInject: "true"}
	one := int32(1)
	dep := &appsv1.Deployment{
		ObjectMeta: meta,
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels:      podLabels,
					Annotations: map[string]string{annotationTemplates: gatewayTemplate},
				},
				Spec: corev1.PodSpec{
					ServiceAccountName: serviceAccount,
					Containers:         []corev1.Container{{Name: proxyContainerName, Image: "auto"}},
				},
			},
		},
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
