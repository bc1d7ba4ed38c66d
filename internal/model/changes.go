package model

import (
	"github.com/skein-mesh/skein/internal/config"
)

// A push after a config change knows the push before it and which kinds
// changed between them (Istio's PushRequest.ConfigsUpdated, by kind), so
// later layers can keep what the change cannot have touched — a
// VirtualService change does not rebuild clusters and endpoints — instead
// of regenerating every type for every proxy.

// SetPrevious links pc to prev, the push it replaces, and records which
// kinds differ between their config. Call it before pc is used. prev's own
// link is cut, so pushes do not hold a chain of their predecessors.
func (pc *PushContext) SetPrevious(prev *PushContext) {
	if prev == nil {
		return
	}
	pc.changed = changedKinds(prev.cfg, pc.cfg)
	pc.previous.Store(prev)
	prev.previous.Store(nil)
}

// ForgetPrevious drops pc's link to the push it replaced once nothing
// more will be generated from both (later generations build in full), so
// the old push's resources are not held.
func (pc *PushContext) ForgetPrevious() { pc.previous.Store(nil) }

// Previous is the push pc replaced, while it can still be reused; nil
// after a full push or once a newer push exists.
func (pc *PushContext) Previous() *PushContext { return pc.previous.Load() }

// ConfigsUpdated reports the kinds whose objects differ from Previous's;
// meaningful only while Previous is not nil.
func (pc *PushContext) ConfigsUpdated() map[string]bool { return pc.changed }

// changedKinds compares every kind's objects by identity: a store snapshot
// shares unchanged objects with the one before it, so an unchanged kind
// has the same pointers (anything else only reads as a change).
func changedKinds(prev, cur config.Reader) map[string]bool {
	out := map[string]bool{}
	for _, s := range config.Schemas {
		a, b := prev.List(s.Kind), cur.List(s.Kind)
		if len(a) != len(b) {
			out[s.Kind] = true
			continue
		}
		for i := range a {
			if a[i] != b[i] {
				out[s.Kind] = true
				break
			}
		}
	}
	return out
}
