package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	udpav1 "github.com/cncf/xds/go/udpa/type/v1"
	xdstypev3 "github.com/cncf/xds/go/xds/type/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
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

// EnvoyFilterWrapper is one EnvoyFilter compiled once per push, as Istio's
// EnvoyFilterWrapper: every patch value decoded to its Envoy type, every
// match regex compiled. Translation applies it to each proxy it selects
// and must treat it as read-only (it clones a value before inserting it).
type EnvoyFilterWrapper struct {
	Namespace, Name string
	Patches         []*EnvoyFilterPatch
	// Err is why the whole filter is skipped: a patch that does not parse
	// (a partial application could leave the proxy in a state nobody
	// wrote). Translation warns with it for every proxy it selects.
	Err error

	spec    *networking.EnvoyFilter
	created time.Time
}

// EnvoyFilterPatch is one parsed configPatch.
type EnvoyFilterPatch struct {
	Source      string // "namespace/name", for warnings
	Index       int    // in spec.configPatches
	ApplyTo     networking.EnvoyFilter_ApplyTo
	Match       *networking.EnvoyFilter_EnvoyConfigObjectMatch
	Operation   networking.EnvoyFilter_Patch_Operation
	FilterClass networking.EnvoyFilter_Patch_FilterClass
	// Supported is false for an applyTo this mesh cannot patch.
	Supported bool
	// Value is of the applyTo's Envoy type; nil for REMOVE.
	Value proto.Message
	// ProxyVersion is match.proxy.proxyVersion, compiled; nil when unset.
	ProxyVersion *regexp.Regexp
	// MergeTypedConfig is the typed_config of a NETWORK_FILTER or
	// HTTP_FILTER value with a TypedStruct resolved to the type it
	// describes, for a MERGE into a filter of that type; MergeTypedConfigErr
	// says why it could not be resolved (reported when a merge needs it).
	MergeTypedConfig    *anypb.Any
	MergeTypedConfigErr error
}

// EnvoyFilters returns the EnvoyFilters that patch proxy p, in the order
// Istio applies them: by priority, then those of the root namespace before
// those of p's namespace, then by creation time. A filter selects p when it
// lives in the root namespace or p's namespace and its workloadSelector
// (or a targetRef naming p's Gateway) matches; without either it selects
// every workload of its namespace.
func (pc *PushContext) EnvoyFilters(p *Proxy) []*EnvoyFilterWrapper {
	var out []*EnvoyFilterWrapper
	for _, w := range pc.envoyFilters {
		if w.Namespace != pc.RootNamespace && w.Namespace != p.Namespace {
			continue
		}
		switch {
		case len(w.spec.GetTargetRefs()) > 0:
			if !envoyFilterTargets(w.spec, w.Namespace, p) {
				continue
			}
		case len(w.spec.GetWorkloadSelector().GetLabels()) > 0:
			if !LabelsMatch(w.spec.GetWorkloadSelector().GetLabels(), p.Labels) {
				continue
			}
		}
		out = append(out, w)
	}
	return out
}

// indexEnvoyFilters compiles every EnvoyFilter and sorts them in
// application order (the selection above keeps it).
func (pc *PushContext) indexEnvoyFilters(objs []*config.Object) []*EnvoyFilterWrapper {
	out := make([]*EnvoyFilterWrapper, 0, len(objs))
	for _, o := range objs {
		out = append(out, compileEnvoyFilter(o))
	}
	slices.SortStableFunc(out, func(a, b *EnvoyFilterWrapper) int {
		if pa, pb := a.spec.GetPriority(), b.spec.GetPriority(); pa != pb {
			return cmpInt(pa < pb)
		}
		if ra, rb := a.Namespace == pc.RootNamespace, b.Namespace == pc.RootNamespace; ra != rb {
			return cmpInt(ra)
		}
		if !a.created.Equal(b.created) {
			return cmpInt(a.created.Before(b.created))
		}
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	return out
}

func cmpInt(less bool) int {
	if less {
		return -1
	}
	return 1
}

// envoyFilterTargets reports whether a targetRef names p: Istio attaches
// EnvoyFilters by targetRef to Kubernetes Gateway API gateways, whose pods
// carry the gateway's name as a label.
func envoyFilterTargets(ef *networking.EnvoyFilter, ns string, p *Proxy) bool {
	for _, ref := range ef.GetTargetRefs() {
		refNS := ref.GetNamespace()
		if refNS == "" {
			refNS = ns
		}
		if ref.GetKind() == "Gateway" && refNS == p.Namespace && p.Labels["gateway.networking.k8s.io/gateway-name"] == ref.GetName() {
			return true
		}
	}
	return false
}

// compileEnvoyFilter converts every patch value of an EnvoyFilter to its
// Envoy type and compiles its regexes.
func compileEnvoyFilter(o *config.Object) *EnvoyFilterWrapper {
	ef := o.Spec.(*networking.EnvoyFilter)
	w := &EnvoyFilterWrapper{Namespace: o.Meta.Namespace, Name: o.Meta.Name, spec: ef, created: o.Meta.CreationTimestamp}
	for i, cp := range ef.GetConfigPatches() {
		p := &EnvoyFilterPatch{
			Source: o.Meta.Namespace + "/" + o.Meta.Name, Index: i,
			ApplyTo: cp.GetApplyTo(), Match: cp.GetMatch(),
			Operation: cp.GetPatch().GetOperation(), FilterClass: cp.GetPatch().GetFilterClass(),
		}
		if v := cp.GetMatch().GetProxy().GetProxyVersion(); v != "" {
			re, err := regexp.Compile(v)
			if err != nil {
				w.Err = fmt.Errorf("spec.configPatches[%d].match.proxy.proxyVersion: %v", i, err)
				return w
			}
			p.ProxyVersion = re
		}
		t := envoyFilterValueType(p.ApplyTo)
		p.Supported = t != nil
		if t != nil && p.Operation != networking.EnvoyFilter_Patch_REMOVE {
			if cp.GetPatch().GetValue() == nil {
				w.Err = fmt.Errorf("spec.configPatches[%d].patch.value: required for operation %s", i, p.Operation)
				return w
			}
			if err := StructToProto(cp.GetPatch().GetValue(), t); err != nil {
				w.Err = fmt.Errorf("spec.configPatches[%d].patch.value: not a valid %s: %v", i, t.ProtoReflect().Descriptor().FullName(), err)
				return w
			}
			p.Value = t
			var tc *anypb.Any
			switch v := t.(type) {
			case *listenerv3.Filter:
				tc = v.GetTypedConfig()
			case *hcmv3.HttpFilter:
				tc = v.GetTypedConfig()
			}
			if tc != nil {
				p.MergeTypedConfig, p.MergeTypedConfigErr = typedStructToAny(tc)
			}
		}
		w.Patches = append(w.Patches, p)
	}
	return w
}

// envoyFilterValueType returns an empty message of the Envoy type a patch
// value for applyTo describes; nil for an applyTo that cannot be patched.
func envoyFilterValueType(applyTo networking.EnvoyFilter_ApplyTo) proto.Message {
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

// StructToProto converts a patch value to msg through JSON; protojson
// accepts both proto (snake_case) and JSON (camelCase) field names and
// resolves "@type" in Anys against the registered types.
func StructToProto(s *structpb.Struct, msg proto.Message) error {
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
		if err := StructToProto(value, msg); err != nil {
			return nil, fmt.Errorf("TypedStruct value for %s: %v", typeURL, err)
		}
	}
	return anypb.New(msg)
}
