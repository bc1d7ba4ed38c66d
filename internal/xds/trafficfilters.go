package xds

import (
	"fmt"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	commonfaultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/skein-mesh/skein/internal/config"
)

// Names of the HTTP filters VirtualService routes configure per route.
const (
	FaultFilter = "envoy.filters.http.fault"
	CORSFilter  = "envoy.filters.http.cors"
)

// outboundHTTPFilters are the HTTP filters before the router on sidecar
// outbound and gateway connection managers (fault injection, CORS), whose
// per-route settings come from VirtualServices. Both are configured empty,
// as Istio does: each route carries its own settings in
// typed_per_filter_config, and a route without them passes through.
func (g *generator) outboundHTTPFilters() []*hcmv3.HttpFilter {
	return []*hcmv3.HttpFilter{
		{Name: FaultFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&faultv3.HTTPFault{})}},
		{Name: CORSFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&corsv3.Cors{})}},
	}
}

// routeFilterConfig is the typed_per_filter_config of the routes built
// from hr (nil when it has neither fault nor corsPolicy).
func (g *generator) routeFilterConfig(hr *networking.HTTPRoute, where string) map[string]*anypb.Any {
	out := map[string]*anypb.Any{}
	f := translateFault(hr.GetFault())
	if hr.GetFault().GetDelay() != nil && f.GetDelay() == nil {
		g.warnf("%s: fault.delay: only fixedDelay is supported; delay ignored", where)
	}
	if hr.GetFault().GetAbort() != nil && f.GetAbort() == nil {
		g.warnf("%s: fault.abort: only httpStatus and a valid grpcStatus are supported; abort ignored", where)
	}
	if f != nil {
		out[FaultFilter] = mustAny(f)
	}
	if c := translateCORS(hr.GetCorsPolicy()); c != nil {
		out[CORSFilter] = mustAny(c)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// translateFault turns an Istio fault into the fault filter's per-route
// config. Percentages become parts per million as in Istio; an unset
// percentage falls back to the deprecated integer percent (0 when unset,
// which injects nothing — Envoy's reading of an absent percentage).
func translateFault(in *networking.HTTPFaultInjection) *faultv3.HTTPFault {
	if in == nil {
		return nil
	}
	out := &faultv3.HTTPFault{}
	if d := in.GetDelay(); d != nil && d.GetFixedDelay() != nil {
		out.Delay = &commonfaultv3.FaultDelay{
			FaultDelaySecifier: &commonfaultv3.FaultDelay_FixedDelay{FixedDelay: d.GetFixedDelay()},
			Percentage:         faultPercent(d.GetPercentage(), d.GetPercent()),
		}
	}
	if a := in.GetAbort(); a != nil {
		abort := &faultv3.FaultAbort{Percentage: faultPercent(a.GetPercentage(), 0)}
		switch e := a.GetErrorType().(type) {
		case *networking.HTTPFaultInjection_Abort_HttpStatus:
			abort.ErrorType = &faultv3.FaultAbort_HttpStatus{HttpStatus: uint32(e.HttpStatus)}
		case *networking.HTTPFaultInjection_Abort_GrpcStatus:
			if code, ok := grpcCode(e.GrpcStatus); ok {
				abort.ErrorType = &faultv3.FaultAbort_GrpcStatus{GrpcStatus: code}
			}
		}
		if abort.ErrorType != nil {
			out.Abort = abort
		}
	}
	if out.Delay == nil && out.Abort == nil {
		return nil
	}
	return out
}

func faultPercent(p *networking.Percent, legacy int32) *typev3.FractionalPercent {
	if p != nil {
		return millionths(p.GetValue())
	}
	return &typev3.FractionalPercent{Numerator: uint32(legacy) * 10000, Denominator: typev3.FractionalPercent_MILLION}
}

func millionths(percent float64) *typev3.FractionalPercent {
	return &typev3.FractionalPercent{Numerator: uint32(percent * 10000), Denominator: typev3.FractionalPercent_MILLION}
}

// grpcCodes are the gRPC status names Istio accepts in abort.grpcStatus.
var grpcCodes = map[string]uint32{
	"OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4,
	"NOT_FOUND": 5, "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8,
	"FAILED_PRECONDITION": 9, "ABORTED": 10, "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12,
	"INTERNAL": 13, "UNAVAILABLE": 14, "DATA_LOSS": 15, "UNAUTHENTICATED": 16,
}

// grpcCode reads a gRPC status given by name ("UNAVAILABLE") or number.
func grpcCode(s string) (uint32, bool) {
	if c, ok := grpcCodes[strings.ToUpper(strings.TrimSpace(s))]; ok {
		return c, true
	}
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 32)
	return uint32(n), err == nil
}

// translateCORS turns an Istio corsPolicy into the CORS filter's per-route
// CorsPolicy, enabled for every request as Istio configures it.
func translateCORS(in *networking.CorsPolicy) *routev3.CorsPolicy {
	if in == nil {
		return nil
	}
	out := &routev3.CorsPolicy{
		AllowMethods:     strings.Join(in.GetAllowMethods(), ","),
		AllowHeaders:     strings.Join(in.GetAllowHeaders(), ","),
		ExposeHeaders:    strings.Join(in.GetExposeHeaders(), ","),
		AllowCredentials: in.GetAllowCredentials(),
		EnabledSpecifier: &routev3.CorsPolicy_FilterEnabled{FilterEnabled: &corev3.RuntimeFractionalPercent{
			DefaultValue: &typev3.FractionalPercent{Numerator: 100, Denominator: typev3.FractionalPercent_HUNDRED},
		}},
		// Istio's unmatchedPreflights: FORWARD (the default) hands preflights
		// from unknown origins to the application; IGNORE answers them
		// without CORS headers.
		ForwardNotMatchingPreflights: wrapperspb.Bool(in.GetUnmatchedPreflights() != networking.CorsPolicy_IGNORE),
	}
	if in.GetMaxAge() != nil {
		out.MaxAge = strconv.FormatInt(in.GetMaxAge().GetSeconds(), 10)
	}
	for _, o := range in.GetAllowOrigin() { // deprecated exact origins
		out.AllowOriginStringMatch = append(out.AllowOriginStringMatch,
			&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: o}})
	}
	for _, sm := range in.GetAllowOrigins() {
		if m := stringMatcher(sm); m != nil {
			out.AllowOriginStringMatch = append(out.AllowOriginStringMatch, m)
		}
	}
	return out
}

// mirrorPolicies translates mirror (+ mirrorPercentage/mirrorPercent) and
// mirrors into request_mirror_policies. A 0% mirror is left out, as Istio
// does; an unset percentage mirrors every request.
func (g *generator) mirrorPolicies(vsObj *config.Object, hr *networking.HTTPRoute, ctx routeContext, where string) []*routev3.RouteAction_RequestMirrorPolicy {
	var out []*routev3.RouteAction_RequestMirrorPolicy
	add := func(dst *networking.Destination, pct *typev3.FractionalPercent, what string) {
		if pct != nil && pct.GetNumerator() == 0 {
			return
		}
		if pct == nil {
			pct = &typev3.FractionalPercent{Numerator: 100, Denominator: typev3.FractionalPercent_HUNDRED}
		}
		out = append(out, &routev3.RouteAction_RequestMirrorPolicy{
			Cluster:         g.destinationCluster(vsObj, dst, ctx, where+": "+what),
			RuntimeFraction: &corev3.RuntimeFractionalPercent{DefaultValue: pct},
			TraceSampled:    wrapperspb.Bool(false),
		})
	}
	if m := hr.GetMirror(); m != nil {
		var pct *typev3.FractionalPercent
		switch {
		case hr.GetMirrorPercentage() != nil:
			pct = millionths(hr.GetMirrorPercentage().GetValue())
		case hr.GetMirrorPercent() != nil:
			pct = &typev3.FractionalPercent{Numerator: hr.GetMirrorPercent().GetValue(), Denominator: typev3.FractionalPercent_HUNDRED}
		}
		add(m, pct, "mirror")
	}
	for i, mp := range hr.GetMirrors() {
		if mp.GetDestination() == nil {
			g.warnf("%s: mirrors[%d] has no destination; skipped", where, i)
			continue
		}
		var pct *typev3.FractionalPercent
		if mp.GetPercentage() != nil {
			pct = millionths(mp.GetPercentage().GetValue())
		}
		add(mp.GetDestination(), pct, fmt.Sprintf("mirrors[%d]", i))
	}
	return out
}
