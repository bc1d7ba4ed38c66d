// Package node is the node agent `skein node`: a virtual kubelet that joins
// a Kubernetes cluster as a Node and runs the pods scheduled to it as
// local processes on loopback pod IPs, with internal/kubelet (the
// same runner as `skein up`). It registers the Node and keeps its Lease
// fresh, watches its pods with a dynamic informer, prepares their volumes
// (service-account tokens from the TokenRequest API among them), reports
// their status through the pods/status subresource and finishes their
// deletion, as a kubelet does. Only the dynamic client is used.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/skein-mesh/skein/internal/kubelet"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
)

var (
	podsGVR   = schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	nodesGVR  = schema.GroupVersionResource{Version: "v1", Resource: "nodes"}
	cmGVR     = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	secretGVR = schema.GroupVersionResource{Version: "v1", Resource: "secrets"}
	saGVR     = schema.GroupVersionResource{Version: "v1", Resource: "serviceaccounts"}
	leaseGVR  = schema.GroupVersionResource{Group: "coordination.k8s.io", Version: "v1", Resource: "leases"}
)

// Options configure a node agent.
type Options struct {
	Client   dynamic.Interface
	NodeName string
	// DataDir holds DataDir/pods/<uid>/ (working directory and volumes)
	// and DataDir/logs/<namespace>/<pod>/<container>.log.
	DataDir string
	// Version is reported as the node's kubelet version.
	Version string
	// Kubelet runs the pods; default a kubelet.Kubelet with the running
	// executable and a minimal host environment.
	Kubelet *kubelet.Kubelet
	Logger  *slog.Logger
	// MaxPods is the node's pod capacity (default 110, the kubelet's).
	MaxPods int
	// KubeletAddr is where the kubelet API (kubectl logs, port-forward) listens: the
	// node's address with a port ("127.0.0.1:10250"; port 0 picks one);
	// empty: not served.
	KubeletAddr string
	// LeaseInterval is how often the Lease is renewed (default 10 s),
	// StatusInterval how often the Node status is posted (default 1 min),
	// TokenCheck how often tokens are checked for refresh (default 30 s).
	LeaseInterval, StatusInterval, TokenCheck time.Duration
}

// Agent is a running node agent.
type Agent struct {
	opts    Options
	dc      dynamic.Interface
	log     *slog.Logger
	kubelet *kubelet.Kubelet
	queue   *queue
	pods    cache.Indexer // the informer's store of this node's pods

	mu      sync.Mutex
	running map[string]*podEntry // by namespace/name

	terminating sync.WaitGroup
	started     time.Time
	kubeletPort int32 // the kubelet API's port (0: not served)
}

// podEntry is a pod the agent has started (or tried to).
type podEntry struct {
	uid      types.UID
	rp       *kubelet.RunningPod // nil when the pod could not start
	dir      string
	tokens   []*projectedToken
	reported string // JSON of the status last written to the API server
	stopping bool   // termination in progress
	stopped  bool   // termination done, waiting for the API to forget the pod
	failure  string // why the pod could not start (reported as its status)
}

// New checks opts and builds an agent; Run starts it.
func New(opts Options) (*Agent, error) {
	if opts.Client == nil {
		return nil, errors.New("node: Options.Client is required")
	}
	if opts.NodeName == "" {
		return nil, errors.New("node: Options.NodeName is required")
	}
	if opts.DataDir == "" {
		return nil, errors.New("node: Options.DataDir is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxPods == 0 {
		opts.MaxPods = 110
	}
	if opts.LeaseInterval == 0 {
		opts.LeaseInterval = 10 * time.Second
	}
	if opts.StatusInterval == 0 {
		opts.StatusInterval = time.Minute
	}
	if opts.TokenCheck == 0 {
		opts.TokenCheck = 30 * time.Second
	}
	if opts.Version == "" {
		opts.Version = "skein"
	}
	k := opts.Kubelet
	if k == nil {
		var err error
		k, err = kubelet.New(kubelet.Options{
			NodeName: opts.NodeName, LogDir: filepath.Join(opts.DataDir, "logs"),
			HostEnv: hostEnv(os.Environ()), Logger: opts.Logger,
		})
		if err != nil {
			return nil, err
		}
	}
	return &Agent{
		opts: opts, dc: opts.Client, log: opts.Logger.With("node", opts.NodeName), kubelet: k,
		queue: newQueue(), running: map[string]*podEntry{},
	}, nil
}

// hostEnv is what pods inherit from the agent's environment: enough to find
// programs and a home, not its credentials (KUBECONFIG and the like).
func hostEnv(env []string) []string {
	keep := map[string]bool{"PATH": true, "HOME": true, "USER": true, "LANG": true, "TZ": true, "TMPDIR": true}
	var out []string
	for _, kv := range env {
		for i := 0; i < len(kv); i++ {
			if kv[i] == '=' {
				if keep[kv[:i]] {
					out = append(out, kv)
				}
				break
			}
		}
	}
	return out
}

// Run registers the node and runs its pods until ctx is done; then it
// stops every pod, marks them and the node not ready, and returns.
func (a *Agent) Run(ctx context.Context) error {
	a.started = time.Now()
	if a.opts.KubeletAddr != "" {
		l, err := listenKubeletAPI(a.opts.KubeletAddr)
		if err != nil {
			return err
		}
		a.kubeletPort = int32(l.Addr().(*net.TCPAddr).Port)
		apiCtx, stopAPI := context.WithCancel(ctx)
		defer stopAPI()
		go a.serveKubeletAPI(apiCtx, l)
	}
	if err := a.register(ctx); err != nil {
		return err
	}
	a.log.Info("node registered", "pods", filepath.Join(a.opts.DataDir, "pods"))

	factory := dynamicinformer.NewFilteredDynamicSharedInformerFactory(a.dc, 0, metav1.NamespaceAll,
		func(o *metav1.ListOptions) { o.FieldSelector = "spec.nodeName=" + a.opts.NodeName })
	inf := factory.ForResource(podsGVR).Informer()
	a.pods = inf.GetIndexer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    a.enqueue,
		UpdateFunc: func(_, obj any) { a.enqueue(obj) },
		DeleteFunc: a.enqueue,
	}); err != nil {
		return err
	}
	informerCtx, stopInformer := context.WithCancel(context.WithoutCancel(ctx))
	defer stopInformer()
	factory.Start(informerCtx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return a.shutdown()
	}

	var wg sync.WaitGroup
	loops := []func(context.Context){a.leaseLoop, a.statusLoop, a.tokenLoop}
	for _, loop := range loops {
		wg.Add(1)
		go func() { defer wg.Done(); loop(ctx) }()
	}
	for {
		key, ok := a.queue.get(ctx)
		if !ok {
			break
		}
		if err := a.syncPod(ctx, key); err != nil && ctx.Err() == nil {
			a.log.Warn("pod sync failed; will retry", "pod", key, "error", err)
			a.queue.addAfter(key, 2*time.Second)
		}
	}
	wg.Wait()
	return a.shutdown()
}

func (a *Agent) enqueue(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err == nil {
		a.queue.add(key)
	}
}

// toPod converts an informer object.
func toPod(obj any) (*corev1.Pod, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return nil, fmt.Errorf("unexpected object %T in the pod informer", obj)
	}
	pod := &corev1.Pod{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, pod); err != nil {
		return nil, fmt.Errorf("pod %s/%s: %w", u.GetNamespace(), u.GetName(), err)
	}
	return pod, nil
}

// syncPod moves one pod a step towards what the API server says: start
// it, report its status, or terminate it.
func (a *Agent) syncPod(ctx context.Context, key string) error {
	obj, exists, err := a.pods.GetByKey(key)
	if err != nil {
		return err
	}
	a.mu.Lock()
	e := a.running[key]
	a.mu.Unlock()
	if !exists {
		// Gone from the API (deleted by us after termination, or forced).
		if e != nil {
			a.forget(ctx, key, e)
		}
		return nil
	}
	pod, err := toPod(obj)
	if err != nil {
		return err
	}
	if pod.Spec.NodeName != a.opts.NodeName {
		return nil
	}
	if e != nil && e.uid != pod.UID {
		// A new pod took the old one's name (a StatefulSet): the old one
		// must be gone before the new one starts.
		a.forget(ctx, key, e)
		e = nil
	}
	if pod.DeletionTimestamp != nil {
		if e == nil {
			return a.deleteFromAPI(ctx, pod)
		}
		// The termination goroutine sets stopped.
		a.mu.Lock()
		stopping, stopped := e.stopping, e.stopped
		a.mu.Unlock()
		if stopped {
			return a.deleteFromAPI(ctx, pod)
		}
		if !stopping {
			a.terminate(ctx, key, pod, e)
		}
		return nil
	}
	if e == nil {
		if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			return nil // ended pods are not run again, not even after an agent restart
		}
		e = a.start(ctx, key, pod)
	}
	return a.report(ctx, pod, e)
}

// start prepares the pod's volumes and starts its processes.
func (a *Agent) start(ctx context.Context, key string, pod *corev1.Pod) *podEntry {
	e := &podEntry{uid: pod.UID, dir: filepath.Join(a.opts.DataDir, "pods", string(pod.UID))}
	a.mu.Lock()
	a.running[key] = e
	a.mu.Unlock()
	// The containers' working directory: without it (a pod with no
	// volumes) every exec fails.
	err := os.MkdirAll(e.dir, 0o700)
	var volumes map[string]string
	var tokens []*projectedToken
	if err == nil {
		volumes, tokens, err = a.prepareVolumes(ctx, pod, e.dir)
	}
	// The token loop reads the tokens of entries in a.running.
	a.mu.Lock()
	e.tokens = tokens
	a.mu.Unlock()
	if err != nil {
		e.failure = err.Error()
		a.log.Warn("pod cannot start", "pod", key, "error", err)
		// A missing ConfigMap or a failed TokenRequest may be fixed later:
		// try again, as the kubelet retries mounts.
		a.mu.Lock()
		delete(a.running, key)
		a.mu.Unlock()
		// Nothing else removes the files (secrets among them) of a pod
		// that never started; a retry writes them again.
		if err := os.RemoveAll(e.dir); err != nil {
			a.log.Warn("could not remove the pod's directory", "dir", e.dir, "error", err)
		}
		a.queue.addAfter(key, 5*time.Second)
		return e
	}
	rp, err := a.kubelet.Run(pod, kubelet.PodResources{
		ConfigMaps: a.configMap, Volumes: volumes, Dir: e.dir,
	}, func() { a.queue.add(key) })
	if err != nil {
		e.failure = err.Error()
		a.log.Error("pod cannot start", "pod", key, "error", err)
		return e
	}
	e.rp = rp
	return e
}

// terminate stops a deleted pod's processes within its grace period, in
// the background, then deletes it from the API with grace 0.
func (a *Agent) terminate(ctx context.Context, key string, pod *corev1.Pod, e *podEntry) {
	// The token loop reads stopping.
	a.mu.Lock()
	e.stopping = true
	a.mu.Unlock()
	grace := 30 * time.Second
	if s := pod.DeletionGracePeriodSeconds; s != nil {
		grace = time.Duration(*s) * time.Second
	}
	a.log.Info("stopping deleted pod", "pod", key, "grace", grace)
	a.terminating.Add(1)
	go func() {
		defer a.terminating.Done()
		a.stopEntry(context.WithoutCancel(ctx), e, grace)
		a.mu.Lock()
		e.stopped = true
		a.mu.Unlock()
		a.queue.add(key) // the worker deletes it from the API
	}()
}

// stopEntry stops a pod's processes and removes its files.
func (a *Agent) stopEntry(ctx context.Context, e *podEntry, grace time.Duration) {
	if e.rp != nil {
		stopCtx, cancel := context.WithTimeout(ctx, max(grace, time.Millisecond))
		e.rp.Stop(stopCtx)
		cancel()
	}
	if err := os.RemoveAll(e.dir); err != nil {
		a.log.Warn("could not remove the pod's directory", "dir", e.dir, "error", err)
	}
}

// forget stops (if needed) and drops a pod the API no longer has.
func (a *Agent) forget(ctx context.Context, key string, e *podEntry) {
	a.mu.Lock()
	delete(a.running, key)
	a.mu.Unlock()
	if e.stopping {
		return // its termination goroutine cleans up
	}
	a.log.Info("pod removed from the API; stopping it", "pod", key)
	a.stopEntry(ctx, e, 0)
}

// deleteFromAPI finishes a deletion, as a kubelet does once the pod's
// containers are gone: delete with grace 0, for this pod's UID only.
func (a *Agent) deleteFromAPI(ctx context.Context, pod *corev1.Pod) error {
	zero := int64(0)
	uid := pod.UID
	err := a.dc.Resource(podsGVR).Namespace(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &uid},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("deleting pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	a.log.Info("pod deleted", "pod", pod.Namespace+"/"+pod.Name)
	return nil
}

// shutdown stops every pod and reports them and the node not ready.
func (a *Agent) shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a.mu.Lock()
	entries := map[string]*podEntry{}
	for k, e := range a.running {
		entries[k] = e
	}
	a.mu.Unlock()
	var wg sync.WaitGroup
	for key, e := range entries {
		if e.stopping {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var last corev1.PodStatus
			if e.rp != nil {
				last, _ = e.rp.Status()
			}
			a.stopEntry(ctx, e, 10*time.Second)
			if e.rp != nil {
				ns, name, _ := cache.SplitMetaNamespaceKey(key)
				if err := a.patchStatus(ctx, ns, name, notReady(last)); err != nil {
					a.log.Warn("could not mark pod not ready", "pod", key, "error", err)
				}
			}
		}()
	}
	wg.Wait()
	a.terminating.Wait()
	if err := a.postNodeStatus(ctx, false); err != nil {
		a.log.Warn("could not mark the node not ready", "error", err)
	}
	a.log.Info("node agent stopped")
	return nil
}
