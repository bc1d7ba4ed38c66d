package xdsclient

import (
	"fmt"
	"sort"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/skein-mesh/skein/internal/proxy/internal/confparse"
)

const resourceWrapperType = "type.googleapis.com/envoy.service.discovery.v3.Resource"

// validator is implemented by every Envoy message (protoc-gen-validate).
type validator interface{ ValidateAll() error }

// kindOf names a type URL the way error messages and logs do.
func kindOf(typeURL string) string {
	switch typeURL {
	case ClusterType:
		return "cluster"
	case EndpointType:
		return "cluster load assignment"
	case ListenerType:
		return "listener"
	case RouteType:
		return "route configuration"
	}
	return typeURL
}

// shortType is the xDS acronym used in stats and logs.
func shortType(typeURL string) string {
	switch typeURL {
	case ClusterType:
		return "cds"
	case EndpointType:
		return "eds"
	case ListenerType:
		return "lds"
	case RouteType:
		return "rds"
	}
	return "unknown"
}

// decode unmarshals and validates every resource of a response. Any problem
// rejects the whole response: SotW updates are all or nothing.
func decode[T interface {
	proto.Message
	validator
}](typeURL string, anys []*anypb.Any, newMsg func() T, nameOf func(T) string) (map[string]T, error) {
	out := make(map[string]T, len(anys))
	for i, a := range anys {
		if a.GetTypeUrl() == resourceWrapperType {
			var w discoveryv3.Resource
			if err := proto.Unmarshal(a.GetValue(), &w); err != nil {
				return nil, fmt.Errorf("resource %d: cannot decode %s wrapper: %v", i, resourceWrapperType, err)
			}
			a = w.GetResource()
		}
		if a.GetTypeUrl() != typeURL {
			return nil, fmt.Errorf("resource %d has type %q, want %q", i, a.GetTypeUrl(), typeURL)
		}
		msg := newMsg()
		if err := proto.Unmarshal(a.GetValue(), msg); err != nil {
			return nil, fmt.Errorf("resource %d: cannot decode %s: %v", i, kindOf(typeURL), err)
		}
		name := nameOf(msg)
		if name == "" {
			return nil, fmt.Errorf("resource %d: %s has no name", i, kindOf(typeURL))
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("%s %q appears twice in one response", kindOf(typeURL), name)
		}
		if err := msg.ValidateAll(); err != nil {
			return nil, fmt.Errorf("%s %q: %v", kindOf(typeURL), name, err)
		}
		out[name] = msg
	}
	return out, nil
}

// edsNames lists the load assignments the EDS clusters need.
func edsNames(clusters map[string]Resource[*clusterv3.Cluster]) []string {
	var names []string
	for _, r := range clusters {
		c := r.Message
		if c.GetType() != clusterv3.Cluster_EDS {
			continue
		}
		name := c.GetEdsClusterConfig().GetServiceName()
		if name == "" {
			name = c.GetName()
		}
		names = append(names, name)
	}
	sort.Strings(names)
	return dedup(names)
}

// rdsNames lists the route configurations the listeners' HTTP connection
// managers reference through rds.
func rdsNames(listeners map[string]Resource[*listenerv3.Listener]) []string {
	var names []string
	for _, r := range listeners {
		chains := r.Message.GetFilterChains()
		if d := r.Message.GetDefaultFilterChain(); d != nil {
			chains = append(chains[:len(chains):len(chains)], d)
		}
		for _, fc := range chains {
			for _, f := range fc.GetFilters() {
				tc := f.GetTypedConfig()
				if tc == nil || !tc.MessageIs(&hcmv3.HttpConnectionManager{}) {
					continue
				}
				var hcm hcmv3.HttpConnectionManager
				if err := confparse.Unmarshal(tc, &hcm); err != nil {
					continue // the consumer rejected such a listener already
				}
				if n := hcm.GetRds().GetRouteConfigName(); n != "" {
					names = append(names, n)
				}
			}
		}
	}
	sort.Strings(names)
	return dedup(names)
}

func dedup(sorted []string) []string {
	out := sorted[:0]
	for i, s := range sorted {
		if i == 0 || s != sorted[i-1] {
			out = append(out, s)
		}
	}
	return out
}

func clusterName(c *clusterv3.Cluster) string                 { return c.GetName() }
func endpointName(c *endpointv3.ClusterLoadAssignment) string { return c.GetClusterName() }
func listenerName(l *listenerv3.Listener) string              { return l.GetName() }
func routeName(r *routev3.RouteConfiguration) string          { return r.GetName() }
func newCluster() *clusterv3.Cluster                          { return &clusterv3.Cluster{} }
func newEndpoint() *endpointv3.ClusterLoadAssignment          { return &endpointv3.ClusterLoadAssignment{} }
func newListener() *listenerv3.Listener                       { return &listenerv3.Listener{} }
func newRoute() *routev3.RouteConfiguration                   { return &routev3.RouteConfiguration{} }
