package kubelet

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func containerImage(pod *corev1.Pod, name string) string {
	for _, c := range pod.Spec.Containers {
		if c.Name == name {
			return c.Image
		}
	}
	return ""
}

// PodStatus is a pod's Kubernetes status as the kubelet would report it:
// IPs, phase, the four standard conditions and every container's state.
func PodStatus(plan *Plan, st PodState) corev1.PodStatus {
	start := metav1.NewTime(plan.Created)
	ready := corev1.ConditionFalse
	notReady := "ContainersNotReady"
	if st.Ready {
		ready, notReady = corev1.ConditionTrue, ""
	}
	status := corev1.PodStatus{
		Phase:     podPhase(st),
		HostIP:    HostIP,
		HostIPs:   []corev1.HostIP{{IP: HostIP}},
		PodIP:     plan.PodIP.String(),
		PodIPs:    []corev1.PodIP{{IP: plan.PodIP.String()}},
		StartTime: &start,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
			{Type: corev1.PodInitialized, Status: corev1.ConditionTrue},
			{Type: corev1.ContainersReady, Status: ready, Reason: notReady},
			{Type: corev1.PodReady, Status: ready, Reason: notReady},
		},
	}
	for _, c := range st.Containers {
		cs := corev1.ContainerStatus{Name: c.Name, Ready: c.Ready, RestartCount: c.RestartCount, Image: containerImage(plan.Pod, c.Name)}
		started := c.Running
		cs.Started = &started
		lastExit := &corev1.ContainerStateTerminated{
			ExitCode: int32(c.LastExitCode), Reason: exitReason(c.LastExitCode), Message: c.LastExit,
			StartedAt: metav1.NewTime(c.StartedAt), FinishedAt: metav1.NewTime(c.LastExitAt),
		}
		switch {
		case c.Running:
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(c.StartedAt)}
		case c.Terminated:
			cs.State.Terminated = lastExit
		default:
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: c.Reason, Message: c.Message}
		}
		if !c.LastExitAt.IsZero() && !c.Terminated {
			cs.LastTerminationState.Terminated = lastExit
		}
		status.ContainerStatuses = append(status.ContainerStatuses, cs)
	}
	return status
}

// podPhase follows Kubernetes: a container that could never be created
// keeps the pod Pending (crash-looping ones do not); once every container
// has terminated for good the pod Succeeded, or Failed if one failed.
func podPhase(st PodState) corev1.PodPhase {
	done, failed := len(st.Containers) > 0, false
	for _, c := range st.Containers {
		switch c.Reason {
		case ReasonConfigError, ReasonStartError, ReasonImage:
			return corev1.PodPending
		}
		done = done && c.Terminated
		failed = failed || (c.Terminated && c.LastExitCode != 0)
	}
	switch {
	case done && failed:
		return corev1.PodFailed
	case done:
		return corev1.PodSucceeded
	}
	return corev1.PodRunning
}

// exitReason is the kubelet's terminated reason for an exit code.
func exitReason(code int) string {
	if code == 0 {
		return "Completed"
	}
	return "Error"
}
