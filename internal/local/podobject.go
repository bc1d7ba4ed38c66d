package local

import (
	"github.com/skein-mesh/skein/internal/config"
	"github.com/skein-mesh/skein/internal/kubelet"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var podGVK = config.GVK{Version: "v1", Kind: "Pod"}

// podObject renders a pod as the Kubernetes Pod the registry reads: the
// planned metadata and spec plus a status built from st (IPs, Running
// phase, Ready condition, per-container state and restart counts).
func podObject(plan *kubelet.Plan, st kubelet.PodState) *config.Object {
	pod := plan.Pod.DeepCopy()
	pod.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}
	pod.CreationTimestamp = metav1.NewTime(plan.Created)
	pod.Status = kubelet.PodStatus(plan, st)
	return &config.Object{
		GVK: podGVK,
		Meta: config.Meta{
			Name: pod.Name, Namespace: pod.Namespace,
			Labels: pod.Labels, Annotations: pod.Annotations,
			CreationTimestamp: plan.Created,
		},
		Spec: pod,
	}
}
