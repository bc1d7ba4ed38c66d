package node

import (
	"context"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// report writes the pod's current status when it differs from what was
// last written. Conditions keep the transition times the API server has,
// so they move only when a condition does.
func (a *Agent) report(ctx context.Context, pod *corev1.Pod, e *podEntry) error {
	var st corev1.PodStatus
	if e.rp != nil {
		st, _ = e.rp.Status()
	} else {
		st = pendingStatus(pod, e.failure)
	}
	// Compare before stamping transition times: they alone are no change.
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	keepTransitions(&st, &pod.Status)
	a.mu.Lock()
	same := string(b) == e.reported
	a.mu.Unlock()
	if same {
		return nil
	}
	if err := a.patchStatus(ctx, pod.Namespace, pod.Name, st); err != nil {
		return err
	}
	a.mu.Lock()
	e.reported = string(b)
	a.mu.Unlock()
	return nil
}

// patchStatus replaces the pod's status through the status subresource.
// A JSON merge patch replaces lists (conditions, containerStatuses) whole,
// which is what a kubelet's status means; strategic merge would merge them.
func (a *Agent) patchStatus(ctx context.Context, namespace, name string, st corev1.PodStatus) error {
	body, err := json.Marshal(map[string]any{"status": st})
	if err != nil {
		return err
	}
	_, err = a.dc.Resource(podsGVR).Namespace(namespace).Patch(ctx, name, types.MergePatchType, body, metav1.PatchOptions{}, "status")
	if err != nil {
		return fmt.Errorf("updating the status of pod %s/%s: %w", namespace, name, err)
	}
	return nil
}

// keepTransitions stamps conditions: a condition whose status is unchanged
// keeps the stored lastTransitionTime, a changed or new one gets now.
func keepTransitions(st *corev1.PodStatus, old *corev1.PodStatus) {
	now := metav1.Now()
	for i := range st.Conditions {
		c := &st.Conditions[i]
		c.LastTransitionTime = now
		for _, o := range old.Conditions {
			if o.Type == c.Type && o.Status == c.Status && !o.LastTransitionTime.IsZero() {
				c.LastTransitionTime = o.LastTransitionTime
			}
		}
	}
}

// pendingStatus is the status of a pod whose containers could not be
// created (a volume could not be prepared): Pending, every container
// waiting with the reason, as the kubelet shows ContainerCreating.
func pendingStatus(pod *corev1.Pod, why string) corev1.PodStatus {
	st := corev1.PodStatus{
		Phase:   corev1.PodPending,
		HostIP:  hostIP,
		HostIPs: []corev1.HostIP{{IP: hostIP}},
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
			{Type: corev1.PodInitialized, Status: corev1.ConditionFalse, Reason: "ContainerCreating", Message: why},
			{Type: corev1.ContainersReady, Status: corev1.ConditionFalse, Reason: "ContainersNotReady"},
			{Type: corev1.PodReady, Status: corev1.ConditionFalse, Reason: "ContainersNotReady"},
		},
	}
	// A stable start time, so that retries are no change.
	start := pod.CreationTimestamp
	st.StartTime = &start
	if pod.Status.StartTime != nil {
		st.StartTime = pod.Status.StartTime
	}
	for _, c := range pod.Spec.Containers {
		started := false
		st.ContainerStatuses = append(st.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, Started: &started,
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating", Message: why}},
		})
	}
	return st
}

// notReady is a pod's last status with every container stopped and the
// pod not ready: what the agent leaves behind when it exits, so the mesh
// stops routing to processes that are gone.
func notReady(st corev1.PodStatus) corev1.PodStatus {
	st = *st.DeepCopy()
	now := metav1.Now()
	for i := range st.Conditions {
		c := &st.Conditions[i]
		if c.Type == corev1.PodReady || c.Type == corev1.ContainersReady {
			c.Status, c.Reason, c.Message, c.LastTransitionTime = corev1.ConditionFalse, "NodeAgentStopped", "skein node stopped", now
		}
	}
	for i := range st.ContainerStatuses {
		cs := &st.ContainerStatuses[i]
		started := false
		cs.Ready, cs.Started = false, &started
		if cs.State.Running != nil {
			cs.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: 143, Reason: "NodeAgentStopped", StartedAt: cs.State.Running.StartedAt, FinishedAt: now,
			}}
		}
	}
	return st
}
