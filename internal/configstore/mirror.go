package configstore

import (
	"fmt"

	"github.com/skein-mesh/skein/internal/config"
)

// Mirror makes the store follow another source of truth (the Kubernetes
// API server) in one revision: puts are stored as given and deletes are
// removed. Unlike Apply it keeps the source's metadata (resourceVersion,
// generation, creationTimestamp are the cluster's), does not validate (the
// caller has validated each object, and the source has accepted the set),
// and a delete of an absent key is not an error. It answers what changed,
// kubectl-style; nothing changed means no new revision.
func (s *Store) Mirror(puts []*config.Object, deletes []config.Key) ([]config.ApplyResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.current.Load()
	b := cur.builder()
	var results []config.ApplyResult
	for _, in := range puts {
		if in == nil {
			return nil, fmt.Errorf("mirror: nil object")
		}
		schema, ok := config.SchemaForGVK(in.GVK.APIVersion(), in.GVK.Kind)
		if !ok {
			return nil, fmt.Errorf("mirror %s: %w %q", in.Key(), ErrUnknownKind, in.GVK.APIVersion()+"/"+in.GVK.Kind)
		}
		res := config.ApplyResult{Resource: schema.Resource(), Namespace: in.Meta.Namespace, Name: in.Meta.Name, Action: ActionCreated}
		if old, exists := b.get(in.Key()); exists {
			if old.Meta.ResourceVersion == in.Meta.ResourceVersion && config.ContentEqual(old, in) {
				continue // a resync or a repeated event
			}
			res.Action = ActionConfigured
		}
		obj := in.DeepCopy()
		obj.SyncMeta()
		b.put(obj)
		results = append(results, res)
	}
	for _, k := range deletes {
		schema, ok := config.SchemaForKind(k.Kind)
		if !ok {
			return nil, fmt.Errorf("mirror delete %s: %w", k, ErrUnknownKind)
		}
		k.Kind = schema.KeyKind()
		if _, ok := b.get(k); !ok {
			continue
		}
		b.remove(k)
		results = append(results, config.ApplyResult{Resource: schema.Resource(), Namespace: k.Namespace, Name: k.Name, Action: ActionDeleted})
	}
	if len(results) == 0 {
		return nil, nil
	}
	return results, s.commit(b.build(cur.rev + 1))
}
