package node

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
)

func TestHostEnv(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []string
		want []string
	}{
		{"nothing", nil, nil},
		{"keeps the basics in order",
			[]string{"HOME=/home/u", "PATH=/bin:/usr/bin", "USER=u", "LANG=C.UTF-8", "TZ=UTC", "TMPDIR=/tmp"},
			[]string{"HOME=/home/u", "PATH=/bin:/usr/bin", "USER=u", "LANG=C.UTF-8", "TZ=UTC", "TMPDIR=/tmp"}},
		{"drops credentials and the rest",
			[]string{"KUBECONFIG=/k", "PATH=/bin", "AWS_SECRET_ACCESS_KEY=x", "SKEIN_TOKEN=y", "HOME=/h"},
			[]string{"PATH=/bin", "HOME=/h"}},
		{"whole names only", []string{"PATHX=/bin", "XPATH=/bin", "path=/bin", "HOMEDIR=/h"}, nil},
		{"value with =", []string{"PATH=/a=b", "LANG="}, []string{"PATH=/a=b", "LANG="}},
		{"no =", []string{"PATH", "HOME"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := hostEnv(tc.in); !slices.Equal(got, tc.want) {
				t.Errorf("hostEnv(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// withPods gives a the informer store syncPod reads, holding pods.
func withPods(t *testing.T, a *Agent, pods ...*corev1.Pod) {
	t.Helper()
	a.pods = cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	for _, p := range pods {
		obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.pods.Add(&unstructured.Unstructured{Object: obj}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSyncPodDeletesTerminatedPod(t *testing.T) {
	now := metav1.Now()
	for _, tc := range []struct {
		name  string
		entry *podEntry // in a.running before the sync
	}{
		{"never ran here (agent restarted)", nil},
		{"termination done", &podEntry{uid: "uid-web", stopping: true, stopped: true}},
		{"old pod of the same name, deleted", &podEntry{uid: "uid-older", stopping: true, stopped: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := testPod("web")
			pod.DeletionTimestamp = &now
			dc := newFake(t, pod)
			a := newAgent(t, dc)
			withPods(t, a, pod)
			if tc.entry != nil {
				a.running["demo/web"] = tc.entry
			}
			if err := a.syncPod(context.Background(), "demo/web"); err != nil {
				t.Fatal(err)
			}
			dels := actionsOf(dc, "delete", "pods")
			if len(dels) != 1 {
				t.Fatalf("%d deletes, want 1 (actions %v)", len(dels), dc.Actions())
			}
			d := dels[0].(k8stesting.DeleteActionImpl)
			if d.Name != "web" || d.Namespace != "demo" {
				t.Errorf("deleted %s/%s", d.Namespace, d.Name)
			}
			if g := d.DeleteOptions.GracePeriodSeconds; g == nil || *g != 0 {
				t.Errorf("grace = %v, want 0", g)
			}
			if p := d.DeleteOptions.Preconditions; p == nil || p.UID == nil || *p.UID != "uid-web" {
				t.Errorf("preconditions = %+v, want UID uid-web", p)
			}
			if _, err := dc.Resource(podsGVR).Namespace("demo").Get(context.Background(), "web", metav1.GetOptions{}); err == nil {
				t.Error("pod still in the API")
			}
		})
	}
}

func TestSyncPodDeleteErrors(t *testing.T) {
	now := metav1.Now()
	pod := testPod("web")
	pod.DeletionTimestamp = &now
	gr := podsGVR.GroupResource()
	// Not found and conflict (another pod now has that name) both mean done.
	for _, tc := range []struct {
		name    string
		err     error
		wantErr bool
	}{
		{"deleted", nil, false},
		{"already gone", apierrors.NewNotFound(gr, "web"), false},
		{"uid precondition failed", apierrors.NewConflict(gr, "web", errors.New("uid mismatch")), false},
		{"forbidden", apierrors.NewForbidden(gr, "web", errors.New("no")), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dc := newFake(t, pod)
			if tc.err != nil {
				dc.PrependReactor("delete", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
					return true, nil, tc.err
				})
			}
			a := newAgent(t, dc)
			withPods(t, a, pod)
			if err := a.syncPod(context.Background(), "demo/web"); (err != nil) != tc.wantErr {
				t.Fatalf("syncPod: err = %v, want error %v", err, tc.wantErr)
			}
		})
	}
}

func TestSyncPodSkips(t *testing.T) {
	elsewhere := testPod("elsewhere")
	elsewhere.Spec.NodeName = "other-node"
	succeeded := testPod("done")
	succeeded.Status.Phase = corev1.PodSucceeded
	failed := testPod("failed")
	failed.Status.Phase = corev1.PodFailed
	for _, pod := range []*corev1.Pod{elsewhere, succeeded, failed} {
		t.Run(pod.Name, func(t *testing.T) {
			dc := newFake(t, pod)
			a := newAgent(t, dc)
			withPods(t, a, pod)
			if err := a.syncPod(context.Background(), "demo/"+pod.Name); err != nil {
				t.Fatal(err)
			}
			if len(a.running) != 0 {
				t.Errorf("running = %v, want nothing started", a.running)
			}
			for _, act := range dc.Actions() {
				if act.GetVerb() != "get" && act.GetVerb() != "list" {
					t.Errorf("unexpected %s %s", act.GetVerb(), act.GetResource().Resource)
				}
			}
		})
	}
}

func TestSyncPodForgetsPodGoneFromAPI(t *testing.T) {
	a := newAgent(t, newFake(t))
	withPods(t, a)
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/token", []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	a.running["demo/web"] = &podEntry{uid: "uid-web", dir: dir}
	if err := a.syncPod(context.Background(), "demo/web"); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.running["demo/web"]; ok {
		t.Error("entry still running")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("pod directory left behind: %v", err)
	}
}

func TestQueue(t *testing.T) {
	q := newQueue()
	for _, k := range []string{"a", "b", "a", "c", "b"} {
		q.add(k)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var got []string
	for range 3 {
		k, ok := q.get(ctx)
		if !ok {
			t.Fatal("queue empty")
		}
		got = append(got, k)
	}
	if want := []string{"a", "b", "c"}; !slices.Equal(got, want) {
		t.Errorf("keys = %q, want %q (each once, in order)", got, want)
	}
	q.addAfter("later", 10*time.Millisecond)
	if k, ok := q.get(ctx); !ok || k != "later" {
		t.Errorf("get = %q %v, want later", k, ok)
	}
	done, stop := context.WithCancel(context.Background())
	stop()
	if _, ok := q.get(done); ok {
		t.Error("get on an empty queue returned after ctx was done")
	}
}

// TestStartFailure: a pod whose volumes cannot be prepared is reported
// Pending with the reason, retried, and leaves no files (a secret written
// for an earlier volume would otherwise stay on disk if the pod is deleted
// before it ever starts).
func TestStartFailure(t *testing.T) {
	secret := &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: "web-tls", Namespace: "demo"},
		Data:       map[string][]byte{"tls.key": []byte("KEY")},
	}
	pod := testPod("web")
	pod.Spec.Volumes = []corev1.Volume{
		{Name: "tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "web-tls"}}},
		{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "absent"}}}},
	}
	dc := newFake(t, pod, secret)
	a := newAgent(t, dc)
	withPods(t, a, pod)
	if err := a.syncPod(context.Background(), "demo/web"); err != nil {
		t.Fatal(err)
	}
	if len(a.running) != 0 {
		t.Errorf("running = %v, want the pod left for a retry", a.running)
	}
	if _, err := os.Stat(filepath.Join(a.opts.DataDir, "pods", string(pod.UID))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pod directory after a failed start: %v, want none", err)
	}
	patches := actionsOf(dc, "patch", "pods")
	if len(patches) != 1 {
		t.Fatalf("%d status patches, want 1", len(patches))
	}
	var body struct{ Status corev1.PodStatus }
	if err := json.Unmarshal(patches[0].(k8stesting.PatchActionImpl).GetPatch(), &body); err != nil {
		t.Fatal(err)
	}
	cs := body.Status.ContainerStatuses
	if body.Status.Phase != corev1.PodPending || len(cs) != 1 || cs[0].State.Waiting == nil ||
		cs[0].State.Waiting.Message != `volume "cfg": configmap demo/absent not found` {
		t.Errorf("status = %+v", body.Status)
	}
}

// TestTerminateWhileSyncing: syncs of a terminating pod (status changes,
// informer events) while its termination runs do not delete it early, and
// the first one after it is done deletes it, once.
func TestTerminateWhileSyncing(t *testing.T) {
	now := metav1.Now()
	pod := testPod("web")
	pod.DeletionTimestamp = &now
	dc := newFake(t, pod)
	a := newAgent(t, dc)
	a.opts.TokenCheck = time.Millisecond
	withPods(t, a, pod)
	e := &podEntry{uid: pod.UID, dir: filepath.Join(t.TempDir(), "pod")}
	a.running["demo/web"] = e
	var early bool
	dc.PrependReactor("delete", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		a.mu.Lock()
		early = early || !e.stopped
		a.mu.Unlock()
		return false, nil, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	loopDone := make(chan struct{})
	go func() { defer close(loopDone); a.tokenLoop(ctx) }()

	deadline := time.Now().Add(5 * time.Second)
	for len(actionsOf(dc, "delete", "pods")) == 0 && time.Now().Before(deadline) {
		if err := a.syncPod(ctx, "demo/web"); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	<-loopDone
	a.terminating.Wait()
	if n := len(actionsOf(dc, "delete", "pods")); n != 1 {
		t.Fatalf("%d deletes, want 1 once the termination is done", n)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if early {
		t.Error("deleted from the API before the termination was done")
	}
	if !e.stopping || !e.stopped {
		t.Errorf("stopping %v stopped %v, want both", e.stopping, e.stopped)
	}
}

func TestToPod(t *testing.T) {
	good := testPod("web")
	for _, tc := range []struct {
		name    string
		obj     any
		wantErr string
	}{
		{"unstructured", unstructuredOf(t, good), ""},
		{"typed", good, "unexpected object *v1.Pod"},
		{"tombstone", cache.DeletedFinalStateUnknown{Key: "demo/web", Obj: good}, "unexpected object cache.DeletedFinalStateUnknown"},
		{"bad field", &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1", "kind": "Pod", "metadata": map[string]any{"name": "x", "namespace": "demo"},
			"spec": map[string]any{"containers": "not a list"}}}, "pod demo/x: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod, err := toPod(tc.obj)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if pod.Name != "web" || pod.UID != good.UID || pod.Spec.NodeName != testNode || pod.Spec.Containers[0].Image != "example/app:1" {
				t.Errorf("pod = %+v", pod)
			}
		})
	}
}
