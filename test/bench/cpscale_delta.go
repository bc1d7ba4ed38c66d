package main

import (
	"bytes"
	"fmt"
	"sort"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/anypb"
)

// cpscale -delta: the simulated sidecars speak incremental ADS as Envoy
// and Istio's agent do (wildcard CDS and LDS, EDS and RDS subscribed by
// name as clusters and listeners arrive, every response ACKed), so a
// change sends each proxy only the resources that changed.

// deltaClient is one simulated sidecar on a delta ADS stream; it reports
// through its adsClient's channels.
type deltaClient struct {
	*adsClient
	stream discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
}

func newDeltaClient(t xdsTarget, token string, i int, names *nameCache, m *markerState) (*deltaClient, error) {
	base, err := newADSClient(t, token, i, names, m) // node identity and channels
	if err != nil {
		return nil, err
	}
	base.conn.Close()
	conn, err := grpc.NewClient(t.addr, t.dial,
		grpc.WithInitialWindowSize(envoyHTTP2Window), grpc.WithInitialConnWindowSize(envoyHTTP2Window),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)))
	if err != nil {
		return nil, err
	}
	base.conn = conn
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(streamContext(token))
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("proxy %d: open delta ADS stream: %w", i, err)
	}
	return &deltaClient{adsClient: base, stream: stream}, nil
}

func (c *deltaClient) run() {
	fail := func(err error) {
		select {
		case c.failed <- err:
		default:
		}
	}
	send := func(req *discoveryv3.DeltaDiscoveryRequest) bool {
		if err := sendStatus(c.stream.Send(req), func() error { _, err := c.stream.Recv(); return err }); err != nil {
			fail(err)
			return false
		}
		return true
	}
	if !send(&discoveryv3.DeltaDiscoveryRequest{Node: c.node, TypeUrl: resourcev3.ClusterType}) ||
		!send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ListenerType}) {
		return
	}
	subscribed := map[string]map[string]bool{resourcev3.EndpointType: {}, resourcev3.RouteType: {}}
	acked := map[string]bool{}
	isReady, isConverged := false, false
	marker := c.marker
	for {
		resp, err := c.stream.Recv()
		if err != nil {
			fail(err)
			return
		}
		typ := resp.GetTypeUrl()
		if !send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ, ResponseNonce: resp.GetNonce()}) {
			return
		}
		acked[typ] = true
		var follow string
		var sub, unsub []string
		switch typ {
		case resourcev3.ClusterType:
			follow = resourcev3.EndpointType
			var anys []*anypb.Any
			for _, r := range resp.GetResources() {
				anys = append(anys, r.GetResource())
			}
			for _, n := range edsNames(&discoveryv3.DiscoveryResponse{Resources: anys}) {
				if !subscribed[follow][n] {
					subscribed[follow][n] = true
					sub = append(sub, n)
				}
			}
			for _, n := range resp.GetRemovedResources() {
				if subscribed[follow][n] {
					delete(subscribed[follow], n)
					unsub = append(unsub, n)
				}
			}
		case resourcev3.ListenerType:
			follow = resourcev3.RouteType
			var anys []*anypb.Any
			for _, r := range resp.GetResources() {
				anys = append(anys, r.GetResource())
			}
			for _, n := range rdsNames(&discoveryv3.DiscoveryResponse{Resources: anys}) {
				if !subscribed[follow][n] {
					subscribed[follow][n] = true
					sub = append(sub, n)
				}
			}
		case resourcev3.RouteType:
			if mk := marker.marker.Load(); mk != nil && !isConverged {
				for _, r := range resp.GetResources() {
					if bytes.Contains(r.GetResource().GetValue(), *mk) {
						c.convergedAfter = time.Duration(time.Now().UnixNano() - marker.at.Load())
						isConverged = true
						close(c.converged)
						break
					}
				}
			}
		}
		if follow != "" && (len(sub) > 0 || len(unsub) > 0) {
			sort.Strings(sub)
			if !send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: follow, ResourceNamesSubscribe: sub, ResourceNamesUnsubscribe: unsub}) {
				return
			}
		}
		if !isReady && acked[resourcev3.ClusterType] && acked[resourcev3.ListenerType] &&
			acked[resourcev3.EndpointType] && acked[resourcev3.RouteType] {
			isReady = true
			close(c.ready)
		}
	}
}

// newSimProxy returns a simulated sidecar and its run loop: SotW, or delta.
func newSimProxy(delta bool, t xdsTarget, token string, i int, names *nameCache, m *markerState) (*adsClient, func(), error) {
	if !delta {
		c, err := newADSClient(t, token, i, names, m)
		if err != nil {
			return nil, nil, err
		}
		return c, c.run, nil
	}
	c, err := newDeltaClient(t, token, i, names, m)
	if err != nil {
		return nil, nil, err
	}
	return c.adsClient, c.run, nil
}

// scopeDocs is cpscale -sidecar n: a Sidecar in the proxies' namespace
// whose egress imports only the first n services, as a workload that calls
// a few of the mesh's services would declare.
func scopeDocs(n int) []map[string]any {
	if n <= 0 {
		return nil
	}
	hosts := make([]any, n)
	for i := range hosts {
		hosts[i] = fmt.Sprintf("./svc-%d.scale.svc.cluster.local", i)
	}
	return []map[string]any{{"apiVersion": "networking.istio.io/v1", "kind": "Sidecar",
		"metadata": map[string]any{"name": "default", "namespace": "scale"},
		"spec":     map[string]any{"egress": []any{map[string]any{"hosts": hosts}}}}}
}
