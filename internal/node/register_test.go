package node

import (
	"context"
	"os"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

func TestNodeObject(t *testing.T) {
	for _, tc := range []struct {
		name       string
		maxPods    int
		ready      bool
		wantPods   int64
		wantStatus corev1.ConditionStatus
		wantReason string
	}{
		{"default capacity, ready", 0, true, 110, corev1.ConditionTrue, "KubeletReady"},
		{"custom capacity, not ready", 7, false, 7, corev1.ConditionFalse, "KubeletNotReady"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := New(Options{Client: newFake(t), NodeName: testNode, DataDir: t.TempDir(), Version: "v9.8.7", MaxPods: tc.maxPods, Logger: quietLogger()})
			if err != nil {
				t.Fatal(err)
			}
			a.started = time.Now().Add(-time.Hour)
			n := a.nodeObject(tc.ready)
			if n.Name != testNode || n.Labels["kubernetes.io/hostname"] != testNode || n.Labels[labelAgent] != "true" {
				t.Errorf("metadata = %s %v", n.Name, n.Labels)
			}
			for _, rl := range []corev1.ResourceList{n.Status.Capacity, n.Status.Allocatable} {
				if got := rl.Pods().Value(); got != tc.wantPods {
					t.Errorf("pods = %d, want %d", got, tc.wantPods)
				}
				if got := rl.Cpu().Value(); got != int64(goruntime.NumCPU()) {
					t.Errorf("cpu = %d, want %d", got, goruntime.NumCPU())
				}
				if rl.Memory().Value() <= 0 {
					t.Errorf("memory = %v", rl.Memory())
				}
			}
			wantAddr := []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}}
			if len(n.Status.Addresses) != 1 || n.Status.Addresses[0] != wantAddr[0] {
				t.Errorf("addresses = %v, want %v", n.Status.Addresses, wantAddr)
			}
			if ni := n.Status.NodeInfo; ni.KubeletVersion != "v9.8.7" || ni.ContainerRuntimeVersion != "skein://v9.8.7" || ni.OperatingSystem != goruntime.GOOS {
				t.Errorf("nodeInfo = %+v", ni)
			}
			var ready *corev1.NodeCondition
			types := map[corev1.NodeConditionType]bool{}
			for i, c := range n.Status.Conditions {
				types[c.Type] = true
				if c.Type == corev1.NodeReady {
					ready = &n.Status.Conditions[i]
				} else if c.Status != corev1.ConditionFalse {
					t.Errorf("%s = %s, want False", c.Type, c.Status)
				}
				if c.LastHeartbeatTime.IsZero() {
					t.Errorf("%s has no heartbeat time", c.Type)
				}
			}
			if len(types) != 4 || ready == nil {
				t.Fatalf("conditions = %v", n.Status.Conditions)
			}
			if ready.Status != tc.wantStatus || ready.Reason != tc.wantReason {
				t.Errorf("Ready = %s/%s, want %s/%s", ready.Status, ready.Reason, tc.wantStatus, tc.wantReason)
			}
			// Ready moves when the agent stops; while ready it dates from the start.
			sinceStart := ready.LastTransitionTime.Time.Sub(a.started)
			if tc.ready && sinceStart > time.Second {
				t.Errorf("ready since %v, want the start %v", ready.LastTransitionTime, a.started)
			}
			if !tc.ready && sinceStart < 59*time.Minute {
				t.Errorf("not ready since %v, want now", ready.LastTransitionTime)
			}
		})
	}
}

func TestNew(t *testing.T) {
	dc := newFake(t)
	for _, tc := range []struct {
		name string
		opts Options
		ok   bool
	}{
		{"complete", Options{Client: dc, NodeName: "n", DataDir: t.TempDir()}, true},
		{"no client", Options{NodeName: "n", DataDir: t.TempDir()}, false},
		{"no name", Options{Client: dc, DataDir: t.TempDir()}, false},
		{"no data dir", Options{Client: dc, NodeName: "n"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := New(tc.opts)
			if (err == nil) != tc.ok {
				t.Fatalf("New: err = %v, want ok=%v", err, tc.ok)
			}
			if tc.ok && (a.opts.MaxPods != 110 || a.opts.LeaseInterval != 10*time.Second || a.opts.Version != "skein" || a.kubelet == nil) {
				t.Errorf("defaults = %+v", a.opts)
			}
		})
	}
}

// leaseOf reads the node's Lease from dc.
func leaseOf(t *testing.T, a *Agent) *coordinationv1.Lease {
	t.Helper()
	u, err := a.dc.Resource(leaseGVR).Namespace(leaseNamespace).Get(context.Background(), testNode, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l := &coordinationv1.Lease{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, l); err != nil {
		t.Fatal(err)
	}
	return l
}

func TestRegister(t *testing.T) {
	stale := &corev1.Node{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Node"},
		ObjectMeta: metav1.ObjectMeta{Name: testNode, UID: "old-node-uid"},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{
			{Type: corev1.NodeReady, Status: corev1.ConditionUnknown, Reason: "NodeStatusUnknown"},
		}},
	}
	for _, tc := range []struct {
		name    string
		objs    []runtime.Object
		wantUID string
	}{
		{"new node", nil, ""},
		{"takes over an existing node", []runtime.Object{stale}, "old-node-uid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dc := newFake(t, tc.objs...)
			a := newAgent(t, dc)
			before := time.Now().Add(-time.Second)
			if err := a.register(context.Background()); err != nil {
				t.Fatal(err)
			}
			u, err := dc.Resource(nodesGVR).Get(context.Background(), testNode, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			n := &corev1.Node{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, n); err != nil {
				t.Fatal(err)
			}
			if n.Status.NodeInfo.KubeletVersion != "v1.2.3" || n.Status.Capacity.Pods().Value() != 110 {
				t.Errorf("node status = %+v", n.Status)
			}
			readyTrue := false
			for _, c := range n.Status.Conditions {
				readyTrue = readyTrue || (c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue)
			}
			if !readyTrue {
				t.Errorf("conditions = %v, want Ready True", n.Status.Conditions)
			}
			if got := len(actionsOf(dc, "patch", "nodes")); got != 1 {
				t.Errorf("%d status patches, want 1", got)
			}
			l := leaseOf(t, a)
			if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != testNode || l.Spec.LeaseDurationSeconds == nil || *l.Spec.LeaseDurationSeconds != 40 {
				t.Errorf("lease spec = %+v", l.Spec)
			}
			if l.Spec.RenewTime == nil || l.Spec.RenewTime.Time.Before(before) {
				t.Errorf("renewTime = %v, want after %v", l.Spec.RenewTime, before)
			}
			if len(l.OwnerReferences) != 1 || l.OwnerReferences[0].Kind != "Node" || l.OwnerReferences[0].Name != testNode || string(l.OwnerReferences[0].UID) != tc.wantUID {
				t.Errorf("owner = %+v, want node %s uid %q", l.OwnerReferences, testNode, tc.wantUID)
			}
		})
	}
}

func TestRenewLease(t *testing.T) {
	old := metav1.NewMicroTime(time.Now().Add(-time.Hour))
	someone := "someone-else"
	lease := &coordinationv1.Lease{
		TypeMeta:   metav1.TypeMeta{APIVersion: "coordination.k8s.io/v1", Kind: "Lease"},
		ObjectMeta: metav1.ObjectMeta{Name: testNode, Namespace: leaseNamespace},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &someone, RenewTime: &old},
	}
	dc := newFake(t, lease)
	a := newAgent(t, dc)
	before := time.Now().Add(-time.Millisecond)
	if err := a.renewLease(context.Background()); err != nil {
		t.Fatal(err)
	}
	l := leaseOf(t, a)
	if l.Spec.RenewTime == nil || l.Spec.RenewTime.Time.Before(before) {
		t.Errorf("renewTime = %v, want after %v", l.Spec.RenewTime, before)
	}
	if *l.Spec.HolderIdentity != testNode {
		t.Errorf("holder = %s, want %s", *l.Spec.HolderIdentity, testNode)
	}
	if n := len(actionsOf(dc, "update", "leases")); n != 1 {
		t.Errorf("%d lease updates, want 1", n)
	}
	if n := len(actionsOf(dc, "create", "leases")); n != 0 {
		t.Errorf("%d lease creates, want 0", n)
	}
	// The raw field is what the node lifecycle controller parses.
	u, _ := dc.Resource(leaseGVR).Namespace(leaseNamespace).Get(context.Background(), testNode, metav1.GetOptions{})
	raw, _, _ := unstructured.NestedString(u.Object, "spec", "renewTime")
	if _, err := time.Parse(metav1.RFC3339Micro, raw); err != nil {
		t.Errorf("renewTime %q: %v", raw, err)
	}
}

func TestRenewLeaseWithoutNode(t *testing.T) {
	a := newAgent(t, newFake(t))
	if err := a.renewLease(context.Background()); err == nil {
		t.Fatal("renewLease created a lease for a node that does not exist")
	}
}

// TestStatusLoopReregisters: a Node deleted under a running agent is
// registered again, as the kubelet does.
func TestStatusLoopReregisters(t *testing.T) {
	dc := newFake(t)
	a := newAgent(t, dc)
	a.opts.StatusInterval = 5 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := a.register(ctx); err != nil {
		t.Fatal(err)
	}
	if err := dc.Resource(nodesGVR).Delete(ctx, testNode, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); a.statusLoop(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for len(actionsOf(dc, "create", "nodes")) < 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	if n := len(actionsOf(dc, "create", "nodes")); n != 2 {
		t.Fatalf("%d node creates, want 2", n)
	}
	if _, err := dc.Resource(nodesGVR).Get(context.Background(), testNode, metav1.GetOptions{}); err != nil {
		t.Errorf("node not registered again: %v", err)
	}
}

func TestDefaultName(t *testing.T) {
	n := DefaultName()
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "localhost"
	}
	want := "skein-" + strings.ToLower(strings.SplitN(h, ".", 2)[0])
	if n != want || strings.ContainsAny(n, ".ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
		t.Errorf("DefaultName() = %q, want %q", n, want)
	}
}
