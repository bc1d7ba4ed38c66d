package xdsserver

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"reflect"
	"sort"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/skein-mesh/skein/internal/model"
)

// Generation shares most resources (the same pointers) between proxies of a
// push and never mutates one once built (internal/xds/cache.go). So each
// resource is marshalled into its Any, hashed and inspected for references
// once per push, and every stream sends the same *anypb.Any: at 2000
// proxies × 1000 services, marshalling per stream was half the control
// plane's CPU, and per-proxy copies of the resource maps most of its memory.

// marshalled is one resource as it goes on the wire.
type marshalled struct {
	name string
	any  *anypb.Any
	// wire is the resource as one `resources` entry of a DiscoveryResponse;
	// any.Value points into it.
	wire   []byte
	digest [sha256.Size]byte
	// refs are the EDS (for a cluster) or RDS (for a listener) names the
	// resource needs in the same snapshot.
	refs []string
	// checkedIn is the last typeSet all refs were found in, so the
	// consistency check of a shared resource runs once per push, not once
	// per proxy.
	checkedIn atomic.Pointer[typeSet]
	// delta is the resource as one `resources` entry of a
	// DeltaDiscoveryResponse, built on first use (delta_wire.go).
	delta atomic.Pointer[[]byte]
}

// typeSet is the content of one resource type for one or more proxies:
// names sorted, with their resources in the same order. Never mutated once
// built; proxies whose type has the same content hash share one.
//
// A composite set is the union of parts with distinct names (a proxy's
// clusters: the outbound ones every proxy of its shared key has, and its
// own), so the shared part is sorted, hashed and encoded once per push,
// not once per proxy; its names, items and anys are merged only if a
// filtered subscription or a plain DiscoveryResponse needs them.
type typeSet struct {
	hash  string
	parts []*typeSet // composite only

	flatOnce sync.Once
	names    []string
	items    []*marshalled
	anys     []*anypb.Any

	wireOnce sync.Once
	wire     []byte // every item's wire entry, in order

	// refs is the number of references of the items (not composite).
	refs int
	// checkedIn is the last set all refs were found in (not composite).
	checkedIn atomic.Pointer[typeSet]
}

// flat returns ts with names, items and anys set (ts itself unless it is
// composite).
func (ts *typeSet) flat() *typeSet {
	if ts.parts == nil {
		return ts
	}
	ts.flatOnce.Do(func() {
		var ms []*marshalled
		for _, p := range ts.parts {
			ms = append(ms, p.items...)
		}
		sort.Slice(ms, func(i, j int) bool { return ms[i].name < ms[j].name })
		ts.names, ts.items, ts.anys = make([]string, len(ms)), ms, make([]*anypb.Any, len(ms))
		for i, m := range ms {
			ts.names[i], ts.anys[i] = m.name, m.any
		}
	})
	return ts
}

// chunks returns the encoded `resources` entries of every item of ts, as
// shared byte slices (one per part).
func (ts *typeSet) chunks() [][]byte {
	if ts.parts == nil {
		return [][]byte{ts.encoded()}
	}
	out := make([][]byte, len(ts.parts))
	for i, p := range ts.parts {
		out[i] = p.encoded()
	}
	return out
}

func (ts *typeSet) encoded() []byte {
	ts.wireOnce.Do(func() { ts.wire = encodeItems(ts.items) })
	return ts.wire
}

func encodeItems(items []*marshalled) []byte {
	n := 0
	for _, m := range items {
		n += len(m.wire)
	}
	b := make([]byte, 0, n)
	for _, m := range items {
		b = append(b, m.wire...)
	}
	return b
}

// size is the number of resources in ts.
func (ts *typeSet) size() int {
	if ts.parts == nil {
		return len(ts.names)
	}
	n := 0
	for _, p := range ts.parts {
		n += len(p.names)
	}
	return n
}

// typeSnap is what one proxy has for one type: a version and the content.
type typeSnap struct {
	version string
	set     *typeSet
}

// pushMemo holds what was computed for one push context.
type pushMemo struct {
	resources sync.Map // types.Resource → *marshalled
	sets      sync.Map // content hash → *typeSet
	// lists maps a list of resources, by identity (a digest of the type and
	// of the pointers in order), to its typeSet: the endpoints and routes of
	// proxies with the same shared key are the same pointers, so they skip
	// the per-resource work. Sound because every resource of a list seen
	// before is held by resources, so no address in it can have been reused.
	lists sync.Map // [sha256.Size]byte → *typeSet
	// marshals counts resources marshalled for this push, for tests.
	marshals atomic.Int64
	// pc is the push this memo belongs to: its Previous's memo holds the
	// resources a partial regeneration reused, already marshalled.
	pc *model.PushContext
}

// pushMemos is where each push context keeps its pushMemo (model.Memo),
// beside translation's shared resources: both live and die with the push
// they were built from.
var pushMemos = model.NewMemoKey[pushMemo]("xdsserver marshalled resources")

func memoFor(pc *model.PushContext) *pushMemo {
	return model.Memo(pc, pushMemos, func() *pushMemo { return &pushMemo{pc: pc} })
}

// resource marshals r once per push.
func (pm *pushMemo) resource(typeURL string, r types.Resource) (*marshalled, error) {
	if v, ok := pm.resources.Load(r); ok {
		return v.(*marshalled), nil
	}
	if prev := pm.previous(); prev != nil {
		if v, ok := prev.resources.Load(r); ok {
			// Kept in this memo too: it keeps r alive, so list keys
			// (addresses) stay sound once the previous push is gone.
			v, _ = pm.resources.LoadOrStore(r, v)
			return v.(*marshalled), nil
		}
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("marshal %s %q: %w", ShortType(typeURL), cachev3.GetResourceName(r), err)
	}
	pm.marshals.Add(1)
	wire, value := wireAny(typeURL, b)
	m := &marshalled{name: cachev3.GetResourceName(r), any: &anypb.Any{TypeUrl: typeURL, Value: value}, wire: wire, digest: sha256.Sum256(b)}
	switch typeURL {
	case resourcev3.ClusterType, resourcev3.ListenerType:
		refs := cachev3.GetResourceReferences(map[string]types.ResourceWithTTL{m.name: {Resource: r}})
		for _, names := range refs {
			for n := range names {
				m.refs = append(m.refs, n)
			}
		}
		sort.Strings(m.refs)
	}
	v, _ := pm.resources.LoadOrStore(r, m)
	return v.(*marshalled), nil
}

// previous is the memo of the push pc replaced, when pc reuses its
// resources.
func (pm *pushMemo) previous() *pushMemo {
	if pm.pc == nil {
		return nil
	}
	prev := pm.pc.Previous()
	if prev == nil {
		return nil
	}
	return memoFor(prev)
}

// set returns the typeSet for items, shared with every proxy whose items of
// this type have the same content.
func (pm *pushMemo) set(typeURL string, items []types.Resource) (*typeSet, error) {
	key := listKey(typeURL, len(items), func(i int) uintptr { return reflect.ValueOf(items[i]).Pointer() })
	return pm.setByKey(key, typeURL, func() []types.Resource { return items })
}

// setOf is set for a typed list: a list seen before (every proxy of a
// shared key has the same pointers) is found without converting it.
func setOf[E any, P interface {
	*E
	types.Resource
}](pm *pushMemo, typeURL string, items []P) (*typeSet, error) {
	key := listKey(typeURL, len(items), func(i int) uintptr { return uintptr(unsafe.Pointer(items[i])) })
	return pm.setByKey(key, typeURL, func() []types.Resource { return toResources(items) })
}

func (pm *pushMemo) setByKey(key [sha256.Size]byte, typeURL string, items func() []types.Resource) (*typeSet, error) {
	if v, ok := pm.lists.Load(key); ok {
		return v.(*typeSet), nil
	}
	ts, err := pm.build(typeURL, items())
	if err == nil {
		pm.lists.Store(key, ts)
	}
	return ts, err
}

// listKey is the identity of a list of n resources: a digest of the type
// and of the resources' addresses in order.
func listKey(typeURL string, n int, ptr func(int) uintptr) [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte(typeURL))
	var buf [64 * 8]byte
	for i := 0; i < n; {
		k := 0
		for ; k < len(buf) && i < n; k, i = k+8, i+1 {
			binary.LittleEndian.PutUint64(buf[k:], uint64(ptr(i)))
		}
		h.Write(buf[:k])
	}
	var key [sha256.Size]byte
	h.Sum(key[:0])
	return key
}

func toResources[T types.Resource](items []T) []types.Resource {
	out := make([]types.Resource, len(items))
	for i, it := range items {
		out[i] = it
	}
	return out
}

func (pm *pushMemo) build(typeURL string, items []types.Resource) (*typeSet, error) {
	ms := make([]*marshalled, len(items))
	for i, it := range items {
		m, err := pm.resource(typeURL, it)
		if err != nil {
			return nil, err
		}
		ms[i] = m
	}
	// Sorted by name, the last of equal names wins (as a map would keep).
	sort.SliceStable(ms, func(i, j int) bool { return ms[i].name < ms[j].name })
	out := ms[:0]
	for i, m := range ms {
		if i+1 < len(ms) && ms[i+1].name == m.name {
			continue
		}
		out = append(out, m)
	}
	ms = out
	h := sha256.New()
	for _, m := range ms {
		h.Write(m.digest[:])
	}
	hash := hex.EncodeToString(h.Sum(nil))
	if v, ok := pm.sets.Load(hash); ok {
		return v.(*typeSet), nil
	}
	ts := &typeSet{hash: hash, names: make([]string, len(ms)), items: ms, anys: make([]*anypb.Any, len(ms))}
	for i, m := range ms {
		ts.names[i], ts.anys[i] = m.name, m.any
		ts.refs += len(m.refs)
	}
	v, _ := pm.sets.LoadOrStore(hash, ts)
	return v.(*typeSet), nil
}

func (ts *typeSet) has(name string) bool {
	i := sort.SearchStrings(ts.names, name)
	return i < len(ts.names) && ts.names[i] == name
}

// consistent checks, as go-control-plane's Snapshot.Consistent does, that
// every name the referring set needs is in target and that target holds
// nothing else.
func consistent(referring, target *typeSet, what string) error {
	if referring == nil || target == nil {
		return nil
	}
	target = target.flat()
	parts := referring.parts
	if parts == nil {
		parts = []*typeSet{referring}
	}
	refs := 0
	for _, p := range parts {
		refs += p.refs
		if p.checkedIn.Load() == target {
			continue // a shared part, already checked for another proxy
		}
		for _, m := range p.items {
			if m.checkedIn.Load() == target {
				continue
			}
			for _, r := range m.refs {
				if !target.has(r) {
					return fmt.Errorf("%q needs %s %q, which is not in the snapshot", m.name, what, r)
				}
			}
			m.checkedIn.Store(target)
		}
		p.checkedIn.Store(target)
	}
	if refs == len(target.names) {
		return nil // every ref exists, none is left over (refs are distinct or the counts differ)
	}
	distinct := map[string]bool{}
	for _, p := range parts {
		for _, m := range p.items {
			for _, r := range m.refs {
				distinct[r] = true
			}
		}
	}
	if len(distinct) != len(target.names) {
		for _, n := range target.names {
			if !distinct[n] {
				return fmt.Errorf("%s %q is in the snapshot but nothing refers to it", what, n)
			}
		}
	}
	return nil
}

// compose returns the set of shared's and own's resources, shared by every
// proxy with the same two parts; nil when a name is in both (the caller
// then builds the whole list, where the later resource wins).
func (pm *pushMemo) compose(shared, own *typeSet) *typeSet {
	switch {
	case len(own.names) == 0:
		return shared
	case len(shared.names) == 0:
		return own
	}
	for _, n := range own.names {
		if shared.has(n) {
			return nil
		}
	}
	h := sha256.New()
	h.Write([]byte("composite\n" + shared.hash + "\n" + own.hash))
	hash := hex.EncodeToString(h.Sum(nil))
	if v, ok := pm.sets.Load(hash); ok {
		return v.(*typeSet)
	}
	v, _ := pm.sets.LoadOrStore(hash, &typeSet{hash: hash, parts: []*typeSet{shared, own}})
	return v.(*typeSet)
}

// filter returns the part of ts a subscription to names (sorted) asks for;
// all of ts (its shared slices) when names covers it.
func (ts *typeSet) filter(names []string) ([]string, []*marshalled) {
	ts = ts.flat()
	var idx []int
	i := 0
	for _, n := range names {
		for i < len(ts.names) && ts.names[i] < n {
			i++
		}
		if i < len(ts.names) && ts.names[i] == n {
			idx = append(idx, i)
			i++
		}
	}
	if len(idx) == len(ts.names) {
		return ts.names, ts.items
	}
	outNames, outItems := make([]string, len(idx)), make([]*marshalled, len(idx))
	for k, j := range idx {
		outNames[k], outItems[k] = ts.names[j], ts.items[j]
	}
	return outNames, outItems
}
