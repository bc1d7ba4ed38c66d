package node

import (
	"context"
	"errors"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic/fake"
	k8stesting "k8s.io/client-go/testing"
)

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func podStatusOf(t *testing.T, dc *fake.FakeDynamicClient, name string) (*corev1.Pod, bool) {
	t.Helper()
	u, err := dc.Resource(podsGVR).Namespace("demo").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return nil, false
	}
	pod := &corev1.Pod{}
	if err := k8sruntime.DefaultUnstructuredConverter.FromUnstructured(u.Object, pod); err != nil {
		t.Fatal(err)
	}
	return pod, true
}

// alive reports whether pid is a live process (the Kubelet reaps its
// children, so an exited one is gone).
func alive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}

// TestRun runs a pod whose container is /bin/sleep on a fake API server:
// it is reported Running, and deleting it (as the API server does: a
// deletionTimestamp first) stops the process and removes the pod.
func TestRun(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("needs /bin/sleep and signals")
	}
	if _, err := os.Stat("/bin/sleep"); err != nil {
		t.Skip("no /bin/sleep")
	}
	pod := testPod("sleeper")
	pod.Spec.Containers = []corev1.Container{{Name: "sleep", Image: "busybox", Command: []string{"/bin/sleep", "30"}}}
	// keeper still runs when the agent stops.
	keeper := testPod("keeper")
	keeper.Spec.Containers = pod.Spec.Containers
	other := testPod("elsewhere")
	other.Spec.NodeName = "other-node"
	dc := newUnstructuredFake(t, pod, keeper, other)
	a := newAgent(t, dc)
	a.opts.LeaseInterval = 20 * time.Millisecond

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- a.Run(ctx) }()

	waitFor(t, "the pod to run", func() bool {
		p, ok := podStatusOf(t, dc, "sleeper")
		return ok && p.Status.Phase == corev1.PodRunning && len(p.Status.ContainerStatuses) == 1 &&
			p.Status.ContainerStatuses[0].State.Running != nil
	})
	p, _ := podStatusOf(t, dc, "sleeper")
	if p.Status.PodIP == "" || p.Status.HostIP != "127.0.0.1" {
		t.Errorf("pod IP %q host IP %q", p.Status.PodIP, p.Status.HostIP)
	}
	var pid int
	waitFor(t, "the process", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		if e := a.running["demo/sleeper"]; e != nil && e.rp != nil {
			pid = e.rp.Pids()["sleep"]
		}
		return pid != 0
	})
	if !alive(pid) {
		t.Fatalf("sleep (pid %d) is not running", pid)
	}
	if cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline"); runtime.GOOS == "linux" && string(cmdline) != "/bin/sleep\x0030\x00" {
		t.Errorf("pid %d runs %q", pid, cmdline)
	}
	if _, ok := podStatusOf(t, dc, "elsewhere"); !ok {
		t.Fatal("other node's pod vanished")
	}
	if o, _ := podStatusOf(t, dc, "elsewhere"); o.Status.Phase != "" {
		t.Errorf("other node's pod got status %s", o.Status.Phase)
	}
	waitFor(t, "a lease renewal", func() bool { return len(actionsOf(dc, "update", "leases")) > 0 })

	// Updates reach the agent only once its informer watches.
	waitFor(t, "the pod watch", func() bool { return len(actionsOf(dc, "watch", "pods")) > 0 })
	u, err := dc.Resource(podsGVR).Namespace("demo").Get(ctx, "sleeper", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	u.SetDeletionTimestamp(&metav1.Time{Time: time.Now()})
	grace := int64(5)
	u.SetDeletionGracePeriodSeconds(&grace)
	if _, err := dc.Resource(podsGVR).Namespace("demo").Update(ctx, u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the pod's deletion", func() bool { _, ok := podStatusOf(t, dc, "sleeper"); return !ok })
	if alive(pid) {
		t.Errorf("sleep (pid %d) still runs after its pod was deleted", pid)
	}
	dels := actionsOf(dc, "delete", "pods")
	if len(dels) != 1 {
		t.Fatalf("%d pod deletes, want 1", len(dels))
	}
	d := dels[0].(k8stesting.DeleteActionImpl)
	if d.Name != "sleeper" || *d.DeleteOptions.GracePeriodSeconds != 0 || *d.DeleteOptions.Preconditions.UID != pod.UID {
		t.Errorf("delete %s grace %d uid %s", d.Name, *d.DeleteOptions.GracePeriodSeconds, *d.DeleteOptions.Preconditions.UID)
	}
	waitFor(t, "the agent to forget the pod", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.running["demo/sleeper"] == nil
	})
	var keeperPid int
	waitFor(t, "keeper's process", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		if e := a.running["demo/keeper"]; e != nil && e.rp != nil {
			keeperPid = e.rp.Pids()["sleep"]
		}
		return keeperPid != 0
	})
	if _, err := os.Stat(a.opts.DataDir + "/pods/" + string(pod.UID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pod directory left: %v", err)
	}

	cancel()
	select {
	case err := <-runErr:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if alive(keeperPid) {
		t.Errorf("keeper (pid %d) still runs after Run returned", keeperPid)
	}
	k, _ := podStatusOf(t, dc, "keeper")
	var keeperReady *corev1.PodCondition
	for i, c := range k.Status.Conditions {
		if c.Type == corev1.PodReady {
			keeperReady = &k.Status.Conditions[i]
		}
	}
	if keeperReady == nil || keeperReady.Status != corev1.ConditionFalse || keeperReady.Reason != "NodeAgentStopped" {
		t.Errorf("keeper Ready = %+v, want False/NodeAgentStopped", keeperReady)
	}
	if cs := k.Status.ContainerStatuses; len(cs) != 1 || cs[0].State.Terminated == nil || cs[0].State.Terminated.ExitCode != 143 {
		t.Errorf("keeper containers = %+v, want terminated by the agent", cs)
	}
	u, err = dc.Resource(nodesGVR).Get(context.Background(), testNode, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	readyFalse := false
	for _, c := range conds {
		m := c.(map[string]any)
		readyFalse = readyFalse || (m["type"] == "Ready" && m["status"] == "False")
	}
	if !readyFalse {
		t.Errorf("node conditions after Run = %v, want Ready False", conds)
	}
}

// TestTerminateGrace: a deleted pod's process that ignores SIGTERM is
// killed once the deletion's grace period passes, not before; the token
// loop runs meanwhile (under -race this catches the entry's state written
// without the lock the loop reads it under).
func TestTerminateGrace(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh")
	}
	pod := testPod("stubborn")
	pod.Spec.Containers = []corev1.Container{{Name: "app", Image: "busybox",
		Command: []string{"/bin/sh", "-c", `trap "" TERM; exec /bin/sleep 30`}}}
	dc := newFake(t, pod)
	a := newAgent(t, dc)
	a.opts.TokenCheck = time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e := a.start(ctx, "demo/stubborn", pod)
	if e.rp == nil {
		t.Fatalf("start: %s", e.failure)
	}
	var pid int
	waitFor(t, "the process", func() bool { pid = e.rp.Pids()["app"]; return pid != 0 })
	// The trap must be set before the signal comes.
	waitFor(t, "sleep to replace the shell", func() bool {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		return runtime.GOOS != "linux" || string(b) == "/bin/sleep\x0030\x00"
	})
	loopDone := make(chan struct{})
	go func() { defer close(loopDone); a.tokenLoop(ctx) }()

	grace := int64(1)
	pod.DeletionGracePeriodSeconds = &grace
	start := time.Now()
	a.terminate(ctx, "demo/stubborn", pod, e)
	time.Sleep(50 * time.Millisecond) // several token loop ticks
	if !alive(pid) {
		t.Errorf("killed after %v, before the 1s grace period", time.Since(start))
	}
	a.terminating.Wait()
	if d := time.Since(start); d < time.Second || d > 5*time.Second {
		t.Errorf("terminated after %v, want the 1s grace period", d)
	}
	// Stop sends SIGKILL at the deadline without waiting for the exit.
	waitFor(t, "the killed process to exit", func() bool { return !alive(pid) })
	cancel()
	<-loopDone
}
