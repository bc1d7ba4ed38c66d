package xdsclient

import (
	"maps"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"
)

// Type URLs of the four resource types the client subscribes to.
const (
	ClusterType  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	EndpointType = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
	ListenerType = "type.googleapis.com/envoy.config.listener.v3.Listener"
	RouteType    = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
)

// Resource is one accepted resource with the bookkeeping Envoy's config_dump
// shows: the version_info of the response that last changed it, and when.
type Resource[T proto.Message] struct {
	Message     T
	Version     string
	LastUpdated time.Time
}

// Snapshot is the complete accepted configuration: every resource of every
// type, by name. A Snapshot handed out by the client is never modified
// afterwards; updates build a new one.
type Snapshot struct {
	Clusters  map[string]Resource[*clusterv3.Cluster]
	Endpoints map[string]Resource[*endpointv3.ClusterLoadAssignment]
	Listeners map[string]Resource[*listenerv3.Listener]
	Routes    map[string]Resource[*routev3.RouteConfiguration]
	// Versions is the last accepted version_info per type URL; a type that
	// was never accepted is absent.
	Versions map[string]string
	// Updated is when each type URL was last accepted.
	Updated map[string]time.Time
}

func emptySnapshot() *Snapshot {
	return &Snapshot{
		Clusters:  map[string]Resource[*clusterv3.Cluster]{},
		Endpoints: map[string]Resource[*endpointv3.ClusterLoadAssignment]{},
		Listeners: map[string]Resource[*listenerv3.Listener]{},
		Routes:    map[string]Resource[*routev3.RouteConfiguration]{},
		Versions:  map[string]string{},
		Updated:   map[string]time.Time{},
	}
}

// clone copies the maps (not the immutable messages) so a candidate can be
// built without touching the accepted snapshot.
func (s *Snapshot) clone() *Snapshot {
	return &Snapshot{
		Clusters:  maps.Clone(s.Clusters),
		Endpoints: maps.Clone(s.Endpoints),
		Listeners: maps.Clone(s.Listeners),
		Routes:    maps.Clone(s.Routes),
		Versions:  maps.Clone(s.Versions),
		Updated:   maps.Clone(s.Updated),
	}
}

// ClusterMessages returns the clusters without bookkeeping.
func (s *Snapshot) ClusterMessages() map[string]*clusterv3.Cluster { return messages(s.Clusters) }

// EndpointMessages returns the load assignments without bookkeeping.
func (s *Snapshot) EndpointMessages() map[string]*endpointv3.ClusterLoadAssignment {
	return messages(s.Endpoints)
}

// ListenerMessages returns the listeners without bookkeeping.
func (s *Snapshot) ListenerMessages() map[string]*listenerv3.Listener { return messages(s.Listeners) }

// RouteMessages returns the route configurations without bookkeeping.
func (s *Snapshot) RouteMessages() map[string]*routev3.RouteConfiguration {
	return messages(s.Routes)
}

func messages[T proto.Message](in map[string]Resource[T]) map[string]T {
	out := make(map[string]T, len(in))
	for name, r := range in {
		out[name] = r.Message
	}
	return out
}

// merge builds the next map of one type. For state-of-the-world types (CDS,
// LDS) the response is the whole set; for EDS and RDS a response may carry
// only some of the subscribed names, so the rest are kept. Resources that are
// equal to the accepted ones keep their version and time.
func merge[T proto.Message](old map[string]Resource[T], got map[string]T, fullState bool, subscribed map[string]bool, version string, now time.Time) map[string]Resource[T] {
	next := make(map[string]Resource[T], len(got))
	if !fullState {
		for name, r := range old {
			if subscribed[name] {
				next[name] = r
			}
		}
	}
	for name, msg := range got {
		if !fullState && !subscribed[name] {
			continue // not asked for: a server may over-send, ignore it
		}
		if prev, ok := old[name]; ok && proto.Equal(prev.Message, msg) {
			next[name] = prev
			continue
		}
		next[name] = Resource[T]{Message: msg, Version: version, LastUpdated: now}
	}
	return next
}
