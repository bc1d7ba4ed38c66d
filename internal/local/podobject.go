package local

import (
	"github.com/skein-mesh/skein/internal/config"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var podGVK = config.GVK{Version: "v1", Kind: "Pod"}

// podObject renders a pod as the Kubernetes Pod the registry reads: the
// planned metadata and spec plus a status built from st (IPs, Running
// phase, Ready condition, per-container state and restart counts).
func podObject(plan *podPlan, st podState) *config.Object {
	pod := plan.Pod.DeepCopy()
	pod.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}
	pod.CreationTimestamp = metav1.NewTime(plan.Created)
	start := metav1.NewTime(plan.Created)

	ready := corev1.ConditionFalse
	if st.Ready {
		ready = corev1.ConditionTrue
	}
	ips := []corev1.PodIP{{IP: plan.PodIP.String()}}
	// A container that could never be created keeps the pod Pending, as in
	// Kubernetes; crash-looping containers do not.
	phase := corev1.PodRunning
	for _, c := range st.Containers {
		if c.Reason == reasonConfigError || c.Reason == reasonStartError {
			phase = corev1.PodPending
		}
	}
	pod.Status = corev1.PodStatus{
		Phase:     phase,
		HostIP:    localHostIP,
		HostIPs:   []corev1.HostIP{{IP: localHostIP}},
		PodIP:     plan.PodIP.String(),
		PodIPs:    ips,
		StartTime: &start,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
			{Type: corev1.PodInitialized, Status: corev1.ConditionTrue},
			{Type: corev1.ContainersReady, Status: ready},
			{Type: corev1.PodReady, Status: ready},
		},
	}
	for _, c := range st.Containers {
		cs := corev1.ContainerStatus{Name: c.Name, Ready: c.Ready, RestartCount: c.RestartCount, Image: containerImage(pod, c.Name)}
		started := c.Running
		cs.Started = &started
		switch {
		case c.Running:
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(c.StartedAt)}
		default:
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: c.Reason, Message: c.Message}
		}
		if !c.LastExitAt.IsZero() {
			cs.LastTerminationState.Terminated = &corev1.ContainerStateTerminated{
				Reason: "Error", Message: c.LastExit, FinishedAt: metav1.NewTime(c.LastExitAt),
			}
		}
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, cs)
	}
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

func containerImage(pod *corev1.Pod, name string) string {
	for _, c := range pod.Spec.Containers {
		if c.Name == name {
			return c.Image
		}
	}
	return ""
}
