package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"

	"github.com/skein-mesh/skein/internal/config"
)

// Sink receives the mirror's batches: objects to store as given and keys to
// remove, in one revision. configstore.Store implements it.
type Sink interface {
	Mirror(puts []*config.Object, deletes []config.Key) ([]config.ApplyResult, error)
}

// MirrorOptions configure a Mirror.
type MirrorOptions struct {
	// RootNamespace holds the mesh config (ConfigMap "istio"); default
	// istio-system.
	RootNamespace string
	// Batch is how long events gather after the first one before they are
	// written as one revision (default 100ms). The initial list of every
	// kind is always written as one revision.
	Batch time.Duration
	Log   *slog.Logger
	// OnResults sees what each write changed (for pilot_k8s_*_events).
	OnResults func([]config.ApplyResult)
	// OnInvalid sees each object version kept out of the store because it
	// does not decode or validate (for pilot_total_rejected_configs).
	OnInvalid func(key config.Key, err error)
}

// MeshConfigMap is the ConfigMap in the root namespace holding Istio's mesh
// config; with InjectorConfigMap, the only ConfigMaps the control plane reads.
const MeshConfigMap = "istio"

// InjectorConfigMap is the sidecar injector's configuration (Istio's
// istio-sidecar-injector), which the webhook reads.
const InjectorConfigMap = "istio-sidecar-injector"

// crdGVR is where the mirror learns which Istio kinds the cluster serves.
var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// Mirror keeps a Sink equal to the cluster's objects of the kinds Skein's
// config layer reads: Namespaces, Services, ServiceAccounts, Pods, the mesh
// config ConfigMap, Secrets carrying TLS key material (Gateway
// credentialName) and every Istio kind whose CRD is installed. Deployments
// are not mirrored: in Kubernetes mode the cluster runs them, and nothing
// downstream of the store reads them.
//
// Each object goes through config.Decode and config.Validate, the checks
// `skein apply` makes; a version that fails is logged and kept out, and the
// object's last valid version (if any) stays, as a proxy keeps its last good
// config after a NACK.
type Mirror struct {
	client dynamic.Interface
	sink   Sink
	opts   MirrorOptions
	log    *slog.Logger

	mu      sync.Mutex
	pending map[config.Key]*config.Object // nil: delete
	kick    chan struct{}

	watchMu sync.Mutex
	watches map[string]*kindWatch // by schema Kind
	crds    cache.ResourceEventHandlerRegistration

	ready     chan struct{}
	readyOnce sync.Once
}

// kindWatch is one kind's informer at one API version.
type kindWatch struct {
	schema  *config.Schema
	version string
	inf     cache.SharedIndexInformer
	reg     cache.ResourceEventHandlerRegistration
	cancel  context.CancelFunc
}

// NewMirror mirrors what client sees into sink once Run is called.
func NewMirror(client dynamic.Interface, sink Sink, opts MirrorOptions) *Mirror {
	if opts.RootNamespace == "" {
		opts.RootNamespace = "istio-system"
	}
	if opts.Batch <= 0 {
		opts.Batch = 100 * time.Millisecond
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	return &Mirror{
		client: client, sink: sink, opts: opts, log: opts.Log.With("component", "kube-mirror"),
		pending: map[config.Key]*config.Object{}, kick: make(chan struct{}, 1),
		watches: map[string]*kindWatch{}, ready: make(chan struct{}),
	}
}

// Ready is closed once the initial list of every kind served at start-up
// has been written to the sink.
func (m *Mirror) Ready() <-chan struct{} { return m.ready }

// Run mirrors until ctx is cancelled.
func (m *Mirror) Run(ctx context.Context) error {
	for _, s := range config.Schemas {
		if !s.IsIstio() && m.mirrored(s) {
			m.startWatch(ctx, s, s.Versions[0])
		}
	}
	crdInf := newInformer(m.client, crdGVR, "", nil)
	_ = crdInf.SetTransform(trimCRD)
	reg, err := crdInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { m.crdChanged(ctx, obj) },
		UpdateFunc: func(_, obj any) { m.crdChanged(ctx, obj) },
		DeleteFunc: func(obj any) { m.crdRemoved(obj) },
	})
	if err != nil {
		return fmt.Errorf("kube mirror: CRD informer: %w", err)
	}
	m.watchMu.Lock()
	m.crds = reg
	m.watchMu.Unlock()
	go crdInf.RunWithContext(ctx)

	if err := m.waitInitialSync(ctx); err != nil {
		return err
	}
	m.flush()
	m.readyOnce.Do(func() { close(m.ready) })
	m.log.Info("initial list mirrored", "kinds", m.watchedKinds())

	for {
		select {
		case <-ctx.Done():
			return nil
		case <-m.kick:
		}
		// Let the burst that started this gather, then write it at once.
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(m.opts.Batch):
		}
		m.flush()
	}
}

// waitInitialSync waits until the CRD list has been handled and every
// informer it started (and the built-in ones) has delivered its list.
func (m *Mirror) waitInitialSync(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	start := time.Now()
	nextLog := start.Add(10 * time.Second)
	for {
		if waiting := m.unsynced(); len(waiting) == 0 {
			return nil
		} else if now := time.Now(); now.After(nextLog) {
			m.log.Warn("still waiting for the initial list", "kinds", waiting, "after", now.Sub(start).Round(time.Second))
			nextLog = now.Add(10 * time.Second)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (m *Mirror) unsynced() []string {
	m.watchMu.Lock()
	defer m.watchMu.Unlock()
	var out []string
	if m.crds == nil || !m.crds.HasSynced() {
		out = append(out, "CustomResourceDefinition")
	}
	for kind, w := range m.watches {
		if !w.reg.HasSynced() {
			out = append(out, kind)
		}
	}
	sort.Strings(out)
	return out
}

func (m *Mirror) watchedKinds() []string {
	m.watchMu.Lock()
	defer m.watchMu.Unlock()
	out := make([]string, 0, len(m.watches))
	for kind, w := range m.watches {
		out = append(out, kind+"."+w.version)
	}
	sort.Strings(out)
	return out
}

// mirrored reports whether the mirror watches a Kubernetes kind at all.
func (m *Mirror) mirrored(s *config.Schema) bool { return s.Kind != "Deployment" && !s.StoredOnly }

// startWatch runs an informer for s at version, replacing one at another
// version (a CRD that started serving a version Skein prefers).
func (m *Mirror) startWatch(ctx context.Context, s *config.Schema, version string) {
	m.watchMu.Lock()
	defer m.watchMu.Unlock()
	old := m.watches[s.Kind]
	if old != nil && old.version == version {
		return
	}
	gvr := schema.GroupVersionResource{Group: s.Group, Version: version, Resource: s.Plural}
	namespace, tweak := "", func(*metav1.ListOptions) {}
	switch s.Kind {
	case "ConfigMap":
		// Only the root namespace's ConfigMaps (the mesh config and the
		// injector's); wanted drops the others.
		namespace = m.opts.RootNamespace
	case "Secret":
		// Service-account token secrets are never TLS credentials.
		tweak = func(o *metav1.ListOptions) { o.FieldSelector = "type!=kubernetes.io/service-account-token" }
	}
	inf := newInformer(m.client, gvr, namespace, tweak)
	_ = inf.SetTransform(m.trim(s))
	wctx, cancel := context.WithCancel(ctx)
	w := &kindWatch{schema: s, version: version, inf: inf, cancel: cancel}
	reg, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { m.upsert(s, obj) },
		UpdateFunc: func(_, obj any) { m.upsert(s, obj) },
		DeleteFunc: func(obj any) { m.remove(s, obj) },
	})
	if err != nil {
		cancel()
		m.log.Error("cannot watch", "kind", s.Kind, "version", version, "error", err)
		return
	}
	w.reg = reg
	m.watches[s.Kind] = w
	go inf.RunWithContext(wctx)
	if old != nil {
		m.log.Info("watching a new version", "kind", s.Kind, "from", old.version, "to", version)
		go m.retire(wctx, old, w)
	} else {
		m.log.Debug("watching", "kind", s.Kind, "version", version)
	}
}

// retire stops old once its replacement has listed, and removes what only
// old had (objects deleted during the switch).
func (m *Mirror) retire(ctx context.Context, old, repl *kindWatch) {
	defer old.cancel()
	if !cache.WaitForCacheSync(ctx.Done(), repl.reg.HasSynced) {
		return
	}
	current := map[string]bool{}
	for _, k := range repl.inf.GetStore().ListKeys() {
		current[k] = true
	}
	for _, obj := range old.inf.GetStore().List() {
		u, ok := obj.(*unstructured.Unstructured)
		if ok && !current[cacheKey(u)] {
			m.enqueue(objectKey(old.schema, u), nil)
		}
	}
}

// stopWatch ends a kind's informer and removes its objects: the CRD is gone
// or serves no version Skein reads.
func (m *Mirror) stopWatch(s *config.Schema) {
	m.watchMu.Lock()
	w := m.watches[s.Kind]
	delete(m.watches, s.Kind)
	m.watchMu.Unlock()
	if w == nil {
		return
	}
	w.cancel()
	for _, obj := range w.inf.GetStore().List() {
		if u, ok := obj.(*unstructured.Unstructured); ok {
			m.enqueue(objectKey(s, u), nil)
		}
	}
	m.log.Info("stopped watching", "kind", s.Kind, "version", w.version)
}

func (m *Mirror) crdChanged(ctx context.Context, obj any) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	s, served := crdSchema(u)
	if s == nil {
		return // not a kind Skein reads
	}
	if !crdEstablished(u) {
		// Until then the API server answers 404 for its resources; the
		// update that sets Established starts the watch.
		m.log.Debug("CRD not established yet", "crd", u.GetName())
		return
	}
	for _, v := range s.Versions { // Skein's preference order
		for _, sv := range served {
			if v == sv {
				m.startWatch(ctx, s, v)
				return
			}
		}
	}
	m.log.Warn("CRD serves no version Skein reads; not mirroring it", "crd", u.GetName(), "served", served, "supported", s.Versions)
	m.stopWatch(s)
}

func (m *Mirror) crdRemoved(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	if s, _ := crdSchema(u); s != nil {
		m.stopWatch(s)
	}
}

// crdEstablished reports the CRD's Established condition.
func crdEstablished(u *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == "Established" {
			return m["status"] == "True"
		}
	}
	return false
}

// crdSchema finds the Istio schema a CRD defines and the versions it serves.
func crdSchema(u *unstructured.Unstructured) (*config.Schema, []string) {
	group, _, _ := unstructured.NestedString(u.Object, "spec", "group")
	plural, _, _ := unstructured.NestedString(u.Object, "spec", "names", "plural")
	var s *config.Schema
	for _, cand := range config.Schemas {
		if cand.IsIstio() && cand.Group == group && cand.Plural == plural {
			s = cand
		}
	}
	if s == nil {
		return nil, nil
	}
	versions, _, _ := unstructured.NestedSlice(u.Object, "spec", "versions")
	var served []string
	for _, v := range versions {
		vm, _ := v.(map[string]any)
		name, _ := vm["name"].(string)
		if ok, _ := vm["served"].(bool); ok && name != "" {
			served = append(served, name)
		}
	}
	return s, served
}

// upsert converts a cluster object and queues it; one that is not Skein's
// business (another ConfigMap, a Secret without key material) is queued as
// a delete, in case an earlier version was.
func (m *Mirror) upsert(s *config.Schema, obj any) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	key := objectKey(s, u)
	if !m.wanted(s, u) {
		m.enqueue(key, nil)
		return
	}
	o, err := convert(u)
	if err != nil {
		m.log.Warn("invalid object in the cluster; not mirrored (its last valid version, if any, stays in use)",
			"kind", key.Kind, "namespace", key.Namespace, "name", key.Name,
			"resourceVersion", u.GetResourceVersion(), "error", err)
		if m.opts.OnInvalid != nil {
			m.opts.OnInvalid(key, err)
		}
		return
	}
	m.enqueue(key, o)
}

func (m *Mirror) remove(s *config.Schema, obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	if u, ok := obj.(*unstructured.Unstructured); ok {
		m.enqueue(objectKey(s, u), nil)
	}
}

func (m *Mirror) wanted(s *config.Schema, u *unstructured.Unstructured) bool {
	switch s.Kind {
	case "ConfigMap":
		return u.GetNamespace() == m.opts.RootNamespace && (u.GetName() == MeshConfigMap || u.GetName() == InjectorConfigMap)
	case "Secret":
		return hasTLSMaterial(u)
	}
	return true
}

// hasTLSMaterial: a Secret a Gateway's credentialName can name (tls.crt or
// the generic cert key, as internal/xds reads them).
func hasTLSMaterial(u *unstructured.Unstructured) bool {
	for _, field := range []string{"data", "stringData"} {
		m, _, _ := unstructured.NestedMap(u.Object, field)
		if m["tls.crt"] != nil || m["cert"] != nil {
			return true
		}
	}
	return false
}

// convert decodes and validates one cluster object as `skein apply` would.
func convert(u *unstructured.Unstructured) (*config.Object, error) {
	o, err := config.Decode(u.UnstructuredContent())
	if err == nil {
		err = errors.Join(config.Validate(o)...)
	}
	if err != nil {
		markSource(err)
		return nil, err
	}
	return o, nil
}

// markSource names the cluster as the "file" of field errors, so messages
// read "kubernetes: VirtualService/reviews spec.http[0]...: ...".
func markSource(err error) {
	var fe *config.FieldError
	if errors.As(err, &fe) && fe.File == "" {
		fe.File = "kubernetes"
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			markSource(e)
		}
	}
}

func (m *Mirror) enqueue(key config.Key, o *config.Object) {
	m.mu.Lock()
	m.pending[key] = o
	m.mu.Unlock()
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// flush writes everything queued as one revision.
func (m *Mirror) flush() {
	m.mu.Lock()
	pending := m.pending
	m.pending = map[config.Key]*config.Object{}
	m.mu.Unlock()
	if len(pending) == 0 {
		return
	}
	keys := make([]config.Key, 0, len(pending))
	for k := range pending {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	var (
		puts    []*config.Object
		deletes []config.Key
	)
	for _, k := range keys {
		if o := pending[k]; o != nil {
			puts = append(puts, o)
		} else {
			deletes = append(deletes, k)
		}
	}
	res, err := m.sink.Mirror(puts, deletes)
	if err != nil {
		m.log.Error("cannot store mirrored objects", "objects", len(puts), "deletes", len(deletes), "error", err)
		return
	}
	if len(res) > 0 {
		m.log.Debug("mirrored", "changes", len(res))
		if m.opts.OnResults != nil {
			m.opts.OnResults(res)
		}
	}
}

func objectKey(s *config.Schema, u *unstructured.Unstructured) config.Key {
	k := config.Key{Kind: s.Kind, Name: u.GetName()}
	if s.Namespaced {
		k.Namespace = u.GetNamespace()
	}
	return k
}

// newInformer is a shared informer over the dynamic client. (client-go's
// dynamicinformer package would do the same, but it imports
// k8s.io/client-go/informers and with it the typed clientset and every API
// group's scheme, which this binary must not link: see the package doc.)
func newInformer(client dynamic.Interface, gvr schema.GroupVersionResource, namespace string, tweak func(*metav1.ListOptions)) cache.SharedIndexInformer {
	if tweak == nil {
		tweak = func(*metav1.ListOptions) {}
	}
	res := client.Resource(gvr).Namespace(namespace)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			tweak(&o)
			return res.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			tweak(&o)
			return res.Watch(ctx, o)
		},
	}
	// The wrapper tells the reflector when the client (a fake) cannot
	// stream the initial list.
	return cache.NewSharedIndexInformer(cache.ToListWatcherWithWatchListSemantics(lw, client), &unstructured.Unstructured{}, 0, cache.Indexers{})
}

// cacheKey is the informer store's key (namespace/name).
func cacheKey(u *unstructured.Unstructured) string {
	if u.GetNamespace() == "" {
		return u.GetName()
	}
	return u.GetNamespace() + "/" + u.GetName()
}
