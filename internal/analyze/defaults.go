package analyze

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skein-mesh/skein/internal/config"
)

// AddDefaults adds what an installed mesh provides, for analysing files
// alone (as istioctl adds its defaults without a cluster): the ingress
// gateway workload `skein install` and `skein up` run in the root
// namespace, so Gateways selecting `istio: ingressgateway` resolve.
// Objects already in the input win.
func (in *Input) AddDefaults(rootNamespace string) {
	labels := map[string]string{"app": "istio-ingressgateway", "istio": "ingressgateway"}
	d := &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Name: "istio-ingressgateway", Namespace: rootNamespace, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "istio-proxy", Image: "skein/skein"}}},
			},
		},
	}
	obj := &config.Object{GVK: config.GVK{Group: "apps", Version: "v1", Kind: "Deployment"},
		Meta: config.Meta{Name: d.Name, Namespace: rootNamespace, Labels: labels}, Spec: d}
	if _, ok := in.byKey[obj.Key()]; !ok {
		in.byKey[obj.Key()] = &Entry{Obj: obj, Res: &Resource{Kind: "Deployment", Namespace: rootNamespace, Name: d.Name}}
	}
}
