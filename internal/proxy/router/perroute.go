package router

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// PerFilterCompiler compiles one typed_per_filter_config entry into the
// value its HTTP filter reads at request time (the filter registry). It
// fails on a config type no filter takes, so the route config is NACKed
// whole instead of applied in part.
type PerFilterCompiler interface {
	PerRoute(name string, config *anypb.Any) (any, error)
}

// corsFilterName is the filter that reads a virtual host's deprecated cors
// field, compiled as if it were its typed_per_filter_config entry.
const corsFilterName = "envoy.filters.http.cors"

// perFilter compiles per-filter configs once per Compile; a config shared
// by several routes (Istio sets one map per HTTPRoute on all its matches,
// a virtual host's on every route) compiles to one shared value, so
// per-route state such as a rate limit bucket is shared as in Envoy.
type perFilter struct {
	compiler PerFilterCompiler
	byConfig map[*anypb.Any]any
}

func (p *perFilter) compileOne(name string, config *anypb.Any) (any, error) {
	if v, ok := p.byConfig[config]; ok {
		return v, nil
	}
	if p.compiler == nil {
		return nil, fmt.Errorf("typed_per_filter_config %q: no HTTP filter takes per-route config here", name)
	}
	v, err := p.compiler.PerRoute(name, config)
	if err != nil {
		return nil, err
	}
	if p.byConfig == nil {
		p.byConfig = map[*anypb.Any]any{}
	}
	p.byConfig[config] = v
	return v, nil
}

// compile turns a typed_per_filter_config map into compiled values, in
// name order so the first error is stable.
func (p *perFilter) compile(m map[string]*anypb.Any) (map[string]any, error) {
	if len(m) == 0 {
		return nil, nil
	}
	out := make(map[string]any, len(m))
	for _, name := range slices.Sorted(maps.Keys(m)) {
		v, err := p.compileOne(name, m[name])
		if err != nil {
			return nil, err
		}
		out[name] = v
	}
	return out, nil
}

// vhostCors compiles a virtual host's cors field for the CORS filter.
func (p *perFilter) vhostCors(c *routev3.CorsPolicy) (map[string]any, error) {
	if c == nil {
		return nil, nil
	}
	a, err := anypb.New(c)
	if err != nil {
		return nil, fmt.Errorf("cors: %v", err)
	}
	v, err := p.compileOne(corsFilterName, a)
	if err != nil {
		return nil, errors.New("cors: " + err.Error())
	}
	return map[string]any{corsFilterName: v}, nil
}

// mergeFilterConfig overlays more specific per-filter config on less
// specific; it returns an input map unchanged when the other is empty.
func mergeFilterConfig(general, specific map[string]any) map[string]any {
	if len(specific) == 0 {
		return general
	}
	if len(general) == 0 {
		return specific
	}
	out := maps.Clone(general)
	maps.Copy(out, specific)
	return out
}

// wrapIndex names the i-th element of a repeated field in an error.
func wrapIndex(field string, i int, err error) error {
	return fmt.Errorf("%s[%d]: %w", field, i, err)
}
