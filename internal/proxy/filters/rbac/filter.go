// Package rbac enforces Envoy's role-based access control: the
// envoy.filters.http.rbac HTTP filter and the engine that the network
// (TCP) RBAC filter shares. Policies are compiled once into tagged trees
// evaluated without allocation; a denied request gets Envoy's 403
// "RBAC: access denied", a LOG action or shadow rules only log.
package rbac

import (
	"fmt"
	"log/slog"
	"net/http"

	rbacfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/skein-mesh/skein/internal/proxy/filters"
	"github.com/skein-mesh/skein/internal/proxy/internal/confparse"
	"github.com/skein-mesh/skein/internal/proxy/internal/protocheck"
	"github.com/skein-mesh/skein/internal/proxy/stats"
)

// Name is the canonical HTTP filter name.
const Name = "envoy.filters.http.rbac"

// DeniedBody is Envoy's local reply body for a denied request.
const DeniedBody = "RBAC: access denied"

var httpFields = protocheck.Fields(&rbacfilterv3.RBAC{}, "rules", "shadow_rules", "shadow_rules_stat_prefix", "rules_stat_prefix")

// Options are what the filter reports to; both may be nil.
type Options struct {
	Stats  *stats.Store
	Logger *slog.Logger
}

// Register adds the HTTP RBAC filter to reg.
func Register(reg *filters.Registry, opts Options) {
	reg.Register(Name, &rbacfilterv3.RBAC{}, func(config *anypb.Any) (filters.HTTPFilter, error) {
		var cfg rbacfilterv3.RBAC
		if err := confparse.Unmarshal(config, &cfg); err != nil {
			return nil, err
		}
		return NewHTTPFilter(&cfg, opts)
	})
}

// HTTPFilter is a compiled envoy.extensions.filters.http.rbac.v3.RBAC.
type HTTPFilter struct {
	rules  *Engine // nil: no enforcement
	shadow *Engine
	log    *slog.Logger
	stats  filterStats
	// rulesPrefix and shadowPrefix are the configured stat prefixes.
	rulesPrefix, shadowPrefix string
}

type filterStats struct {
	allowed, denied, shadowAllowed, shadowDenied, logged *stats.Counter
}

// NewHTTPFilter compiles the filter config.
func NewHTTPFilter(cfg *rbacfilterv3.RBAC, opts Options) (*HTTPFilter, error) {
	if err := httpFields.Check(cfg); err != nil {
		return nil, err
	}
	f := &HTTPFilter{log: opts.Logger}
	if f.log == nil {
		f.log = slog.Default()
	}
	var err error
	if cfg.GetRules() != nil {
		if f.rules, err = Compile(cfg.GetRules()); err != nil {
			return nil, fmt.Errorf("rules: %v", err)
		}
	}
	if cfg.GetShadowRules() != nil {
		if f.shadow, err = Compile(cfg.GetShadowRules()); err != nil {
			return nil, fmt.Errorf("shadow_rules: %v", err)
		}
	}
	f.rulesPrefix, f.shadowPrefix = cfg.GetRulesStatPrefix(), cfg.GetShadowRulesStatPrefix()
	f.stats = newStats(opts.Stats, "http.rbac."+f.rulesPrefix, "http.rbac."+f.shadowPrefix)
	return f, nil
}

// UseStats moves the counters under the connection manager's scope, named
// as Envoy names them: http.<stat_prefix>.rbac.<rules_stat_prefix>denied.
func (f *HTTPFilter) UseStats(st *stats.Store, prefix string) {
	f.stats = newStats(st, prefix+"rbac."+f.rulesPrefix, prefix+"rbac."+f.shadowPrefix)
}

var _ filters.StatsUser = (*HTTPFilter)(nil)

func newStats(st *stats.Store, prefix, shadowPrefix string) filterStats {
	if st == nil {
		st = stats.NewStore()
	}
	return filterStats{
		allowed:       st.Counter(prefix + "allowed"),
		denied:        st.Counter(prefix + "denied"),
		logged:        st.Counter(prefix + "logged"),
		shadowAllowed: st.Counter(shadowPrefix + "shadow_allowed"),
		shadowDenied:  st.Counter(shadowPrefix + "shadow_denied"),
	}
}

// OnRequest enforces the rules and evaluates the shadow rules.
func (f *HTTPFilter) OnRequest(req *filters.Request) *filters.LocalReply {
	if f.shadow != nil {
		ok, policy := f.shadow.Allowed(req)
		if ok {
			f.stats.shadowAllowed.Inc()
		} else {
			f.stats.shadowDenied.Inc()
		}
		f.log.Debug("rbac shadow decision", "allowed", ok, "policy", policy, "path", req.HTTP.URL.Path)
	}
	if f.rules == nil {
		return nil
	}
	ok, policy := f.rules.Allowed(req)
	if f.rules.Action == Log {
		if policy != "" {
			f.stats.logged.Inc()
			f.log.Info("rbac audit: request matched", "policy", policy, "method", req.HTTP.Method,
				"authority", req.HTTP.Host, "path", req.HTTP.URL.Path, "source", sourceAddr(req))
		}
		return nil
	}
	if ok {
		f.stats.allowed.Inc()
		return nil
	}
	f.stats.denied.Inc()
	f.log.Debug("rbac: access denied", "action", f.rules.Action, "policy", policy, "path", req.HTTP.URL.Path, "source", sourceAddr(req))
	return &filters.LocalReply{Status: http.StatusForbidden, Body: DeniedBody}
}

func sourceAddr(req *filters.Request) string {
	if req.Conn == nil {
		return ""
	}
	return req.Conn.Source.String()
}
