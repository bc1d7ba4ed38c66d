package router

import (
	"errors"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"

	"github.com/skein-mesh/skein/internal/proxy/internal/protocheck"
)

var mirrorPolicyFields = protocheck.Fields(&routev3.RouteAction_RequestMirrorPolicy{},
	// trace_sampled only matters to tracing, which the proxy does not do.
	"cluster", "runtime_fraction", "trace_sampled", "disable_shadow_host_suffix_append")

// MirrorPolicy is one compiled request_mirror_policies entry.
type MirrorPolicy struct {
	Cluster string
	// PerMillion is the share of requests mirrored, in millionths.
	PerMillion uint32
	// KeepHost sends the shadow with the original authority
	// (disable_shadow_host_suffix_append) instead of "<host>-shadow".
	KeepHost bool
}

func compileMirrorPolicies(ps []*routev3.RouteAction_RequestMirrorPolicy) ([]MirrorPolicy, error) {
	var out []MirrorPolicy
	for i, p := range ps {
		if err := mirrorPolicyFields.Check(p); err != nil {
			return nil, wrapIndex("request_mirror_policies", i, err)
		}
		if p.GetCluster() == "" {
			return nil, wrapIndex("request_mirror_policies", i,
				errors.New("a mirror policy without cluster (cluster_header) is not supported yet"))
		}
		// runtime_fraction.runtime_key is accepted: without a runtime layer
		// Envoy too would use default_value, which is what mirror samples by.
		m := MirrorPolicy{Cluster: p.GetCluster(), PerMillion: 1_000_000, KeepHost: p.GetDisableShadowHostSuffixAppend()}
		if rf := p.GetRuntimeFraction(); rf != nil {
			m.PerMillion = perMillion(rf.GetDefaultValue())
		}
		out = append(out, m)
	}
	return out, nil
}

// perMillion converts a FractionalPercent; nil is 0%, as in Envoy.
func perMillion(p *typev3.FractionalPercent) uint32 {
	if p == nil {
		return 0
	}
	var scale uint64
	switch p.GetDenominator() {
	case typev3.FractionalPercent_TEN_THOUSAND:
		scale = 100
	case typev3.FractionalPercent_MILLION:
		scale = 1
	default:
		scale = 10_000
	}
	return uint32(min(uint64(p.GetNumerator())*scale, 1_000_000))
}

// StreamDuration is a compiled max_stream_duration.
type StreamDuration struct {
	// Max caps the request's duration (0: no cap).
	Max time.Duration
	// GRPCHeader lets a grpc-timeout header set the timeout, capped by
	// GRPCHeaderMax (0: uncapped) and reduced by GRPCHeaderOffset.
	GRPCHeader                      bool
	GRPCHeaderMax, GRPCHeaderOffset time.Duration
}

func compileStreamDuration(m *routev3.RouteAction_MaxStreamDuration) *StreamDuration {
	if m == nil {
		return nil
	}
	return &StreamDuration{
		Max:              m.GetMaxStreamDuration().AsDuration(),
		GRPCHeader:       m.GetGrpcTimeoutHeaderMax() != nil,
		GRPCHeaderMax:    m.GetGrpcTimeoutHeaderMax().AsDuration(),
		GRPCHeaderOffset: m.GetGrpcTimeoutHeaderOffset().AsDuration(),
	}
}
