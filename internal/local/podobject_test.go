package local

import (
	"net/netip"
	"testing"
	"time"

	"github.com/skein-mesh/skein/internal/config"
	"github.com/skein-mesh/skein/internal/kubelet"
	corev1 "k8s.io/api/core/v1"
)

func TestPodObject(t *testing.T) {
	plan := testPlanner().plan(testDeployment(), podInstance{
		Name: "details-v1-h-abcde", UID: "uid-1", Mode: sidecarProxy,
		PodIP: netip.MustParseAddr("127.1.0.4"), AppIP: netip.MustParseAddr("127.2.0.4"), Created: time.Unix(1000, 0),
	})
	started := time.Unix(1001, 0)
	st := kubelet.PodState{Ready: false, Containers: []kubelet.ContainerState{
		{Name: "details", Running: true, Ready: true, RestartCount: 2, StartedAt: started, LastExit: "exit status 1", LastExitAt: started},
		{Name: "istio-proxy", IsProxy: true, Reason: "CrashLoopBackOff", Message: "last exit: signal: killed", RestartCount: 1},
	}}
	obj := podObject(plan, st)

	// What goes to the store must survive the config API's encoding.
	doc, err := config.Encode(obj)
	if err != nil {
		t.Fatal(err)
	}
	back, err := config.Decode(doc)
	if err != nil {
		t.Fatalf("decode %v: %v", doc, err)
	}
	if back.Key() != (config.Key{Kind: "Pod", Namespace: "bookinfo", Name: "details-v1-h-abcde"}) {
		t.Errorf("key = %v", back.Key())
	}
	pod := back.Spec.(*corev1.Pod)
	if pod.Status.PodIP != "127.1.0.4" || len(pod.Status.PodIPs) != 1 || pod.Status.PodIPs[0].IP != "127.1.0.4" {
		t.Errorf("pod IPs = %q %v", pod.Status.PodIP, pod.Status.PodIPs)
	}
	if pod.Status.Phase != corev1.PodRunning {
		t.Errorf("phase = %s", pod.Status.Phase)
	}
	if c := condition(pod, corev1.PodReady); c != corev1.ConditionFalse {
		t.Errorf("Ready = %s, want False", c)
	}
	if pod.Spec.ServiceAccountName != "bookinfo-details" || string(pod.UID) != "uid-1" {
		t.Errorf("serviceAccountName %q uid %q", pod.Spec.ServiceAccountName, pod.UID)
	}
	if back.Meta.Labels["app"] != "details" || back.Meta.Labels[labelPodTemplateHash] != plan.TemplateHash {
		t.Errorf("labels = %v", back.Meta.Labels)
	}
	if len(pod.Status.ContainerStatuses) != 2 {
		t.Fatalf("container statuses = %+v", pod.Status.ContainerStatuses)
	}
	app, proxy := pod.Status.ContainerStatuses[0], pod.Status.ContainerStatuses[1]
	if !app.Ready || app.RestartCount != 2 || app.State.Running == nil || app.LastTerminationState.Terminated == nil {
		t.Errorf("app status = %+v", app)
	}
	if proxy.Ready || proxy.State.Waiting == nil || proxy.State.Waiting.Reason != "CrashLoopBackOff" || proxy.RestartCount != 1 {
		t.Errorf("proxy status = %+v", proxy)
	}

	st.Ready = true
	ready := podObject(plan, st).Spec.(*corev1.Pod)
	if condition(ready, corev1.PodReady) != corev1.ConditionTrue || condition(ready, corev1.ContainersReady) != corev1.ConditionTrue {
		t.Errorf("ready pod conditions = %+v", ready.Status.Conditions)
	}
	if plan.Pod.Status.PodIP != "" {
		t.Errorf("podObject modified the plan's Pod")
	}
}

func condition(p *corev1.Pod, typ corev1.PodConditionType) corev1.ConditionStatus {
	for _, c := range p.Status.Conditions {
		if c.Type == typ {
			return c.Status
		}
	}
	return ""
}
