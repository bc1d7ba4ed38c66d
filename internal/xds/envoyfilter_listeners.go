package xds

import (
	"slices"
	"strings"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/skein-mesh/skein/internal/model"
)

// --- listeners, filter chains, network and HTTP filters ---

// listenerMatches checks match.listener name and port. On virtualInbound
// the port is the filter chain's destination port, as Istio matches it.
func listenerMatches(l *listenerv3.Listener, m *networking.EnvoyFilter_ListenerMatch, inbound bool) bool {
	if m == nil {
		return true
	}
	if m.GetName() != "" && m.GetName() != l.GetName() {
		return false
	}
	if m.GetPortNumber() != 0 {
		if inbound && l.GetName() == VirtualInboundListener {
			return slices.ContainsFunc(l.GetFilterChains(), func(fc *listenerv3.FilterChain) bool {
				return fc.GetFilterChainMatch().GetDestinationPort().GetValue() == m.GetPortNumber()
			})
		}
		if l.GetAddress().GetSocketAddress().GetPortValue() != m.GetPortNumber() {
			return false
		}
	}
	return true
}

// chainMatches checks match.listener.filterChain (and the port, on
// virtualInbound) against one filter chain.
func chainMatches(l *listenerv3.Listener, fc *listenerv3.FilterChain, m *networking.EnvoyFilter_ListenerMatch, inbound bool) bool {
	fcm := fc.GetFilterChainMatch()
	if m.GetPortNumber() != 0 && inbound && l.GetName() == VirtualInboundListener &&
		fcm.GetDestinationPort().GetValue() != m.GetPortNumber() {
		return false
	}
	cm := m.GetFilterChain()
	if cm == nil {
		return true
	}
	if cm.GetName() != "" && cm.GetName() != fc.GetName() {
		return false
	}
	if cm.GetSni() != "" && !slices.Contains(fcm.GetServerNames(), cm.GetSni()) {
		return false
	}
	if tp := cm.GetTransportProtocol(); tp != "" {
		got := fcm.GetTransportProtocol()
		if got == "" {
			got = "raw_buffer"
		}
		if got != tp {
			return false
		}
	}
	if ap := cm.GetApplicationProtocols(); ap != "" {
		for _, want := range strings.Split(ap, ",") {
			if !slices.Contains(fcm.GetApplicationProtocols(), strings.TrimSpace(want)) {
				return false
			}
		}
	}
	if cm.GetDestinationPort() != 0 && fcm.GetDestinationPort().GetValue() != cm.GetDestinationPort() {
		return false
	}
	if fm := cm.GetFilter(); fm != nil && fm.GetName() != "" {
		i := slices.IndexFunc(fc.GetFilters(), func(f *listenerv3.Filter) bool { return f.GetName() == canonicalName(fm.GetName()) })
		if i < 0 {
			return false
		}
		if sub := fm.GetSubFilter().GetName(); sub != "" {
			hcm := unpackHCM(fc.GetFilters()[i])
			if hcm == nil || !slices.ContainsFunc(hcm.GetHttpFilters(), func(h *hcmv3.HttpFilter) bool { return h.GetName() == canonicalName(sub) }) {
				return false
			}
		}
	}
	return true
}

func (g *generator) patchListeners(res *Resources, p *model.EnvoyFilterPatch) {
	lm := p.Match.GetListener()
	if p.ApplyTo == networking.EnvoyFilter_LISTENER && p.Operation == networking.EnvoyFilter_Patch_ADD {
		add := proto.Clone(p.Value).(*listenerv3.Listener)
		if !g.contextMatches(p, g.inboundListener(add)) {
			return
		}
		if slices.ContainsFunc(res.Listeners, func(l *listenerv3.Listener) bool { return l.GetName() == add.GetName() }) {
			g.patchWarnf(p, "listener %q already exists; ADD ignored", add.GetName())
			return
		}
		res.Listeners = append(res.Listeners, add)
		return
	}
	var kept []*listenerv3.Listener
	for _, l := range res.Listeners {
		inbound := g.inboundListener(l)
		if !g.contextMatches(p, inbound) || !listenerMatches(l, lm, inbound) {
			kept = append(kept, l)
			continue
		}
		switch p.ApplyTo {
		case networking.EnvoyFilter_LISTENER:
			if p.Operation == networking.EnvoyFilter_Patch_REMOVE {
				continue
			}
			proto.Merge(l, p.Value)
		case networking.EnvoyFilter_FILTER_CHAIN:
			g.patchFilterChains(l, p, inbound)
		default:
			for _, fc := range l.GetFilterChains() {
				if !chainMatches(l, fc, lm, inbound) {
					continue
				}
				if p.ApplyTo == networking.EnvoyFilter_NETWORK_FILTER {
					fc.Filters = g.patchNetworkFilters(fc.GetFilters(), p)
				} else {
					g.patchHTTPFilters(fc, p)
				}
			}
		}
		kept = append(kept, l)
	}
	res.Listeners = kept
}

func (g *generator) patchFilterChains(l *listenerv3.Listener, p *model.EnvoyFilterPatch, inbound bool) {
	if p.Operation == networking.EnvoyFilter_Patch_ADD {
		l.FilterChains = append(l.FilterChains, proto.Clone(p.Value).(*listenerv3.FilterChain))
		return
	}
	var kept []*listenerv3.FilterChain
	for _, fc := range l.GetFilterChains() {
		if chainMatches(l, fc, p.Match.GetListener(), inbound) {
			if p.Operation == networking.EnvoyFilter_Patch_REMOVE {
				continue
			}
			proto.Merge(fc, p.Value)
		}
		kept = append(kept, fc)
	}
	l.FilterChains = kept
}

// patchNetworkFilters applies a NETWORK_FILTER patch to one chain's
// filters, relative to the filter match.listener.filterChain.filter names.
func (g *generator) patchNetworkFilters(fs []*listenerv3.Filter, p *model.EnvoyFilterPatch) []*listenerv3.Filter {
	name := canonicalName(p.Match.GetListener().GetFilterChain().GetFilter().GetName())
	return patchList(g, p, fs, name != "", func(f *listenerv3.Filter) bool { return f.GetName() == name },
		func() *listenerv3.Filter { return proto.Clone(p.Value).(*listenerv3.Filter) },
		func(f *listenerv3.Filter) { g.mergeFilter(p, f, p.Value.(*listenerv3.Filter)) })
}

// patchHTTPFilters applies an HTTP_FILTER patch to every HTTP connection
// manager of a chain (or the one the filter match names).
func (g *generator) patchHTTPFilters(fc *listenerv3.FilterChain, p *model.EnvoyFilterPatch) {
	fm := p.Match.GetListener().GetFilterChain().GetFilter()
	for _, f := range fc.GetFilters() {
		if fm.GetName() != "" && f.GetName() != canonicalName(fm.GetName()) {
			continue
		}
		hcm := unpackHCM(f)
		if hcm == nil {
			continue
		}
		sub := canonicalName(fm.GetSubFilter().GetName())
		newFilter := func() *hcmv3.HttpFilter { return proto.Clone(p.Value).(*hcmv3.HttpFilter) }
		if p.Operation == networking.EnvoyFilter_Patch_ADD && p.FilterClass != networking.EnvoyFilter_Patch_UNSPECIFIED {
			hcm.HttpFilters = slices.Insert(hcm.HttpFilters, classPosition(hcm.GetHttpFilters(), p.FilterClass), newFilter())
		} else {
			hcm.HttpFilters = patchList(g, p, hcm.GetHttpFilters(), sub != "",
				func(h *hcmv3.HttpFilter) bool { return h.GetName() == sub }, newFilter,
				func(h *hcmv3.HttpFilter) { g.mergeHTTPFilter(p, h, p.Value.(*hcmv3.HttpFilter)) })
		}
		f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(hcm)}
	}
}

// Filter names of Istio's authentication and authorization steps, for
// filterClass placement.
var (
	authnFilters = []string{"istio_authn", "istio.authn", "envoy.filters.http.jwt_authn"}
	authzFilters = []string{"envoy.filters.http.rbac", "envoy.filters.http.ext_authz"}
)

// classPosition is where a filter of class goes: AUTHN after the
// authentication filters, AUTHZ after the authorization filters, STATS
// just before the router.
func classPosition(fs []*hcmv3.HttpFilter, class networking.EnvoyFilter_Patch_FilterClass) int {
	after := func(names []string) int {
		pos := -1
		for i, f := range fs {
			if slices.Contains(names, f.GetName()) {
				pos = i
			}
		}
		return pos + 1
	}
	switch class {
	case networking.EnvoyFilter_Patch_AUTHN:
		return after(authnFilters)
	case networking.EnvoyFilter_Patch_AUTHZ:
		return max(after(authzFilters), after(authnFilters))
	}
	if n := len(fs); n > 0 && fs[n-1].GetName() == RouterFilter {
		return n - 1
	}
	return len(fs)
}

// patchList applies a list operation: ADD appends; INSERT_FIRST prepends;
// INSERT_BEFORE/AFTER go before/after the first element the match selects,
// or, with nothing to select (hasMatch false), at the beginning/end of the
// list as Istio documents; REMOVE, REPLACE and MERGE act on every selected
// element and need a selector.
func patchList[T any](g *generator, p *model.EnvoyFilterPatch, list []T, hasMatch bool, selected func(T) bool, value func() T, merge func(T)) []T {
	switch p.Operation {
	case networking.EnvoyFilter_Patch_ADD:
		return append(list, value())
	case networking.EnvoyFilter_Patch_INSERT_FIRST:
		return slices.Insert(list, 0, value())
	case networking.EnvoyFilter_Patch_INSERT_BEFORE, networking.EnvoyFilter_Patch_INSERT_AFTER:
		before := p.Operation == networking.EnvoyFilter_Patch_INSERT_BEFORE
		if !hasMatch {
			if before {
				return slices.Insert(list, 0, value())
			}
			return append(list, value())
		}
		i := slices.IndexFunc(list, selected)
		if i < 0 {
			return list
		}
		if !before {
			i++
		}
		return slices.Insert(list, i, value())
	}
	if !hasMatch {
		g.patchWarnf(p, "operation %s needs a match naming the %s to change; patch ignored", p.Operation, strings.ToLower(strings.ReplaceAll(p.ApplyTo.String(), "_", " ")))
		return list
	}
	var out []T
	for _, e := range list {
		if !selected(e) {
			out = append(out, e)
			continue
		}
		switch p.Operation {
		case networking.EnvoyFilter_Patch_REMOVE:
		case networking.EnvoyFilter_Patch_REPLACE:
			out = append(out, value())
		default:
			merge(e)
			out = append(out, e)
		}
	}
	return out
}

func unpackHCM(f *listenerv3.Filter) *hcmv3.HttpConnectionManager {
	tc := f.GetTypedConfig()
	if tc == nil || !tc.MessageIs(&hcmv3.HttpConnectionManager{}) {
		return nil
	}
	hcm := &hcmv3.HttpConnectionManager{}
	if err := tc.UnmarshalTo(hcm); err != nil {
		return nil
	}
	return hcm
}

// --- merging ---
//
// MERGE is Istio's: a proto merge of the patch value into the object
// (scalars replaced, messages merged, lists appended), except that filter
// typed_configs of one type are merged rather than replaced.

// mergeFilter merges a network filter; a typed_config of the same type is
// merged field by field (as Istio does) instead of replaced wholesale.
func (g *generator) mergeFilter(p *model.EnvoyFilterPatch, dst, src *listenerv3.Filter) {
	tc, err := mergeTypedConfig(dst.GetTypedConfig(), src.GetTypedConfig(), p)
	if err != nil {
		g.patchWarnf(p, "merge typed_config of filter %q: %v; patch ignored", dst.GetName(), err)
		return
	}
	src = proto.Clone(src).(*listenerv3.Filter)
	src.ConfigType = nil
	proto.Merge(dst, src)
	if tc != nil {
		dst.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: tc}
	}
}

func (g *generator) mergeHTTPFilter(p *model.EnvoyFilterPatch, dst, src *hcmv3.HttpFilter) {
	tc, err := mergeTypedConfig(dst.GetTypedConfig(), src.GetTypedConfig(), p)
	if err != nil {
		g.patchWarnf(p, "merge typed_config of http filter %q: %v; patch ignored", dst.GetName(), err)
		return
	}
	src = proto.Clone(src).(*hcmv3.HttpFilter)
	src.ConfigType = nil
	proto.Merge(dst, src)
	if tc != nil {
		dst.ConfigType = &hcmv3.HttpFilter_TypedConfig{TypedConfig: tc}
	}
}

// mergeTypedConfig merges src, the typed_config of p's value, into dst
// when both describe the same type (src possibly as a TypedStruct, which
// the push resolved once: p.MergeTypedConfig); otherwise a copy of src
// replaces dst. src belongs to the push and is never handed out itself.
func mergeTypedConfig(dst, src *anypb.Any, p *model.EnvoyFilterPatch) (*anypb.Any, error) {
	if src == nil {
		return dst, nil
	}
	if dst == nil {
		return proto.Clone(src).(*anypb.Any), nil
	}
	typed, err := p.MergeTypedConfig, p.MergeTypedConfigErr
	if err != nil {
		return nil, err
	}
	if typed.GetTypeUrl() != dst.GetTypeUrl() {
		return proto.Clone(src).(*anypb.Any), nil
	}
	d, err := dst.UnmarshalNew()
	if err != nil {
		return nil, err
	}
	s, err := typed.UnmarshalNew()
	if err != nil {
		return nil, err
	}
	proto.Merge(d, s)
	return anypb.New(d)
}
