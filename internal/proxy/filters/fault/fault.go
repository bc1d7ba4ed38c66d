// Package fault is Envoy's HTTP fault injection filter
// (envoy.filters.http.fault), what Istio's VirtualService fault becomes:
// it delays requests (response flag DI) and aborts them with an HTTP or
// gRPC status (flag FI), each for a sampled share of requests. Istio
// configures the filter empty and puts each route's faults in the route's
// typed_per_filter_config; a route's config replaces the filter's own.
package fault

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	commonfaultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/skein-mesh/skein/internal/proxy/filters"
	"github.com/skein-mesh/skein/internal/proxy/internal/confparse"
	"github.com/skein-mesh/skein/internal/proxy/internal/protocheck"
	"github.com/skein-mesh/skein/internal/proxy/stats"
)

// Name is the filter's canonical name, under which routes carry their
// per-route config.
const Name = "envoy.filters.http.fault"

// AbortBody is Envoy's body for an aborted request.
const AbortBody = "fault filter abort"

var (
	httpFaultFields = protocheck.Fields(&faultv3.HTTPFault{}, "delay", "abort", "max_active_faults")
	delayFields     = protocheck.Fields(&commonfaultv3.FaultDelay{}, "fixed_delay", "percentage")
	abortFields     = protocheck.Fields(&faultv3.FaultAbort{}, "http_status", "grpc_status", "percentage")
	percentFields   = protocheck.Fields(&typev3.FractionalPercent{}, "numerator", "denominator")
)

// Register adds the filter to reg, with HTTPFault as its per-route config.
func Register(reg *filters.Registry) {
	reg.Register(Name, &faultv3.HTTPFault{}, New)
	reg.RegisterPerRoute(&faultv3.HTTPFault{}, func(a *anypb.Any) (any, error) { return parse(a) })
}

// config is a validated HTTPFault.
type config struct {
	delay      time.Duration
	delayPct   *typev3.FractionalPercent // nil: no delay
	abortHTTP  int
	abortGRPC  int                       // used when isGRPC
	isGRPC     bool                      // abort with a gRPC status
	abortPct   *typev3.FractionalPercent // nil: no abort
	maxActive  uint32
	hasMaxActv bool
}

func parse(a *anypb.Any) (*config, error) {
	var f faultv3.HTTPFault
	if err := confparse.Unmarshal(a, &f); err != nil {
		return nil, err
	}
	if err := httpFaultFields.Check(&f); err != nil {
		return nil, err
	}
	c := &config{}
	if m := f.GetMaxActiveFaults(); m != nil {
		c.maxActive, c.hasMaxActv = m.GetValue(), true
	}
	if d := f.GetDelay(); d != nil {
		if err := delayFields.Check(d); err != nil {
			return nil, fmt.Errorf("delay: %v", err)
		}
		if d.GetFixedDelay() == nil {
			return nil, fmt.Errorf("delay: fixed_delay is required (header_delay is not supported yet)")
		}
		if err := d.GetFixedDelay().CheckValid(); err != nil || d.GetFixedDelay().AsDuration() < 0 {
			return nil, fmt.Errorf("delay: invalid fixed_delay %v", d.GetFixedDelay())
		}
		pct, err := percent(d.GetPercentage())
		if err != nil {
			return nil, fmt.Errorf("delay: %v", err)
		}
		c.delay, c.delayPct = d.GetFixedDelay().AsDuration(), pct
	}
	if ab := f.GetAbort(); ab != nil {
		if err := abortFields.Check(ab); err != nil {
			return nil, fmt.Errorf("abort: %v", err)
		}
		switch e := ab.GetErrorType().(type) {
		case *faultv3.FaultAbort_HttpStatus:
			if e.HttpStatus < 200 || e.HttpStatus >= 600 {
				return nil, fmt.Errorf("abort: http_status %d is not in [200, 600)", e.HttpStatus)
			}
			c.abortHTTP = int(e.HttpStatus)
		case *faultv3.FaultAbort_GrpcStatus:
			c.abortGRPC, c.isGRPC = int(e.GrpcStatus), true
		default:
			return nil, fmt.Errorf("abort: one of http_status or grpc_status is required (header_abort is not supported yet)")
		}
		pct, err := percent(ab.GetPercentage())
		if err != nil {
			return nil, fmt.Errorf("abort: %v", err)
		}
		c.abortPct = pct
	}
	return c, nil
}

// percent validates a FractionalPercent; an absent one is 0%, as in Envoy.
func percent(p *typev3.FractionalPercent) (*typev3.FractionalPercent, error) {
	if p == nil {
		return &typev3.FractionalPercent{}, nil
	}
	if err := percentFields.Check(p); err != nil {
		return nil, fmt.Errorf("percentage: %v", err)
	}
	if _, ok := typev3.FractionalPercent_DenominatorType_name[int32(p.GetDenominator())]; !ok {
		return nil, fmt.Errorf("percentage: unknown denominator %d", p.GetDenominator())
	}
	return p, nil
}

// Filter injects the faults of the matched route, else its own.
type Filter struct {
	base *config
	// active counts requests being delayed or aborted now, for
	// max_active_faults and the fault.active_faults gauge.
	active                *stats.Gauge
	delays, aborts, overf *stats.Counter
}

var (
	_ filters.HTTPFilter = (*Filter)(nil)
	_ filters.StatsUser  = (*Filter)(nil)
)

// New builds the filter from its HTTPFault config.
func New(a *anypb.Any) (filters.HTTPFilter, error) {
	c, err := parse(a)
	if err != nil {
		return nil, err
	}
	f := &Filter{base: c, active: &stats.Gauge{},
		delays: &stats.Counter{}, aborts: &stats.Counter{}, overf: &stats.Counter{}}
	return f, nil
}

// UseStats registers Envoy's fault statistics under prefix.
func (f *Filter) UseStats(s *stats.Store, prefix string) {
	p := prefix + "fault."
	f.delays = s.Counter(p + "delays_injected")
	f.aborts = s.Counter(p + "aborts_injected")
	f.overf = s.Counter(p + "faults_overflow")
	f.active = s.Gauge(p + "active_faults")
}

// config picks the route's fault config over the filter's own.
func (f *Filter) config(req *filters.Request) *config {
	if req.Route == nil {
		return f.base
	}
	if c, ok := req.Route.FilterConfig[Name].(*config); ok {
		return c
	}
	return f.base
}

// OnRequest delays, then aborts, as the sampled percentages say.
func (f *Filter) OnRequest(req *filters.Request) *filters.LocalReply {
	c := f.config(req)
	if c == nil {
		return nil
	}
	delay := c.delayPct != nil && c.delay > 0 && sampled(c.delayPct)
	abort := c.abortPct != nil && sampled(c.abortPct)
	if !delay && !abort {
		return nil
	}
	if c.hasMaxActv && f.active.Value() >= int64(c.maxActive) {
		f.overf.Inc()
		return nil
	}
	f.active.Inc()
	defer f.active.Dec()
	if delay {
		f.delays.Inc()
		req.ResponseFlags = append(req.ResponseFlags, "DI")
		t := time.NewTimer(c.delay)
		select {
		case <-t.C:
		case <-req.HTTP.Context().Done():
			// The client gave up during the delay: nothing to forward.
			t.Stop()
			return &filters.LocalReply{Status: 499, Flag: "DC"}
		}
	}
	if !abort {
		return nil
	}
	f.aborts.Inc()
	if c.isGRPC {
		// A trailers-only gRPC response: HTTP 200 with the status in the
		// headers, which gRPC clients read as the call's outcome.
		h := http.Header{}
		h.Set("Content-Type", "application/grpc")
		h.Set("Grpc-Status", strconv.Itoa(c.abortGRPC))
		h.Set("Grpc-Message", AbortBody)
		return &filters.LocalReply{Status: http.StatusOK, Flag: "FI", Headers: h}
	}
	return &filters.LocalReply{Status: c.abortHTTP, Body: AbortBody, Flag: "FI"}
}

// sampled draws whether a request falls in p.
func sampled(p *typev3.FractionalPercent) bool {
	denom := map[typev3.FractionalPercent_DenominatorType]uint32{
		typev3.FractionalPercent_HUNDRED: 100, typev3.FractionalPercent_TEN_THOUSAND: 10_000,
		typev3.FractionalPercent_MILLION: 1_000_000,
	}[p.GetDenominator()]
	if p.GetNumerator() >= denom {
		return true
	}
	return p.GetNumerator() > 0 && rand.Uint32N(denom) < p.GetNumerator()
}
