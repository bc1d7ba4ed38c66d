package node

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8stesting "k8s.io/client-go/testing"
)

func TestNotReady(t *testing.T) {
	started := metav1.NewTime(time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC))
	long := metav1.NewTime(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC))
	yes := true
	running := corev1.PodStatus{
		Phase: corev1.PodRunning, PodIP: "127.3.0.9",
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: long},
			{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: long},
			{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: long},
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: long},
		},
		ContainerStatuses: []corev1.ContainerStatus{
			{Name: "app", Ready: true, Started: &yes, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}}},
			{Name: "crashed", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}},
			{Name: "done", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed"}}},
		},
	}
	in := *running.DeepCopy()
	before := time.Now().Add(-time.Second)
	st := notReady(in)

	if !equalJSON(t, in, running) {
		t.Error("notReady changed its argument")
	}
	if st.Phase != corev1.PodRunning || st.PodIP != "127.3.0.9" {
		t.Errorf("phase %s, ip %s: want them kept", st.Phase, st.PodIP)
	}
	for _, c := range st.Conditions {
		switch c.Type {
		case corev1.PodReady, corev1.ContainersReady:
			if c.Status != corev1.ConditionFalse || c.Reason != "NodeAgentStopped" || c.LastTransitionTime.Time.Before(before) {
				t.Errorf("%s = %+v, want False NodeAgentStopped now", c.Type, c)
			}
		default:
			if c.Status != corev1.ConditionTrue || !c.LastTransitionTime.Equal(&long) {
				t.Errorf("%s = %+v, want unchanged", c.Type, c)
			}
		}
	}
	for _, tc := range []struct {
		name           string
		wantTerminated *corev1.ContainerStateTerminated
		wantWaiting    string
	}{
		{"app", &corev1.ContainerStateTerminated{ExitCode: 143, Reason: "NodeAgentStopped", StartedAt: started}, ""},
		{"crashed", nil, "CrashLoopBackOff"},
		{"done", &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed"}, ""},
	} {
		var cs *corev1.ContainerStatus
		for i := range st.ContainerStatuses {
			if st.ContainerStatuses[i].Name == tc.name {
				cs = &st.ContainerStatuses[i]
			}
		}
		if cs == nil {
			t.Fatalf("no status for %s", tc.name)
		}
		if cs.Ready || cs.Started == nil || *cs.Started {
			t.Errorf("%s: ready %v started %v, want false", tc.name, cs.Ready, cs.Started)
		}
		if cs.State.Running != nil {
			t.Errorf("%s still running", tc.name)
		}
		if w := cs.State.Waiting; (w == nil) != (tc.wantWaiting == "") || (w != nil && w.Reason != tc.wantWaiting) {
			t.Errorf("%s waiting = %+v, want %q", tc.name, w, tc.wantWaiting)
		}
		got := cs.State.Terminated
		if (got == nil) != (tc.wantTerminated == nil) {
			t.Fatalf("%s terminated = %+v, want %+v", tc.name, got, tc.wantTerminated)
		}
		if got == nil {
			continue
		}
		if got.ExitCode != tc.wantTerminated.ExitCode || got.Reason != tc.wantTerminated.Reason || !got.StartedAt.Equal(&tc.wantTerminated.StartedAt) {
			t.Errorf("%s terminated = %+v, want %+v", tc.name, got, tc.wantTerminated)
		}
		if tc.name == "app" && got.FinishedAt.Time.Before(before) {
			t.Errorf("finished at %v, want now", got.FinishedAt)
		}
	}
}

func TestPendingStatus(t *testing.T) {
	earlier := metav1.NewTime(time.Date(2026, 12, 1, 11, 0, 0, 0, time.UTC))
	for _, tc := range []struct {
		name      string
		startTime *metav1.Time
		wantStart time.Time
	}{
		{"first report starts at creation", nil, time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)},
		{"keeps the reported start", &earlier, earlier.Time},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := testPod("web")
			pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "istio-proxy", Image: "istio/proxyv2"})
			pod.Status.StartTime = tc.startTime
			st := pendingStatus(pod, `configmap demo/absent not found`)
			if st.Phase != corev1.PodPending || st.HostIP != "127.0.0.1" || st.PodIP != "" {
				t.Errorf("phase %s hostIP %s podIP %q", st.Phase, st.HostIP, st.PodIP)
			}
			if st.StartTime == nil || !st.StartTime.Time.Equal(tc.wantStart) {
				t.Errorf("start = %v, want %v", st.StartTime, tc.wantStart)
			}
			want := map[corev1.PodConditionType]corev1.ConditionStatus{
				corev1.PodScheduled: corev1.ConditionTrue, corev1.PodInitialized: corev1.ConditionFalse,
				corev1.ContainersReady: corev1.ConditionFalse, corev1.PodReady: corev1.ConditionFalse,
			}
			if len(st.Conditions) != len(want) {
				t.Errorf("conditions = %v", st.Conditions)
			}
			for _, c := range st.Conditions {
				if want[c.Type] != c.Status {
					t.Errorf("%s = %s, want %s", c.Type, c.Status, want[c.Type])
				}
				if c.Type == corev1.PodInitialized && c.Message != "configmap demo/absent not found" {
					t.Errorf("Initialized message = %q, want the failure", c.Message)
				}
			}
			if len(st.ContainerStatuses) != 2 {
				t.Fatalf("container statuses = %v", st.ContainerStatuses)
			}
			for i, cs := range st.ContainerStatuses {
				c := pod.Spec.Containers[i]
				if cs.Name != c.Name || cs.Image != c.Image || cs.Ready || cs.Started == nil || *cs.Started ||
					cs.State.Waiting == nil || cs.State.Waiting.Reason != "ContainerCreating" || cs.State.Waiting.Message == "" {
					t.Errorf("container %s = %+v", c.Name, cs)
				}
			}
		})
	}
}

func TestKeepTransitions(t *testing.T) {
	old := metav1.NewTime(time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC))
	stored := corev1.PodStatus{Conditions: []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: old},
		{Type: corev1.PodReady, Status: corev1.ConditionFalse, LastTransitionTime: old},
		{Type: corev1.PodInitialized, Status: corev1.ConditionTrue}, // no time stored
	}}
	st := corev1.PodStatus{Conditions: []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
		{Type: corev1.PodReady, Status: corev1.ConditionTrue},
		{Type: corev1.PodInitialized, Status: corev1.ConditionTrue},
		{Type: corev1.ContainersReady, Status: corev1.ConditionTrue},
	}}
	before := time.Now().Add(-time.Second)
	keepTransitions(&st, &stored)
	for _, tc := range []struct {
		typ      corev1.PodConditionType
		wantKept bool
	}{
		{corev1.PodScheduled, true},     // unchanged
		{corev1.PodReady, false},        // changed status
		{corev1.PodInitialized, false},  // nothing to keep
		{corev1.ContainersReady, false}, // new
	} {
		for _, c := range st.Conditions {
			if c.Type != tc.typ {
				continue
			}
			if kept := c.LastTransitionTime.Equal(&old); kept != tc.wantKept {
				t.Errorf("%s transition %v, want kept=%v", c.Type, c.LastTransitionTime, tc.wantKept)
			}
			if !tc.wantKept && c.LastTransitionTime.Time.Before(before) {
				t.Errorf("%s transition %v, want now", c.Type, c.LastTransitionTime)
			}
		}
	}
}

// TestReportPatchesOnChange: the status is written once per change, as a
// merge patch of the status subresource.
func TestReportPatchesOnChange(t *testing.T) {
	pod := testPod("web")
	dc := newFake(t, pod)
	a := newAgent(t, dc)
	e := &podEntry{uid: pod.UID, failure: "secret demo/tls not found"}
	ctx := context.Background()
	for _, step := range []struct {
		failure     string
		wantPatches int
	}{
		{"secret demo/tls not found", 1},
		{"secret demo/tls not found", 1}, // same again: no write
		{"configmap demo/cfg not found", 2},
	} {
		e.failure = step.failure
		if err := a.report(ctx, pod, e); err != nil {
			t.Fatal(err)
		}
		patches := actionsOf(dc, "patch", "pods")
		if len(patches) != step.wantPatches {
			t.Fatalf("failure %q: %d patches, want %d", step.failure, len(patches), step.wantPatches)
		}
		p := patches[len(patches)-1].(k8stesting.PatchActionImpl)
		if p.GetSubresource() != "status" || p.GetPatchType() != "application/merge-patch+json" || p.Name != "web" || p.Namespace != "demo" {
			t.Errorf("patch %s %s/%s/%s", p.GetPatchType(), p.Namespace, p.Name, p.GetSubresource())
		}
		var body struct{ Status corev1.PodStatus }
		if err := json.Unmarshal(p.GetPatch(), &body); err != nil {
			t.Fatal(err)
		}
		if body.Status.Phase != corev1.PodPending || body.Status.ContainerStatuses[0].State.Waiting.Message != step.failure {
			t.Errorf("patched status = %+v", body.Status)
		}
	}
}
