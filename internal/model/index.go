package model

import (
	"slices"

	networking "istio.io/api/networking/v1alpha3"
	telemetry "istio.io/api/telemetry/v1alpha1"
	corev1 "k8s.io/api/core/v1"

	"github.com/skein-mesh/skein/internal/config"
)

// The config a push context indexes is read from a store snapshot, whose
// slices are shared with every other reader (the config API lists the same
// snapshot while proxies are generated concurrently). Every index below is
// the push context's own slice, sorted once when it is built and never
// written after; accessors hand out slices with their capacity capped, so
// an append by a caller copies.

// byNamespace is one kind's objects by namespace, each list in the order
// the index was built with.
type byNamespace map[string][]*config.Object

func indexByNamespace(objs []*config.Object) byNamespace {
	idx := byNamespace{}
	for _, o := range objs {
		idx[o.Meta.Namespace] = append(idx[o.Meta.Namespace], o)
	}
	for ns, l := range idx {
		idx[ns] = l[:len(l):len(l)]
	}
	return idx
}

// rootAndNamespace returns the objects of the root namespace and of ns,
// merged in the order less defines (both lists are sorted by it).
func (idx byNamespace) rootAndNamespace(root, ns string, less func(a, b *config.Object) bool) []*config.Object {
	r, n := idx[root], idx[ns]
	if ns == root || len(n) == 0 {
		return r
	}
	if len(r) == 0 {
		return n
	}
	out := make([]*config.Object, 0, len(r)+len(n))
	for len(r) > 0 && len(n) > 0 {
		if less(n[0], r[0]) {
			out, n = append(out, n[0]), n[1:]
		} else {
			out, r = append(out, r[0]), r[1:]
		}
	}
	return append(append(out, r...), n...)
}

// sortedCopy returns objs sorted by less, stably, in a new slice: the
// store's slice stays as it was.
func sortedCopy(objs []*config.Object, less func(a, b *config.Object) bool) []*config.Object {
	out := slices.Clone(objs)
	slices.SortStableFunc(out, func(a, b *config.Object) int {
		switch {
		case less(a, b):
			return -1
		case less(b, a):
			return 1
		}
		return 0
	})
	return out
}

// CreationOrder is how Istio orders policies: oldest first, then by
// namespace and name.
func CreationOrder(a, b *config.Object) bool {
	if !a.Meta.CreationTimestamp.Equal(b.Meta.CreationTimestamp) {
		return a.Meta.CreationTimestamp.Before(b.Meta.CreationTimestamp)
	}
	if a.Meta.Namespace != b.Meta.Namespace {
		return a.Meta.Namespace < b.Meta.Namespace
	}
	return a.Meta.Name < b.Meta.Name
}

// olderThan orders by creation time only (a stable sort keeps the store's
// namespace/name order among objects created together).
func olderThan(a, b *config.Object) bool {
	return a.Meta.CreationTimestamp.Before(b.Meta.CreationTimestamp)
}

// AuthorizationPolicies returns the AuthorizationPolicies of the root
// namespace and of ns, the ones that can apply to a workload in ns, in
// CreationOrder. Selection by selector and targetRef is the caller's.
// The slice is shared: do not modify it.
func (pc *PushContext) AuthorizationPolicies(ns string) []*config.Object {
	return pc.authzPolicies.rootAndNamespace(pc.RootNamespace, ns, CreationOrder)
}

// RequestAuthentications is AuthorizationPolicies for
// RequestAuthentication.
func (pc *PushContext) RequestAuthentications(ns string) []*config.Object {
	return pc.requestAuthn.rootAndNamespace(pc.RootNamespace, ns, CreationOrder)
}

// SidecarFor returns the Sidecar resource scoping proxy p, with Istio's
// precedence: a workloadSelector match in p's namespace, the namespace's
// selector-less Sidecar, then the root namespace's (each in namespace/name
// order). nil when none applies.
func (pc *PushContext) SidecarFor(p *Proxy) *networking.Sidecar {
	var nsDefault *networking.Sidecar
	for _, o := range pc.sidecars[p.Namespace] {
		sc := o.Spec.(*networking.Sidecar)
		sel := sc.GetWorkloadSelector().GetLabels()
		switch {
		case len(sel) > 0:
			if LabelsMatch(sel, p.Labels) {
				return sc
			}
		case nsDefault == nil:
			nsDefault = sc
		}
	}
	if nsDefault != nil {
		return nsDefault
	}
	if p.Namespace == pc.RootNamespace {
		return nil
	}
	for _, o := range pc.sidecars[pc.RootNamespace] {
		if sc := o.Spec.(*networking.Sidecar); len(sc.GetWorkloadSelector().GetLabels()) == 0 {
			return sc
		}
	}
	return nil
}

// ProxyLabelSelectors returns every label selector the config evaluates
// against a sidecar's own labels when building its outbound config:
// VirtualService match sourceLabels (HTTP, TCP and TLS) and Sidecar
// workloadSelectors. Translation keys what it shares between proxies on
// the labels these read.
func (pc *PushContext) ProxyLabelSelectors() []map[string]string {
	return pc.proxySelectors
}

func proxyLabelSelectors(virtualServices, sidecars []*config.Object) []map[string]string {
	var out []map[string]string
	add := func(m map[string]string) {
		if len(m) > 0 {
			out = append(out, m)
		}
	}
	for _, o := range virtualServices {
		vs, ok := o.Spec.(*networking.VirtualService)
		if !ok {
			continue
		}
		for _, h := range vs.GetHttp() {
			for _, m := range h.GetMatch() {
				add(m.GetSourceLabels())
			}
		}
		for _, t := range vs.GetTcp() {
			for _, m := range t.GetMatch() {
				add(m.GetSourceLabels())
			}
		}
		for _, t := range vs.GetTls() {
			for _, m := range t.GetMatch() {
				add(m.GetSourceLabels())
			}
		}
	}
	for _, o := range sidecars {
		if sc, ok := o.Spec.(*networking.Sidecar); ok {
			add(sc.GetWorkloadSelector().GetLabels())
		}
	}
	return out
}

// Telemetries returns the Telemetry resources that apply to a proxy, least
// specific first: mesh-wide (root namespace, no selector), namespace-wide,
// then those selecting the workload. Later entries override earlier ones,
// as Istio merges them.
func (pc *PushContext) Telemetries(p *Proxy) []*telemetry.Telemetry {
	var root, ns, workload []*telemetry.Telemetry
	for _, o := range pc.telemetries[pc.RootNamespace] {
		if t := o.Spec.(*telemetry.Telemetry); len(t.GetSelector().GetMatchLabels()) == 0 {
			root = append(root, t)
		}
	}
	if p.Namespace != pc.RootNamespace {
		for _, o := range pc.telemetries[p.Namespace] {
			t := o.Spec.(*telemetry.Telemetry)
			sel := t.GetSelector().GetMatchLabels()
			switch {
			case len(sel) == 0:
				ns = append(ns, t)
			case LabelsMatch(sel, p.Labels):
				workload = append(workload, t)
			}
		}
	} else {
		for _, o := range pc.telemetries[p.Namespace] {
			t := o.Spec.(*telemetry.Telemetry)
			if sel := t.GetSelector().GetMatchLabels(); len(sel) > 0 && LabelsMatch(sel, p.Labels) {
				workload = append(workload, t)
			}
		}
	}
	return append(append(root, ns...), workload...)
}

// TLSCredential is the key material of a Kubernetes TLS Secret, as Istio's
// credentialName reads it: tls.crt/tls.key and ca.crt (or the generic
// Secret's cert/key/cacert keys). It is never logged.
type TLSCredential struct {
	Cert, Key, CA []byte
}

// Credential finds Secret ns/name for a Gateway's credentialName.
func (pc *PushContext) Credential(ns, name string) (TLSCredential, bool) {
	obj, ok := pc.cfg.Get(config.Key{Kind: "Secret", Namespace: ns, Name: name})
	if !ok {
		return TLSCredential{}, false
	}
	s, ok := obj.Spec.(*corev1.Secret)
	if !ok {
		return TLSCredential{}, false
	}
	get := func(keys ...string) []byte {
		for _, k := range keys {
			if v, ok := s.Data[k]; ok && len(v) > 0 {
				return v
			}
			if v, ok := s.StringData[k]; ok && v != "" {
				return []byte(v)
			}
		}
		return nil
	}
	return TLSCredential{Cert: get("tls.crt", "cert"), Key: get("tls.key", "key"), CA: get("ca.crt", "cacert")}, true
}

// PodAnnotations returns the annotations of pod ns/name, the per-workload
// proxy settings Istio reads from them (sidecar.istio.io/stats*); false
// when the pod is not in the config (local mode, a VM).
func (pc *PushContext) PodAnnotations(ns, name string) (map[string]string, bool) {
	obj, ok := pc.cfg.Get(config.Key{Kind: "Pod", Namespace: ns, Name: name})
	if !ok {
		return nil, false
	}
	return obj.Meta.Annotations, true
}
