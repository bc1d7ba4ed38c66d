package proxy

import (
	"fmt"
	"sort"
	"sync/atomic"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/skein-mesh/skein/internal/proxy/cluster"
	"github.com/skein-mesh/skein/internal/proxy/filters"
	"github.com/skein-mesh/skein/internal/proxy/hcm"
	"github.com/skein-mesh/skein/internal/proxy/listener"
	"github.com/skein-mesh/skein/internal/proxy/router"
	"github.com/skein-mesh/skein/internal/proxy/xdsclient"
)

// dataplane installs xDS updates into the cluster manager, the RDS route
// tables and the listener manager. Each part validates everything before
// it swaps anything in, so a rejected update changes nothing.
type dataplane struct {
	clusters  *cluster.Manager
	listeners *listener.Manager
	// filters compiles routes' per-filter config (typed_per_filter_config).
	filters *filters.Registry
	routes  atomic.Pointer[routeTables]
}

// routeTables are the compiled RDS configurations, kept with the message
// they were compiled from so unchanged ones are not compiled again.
type routeTables map[string]compiledRoutes

type compiledRoutes struct {
	source *routev3.RouteConfiguration
	table  *router.Table
}

var _ xdsclient.Consumer = (*dataplane)(nil)
var _ listener.Routes = (*dataplane)(nil)

// Table returns the RDS route table called name, nil if it has not arrived.
func (d *dataplane) Table(name string) *router.Table {
	t := d.routes.Load()
	if t == nil {
		return nil
	}
	return (*t)[name].table
}

func (d *dataplane) Apply(typeURL string, next *xdsclient.Snapshot) error {
	switch typeURL {
	case xdsclient.ClusterType:
		return d.clusters.Update(next.ClusterMessages(), next.EndpointMessages())
	case xdsclient.EndpointType:
		return d.clusters.UpdateEndpoints(next.EndpointMessages())
	case xdsclient.ListenerType:
		return d.listeners.Update(next.ListenerMessages())
	case xdsclient.RouteType:
		return d.applyRoutes(next.RouteMessages())
	}
	return fmt.Errorf("resource type %q is not supported", typeURL)
}

func (d *dataplane) applyRoutes(configs map[string]*routev3.RouteConfiguration) error {
	prev := routeTables{}
	if p := d.routes.Load(); p != nil {
		prev = *p
	}
	names := make([]string, 0, len(configs))
	for name := range configs {
		names = append(names, name)
	}
	sort.Strings(names)
	next := make(routeTables, len(configs))
	for _, name := range names {
		rc := configs[name]
		// The xDS client keeps the same message for an unchanged resource.
		if old, ok := prev[name]; ok && old.source == rc {
			next[name] = old
			continue
		}
		t, err := hcm.CompileRoutes(rc, d.filters)
		if err != nil {
			return err
		}
		next[name] = compiledRoutes{source: rc, table: t}
	}
	d.routes.Store(&next)
	return nil
}
