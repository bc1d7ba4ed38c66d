package local

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skein-mesh/skein/internal/apiclient"
	"github.com/skein-mesh/skein/internal/config"
	"github.com/skein-mesh/skein/internal/configapi"
	"github.com/skein-mesh/skein/internal/configstore"
	"github.com/skein-mesh/skein/internal/kubelet"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// syncBuffer is a bytes.Buffer safe for the controller's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// controllerHarness runs a controller against the real config store and
// config API, in-process, with the test binary as every pod's program.
type controllerHarness struct {
	t    *testing.T
	api  *apiclient.Client
	ctrl *controller
	out  *syncBuffer
	stop func()
}

func newControllerHarness(t *testing.T) *controllerHarness {
	t.Helper()
	store := configstore.OpenMemory()
	srv := httptest.NewServer((&configapi.Guard{AdminToken: "test-admin"}).Handler(configapi.NewHandler(store, discardLogger())))
	api := apiclient.NewWithToken(srv.URL, "test-admin")
	out := &syncBuffer{}
	exe, _ := os.Executable()
	dir := t.TempDir()
	c := &controller{
		api: api, alloc: kubelet.NewIPAllocator(),
		planner: &planner{
			Executable: exe, DiscoveryAddr: "127.0.0.1:1", IngressAddress: "127.0.0.1",
			HostEnv: os.Environ(), LookPath: func(string) (string, error) { return "", os.ErrNotExist },
			ConfigMaps: noConfigMaps,
		},
		log: discardLogger(), out: &statusPrinter{w: out}, logDir: dir,
		backoff: kubelet.Backoff{Initial: 100 * time.Millisecond, Max: time.Second},
		grace:   2 * time.Second,
		probe:   kubelet.ProbeConfig{Interval: 50 * time.Millisecond, Timeout: 200 * time.Millisecond},
		resync:  time.Second,
		dirs:    func(string, string) string { return dir },
		pods:    map[string]*managedPod{}, deployErrs: map[string]string{},
		changed: make(chan struct{}, 1),
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	h := &controllerHarness{t: t, api: api, ctrl: c, out: out}
	h.stop = func() {
		cancel()
		<-done
		srv.Close()
	}
	if err := c.deleteStale(ctx); err != nil {
		t.Fatal(err)
	}
	go func() { defer close(done); c.run(ctx) }()
	t.Cleanup(func() { h.stop() })
	return h
}

func (h *controllerHarness) apply(objs ...*config.Object) {
	h.t.Helper()
	if _, err := h.api.Apply(context.Background(), objs); err != nil {
		h.t.Fatal(err)
	}
}

// storePods returns the Pods in the store by name.
func (h *controllerHarness) storePods() map[string]*corev1.Pod {
	h.t.Helper()
	objs, _, err := h.api.List(context.Background(), "Pod", "")
	if err != nil {
		h.t.Fatal(err)
	}
	pods := map[string]*corev1.Pod{}
	for _, o := range objs {
		pods[o.Meta.Name] = o.Spec.(*corev1.Pod)
	}
	return pods
}

func podReady(p *corev1.Pod) bool {
	return condition(p, corev1.PodReady) == corev1.ConditionTrue
}

// appDeployment is a Deployment of the test binary's "listen" helper.
func appDeployment(name string, replicas int32, version string) *config.Object {
	exe, _ := os.Executable()
	labels := map[string]string{"app": name}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "apps"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "app", Image: "test", Command: []string{exe},
					Env: []corev1.EnvVar{
						{Name: helperEnv, Value: "listen"}, {Name: "PORT", Value: "18080"}, {Name: "VERSION", Value: version},
					},
					Ports: []corev1.ContainerPort{{ContainerPort: 18080}},
				}}},
			},
		},
	}
	return kubeObject("apps", "Deployment", d)
}

// readyPods waits until the store holds exactly n ready Pods of the
// deployment, all of the given template hash, and returns them.
func (h *controllerHarness) waitPods(what string, n int, match func(*corev1.Pod) bool) map[string]*corev1.Pod {
	h.t.Helper()
	var pods map[string]*corev1.Pod
	waitFor(h.t, 15*time.Second, what, func() bool {
		pods = h.storePods()
		matching := 0
		for _, p := range pods {
			if match(p) {
				matching++
			}
		}
		return matching == n && len(pods) == n
	})
	return pods
}

func TestControllerRunsDeployments(t *testing.T) {
	h := newControllerHarness(t)
	ns := kubeObject("", "Namespace", &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "apps"}})
	h.apply(ns, appDeployment("web", 2, "1"))

	v1 := templateHash(&appDeployment("web", 2, "1").Spec.(*appsv1.Deployment).Spec.Template)
	pods := h.waitPods("2 ready pods", 2, func(p *corev1.Pod) bool { return podReady(p) && p.Labels[labelPodTemplateHash] == v1 })
	for name, p := range pods {
		if !strings.HasPrefix(name, "web-"+v1+"-") || p.Status.PodIP == "" || !strings.HasPrefix(p.Status.PodIP, "127.1.") {
			t.Errorf("pod %s: ip %q", name, p.Status.PodIP)
		}
		// The app really listens on its pod IP (no sidecar here).
		if !tcpOpen(context.Background(), mustAddr(t, p.Status.PodIP), 18080, time.Second) {
			t.Errorf("pod %s does not listen on %s:18080", name, p.Status.PodIP)
		}
	}
	if infos := h.ctrl.snapshot(); len(infos) != 2 {
		t.Errorf("controller runs %d pods, want 2", len(infos))
	}
	waitFor(t, 5*time.Second, "mesh-up line", func() bool { return strings.Contains(h.out.String(), "Mesh is up: 2 pods ready.") })
	if !strings.Contains(h.out.String(), "apps         web-"+v1) {
		t.Errorf("status output lacks the pod lines:\n%s", h.out.String())
	}

	// Rolling update: a new template replaces both pods.
	h.apply(appDeployment("web", 2, "2"))
	v2 := templateHash(&appDeployment("web", 2, "2").Spec.(*appsv1.Deployment).Spec.Template)
	pods = h.waitPods("2 ready pods of the new template", 2, func(p *corev1.Pod) bool { return podReady(p) && p.Labels[labelPodTemplateHash] == v2 })

	// A Pod deleted from the store is replaced, as a ReplicaSet would.
	var victim string
	for name := range pods {
		victim = name
		break
	}
	if _, err := h.api.Delete(context.Background(), []config.Key{{Kind: "Pod", Namespace: "apps", Name: victim}}); err != nil {
		t.Fatal(err)
	}
	h.waitPods("a replacement pod", 2, func(p *corev1.Pod) bool { return podReady(p) && p.Name != victim })

	// Scaling down, then deleting the Deployment, stops its pods.
	h.apply(appDeployment("web", 1, "2"))
	h.waitPods("1 pod after scaling down", 1, podReady)
	if _, err := h.api.Delete(context.Background(), []config.Key{{Kind: "Deployment", Namespace: "apps", Name: "web"}}); err != nil {
		t.Fatal(err)
	}
	h.waitPods("no pods after deleting the deployment", 0, podReady)
	waitFor(t, 5*time.Second, "controller to drop every pod", func() bool { return len(h.ctrl.snapshot()) == 0 })
}

func TestControllerReportsUnrunnableContainers(t *testing.T) {
	h := newControllerHarness(t)
	obj := appDeployment("broken", 1, "1")
	obj.Spec.(*appsv1.Deployment).Spec.Template.Spec.Containers[0].Command = nil
	h.apply(kubeObject("", "Namespace", &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "apps"}}), obj)
	pods := h.waitPods("the broken pod to be published", 1, func(p *corev1.Pod) bool {
		return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Waiting != nil
	})
	for _, p := range pods {
		w := p.Status.ContainerStatuses[0].State.Waiting
		if podReady(p) || p.Status.Phase != corev1.PodPending || w.Reason != kubelet.ReasonConfigError || !strings.Contains(w.Message, "has no command") {
			t.Errorf("broken pod status = %+v", p.Status)
		}
	}
	waitFor(t, 5*time.Second, "the error on the status output", func() bool {
		return strings.Contains(h.out.String(), `container "app" has no command`)
	})
}

func TestControllerShutdownAndStalePods(t *testing.T) {
	h := newControllerHarness(t)
	h.apply(kubeObject("", "Namespace", &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "apps"}}), appDeployment("web", 1, "1"))
	pods := h.waitPods("1 ready pod", 1, podReady)
	var ip string
	for _, p := range pods {
		ip = p.Status.PodIP
	}
	h.stop()
	h.stop = func() {}
	// The processes are gone: nothing listens on the pod's address.
	if tcpOpen(context.Background(), mustAddr(t, ip), 18080, 200*time.Millisecond) {
		t.Errorf("pod at %s still serves after shutdown", ip)
	}
}

func TestDeleteStaleRemovesOnlyRunnerPods(t *testing.T) {
	store := configstore.OpenMemory()
	srv := httptest.NewServer((&configapi.Guard{AdminToken: "test-admin"}).Handler(configapi.NewHandler(store, discardLogger())))
	defer srv.Close()
	api := apiclient.NewWithToken(srv.URL, "test-admin")
	mkPod := func(name string, annotations map[string]string) *config.Object {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "apps", Annotations: annotations},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "i"}}},
		}
		return kubeObject("", "Pod", p)
	}
	ctx := context.Background()
	if _, err := api.Apply(ctx, []*config.Object{
		mkPod("stale", map[string]string{annotationRunner: "skein-up"}),
		mkPod("users", nil),
	}); err != nil {
		t.Fatal(err)
	}
	c := &controller{api: api, log: discardLogger()}
	if err := c.deleteStale(ctx); err != nil {
		t.Fatal(err)
	}
	objs, _, err := api.List(ctx, "Pod", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 || objs[0].Meta.Name != "users" {
		t.Errorf("after deleteStale the store holds %v, want only the user's pod", objs)
	}
	// Deleting pods already gone is not an error.
	if err := c.deletePods(ctx, []config.Key{{Kind: "Pod", Namespace: "apps", Name: "users"}, {Kind: "Pod", Namespace: "apps", Name: "stale"}}); err != nil {
		t.Errorf("deletePods with one missing pod: %v", err)
	}
}

func TestControllerWarnsOnceWhenStuck(t *testing.T) {
	out := &syncBuffer{}
	c := &controller{out: &statusPrinter{w: out}, logDir: "/logs", pods: map[string]*managedPod{}}
	c.warnIfStuck()
	if out.String() != "" {
		t.Fatalf("warned without having waited: %q", out.String())
	}
	c.unsettledSince = time.Now().Add(-waitWarning - time.Second)
	c.warnIfStuck()
	c.warnIfStuck()
	if got := out.String(); strings.Count(got, "Still waiting") != 1 || !strings.Contains(got, "(logs in /logs)") {
		t.Errorf("output = %q, want one warning naming the log directory", got)
	}
}
