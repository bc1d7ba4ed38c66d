package local

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/skein-mesh/skein/internal/apiclient"
	"github.com/skein-mesh/skein/internal/config"
	"github.com/skein-mesh/skein/internal/kubelet"
	appsv1 "k8s.io/api/apps/v1"
)

// store is the part of the config API the controller needs;
// *apiclient.Client implements it.
type store interface {
	Apply(ctx context.Context, objs []*config.Object) ([]config.ApplyResult, error)
	Delete(ctx context.Context, keys []config.Key) ([]config.ApplyResult, error)
	List(ctx context.Context, kind, namespace string) ([]*config.Object, int64, error)
	WaitForChange(ctx context.Context, since int64) (int64, error)
}

// managedPod is a pod of the controller together with what it last
// published about it.
type managedPod struct {
	*kubelet.Pod
	published      int64 // state version last applied to the store; 0 = never
	publishedReady bool
	printedReason  string // last not-running reason printed, to print each once
	tokenIssued    bool   // the proxy's workload token is written
}

// controller is the Deployment controller and kubelet in one: it makes the
// running pods match the Deployments in the store. All its methods run on
// the reconcile goroutine, except podInfos, notReadySummary and settled,
// which take c.mu.
type controller struct {
	api     store
	alloc   *kubelet.IPAllocator
	planner *planner
	log     *slog.Logger
	out     *statusPrinter
	logDir  string
	backoff kubelet.Backoff
	grace   time.Duration
	probe   kubelet.ProbeConfig
	dirs    func(namespace, name string) string // working directory of a Deployment
	resync  time.Duration
	tokens  *tokenWriter // nil: proxies get no workload token

	mu             sync.Mutex
	pods           map[string]*managedPod // by namespace/name
	settledFlag    bool
	unsettledSince time.Time // when the pods last stopped being all ready
	warnedWaiting  bool

	shutdownErr error // set by run before it returns

	deployErrs  map[string]string // last error reported per Deployment
	terminating sync.WaitGroup
	changed     chan struct{} // a pod's state changed
}

func podKey(namespace, name string) string { return namespace + "/" + name }

// notifyChanged is the pods' change callback.
func (c *controller) notifyChanged() {
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// reconcile reads Deployments, Namespaces and Pods from the store and
// moves the running pods one step towards them.
func (c *controller) reconcile(ctx context.Context) error {
	depObjs, _, err := c.api.List(ctx, "Deployment", "")
	if err != nil {
		return fmt.Errorf("list deployments: %w", err)
	}
	nsObjs, _, err := c.api.List(ctx, "Namespace", "")
	if err != nil {
		return fmt.Errorf("list namespaces: %w", err)
	}
	podObjs, _, err := c.api.List(ctx, "Pod", "")
	if err != nil {
		return fmt.Errorf("list pods: %w", err)
	}
	nsLabels := map[string]map[string]string{}
	for _, o := range nsObjs {
		nsLabels[o.Meta.Name] = o.Meta.Labels
	}
	inStore := map[string]bool{}
	for _, o := range podObjs {
		inStore[podKey(o.Meta.Namespace, o.Meta.Name)] = true
	}

	// A published pod missing from the store was deleted by someone (skein
	// delete pod): stop it, and the Deployment gets a replacement below, as
	// in Kubernetes.
	for key, mp := range c.snapshot() {
		if mp.published > 0 && !inStore[key] {
			c.log.Info("pod deleted from the store; stopping it", "pod", key)
			c.terminate(ctx, mp, false)
		}
	}

	wanted := map[string]bool{} // namespace/deployment
	for _, o := range depObjs {
		d, ok := o.Spec.(*appsv1.Deployment)
		if !ok {
			continue
		}
		d = d.DeepCopy()
		d.Name, d.Namespace = o.Meta.Name, o.Meta.Namespace
		key := podKey(d.Namespace, d.Name)
		wanted[key] = true
		err := validateDeployment(d)
		if err == nil {
			err = c.scale(ctx, d, nsLabels[d.Namespace])
		}
		c.reportDeployment(key, err)
	}
	for _, mp := range c.snapshot() {
		if !wanted[podKey(mp.Plan().Namespace, mp.Plan().Deployment)] {
			c.terminate(ctx, mp, true)
		}
	}
	c.publish(ctx)
	return nil
}

// snapshot copies the pod table so it can be changed while iterating.
func (c *controller) snapshot() map[string]*managedPod {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[string]*managedPod, len(c.pods))
	for k, v := range c.pods {
		m[k] = v
	}
	return m
}

func (c *controller) reportDeployment(key string, err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if c.deployErrs[key] == msg {
		return
	}
	c.deployErrs[key] = msg
	if err != nil {
		c.log.Error("deployment cannot be run", "deployment", key, "error", err)
		c.out.printf("deployment %s: %v\n", key, err)
	}
}

// scale runs a rolling update with 100% surge: pods of the current
// template are started up to the replica count at once, and old pods are
// stopped one for one as new ones become ready. New pods that never get
// ready keep the old ones serving, as a stuck Kubernetes rollout does.
func (c *controller) scale(ctx context.Context, d *appsv1.Deployment, nsLabels map[string]string) error {
	want := replicasOf(d)
	hash := templateHash(&d.Spec.Template)
	var current, old []*managedPod
	for _, mp := range c.snapshot() {
		if mp.Plan().Namespace != d.Namespace || mp.Plan().Deployment != d.Name {
			continue
		}
		if mp.Plan().TemplateHash == hash {
			current = append(current, mp)
		} else {
			old = append(old, mp)
		}
	}
	var createErr error
	for n := len(current); n < want; n++ {
		mp, err := c.create(d, hash, nsLabels)
		if err != nil {
			createErr = fmt.Errorf("creating a pod: %w", err)
			break
		}
		current = append(current, mp)
	}
	if len(current) > want {
		sortForRemoval(current)
		for _, mp := range current[:len(current)-want] {
			c.terminate(ctx, mp, true)
		}
		current = current[len(current)-want:]
	}
	readyNew := 0
	for _, mp := range current {
		if st, _ := mp.State(); st.Ready {
			readyNew++
		}
	}
	if keep := max(0, want-readyNew); len(old) > keep {
		sortForRemoval(old)
		for _, mp := range old[:len(old)-keep] {
			c.terminate(ctx, mp, true)
		}
	}
	return createErr
}

// sortForRemoval orders pods so the best ones to remove come first:
// not-ready before ready, then newest first (Kubernetes' preference).
func sortForRemoval(pods []*managedPod) {
	sort.SliceStable(pods, func(i, j int) bool {
		ri, _ := pods[i].State()
		rj, _ := pods[j].State()
		if ri.Ready != rj.Ready {
			return !ri.Ready
		}
		return pods[i].Plan().Created.After(pods[j].Plan().Created)
	})
}

// create allocates addresses for a new pod of d and starts it.
func (c *controller) create(d *appsv1.Deployment, hash string, nsLabels map[string]string) (*managedPod, error) {
	mode := proxyModeFor(injectionDecision{
		Namespace:       d.Namespace,
		NamespaceLabels: nsLabels,
		PodLabels:       d.Spec.Template.Labels,
		PodAnnotations:  d.Spec.Template.Annotations,
		HostNetwork:     d.Spec.Template.Spec.HostNetwork,
	})
	ports := append([]int(nil), kubelet.ContainerPorts(&d.Spec.Template.Spec)...)
	if mode != noProxy {
		ports = append(ports, kubelet.ProxyPorts...)
	}
	podIP, appIP, err := c.alloc.Allocate(mode == sidecarProxy, ports)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	name := podName(d.Name, hash, func(n string) bool { _, ok := c.pods[podKey(d.Namespace, n)]; return ok })
	c.mu.Unlock()
	plan := c.planner.plan(d, podInstance{
		Name: name, UID: newUID(), Mode: mode, PodIP: podIP, AppIP: appIP,
		Dir: c.dirs(d.Namespace, d.Name), Created: time.Now(),
	})
	c.log.Info("starting pod", "pod", podKey(plan.Namespace, name), "ip", podIP, "proxy", mode)
	mp := &managedPod{Pod: kubelet.StartPod(plan, c.logDir, c.backoff, c.grace, c.probe, c.log, c.notifyChanged)}
	c.mu.Lock()
	c.pods[podKey(plan.Namespace, name)] = mp
	c.mu.Unlock()
	return mp, nil
}

// terminate removes a pod: first from the store (so the mesh stops sending
// it traffic), then its processes, in the background.
func (c *controller) terminate(ctx context.Context, mp *managedPod, deleteFromStore bool) {
	key := podKey(mp.Plan().Namespace, mp.Plan().Name)
	c.mu.Lock()
	delete(c.pods, key)
	c.mu.Unlock()
	if deleteFromStore && mp.published > 0 {
		if err := c.deletePods(ctx, []config.Key{{Kind: "Pod", Namespace: mp.Plan().Namespace, Name: mp.Plan().Name}}); err != nil {
			c.log.Warn("could not delete pod from the store", "pod", key, "error", err)
		}
	}
	c.log.Info("stopping pod", "pod", key)
	c.terminating.Add(1)
	go func() {
		defer c.terminating.Done()
		mp.Stop(context.WithoutCancel(ctx))
		c.alloc.Release(mp.Plan().PodIP)
		if c.tokens != nil {
			c.tokens.remove(mp.Plan().Namespace, mp.Plan().Name)
		}
	}()
}

// publish writes every pod whose state changed since it was last written,
// and prints readiness changes.
func (c *controller) publish(ctx context.Context) {
	type pending struct {
		mp      *managedPod
		st      kubelet.PodState
		version int64
	}
	var todo []pending
	var objs []*config.Object
	pods := c.snapshot()
	for _, key := range slices.Sorted(maps.Keys(pods)) {
		mp := pods[key]
		st, v := mp.State()
		if v == mp.published {
			continue
		}
		todo = append(todo, pending{mp, st, v})
		objs = append(objs, podObject(mp.Plan(), st))
	}
	if len(objs) > 0 {
		if _, err := c.api.Apply(ctx, objs); err != nil {
			c.log.Warn("could not publish pods; will retry", "error", err)
			return
		}
	}
	for _, p := range todo {
		first := p.mp.published == 0
		p.mp.published = p.version
		if p.st.Ready != p.mp.publishedReady || (first && p.st.Ready) {
			c.out.pod(p.mp.Plan(), p.st)
		}
		p.mp.publishedReady = p.st.Ready
		c.issueToken(ctx, p.mp)
		for _, cs := range p.st.Containers {
			if cs.Reason != "" && cs.Reason != p.mp.printedReason && cs.Reason != kubelet.ReasonCrashLoop {
				c.out.printf("pod %s/%s container %s: %s: %s\n", p.mp.Plan().Namespace, p.mp.Plan().Name, cs.Name, cs.Reason, cs.Message)
				p.mp.printedReason = cs.Reason
			}
		}
	}
	// A token whose issue failed is retried at every publish.
	for _, mp := range pods {
		if mp.published > 0 {
			c.issueToken(ctx, mp)
		}
	}
	c.updateSettled()
}

// issueToken gives a registered pod's proxy its workload token (once).
func (c *controller) issueToken(ctx context.Context, mp *managedPod) {
	if c.tokens == nil || mp.tokenIssued || mp.Plan().Mode == noProxy {
		return
	}
	if err := c.tokens.issue(ctx, mp.Plan().Namespace, mp.Plan().Name); err != nil {
		c.log.Warn("no workload token yet; will retry", "pod", podKey(mp.Plan().Namespace, mp.Plan().Name), "error", err)
		return
	}
	mp.tokenIssued = true
}

// updateSettled records whether every pod is ready (and there is at least
// one): the mesh is up.
func (c *controller) updateSettled() {
	pods := c.snapshot()
	settled := len(pods) > 0
	for _, mp := range pods {
		// Only what the store shows counts: the mesh routes by it.
		if st, v := mp.State(); !st.Ready || mp.published != v {
			settled = false
		}
	}
	c.mu.Lock()
	was := c.settledFlag
	c.settledFlag = settled
	switch {
	case settled:
		c.unsettledSince, c.warnedWaiting = time.Time{}, false
	case c.unsettledSince.IsZero():
		c.unsettledSince = time.Now()
	}
	c.mu.Unlock()
	if settled && !was {
		c.out.meshUp(len(pods))
	}
}

// settled reports whether every pod the controller runs is ready and
// published.
func (c *controller) settled() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.settledFlag
}

// deleteStale removes Pods a previous run registered and left behind.
func (c *controller) deleteStale(ctx context.Context) error {
	objs, _, err := c.api.List(ctx, "Pod", "")
	if err != nil {
		return err
	}
	var keys []config.Key
	for _, o := range objs {
		if _, ours := o.Meta.Annotations[annotationRunner]; ours {
			keys = append(keys, o.Key())
		}
	}
	if len(keys) == 0 {
		return nil
	}
	c.log.Info("deleting pods left by a previous run", "count", len(keys))
	return c.deletePods(ctx, keys)
}

// deletePods removes Pods from the store; Pods already gone are fine (the
// API deletes all or nothing, so fall back to one by one).
func (c *controller) deletePods(ctx context.Context, keys []config.Key) error {
	if len(keys) == 0 {
		return nil
	}
	_, err := c.api.Delete(ctx, keys)
	if err == nil || !apiclient.IsNotFound(err) {
		return err
	}
	var errs []error
	for _, k := range keys {
		if _, err := c.api.Delete(ctx, []config.Key{k}); err != nil && !apiclient.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// warnIfStuck prints, once per episode, which pods keep the mesh from
// being up after waitWarning: otherwise `skein up` would just sit silent.
func (c *controller) warnIfStuck() {
	c.mu.Lock()
	stuck := !c.settledFlag && !c.unsettledSince.IsZero() && time.Since(c.unsettledSince) > waitWarning && !c.warnedWaiting
	if stuck {
		c.warnedWaiting = true
	}
	c.mu.Unlock()
	if stuck {
		c.out.printf("Still waiting after %s: %s (logs in %s)\n", waitWarning, c.notReadySummary(), c.logDir)
	}
}

const waitWarning = 30 * time.Second

// shutdown stops every pod and removes them from the store.
func (c *controller) shutdown(ctx context.Context) error {
	pods := c.snapshot()
	var keys []config.Key
	for _, mp := range pods {
		if mp.published > 0 {
			keys = append(keys, config.Key{Kind: "Pod", Namespace: mp.Plan().Namespace, Name: mp.Plan().Name})
		}
	}
	err := c.deletePods(ctx, keys)
	if err != nil {
		err = fmt.Errorf("removing pods from the store: %w", err)
	}
	for _, mp := range pods {
		c.terminate(ctx, mp, false)
	}
	c.terminating.Wait()
	return err
}

// resyncInterval bounds how long a missed change notification can delay a
// reconcile (and retries failed publishes).
const resyncInterval = 10 * time.Second

// run reconciles on store changes, pod state changes and a timer until
// ctx is done, then takes the pods down.
func (c *controller) run(ctx context.Context) {
	storeChanged := make(chan struct{}, 1)
	go c.watch(ctx, storeChanged)
	resync := time.NewTicker(c.resync)
	defer resync.Stop()
	for {
		if err := c.reconcile(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("reconcile failed; will retry", "error", err)
		}
		select {
		case <-ctx.Done():
			cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			c.shutdownErr = c.shutdown(cleanup)
			cancel()
			return
		case <-storeChanged:
		case <-resync.C:
			c.warnIfStuck()
		case <-c.changed:
			// A pod's readiness changed: publish it (and let a rolling
			// update proceed) without waiting for the store.
		}
	}
}

// watch long-polls the store and signals every new revision.
func (c *controller) watch(ctx context.Context, changed chan<- struct{}) {
	var rev int64
	delay := 100 * time.Millisecond
	for ctx.Err() == nil {
		next, err := c.api.WaitForChange(ctx, rev)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			c.log.Debug("watching the store failed; retrying", "error", err, "after", delay)
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			delay = min(2*delay, 5*time.Second)
			continue
		}
		delay = 100 * time.Millisecond
		if next != rev {
			rev = next
			select {
			case changed <- struct{}{}:
			default:
			}
		}
	}
}
