package node

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
)

const (
	// hostIP is the node's only address: pods are processes on loopback.
	hostIP = "127.0.0.1"
	// labelAgent marks Nodes run by skein node.
	labelAgent         = "node.skein.dev/agent"
	leaseNamespace     = "kube-node-lease"
	leaseDurationSecs  = 40 // the kubelet's: the controller-manager's grace period
	defaultMemoryBytes = 8 << 30
)

// DefaultName is the node name `skein node` uses without --name:
// skein-<hostname>, lower case as Node names must be.
func DefaultName() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "localhost"
	}
	h = strings.ToLower(strings.SplitN(h, ".", 2)[0])
	return "skein-" + h
}

// nodeObject is the Node the agent registers.
func (a *Agent) nodeObject(ready bool) *corev1.Node {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    *resource.NewQuantity(int64(goruntime.NumCPU()), resource.DecimalSI),
		corev1.ResourceMemory: *resource.NewQuantity(memoryBytes(), resource.BinarySI),
		corev1.ResourcePods:   *resource.NewQuantity(int64(a.opts.MaxPods), resource.DecimalSI),
	}
	return &corev1.Node{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Node"},
		ObjectMeta: metav1.ObjectMeta{
			Name: a.opts.NodeName,
			Labels: map[string]string{
				"kubernetes.io/hostname": a.opts.NodeName,
				"kubernetes.io/os":       goruntime.GOOS,
				"kubernetes.io/arch":     goruntime.GOARCH,
				labelAgent:               "true",
			},
		},
		Status: corev1.NodeStatus{
			Capacity:    capacity,
			Allocatable: capacity,
			Conditions:  a.nodeConditions(ready),
			// No Hostname address: the API server prefers it for reaching
			// the kubelet API, and the node's name need not resolve.
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: hostIP},
			},
			DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: a.kubeletPort}},
			NodeInfo: corev1.NodeSystemInfo{
				KubeletVersion:          a.opts.Version,
				OperatingSystem:         goruntime.GOOS,
				Architecture:            goruntime.GOARCH,
				ContainerRuntimeVersion: "skein://" + a.opts.Version,
			},
		},
	}
}

// nodeConditions are the kubelet's five conditions; only Ready varies.
func (a *Agent) nodeConditions(ready bool) []corev1.NodeCondition {
	now := metav1.Now()
	since := metav1.NewTime(a.started)
	readyCond := corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionTrue,
		Reason: "KubeletReady", Message: "skein node is posting ready status"}
	if !ready {
		readyCond = corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionFalse,
			Reason: "KubeletNotReady", Message: "skein node stopped"}
		since = now
	}
	conds := []corev1.NodeCondition{
		{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientMemory"},
		{Type: corev1.NodeDiskPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasNoDiskPressure"},
		{Type: corev1.NodePIDPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientPID"},
		readyCond,
	}
	for i := range conds {
		conds[i].LastHeartbeatTime = now
		conds[i].LastTransitionTime = metav1.NewTime(a.started)
	}
	conds[len(conds)-1].LastTransitionTime = since
	return conds
}

// memoryBytes is the machine's memory from /proc/meminfo (Linux), else 8 GiB.
func memoryBytes() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return defaultMemoryBytes
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			if kb, err := strconv.ParseInt(fields[1], 10, 64); err == nil {
				return kb * 1024
			}
		}
	}
	return defaultMemoryBytes
}

// register creates the Node, or takes over an existing one of that name
// (a restarted agent), and posts its status.
func (a *Agent) register(ctx context.Context) error {
	n := a.nodeObject(true)
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(n)
	if err != nil {
		return err
	}
	_, err = a.dc.Resource(nodesGVR).Create(ctx, &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{})
	switch {
	case apierrors.IsAlreadyExists(err):
		a.log.Info("node exists; taking it over")
	case err != nil:
		return fmt.Errorf("registering node %s: %w", a.opts.NodeName, err)
	}
	// Create may drop the status (and an existing node has an old one).
	if err := a.postNodeStatus(ctx, true); err != nil {
		return err
	}
	return a.renewLease(ctx)
}

// postNodeStatus writes the node's status (heartbeat times included).
func (a *Agent) postNodeStatus(ctx context.Context, ready bool) error {
	n := a.nodeObject(ready)
	body, err := json.Marshal(map[string]any{"status": n.Status})
	if err != nil {
		return err
	}
	if _, err := a.dc.Resource(nodesGVR).Patch(ctx, a.opts.NodeName, types.MergePatchType, body, metav1.PatchOptions{}, "status"); err != nil {
		return fmt.Errorf("updating the status of node %s: %w", a.opts.NodeName, err)
	}
	return nil
}

// renewLease creates or renews the node's Lease in kube-node-lease, the
// heartbeat the controller-manager's node lifecycle controller watches.
func (a *Agent) renewLease(ctx context.Context) error {
	leases := a.dc.Resource(leaseGVR).Namespace(leaseNamespace)
	now := metav1.NewMicroTime(time.Now())
	u, err := leases.Get(ctx, a.opts.NodeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		node, err := a.dc.Resource(nodesGVR).Get(ctx, a.opts.NodeName, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("reading node %s for its lease: %w", a.opts.NodeName, err)
		}
		duration := int32(leaseDurationSecs)
		holder := a.opts.NodeName
		lease := &coordinationv1.Lease{
			TypeMeta: metav1.TypeMeta{APIVersion: "coordination.k8s.io/v1", Kind: "Lease"},
			ObjectMeta: metav1.ObjectMeta{
				Name: a.opts.NodeName, Namespace: leaseNamespace,
				// Owned by the Node, so deleting the node deletes its lease.
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: node.GetName(), UID: node.GetUID()}},
			},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &duration, RenewTime: &now},
		}
		obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(lease)
		if err != nil {
			return err
		}
		if _, err := leases.Create(ctx, &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating the lease of node %s: %w", a.opts.NodeName, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the lease of node %s: %w", a.opts.NodeName, err)
	}
	if err := unstructured.SetNestedField(u.Object, now.UTC().Format(metav1.RFC3339Micro), "spec", "renewTime"); err != nil {
		return err
	}
	_ = unstructured.SetNestedField(u.Object, a.opts.NodeName, "spec", "holderIdentity")
	if _, err := leases.Update(ctx, u, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("renewing the lease of node %s: %w", a.opts.NodeName, err)
	}
	return nil
}

// leaseLoop renews the lease every LeaseInterval until ctx is done.
func (a *Agent) leaseLoop(ctx context.Context) {
	a.every(ctx, a.opts.LeaseInterval, func() {
		if err := a.renewLease(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("lease renewal failed", "error", err)
		}
	})
}

// statusLoop posts the node status every StatusInterval; a node deleted
// by someone is registered again, as the kubelet does.
func (a *Agent) statusLoop(ctx context.Context) {
	a.every(ctx, a.opts.StatusInterval, func() {
		err := a.postNodeStatus(ctx, true)
		if apierrors.IsNotFound(err) {
			err = a.register(ctx)
		}
		if err != nil && ctx.Err() == nil {
			a.log.Warn("node status update failed", "error", err)
		}
	})
}

func (a *Agent) every(ctx context.Context, d time.Duration, f func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}
