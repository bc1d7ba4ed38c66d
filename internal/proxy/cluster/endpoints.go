package cluster

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	"github.com/skein-mesh/skein/internal/proxy/internal/protocheck"
)

// Endpoint is one upstream host. Its counters survive endpoint updates that
// keep the address, as Envoy's host stats do.
type Endpoint struct {
	// Address is host:port, what the transport dials.
	Address string
	Healthy bool
	// Priority is the locality priority (0 is preferred).
	Priority uint32

	active atomic.Int64  // requests in flight (for LEAST_REQUEST and /clusters)
	total  atomic.Uint64 // requests sent
	failed atomic.Uint64 // connect failures and resets
	// ejected is set while outlier detection keeps the host out of load
	// balancing; the detector owns the rest of the host's outlier state.
	ejected atomic.Bool
}

// Ejected reports whether outlier detection currently ejects the host.
func (e *Endpoint) Ejected() bool { return e.ejected.Load() }

// Begin counts a request to the endpoint; call the returned func when it ends.
func (e *Endpoint) Begin() (done func()) {
	e.total.Add(1)
	e.active.Add(1)
	return func() { e.active.Add(-1) }
}

// Failed counts a connect failure or reset.
func (e *Endpoint) Failed() { e.failed.Add(1) }

// ActiveRequests is the number of requests in flight.
func (e *Endpoint) ActiveRequests() int64 { return e.active.Load() }

// TotalRequests is the number of requests sent so far.
func (e *Endpoint) TotalRequests() uint64 { return e.total.Load() }

// FailedRequests is the number of connect failures and resets so far.
func (e *Endpoint) FailedRequests() uint64 { return e.failed.Load() }

// endpointSet is an immutable list of hosts; the balancer picks among the
// healthy hosts of the best priority that has any.
type endpointSet struct {
	all       []*Endpoint
	preferred []*Endpoint // healthy hosts of the lowest priority with healthy hosts
}

func newEndpointSet(all []*Endpoint) *endpointSet {
	s := &endpointSet{all: all}
	best := uint32(0)
	for _, e := range all {
		if !e.Healthy {
			continue
		}
		switch {
		case s.preferred == nil || e.Priority < best:
			s.preferred, best = []*Endpoint{e}, e.Priority
		case e.Priority == best:
			s.preferred = append(s.preferred, e)
		}
	}
	return s
}

// reuse replaces endpoints that existed before (same address) by their old
// objects so their counters carry on.
func reuse(next []*Endpoint, prev *endpointSet) []*Endpoint {
	if prev == nil {
		return next
	}
	old := make(map[string]*Endpoint, len(prev.all))
	for _, e := range prev.all {
		old[e.Address] = e
	}
	for i, e := range next {
		if o, ok := old[e.Address]; ok && o.Healthy == e.Healthy && o.Priority == e.Priority {
			next[i] = o
		}
	}
	return next
}

var (
	claFields        = protocheck.Fields(&endpointv3.ClusterLoadAssignment{}, "cluster_name", "endpoints", "policy")
	claPolicyFields  = protocheck.Fields(&endpointv3.ClusterLoadAssignment_Policy{}, "overprovisioning_factor", "weighted_priority_health")
	localityFields   = protocheck.Fields(&endpointv3.LocalityLbEndpoints{}, "locality", "lb_endpoints", "load_balancing_weight", "priority", "metadata")
	lbEndpointFields = protocheck.Fields(&endpointv3.LbEndpoint{}, "endpoint", "health_status", "load_balancing_weight", "metadata")
	endpointFields   = protocheck.Fields(&endpointv3.Endpoint{}, "address", "hostname")
	socketFields     = protocheck.Fields(&corev3.SocketAddress{}, "address", "port_value", "protocol")
)

// hostPort is an endpoint as configured, before any DNS resolution.
type hostPort struct {
	host     string
	port     uint32
	healthy  bool
	priority uint32
	metadata *corev3.Metadata // selects the transport socket
}

func (h hostPort) address() string { return net.JoinHostPort(h.host, strconv.Itoa(int(h.port))) }

// parseAssignment reads the hosts of a load assignment. needIP is set for
// STATIC and EDS clusters, which Envoy requires to carry IP addresses.
func parseAssignment(cla *endpointv3.ClusterLoadAssignment, needIP bool) ([]hostPort, error) {
	if err := claFields.Check(cla); err != nil {
		return nil, err
	}
	if err := claPolicyFields.Check(cla.GetPolicy()); err != nil {
		return nil, fmt.Errorf("policy: %v", err)
	}
	var hosts []hostPort
	for i, loc := range cla.GetEndpoints() {
		if err := localityFields.Check(loc); err != nil {
			return nil, fmt.Errorf("endpoints[%d]: %v", i, err)
		}
		for j, lbe := range loc.GetLbEndpoints() {
			where := fmt.Sprintf("endpoints[%d].lb_endpoints[%d]", i, j)
			if err := lbEndpointFields.Check(lbe); err != nil {
				return nil, fmt.Errorf("%s: %v", where, err)
			}
			ep := lbe.GetEndpoint()
			if ep == nil {
				return nil, fmt.Errorf("%s: only endpoint is supported (not endpoint_name)", where)
			}
			if err := endpointFields.Check(ep); err != nil {
				return nil, fmt.Errorf("%s.endpoint: %v", where, err)
			}
			sa := ep.GetAddress().GetSocketAddress()
			if sa == nil {
				return nil, fmt.Errorf("%s: address must be a socket_address", where)
			}
			if err := socketFields.Check(sa); err != nil {
				return nil, fmt.Errorf("%s.socket_address: %v", where, err)
			}
			if sa.GetProtocol() != corev3.SocketAddress_TCP {
				return nil, fmt.Errorf("%s: protocol %s is not supported", where, sa.GetProtocol())
			}
			if sa.GetPortValue() == 0 {
				return nil, fmt.Errorf("%s: port_value is required", where)
			}
			if _, err := netip.ParseAddr(sa.GetAddress()); needIP && err != nil {
				return nil, fmt.Errorf("%s: address %q is not an IP address", where, sa.GetAddress())
			}
			hosts = append(hosts, hostPort{
				host:     sa.GetAddress(),
				port:     sa.GetPortValue(),
				healthy:  healthy(lbe.GetHealthStatus()),
				priority: loc.GetPriority(),
				metadata: lbe.GetMetadata(),
			})
		}
	}
	return hosts, nil
}

// healthy follows Envoy: UNKNOWN and HEALTHY hosts take traffic.
func healthy(s corev3.HealthStatus) bool {
	return s == corev3.HealthStatus_UNKNOWN || s == corev3.HealthStatus_HEALTHY
}

func endpointsOf(hosts []hostPort) []*Endpoint {
	out := make([]*Endpoint, len(hosts))
	for i, h := range hosts {
		out[i] = &Endpoint{Address: h.address(), Healthy: h.healthy, Priority: h.priority}
	}
	return out
}
