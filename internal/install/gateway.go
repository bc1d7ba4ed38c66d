package install

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/skein-mesh/skein/internal/inject"
)

// Istio's gateways, named as in its default and demo profiles so that
// samples selecting `istio: ingressgateway` work unchanged. Local mode
// (`skein up`) and `skein install` share these definitions.
const (
	SystemNamespace       = "istio-system"
	IngressName           = "istio-ingressgateway"
	IngressServiceAccount = "istio-ingressgateway-service-account"
	IngressLabel          = "ingressgateway"
	EgressName            = "istio-egressgateway"
	EgressServiceAccount  = "istio-egressgateway-service-account"
	EgressLabel           = "egressgateway"
)

// GatewaySpec names one gateway.
type GatewaySpec struct {
	Name, ServiceAccount string
	Istio                string // the `istio` label: ingressgateway, egressgateway
	ServiceType          corev1.ServiceType
}

// Ingress and Egress are Istio's two standard gateways.
var (
	Ingress = GatewaySpec{Name: IngressName, ServiceAccount: IngressServiceAccount, Istio: IngressLabel, ServiceType: corev1.ServiceTypeLoadBalancer}
	Egress  = GatewaySpec{Name: EgressName, ServiceAccount: EgressServiceAccount, Istio: EgressLabel, ServiceType: corev1.ServiceTypeClusterIP}
)

// Gateway returns a gateway's ServiceAccount, Service (Istio's ports:
// 80 → 8080, 443 → 8443) and Deployment in namespace, labelled
// istio: <g.Istio>. The Deployment's pods use Istio's "gateway" injection
// template: an istio-proxy container with image "auto" that injection
// turns into `skein proxy router`.
func Gateway(g GatewaySpec, namespace string) (*corev1.ServiceAccount, *corev1.Service, *appsv1.Deployment) {
	labels := map[string]string{"app": g.Name, "istio": g.Istio}
	meta := func() metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: g.Name, Namespace: namespace, Labels: copyMap(labels)}
	}
	sa := &corev1.ServiceAccount{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
		ObjectMeta: metav1.ObjectMeta{Name: g.ServiceAccount, Namespace: namespace, Labels: copyMap(labels)},
	}
	svc := &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: meta(),
		Spec: corev1.ServiceSpec{
			Type:     g.ServiceType,
			Selector: copyMap(labels),
			Ports: []corev1.ServicePort{
				{Name: "http2", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP},
				{Name: "https", Port: 443, TargetPort: intstr.FromInt32(8443), Protocol: corev1.ProtocolTCP},
			},
		},
	}
	podLabels := copyMap(labels)
	podLabels[inject.KeyInject] = "true"
	one := int32(1)
	dep := &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: meta(),
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: copyMap(labels)},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels:      podLabels,
					Annotations: map[string]string{inject.AnnotationTemplates: inject.GatewayTemplate},
				},
				Spec: corev1.PodSpec{
					ServiceAccountName: g.ServiceAccount,
					Containers:         []corev1.Container{{Name: inject.ProxyContainerName, Image: "auto"}},
				},
			},
		},
	}
	return sa, svc, dep
}

func copyMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
