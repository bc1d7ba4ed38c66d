// Package configstore keeps Skein's configuration objects durably on local
// disk (or only in memory) and hands out immutable, versioned snapshots of
// them. Every change is validated as a whole first and written atomically:
// a crash leaves either the old set or the new one in store.json.
package configstore

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skein-mesh/skein/internal/config"
)

// Actions reported in config.ApplyResult.
const (
	ActionCreated    = "created"
	ActionConfigured = "configured"
	ActionUnchanged  = "unchanged"
	ActionDeleted    = "deleted"
)

// Store holds the current set of objects. It is safe for concurrent use:
// writers are serialised, readers take a Snapshot and never block.
type Store struct {
	mu      sync.Mutex // serialises Apply/Delete and the file they write
	current atomic.Pointer[snapshot]
	file    *fileStore // nil in memory mode
	now     func() time.Time

	subMu  sync.Mutex
	subs   map[int]chan struct{}
	nextID int

	recovery *Recovery // set by Open when it fell back to store.json.prev
}

// Open loads <dir>/store.json (creating dir if needed) and returns a store
// that persists every change there.
func Open(dir string) (*Store, error) {
	fs, err := openFileStore(dir)
	if err != nil {
		return nil, err
	}
	snap, recovery, err := fs.load()
	if err != nil {
		return nil, err
	}
	s := newStore(fs)
	s.current.Store(snap)
	s.recovery = recovery
	return s, nil
}

// Recovered reports whether Open found store.json corrupt and loaded the
// last good revision instead (nil: the file was intact).
func (s *Store) Recovered() *Recovery { return s.recovery }

// OpenMemory returns a store that keeps everything in memory only.
func OpenMemory() *Store {
	s := newStore(nil)
	s.current.Store(emptySnapshot())
	return s
}

func newStore(fs *fileStore) *Store {
	return &Store{file: fs, now: time.Now, subs: map[int]chan struct{}{}}
}

// Snapshot returns the current immutable view. It is cheap: snapshots share
// every kind that did not change between them.
func (s *Store) Snapshot() config.Reader { return s.current.Load() }

// Revision is the revision of the current snapshot.
func (s *Store) Revision() int64 { return s.current.Load().rev }

// Subscribe returns a channel that receives a value after every change
// (notifications coalesce: the buffer holds one), and a function that ends
// the subscription.
func (s *Store) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	s.subMu.Lock()
	id := s.nextID
	s.nextID++
	s.subs[id] = ch
	s.subMu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			s.subMu.Lock()
			delete(s.subs, id)
			s.subMu.Unlock()
		})
	}
}

func (s *Store) notify() {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	for _, ch := range s.subs {
		select {
		case ch <- struct{}{}:
		default: // a notification is already pending
		}
	}
}

// Apply creates or updates objs as one change: all are validated first and
// nothing is stored unless every one is valid and the write succeeds. The
// store assigns ResourceVersion (its revision at the object's last change),
// Generation (bumped only when the spec changes) and CreationTimestamp.
func (s *Store) Apply(objs []*config.Object) ([]config.ApplyResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	results, next, err := s.plan(objs)
	if err != nil || next == nil {
		return results, err
	}
	return results, s.commit(next)
}

// DryRun reports what Apply would do, without changing anything.
func (s *Store) DryRun(objs []*config.Object) ([]config.ApplyResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	results, _, err := s.plan(objs)
	return results, err
}

// plan validates objs and computes the next snapshot (nil when nothing
// changes).
func (s *Store) plan(objs []*config.Object) ([]config.ApplyResult, *snapshot, error) {
	var errs []error
	for _, o := range objs {
		if o == nil {
			errs = append(errs, errors.New("nil object"))
			continue
		}
		errs = append(errs, config.Validate(o)...)
	}
	if len(errs) > 0 {
		return nil, nil, &InvalidError{Err: errors.Join(errs...)}
	}
	cur := s.current.Load()
	rev := cur.rev + 1
	now := s.now().UTC().Truncate(time.Second)
	b := cur.builder()
	results := make([]config.ApplyResult, 0, len(objs))
	changed := false
	for _, in := range objs {
		schema, _ := config.SchemaForGVK(in.GVK.APIVersion(), in.GVK.Kind)
		obj := in.DeepCopy()
		res := config.ApplyResult{Resource: schema.Resource(), Namespace: obj.Meta.Namespace, Name: obj.Meta.Name}
		old, exists := b.get(obj.Key())
		if exists && obj.Status == nil {
			// Like kubectl apply, leave the status alone when the input
			// carries none (Istio kinds; Kubernetes kinds carry their own).
			obj.Status = old.Status
		}
		switch {
		case !exists:
			res.Action = ActionCreated
			obj.Meta.Generation = 1
			obj.Meta.CreationTimestamp = now
		case config.ContentEqual(old, obj):
			res.Action = ActionUnchanged
			results = append(results, res)
			continue
		default:
			res.Action = ActionConfigured
			obj.Meta.CreationTimestamp = old.Meta.CreationTimestamp
			obj.Meta.Generation = old.Meta.Generation
			if !config.SpecEqual(old, obj) {
				obj.Meta.Generation++
			}
		}
		obj.Meta.ResourceVersion = strconv.FormatInt(rev, 10)
		obj.SyncMeta()
		b.put(obj)
		changed = true
		results = append(results, res)
	}
	if !changed {
		return results, nil, nil
	}
	return results, b.build(rev), nil
}

// Delete removes the objects named by keys as one change. If any is
// missing, nothing is deleted and the error names every missing one.
func (s *Store) Delete(keys []config.Key) ([]config.ApplyResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.current.Load()
	b := cur.builder()
	var (
		results []config.ApplyResult
		errs    []error
	)
	for _, k := range keys {
		schema, ok := config.SchemaForKind(k.Kind)
		if !ok {
			errs = append(errs, fmt.Errorf("%w %q", ErrUnknownKind, k.Kind))
			continue
		}
		k.Kind = schema.KeyKind()
		if !schema.Namespaced {
			k.Namespace = ""
		}
		if _, ok := b.get(k); !ok {
			errs = append(errs, &NotFoundError{Resource: schema.Plural + "." + schema.Group, Key: k})
			continue
		}
		b.remove(k)
		results = append(results, config.ApplyResult{Resource: schema.Resource(), Namespace: k.Namespace, Name: k.Name, Action: ActionDeleted})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(results) == 0 {
		return nil, nil
	}
	return results, s.commit(b.build(cur.rev + 1))
}

// commit persists next (when durable) and then makes it current.
func (s *Store) commit(next *snapshot) error {
	if s.file != nil {
		if err := s.file.save(next); err != nil {
			return fmt.Errorf("config store: %w", err)
		}
	}
	s.current.Store(next)
	s.notify()
	return nil
}

// ErrUnknownKind is returned for a key whose kind no schema knows.
var ErrUnknownKind = errors.New("unknown kind")

// InvalidError wraps validation failures: the request was wrong, not the
// store.
type InvalidError struct{ Err error }

func (e *InvalidError) Error() string { return e.Err.Error() }
func (e *InvalidError) Unwrap() error { return e.Err }

// NotFoundError says an object does not exist, in kubectl's words.
type NotFoundError struct {
	Resource string // plural.group, e.g. "virtualservices.networking.istio.io"
	Key      config.Key
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("%s %q not found", strings.TrimSuffix(e.Resource, "."), e.Key.Name)
}

// snapshot is an immutable set of objects at one revision. Per-kind maps
// are shared between snapshots until a kind changes (copy-on-write).
type snapshot struct {
	rev   int64
	kinds map[string]*kindSet
}

type kindSet struct {
	byKey  map[config.Key]*config.Object
	sorted []*config.Object // by namespace, then name
}

var _ config.Reader = (*snapshot)(nil)

func emptySnapshot() *snapshot { return &snapshot{kinds: map[string]*kindSet{}} }

func (s *snapshot) Revision() int64 { return s.rev }

// List hands out the snapshot's own slice, shared by every reader of the
// snapshot (translation of many proxies at once, the config API listing
// it): immutable by contract, as are the objects. Readers never sort or
// write it in place; they sort a copy (model.PushContext keeps its own
// sorted indexes). Its capacity is capped, so an append copies.
func (s *snapshot) List(kind string) []*config.Object {
	ks := s.kinds[kind]
	if ks == nil {
		return nil
	}
	return ks.sorted[:len(ks.sorted):len(ks.sorted)]
}

func (s *snapshot) Get(key config.Key) (*config.Object, bool) {
	ks := s.kinds[key.Kind]
	if ks == nil {
		return nil, false
	}
	o, ok := ks.byKey[key]
	return o, ok
}

// builder derives a new snapshot from a base, copying only the kinds it
// touches.
type builder struct {
	base    *snapshot
	touched map[string]map[config.Key]*config.Object
}

func (s *snapshot) builder() *builder {
	return &builder{base: s, touched: map[string]map[config.Key]*config.Object{}}
}

func (b *builder) kind(kind string) map[config.Key]*config.Object {
	if m, ok := b.touched[kind]; ok {
		return m
	}
	m := map[config.Key]*config.Object{}
	if ks := b.base.kinds[kind]; ks != nil {
		for k, v := range ks.byKey {
			m[k] = v
		}
	}
	b.touched[kind] = m
	return m
}

func (b *builder) get(k config.Key) (*config.Object, bool) {
	if m, ok := b.touched[k.Kind]; ok {
		o, ok := m[k]
		return o, ok
	}
	return b.base.Get(k)
}

func (b *builder) put(o *config.Object) { k := o.Key(); b.kind(k.Kind)[k] = o }
func (b *builder) remove(k config.Key)  { delete(b.kind(k.Kind), k) }

func (b *builder) build(rev int64) *snapshot {
	next := &snapshot{rev: rev, kinds: make(map[string]*kindSet, len(b.base.kinds)+len(b.touched))}
	for kind, ks := range b.base.kinds {
		next.kinds[kind] = ks
	}
	for kind, m := range b.touched {
		if len(m) == 0 {
			delete(next.kinds, kind)
			continue
		}
		ks := &kindSet{byKey: m, sorted: make([]*config.Object, 0, len(m))}
		for _, o := range m {
			ks.sorted = append(ks.sorted, o)
		}
		sort.Slice(ks.sorted, func(i, j int) bool {
			a, b := ks.sorted[i].Meta, ks.sorted[j].Meta
			if a.Namespace != b.Namespace {
				return a.Namespace < b.Namespace
			}
			return a.Name < b.Name
		})
		next.kinds[kind] = ks
	}
	return next
}
