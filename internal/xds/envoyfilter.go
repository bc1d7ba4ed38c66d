package xds

// EnvoyFilter patching. Istio applies EnvoyFilters to the Envoy config it
// generated for a proxy, as the last step of translation; so do we. Each
// patch names what it applies to (applyTo), where (match: context, proxy,
// listener/filter chain/filter, route configuration/virtual host/route,
// cluster) and how (operation and value). A value that does not parse as
// the target Envoy type skips the whole EnvoyFilter with a warning; values
// that parse but name something the proxy does not implement are sent, and
// the proxy NACKs them, as Envoy would.

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	udpav1 "github.com/cncf/xds/go/udpa/type/v1"
	xdstypev3 "github.com/cncf/xds/go/xds/type/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/skein-mesh/skein/internal/config"
	"github.com/skein-mesh/skein/internal/model"
	"github.com/skein-mesh/skein/internal/proxy/nodemeta"

	// Envoy config types EnvoyFilter patches commonly carry in typed_config
	// "@type". They are registered so such patches parse here; whether the
	// proxy implements them is the proxy's decision (it NACKs what it
	// does not), as istiod parses what Envoy may reject.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_to_metadata/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/lua/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/local_ratelimit/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
)

// efPatch is one parsed configPatch of one EnvoyFilter.
type efPatch struct {
	source  string // "namespace/name", for warnings
	index   int
	applyTo networking.EnvoyFilter_ApplyTo
	match   *networking.EnvoyFilter_EnvoyConfigObjectMatch
	op      networking.EnvoyFilter_Patch_Operation
	class   networking.EnvoyFilter_Patch_FilterClass
	value   proto.Message // of the applyTo's Envoy type; nil for REMOVE
}

func (p *efPatch) warnf(g *generator, format string, args ...any) {
	g.warnf("EnvoyFilter %s: spec.configPatches[%d]: %s", p.source, p.index, fmt.Sprintf(format, args...))
}

// applyToOrder is the order patch kinds are applied in: a listener is
// added before filters are inserted into it, and so on.
var applyToOrder = []networking.EnvoyFilter_ApplyTo{
	networking.EnvoyFilter_LISTENER,
	networking.EnvoyFilter_FILTER_CHAIN,
	networking.EnvoyFilter_NETWORK_FILTER,
	networking.EnvoyFilter_HTTP_FILTER,
	networking.EnvoyFilter_ROUTE_CONFIGURATION,
	networking.EnvoyFilter_VIRTUAL_HOST,
	networking.EnvoyFilter_HTTP_ROUTE,
	networking.EnvoyFilter_CLUSTER,
}

// allowedOps lists, per applyTo, the operations Istio honours.
var allowedOps = map[networking.EnvoyFilter_ApplyTo][]networking.EnvoyFilter_Patch_Operation{
	networking.EnvoyFilter_LISTENER:            {networking.EnvoyFilter_Patch_ADD, networking.EnvoyFilter_Patch_REMOVE, networking.EnvoyFilter_Patch_MERGE},
	networking.EnvoyFilter_FILTER_CHAIN:        {networking.EnvoyFilter_Patch_ADD, networking.EnvoyFilter_Patch_REMOVE, networking.EnvoyFilter_Patch_MERGE},
	networking.EnvoyFilter_NETWORK_FILTER:      allFilterOps,
	networking.EnvoyFilter_HTTP_FILTER:         allFilterOps,
	networking.EnvoyFilter_ROUTE_CONFIGURATION: {networking.EnvoyFilter_Patch_MERGE},
	networking.EnvoyFilter_VIRTUAL_HOST:        {networking.EnvoyFilter_Patch_ADD, networking.EnvoyFilter_Patch_REMOVE, networking.EnvoyFilter_Patch_MERGE},
	networking.EnvoyFilter_HTTP_ROUTE: {networking.EnvoyFilter_Patch_MERGE, networking.EnvoyFilter_Patch_REMOVE,
		networking.EnvoyFilter_Patch_INSERT_BEFORE, networking.EnvoyFilter_Patch_INSERT_AFTER, networking.EnvoyFilter_Patch_INSERT_FIRST},
	networking.EnvoyFilter_CLUSTER: {networking.EnvoyFilter_Patch_ADD, networking.EnvoyFilter_Patch_REMOVE, networking.EnvoyFilter_Patch_MERGE},
}

var allFilterOps = []networking.EnvoyFilter_Patch_Operation{
	networking.EnvoyFilter_Patch_MERGE, networking.EnvoyFilter_Patch_ADD, networking.EnvoyFilter_Patch_REMOVE,
	networking.EnvoyFilter_Patch_INSERT_BEFORE, networking.EnvoyFilter_Patch_INSERT_AFTER,
	networking.EnvoyFilter_Patch_INSERT_FIRST, networking.EnvoyFilter_Patch_REPLACE,
}

// valueType returns an empty message of the Envoy type a patch value for
// applyTo describes.
func valueType(applyTo networking.EnvoyFilter_ApplyTo) proto.Message {
	switch applyTo {
	case networking.EnvoyFilter_LISTENER:
		return &listenerv3.Listener{}
	case networking.EnvoyFilter_FILTER_CHAIN:
		return &listenerv3.FilterChain{}
	case networking.EnvoyFilter_NETWORK_FILTER:
		return &listenerv3.Filter{}
	case networking.EnvoyFilter_HTTP_FILTER:
		return &hcmv3.HttpFilter{}
	case networking.EnvoyFilter_ROUTE_CONFIGURATION:
		return &routev3.RouteConfiguration{}
	case networking.EnvoyFilter_VIRTUAL_HOST:
		return &routev3.VirtualHost{}
	case networking.EnvoyFilter_HTTP_ROUTE:
		return &routev3.Route{}
	case networking.EnvoyFilter_CLUSTER:
		return &clusterv3.Cluster{}
	}
	return nil
}

// legacyNames maps the deprecated filter names EnvoyFilters still use to
// the canonical ones our resources carry.
var legacyNames = map[string]string{
	"envoy.http_connection_manager": HTTPConnectionManager,
	"envoy.tcp_proxy":               TCPProxy,
	"envoy.router":                  RouterFilter,
	"envoy.cors":                    "envoy.filters.http.cors",
	"envoy.fault":                   "envoy.filters.http.fault",
	"envoy.lua":                     "envoy.filters.http.lua",
}

func canonicalName(n string) string {
	if c, ok := legacyNames[n]; ok {
		return c
	}
	return n
}

// applyEnvoyFilters patches the finished resources with the EnvoyFilters
// that select the proxy, then restores the cross-references (RDS names,
// EDS clusters) the patches may have changed.
func (g *generator) applyEnvoyFilters(res *Resources) {
	objs := g.pc.EnvoyFilters(g.proxy)
	if len(objs) == 0 {
		return
	}
	var patches []*efPatch
	for _, o := range objs {
		ps, err := parseEnvoyFilter(o)
		if err != nil {
			g.warnf("EnvoyFilter %s/%s skipped: %v", o.Meta.Namespace, o.Meta.Name, err)
			continue
		}
		patches = append(patches, ps...)
	}
	// Translation shares sub-messages between resources (one filter in
	// several chains); patches must change each place on its own.
	cloneAll(res.Listeners)
	cloneAll(res.Routes)
	cloneAll(res.Clusters)
	for _, kind := range applyToOrder {
		for _, p := range patches {
			if p.applyTo != kind || !g.proxyMatches(p) {
				continue
			}
			if !slices.Contains(allowedOps[kind], p.op) {
				p.warnf(g, "operation %s is not supported for applyTo %s; patch ignored", p.op, kind)
				continue
			}
			switch kind {
			case networking.EnvoyFilter_CLUSTER:
				g.patchClusters(res, p)
			case networking.EnvoyFilter_ROUTE_CONFIGURATION, networking.EnvoyFilter_VIRTUAL_HOST, networking.EnvoyFilter_HTTP_ROUTE:
				g.patchRouteConfigs(res, p)
			default:
				g.patchListeners(res, p)
			}
		}
	}
	for _, p := range patches {
		if valueType(p.applyTo) == nil {
			p.warnf(g, "applyTo %s is not supported; patch ignored", p.applyTo)
		}
	}
	g.reconcileReferences(res)
}

func cloneAll[T proto.Message](list []T) {
	for i, m := range list {
		list[i] = proto.Clone(m).(T)
	}
}

// parseEnvoyFilter converts every patch value of an EnvoyFilter to its
// Envoy type; one bad value rejects the whole filter, as a partial
// application could leave the proxy in a state nobody wrote.
func parseEnvoyFilter(o *config.Object) ([]*efPatch, error) {
	ef := o.Spec.(*networking.EnvoyFilter)
	var out []*efPatch
	for i, cp := range ef.GetConfigPatches() {
		p := &efPatch{
			source: o.Meta.Namespace + "/" + o.Meta.Name, index: i,
			applyTo: cp.GetApplyTo(), match: cp.GetMatch(),
			op: cp.GetPatch().GetOperation(), class: cp.GetPatch().GetFilterClass(),
		}
		if cp.GetMatch().GetProxy().GetProxyVersion() != "" {
			if _, err := regexp.Compile(cp.GetMatch().GetProxy().GetProxyVersion()); err != nil {
				return nil, fmt.Errorf("spec.configPatches[%d].match.proxy.proxyVersion: %v", i, err)
			}
		}
		if t := valueType(p.applyTo); t != nil && p.op != networking.EnvoyFilter_Patch_REMOVE {
			if cp.GetPatch().GetValue() == nil {
				return nil, fmt.Errorf("spec.configPatches[%d].patch.value: required for operation %s", i, p.op)
			}
			if err := structToProto(cp.GetPatch().GetValue(), t); err != nil {
				return nil, fmt.Errorf("spec.configPatches[%d].patch.value: not a valid %s: %v", i, t.ProtoReflect().Descriptor().FullName(), err)
			}
			p.value = t
		}
		out = append(out, p)
	}
	return out, nil
}

// structToProto converts a patch value to msg through JSON; protojson
// accepts both proto (snake_case) and JSON (camelCase) field names and
// resolves "@type" in Anys against the registered types.
func structToProto(s *structpb.Struct, msg proto.Message) error {
	// encoding/json, not protojson, renders the value: protojson varies its
	// whitespace on purpose, which would make error positions (and so the
	// warnings users see) change from run to run.
	b, err := json.Marshal(s.AsMap())
	if err != nil {
		return err
	}
	if err := protojson.Unmarshal(b, msg); err != nil {
		// protobuf-go varies its error text on purpose (a non-breaking
		// space after "proto:" at random); users get one stable message.
		return errors.New(strings.ReplaceAll(err.Error(), "\u00a0", " "))
	}
	return nil
}

// proxyMatches checks match.proxy: the proxy version regex and metadata.
func (g *generator) proxyMatches(p *efPatch) bool {
	pm := p.match.GetProxy()
	if pm == nil {
		return true
	}
	if v := pm.GetProxyVersion(); v != "" {
		re := regexp.MustCompile(v) // compiled once in parseEnvoyFilter
		if !re.MatchString(g.proxy.Version) {
			return false
		}
	}
	for k, want := range pm.GetMetadata() {
		var got string
		switch k {
		case nodemeta.KeyNamespace:
			got = g.proxy.Namespace
		case nodemeta.KeyServiceAccount:
			got = g.proxy.ServiceAccount
		case nodemeta.KeyWorkloadName:
			got = g.proxy.WorkloadName
		case nodemeta.KeyClusterID:
			got = g.proxy.ClusterID
		case nodemeta.KeyInterceptionMode:
			got = g.proxy.InterceptionMode
		case nodemeta.KeyIstioVersion:
			got = g.proxy.Version
		default:
			return false
		}
		if got != want {
			return false
		}
	}
	return true
}

// contextMatches checks match.context for an object that is (or is not)
// on the inbound path.
func (g *generator) contextMatches(p *efPatch, inbound bool) bool {
	switch p.match.GetContext() {
	case networking.EnvoyFilter_ANY:
		return true
	case networking.EnvoyFilter_SIDECAR_INBOUND:
		return g.proxy.Type == model.SidecarProxy && inbound
	case networking.EnvoyFilter_SIDECAR_OUTBOUND:
		return g.proxy.Type == model.SidecarProxy && !inbound
	case networking.EnvoyFilter_GATEWAY:
		return g.proxy.Type == model.Router
	}
	return false
}

func (g *generator) inboundListener(l *listenerv3.Listener) bool {
	return g.proxy.Type == model.SidecarProxy &&
		(l.GetName() == VirtualInboundListener || l.GetTrafficDirection() == corev3.TrafficDirection_INBOUND)
}

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

func (g *generator) patchListeners(res *Resources, p *efPatch) {
	lm := p.match.GetListener()
	if p.applyTo == networking.EnvoyFilter_LISTENER && p.op == networking.EnvoyFilter_Patch_ADD {
		add := proto.Clone(p.value).(*listenerv3.Listener)
		if !g.contextMatches(p, g.inboundListener(add)) {
			return
		}
		if slices.ContainsFunc(res.Listeners, func(l *listenerv3.Listener) bool { return l.GetName() == add.GetName() }) {
			p.warnf(g, "listener %q already exists; ADD ignored", add.GetName())
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
		switch p.applyTo {
		case networking.EnvoyFilter_LISTENER:
			if p.op == networking.EnvoyFilter_Patch_REMOVE {
				continue
			}
			proto.Merge(l, p.value)
		case networking.EnvoyFilter_FILTER_CHAIN:
			g.patchFilterChains(l, p, inbound)
		default:
			for _, fc := range l.GetFilterChains() {
				if !chainMatches(l, fc, lm, inbound) {
					continue
				}
				if p.applyTo == networking.EnvoyFilter_NETWORK_FILTER {
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

func (g *generator) patchFilterChains(l *listenerv3.Listener, p *efPatch, inbound bool) {
	if p.op == networking.EnvoyFilter_Patch_ADD {
		l.FilterChains = append(l.FilterChains, proto.Clone(p.value).(*listenerv3.FilterChain))
		return
	}
	var kept []*listenerv3.FilterChain
	for _, fc := range l.GetFilterChains() {
		if chainMatches(l, fc, p.match.GetListener(), inbound) {
			if p.op == networking.EnvoyFilter_Patch_REMOVE {
				continue
			}
			proto.Merge(fc, p.value)
		}
		kept = append(kept, fc)
	}
	l.FilterChains = kept
}

// patchNetworkFilters applies a NETWORK_FILTER patch to one chain's
// filters, relative to the filter match.listener.filterChain.filter names.
func (g *generator) patchNetworkFilters(fs []*listenerv3.Filter, p *efPatch) []*listenerv3.Filter {
	name := canonicalName(p.match.GetListener().GetFilterChain().GetFilter().GetName())
	return patchList(g, p, fs, name != "", func(f *listenerv3.Filter) bool { return f.GetName() == name },
		func() *listenerv3.Filter { return proto.Clone(p.value).(*listenerv3.Filter) },
		func(f *listenerv3.Filter) { g.mergeFilter(p, f, p.value.(*listenerv3.Filter)) })
}

// patchHTTPFilters applies an HTTP_FILTER patch to every HTTP connection
// manager of a chain (or the one the filter match names).
func (g *generator) patchHTTPFilters(fc *listenerv3.FilterChain, p *efPatch) {
	fm := p.match.GetListener().GetFilterChain().GetFilter()
	for _, f := range fc.GetFilters() {
		if fm.GetName() != "" && f.GetName() != canonicalName(fm.GetName()) {
			continue
		}
		hcm := unpackHCM(f)
		if hcm == nil {
			continue
		}
		sub := canonicalName(fm.GetSubFilter().GetName())
		newFilter := func() *hcmv3.HttpFilter { return proto.Clone(p.value).(*hcmv3.HttpFilter) }
		if p.op == networking.EnvoyFilter_Patch_ADD && p.class != networking.EnvoyFilter_Patch_UNSPECIFIED {
			hcm.HttpFilters = slices.Insert(hcm.HttpFilters, classPosition(hcm.GetHttpFilters(), p.class), newFilter())
		} else {
			hcm.HttpFilters = patchList(g, p, hcm.GetHttpFilters(), sub != "",
				func(h *hcmv3.HttpFilter) bool { return h.GetName() == sub }, newFilter,
				func(h *hcmv3.HttpFilter) { g.mergeHTTPFilter(p, h, p.value.(*hcmv3.HttpFilter)) })
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
func patchList[T any](g *generator, p *efPatch, list []T, hasMatch bool, selected func(T) bool, value func() T, merge func(T)) []T {
	switch p.op {
	case networking.EnvoyFilter_Patch_ADD:
		return append(list, value())
	case networking.EnvoyFilter_Patch_INSERT_FIRST:
		return slices.Insert(list, 0, value())
	case networking.EnvoyFilter_Patch_INSERT_BEFORE, networking.EnvoyFilter_Patch_INSERT_AFTER:
		before := p.op == networking.EnvoyFilter_Patch_INSERT_BEFORE
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
		p.warnf(g, "operation %s needs a match naming the %s to change; patch ignored", p.op, strings.ToLower(strings.ReplaceAll(p.applyTo.String(), "_", " ")))
		return list
	}
	var out []T
	for _, e := range list {
		if !selected(e) {
			out = append(out, e)
			continue
		}
		switch p.op {
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

// --- route configurations, virtual hosts and routes ---

// routeConfigRef is one route configuration a proxy has: sent by RDS, or
// inline in an inbound connection manager (then save repacks it).
type routeConfigRef struct {
	rc      *routev3.RouteConfiguration
	inbound bool
	save    func()
}

func (g *generator) routeConfigs(res *Resources) []routeConfigRef {
	var out []routeConfigRef
	for _, rc := range res.Routes {
		out = append(out, routeConfigRef{rc: rc, save: func() {}})
	}
	for _, l := range res.Listeners {
		inbound := g.inboundListener(l)
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				hcm := unpackHCM(f)
				if hcm.GetRouteConfig() == nil {
					continue
				}
				out = append(out, routeConfigRef{rc: hcm.GetRouteConfig(), inbound: inbound, save: func() {
					f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(hcm)}
				}})
			}
		}
	}
	return out
}

// routeConfigPort is the port a route configuration serves, from its name
// ("9080", "http.8080", "inbound|9080||").
func routeConfigPort(name string) uint32 {
	name = strings.TrimPrefix(name, "http.")
	name = strings.TrimPrefix(name, "inbound|")
	name, _, _ = strings.Cut(name, "|")
	n, _ := strconv.ParseUint(name, 10, 32)
	return uint32(n)
}

func (g *generator) routeConfigMatches(p *efPatch, rc *routev3.RouteConfiguration) bool {
	m := p.match.GetRouteConfiguration()
	if m == nil {
		return true
	}
	if m.GetName() != "" && m.GetName() != rc.GetName() {
		return false
	}
	if m.GetPortNumber() != 0 && m.GetPortNumber() != routeConfigPort(rc.GetName()) {
		return false
	}
	if m.GetPortName() != "" {
		p.warnf(g, "match.routeConfiguration.portName is not supported; patch ignored")
		return false
	}
	if gw := m.GetGateway(); gw != "" {
		found := false
		for _, o := range g.pc.GatewaysFor(g.proxy) {
			if g.pc.QualifyGateway(gw, o.Meta.Namespace) == o.Meta.Namespace+"/"+o.Meta.Name {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func vhostMatches(vh *routev3.VirtualHost, m *networking.EnvoyFilter_RouteConfigurationMatch_VirtualHostMatch) bool {
	if m == nil {
		return true
	}
	if m.GetName() != "" && m.GetName() != vh.GetName() {
		return false
	}
	if m.GetDomainName() != "" && !slices.Contains(vh.GetDomains(), m.GetDomainName()) {
		return false
	}
	return true
}

func routeMatches(r *routev3.Route, m *networking.EnvoyFilter_RouteConfigurationMatch_RouteMatch) bool {
	if m == nil {
		return true
	}
	if m.GetName() != "" && m.GetName() != r.GetName() {
		return false
	}
	switch m.GetAction() {
	case networking.EnvoyFilter_RouteConfigurationMatch_RouteMatch_ROUTE:
		return r.GetRoute() != nil
	case networking.EnvoyFilter_RouteConfigurationMatch_RouteMatch_REDIRECT:
		return r.GetRedirect() != nil
	case networking.EnvoyFilter_RouteConfigurationMatch_RouteMatch_DIRECT_RESPONSE:
		return r.GetDirectResponse() != nil
	}
	return true
}

func (g *generator) patchRouteConfigs(res *Resources, p *efPatch) {
	vm := p.match.GetRouteConfiguration().GetVhost()
	for _, ref := range g.routeConfigs(res) {
		if !g.contextMatches(p, ref.inbound) || !g.routeConfigMatches(p, ref.rc) {
			continue
		}
		rc := ref.rc
		switch p.applyTo {
		case networking.EnvoyFilter_ROUTE_CONFIGURATION:
			proto.Merge(rc, p.value)
		case networking.EnvoyFilter_VIRTUAL_HOST:
			if p.op == networking.EnvoyFilter_Patch_ADD {
				add := proto.Clone(p.value).(*routev3.VirtualHost)
				if slices.ContainsFunc(rc.GetVirtualHosts(), func(vh *routev3.VirtualHost) bool { return vh.GetName() == add.GetName() }) {
					p.warnf(g, "virtual host %q already exists in route configuration %q; ADD ignored", add.GetName(), rc.GetName())
					continue
				}
				rc.VirtualHosts = append(rc.VirtualHosts, add)
				break
			}
			var kept []*routev3.VirtualHost
			for _, vh := range rc.GetVirtualHosts() {
				if vhostMatches(vh, vm) {
					if p.op == networking.EnvoyFilter_Patch_REMOVE {
						continue
					}
					proto.Merge(vh, p.value)
				}
				kept = append(kept, vh)
			}
			rc.VirtualHosts = kept
		case networking.EnvoyFilter_HTTP_ROUTE:
			rm := vm.GetRoute()
			// Without a route selector Istio applies REMOVE and MERGE to
			// every route of the selected virtual hosts.
			hasMatch := rm.GetName() != "" || rm.GetAction() != networking.EnvoyFilter_RouteConfigurationMatch_RouteMatch_ANY
			for _, vh := range rc.GetVirtualHosts() {
				if !vhostMatches(vh, vm) {
					continue
				}
				vh.Routes = patchList(g, p, vh.GetRoutes(), hasMatch || p.op == networking.EnvoyFilter_Patch_REMOVE || p.op == networking.EnvoyFilter_Patch_MERGE,
					func(r *routev3.Route) bool { return routeMatches(r, rm) },
					func() *routev3.Route { return proto.Clone(p.value).(*routev3.Route) },
					func(r *routev3.Route) { proto.Merge(r, p.value) })
			}
		}
		ref.save()
	}
}

// --- clusters ---

func clusterMatches(c *clusterv3.Cluster, m *networking.EnvoyFilter_ClusterMatch) bool {
	if m == nil {
		return true
	}
	if m.GetName() != "" && m.GetName() != c.GetName() {
		return false
	}
	if m.GetPortNumber() == 0 && m.GetService() == "" && m.GetSubset() == "" {
		return true
	}
	port, subset, host, ok := ParseOutboundCluster(c.GetName())
	if !ok {
		return false
	}
	return (m.GetPortNumber() == 0 || m.GetPortNumber() == port) &&
		(m.GetService() == "" || m.GetService() == host) &&
		(m.GetSubset() == "" || m.GetSubset() == subset)
}

func (g *generator) patchClusters(res *Resources, p *efPatch) {
	inboundCluster := func(c *clusterv3.Cluster) bool { return strings.HasPrefix(c.GetName(), "inbound|") }
	if p.op == networking.EnvoyFilter_Patch_ADD {
		add := proto.Clone(p.value).(*clusterv3.Cluster)
		if !g.contextMatches(p, inboundCluster(add)) {
			return
		}
		if slices.ContainsFunc(res.Clusters, func(c *clusterv3.Cluster) bool { return c.GetName() == add.GetName() }) {
			p.warnf(g, "cluster %q already exists; ADD ignored", add.GetName())
			return
		}
		res.Clusters = append(res.Clusters, add)
		return
	}
	var kept []*clusterv3.Cluster
	for _, c := range res.Clusters {
		if g.contextMatches(p, inboundCluster(c)) && clusterMatches(c, p.match.GetCluster()) {
			if p.op == networking.EnvoyFilter_Patch_REMOVE {
				continue
			}
			proto.Merge(c, p.value)
		}
		kept = append(kept, c)
	}
	res.Clusters = kept
}

// --- merging ---
//
// MERGE is Istio's: a proto merge of the patch value into the object
// (scalars replaced, messages merged, lists appended), except that filter
// typed_configs of one type are merged rather than replaced.

// mergeFilter merges a network filter; a typed_config of the same type is
// merged field by field (as Istio does) instead of replaced wholesale.
func (g *generator) mergeFilter(p *efPatch, dst, src *listenerv3.Filter) {
	tc, err := mergeTypedConfig(dst.GetTypedConfig(), src.GetTypedConfig())
	if err != nil {
		p.warnf(g, "merge typed_config of filter %q: %v; patch ignored", dst.GetName(), err)
		return
	}
	src = proto.Clone(src).(*listenerv3.Filter)
	src.ConfigType = nil
	proto.Merge(dst, src)
	if tc != nil {
		dst.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: tc}
	}
}

func (g *generator) mergeHTTPFilter(p *efPatch, dst, src *hcmv3.HttpFilter) {
	tc, err := mergeTypedConfig(dst.GetTypedConfig(), src.GetTypedConfig())
	if err != nil {
		p.warnf(g, "merge typed_config of http filter %q: %v; patch ignored", dst.GetName(), err)
		return
	}
	src = proto.Clone(src).(*hcmv3.HttpFilter)
	src.ConfigType = nil
	proto.Merge(dst, src)
	if tc != nil {
		dst.ConfigType = &hcmv3.HttpFilter_TypedConfig{TypedConfig: tc}
	}
}

// mergeTypedConfig merges src into dst when both describe the same type
// (src possibly as a TypedStruct); otherwise src replaces dst.
func mergeTypedConfig(dst, src *anypb.Any) (*anypb.Any, error) {
	if src == nil {
		return dst, nil
	}
	if dst == nil {
		return src, nil
	}
	typed, err := typedStructToAny(src)
	if err != nil {
		return nil, err
	}
	if typed.GetTypeUrl() != dst.GetTypeUrl() {
		return src, nil
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

// typedStructToAny turns a udpa/xds TypedStruct into the Any of the type it
// describes; other Anys are returned as they are.
func typedStructToAny(a *anypb.Any) (*anypb.Any, error) {
	var typeURL string
	var value *structpb.Struct
	switch {
	case a.MessageIs(&udpav1.TypedStruct{}):
		ts := &udpav1.TypedStruct{}
		if err := a.UnmarshalTo(ts); err != nil {
			return nil, err
		}
		typeURL, value = ts.GetTypeUrl(), ts.GetValue()
	case a.MessageIs(&xdstypev3.TypedStruct{}):
		ts := &xdstypev3.TypedStruct{}
		if err := a.UnmarshalTo(ts); err != nil {
			return nil, err
		}
		typeURL, value = ts.GetTypeUrl(), ts.GetValue()
	default:
		return a, nil
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(typeURL)
	if err != nil {
		return nil, fmt.Errorf("TypedStruct type_url %q: unknown type", typeURL)
	}
	msg := mt.New().Interface()
	if value != nil {
		if err := structToProto(value, msg); err != nil {
			return nil, fmt.Errorf("TypedStruct value for %s: %v", typeURL, err)
		}
	}
	return anypb.New(msg)
}

// --- references ---

// reconcileReferences keeps the resource set consistent after patching,
// as the snapshot cache requires: route configurations and endpoints no
// listener or cluster refers to any more are dropped; an EDS cluster a
// patch added gets its endpoints (none when it names no known service);
// an RDS name a patch introduced gets an empty route configuration.
func (g *generator) reconcileReferences(res *Resources) {
	wantRoutes := map[string]bool{}
	var routeOrder []string
	for _, l := range res.Listeners {
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				if n := unpackHCM(f).GetRds().GetRouteConfigName(); n != "" && !wantRoutes[n] {
					wantRoutes[n] = true
					routeOrder = append(routeOrder, n)
				}
			}
		}
	}
	have := map[string]bool{}
	var routes []*routev3.RouteConfiguration
	for _, rc := range res.Routes {
		if wantRoutes[rc.GetName()] {
			have[rc.GetName()] = true
			routes = append(routes, rc)
		}
	}
	for _, n := range routeOrder {
		if !have[n] {
			g.warnf("EnvoyFilter: listeners refer to route configuration %q, which no config defines; it is sent empty", n)
			routes = append(routes, &routev3.RouteConfiguration{Name: n})
		}
	}
	res.Routes = routes

	wantEDS := map[string]bool{}
	var edsOrder []string
	for _, c := range res.Clusters {
		if c.GetType() != clusterv3.Cluster_EDS {
			continue
		}
		n := c.GetName()
		if sn := c.GetEdsClusterConfig().GetServiceName(); sn != "" {
			n = sn
		}
		if !wantEDS[n] {
			wantEDS[n] = true
			edsOrder = append(edsOrder, n)
		}
	}
	haveEDS := map[string]bool{}
	var eps []*endpointv3.ClusterLoadAssignment
	for _, cla := range res.Endpoints {
		if wantEDS[cla.GetClusterName()] {
			haveEDS[cla.GetClusterName()] = true
			eps = append(eps, cla)
		}
	}
	for _, n := range edsOrder {
		if haveEDS[n] {
			continue
		}
		cla := &endpointv3.ClusterLoadAssignment{ClusterName: n}
		if port, subset, host, ok := ParseOutboundCluster(n); ok {
			if svc := g.pc.Registry.Service(host); svc != nil {
				if sp, ok := svc.PortByNumber(port); ok {
					cla = g.loadAssignment(n, svc, sp, subset)
				}
			}
		}
		eps = append(eps, cla)
	}
	res.Endpoints = eps
}
