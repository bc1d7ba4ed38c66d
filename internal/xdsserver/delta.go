package xdsserver

import (
	"encoding/hex"
	"strconv"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Incremental (delta) ADS, as Envoy and Istio's agent speak it: each
// resource has its own version (a digest of its content), the proxy says
// what it already has (initial_resource_versions) and subscribes or
// unsubscribes names, and a push sends only the resources whose version
// changed for that proxy plus the names that went away. At 2000 proxies a
// VirtualService change then sends one RouteConfiguration per proxy, not
// every route of the mesh. Snapshots, generation and ACK/NACK records
// (proxy-status) are the same as for state of the world.

// deltaSub is what a delta stream subscribed to and the proxy holds, for
// one type.
type deltaSub struct {
	wildcard bool
	names    map[string]bool   // explicitly subscribed
	acked    map[string]string // name → version the proxy holds (ACKed or initial)
	dirty    bool              // subscription changed since the last response

	nonce    string            // of the last response
	pending  bool              // the last response is not answered yet
	version  string            // snapshot version the last response was computed from
	inFlight map[string]string // name → version sent in the last response ("" removed)
}

type deltaStream struct {
	*adsStream // id, wake and proxy state, shared with state of the world
	grpc       discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesServer
	subs       map[string]*deltaSub
}

// resourceVersion is a resource's version in delta xDS: its content digest.
func resourceVersion(m *marshalled) string { return hex.EncodeToString(m.digest[:8]) }

// serveDelta serves one proxy's delta ADS stream.
func (s *Server) serveDelta(g discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	st := &deltaStream{
		adsStream: &adsStream{id: s.nextStream.Add(1), wake: make(chan struct{}, 1)},
		grpc:      g, subs: map[string]*deltaSub{},
	}
	if err := s.authenticate(g.Context(), st.adsStream); err != nil {
		return err
	}
	defer s.forget(st.adsStream)
	defer s.onStreamClosed(st.adsStream)
	return serveLoop(g.Context(), st.adsStream, g.Recv,
		func(req *discoveryv3.DeltaDiscoveryRequest) error { return s.onDeltaRequest(st, req) },
		func() error { return s.respondDelta(st) })
}

// onDeltaRequest registers the proxy, records an ACK or NACK (as a
// state-of-the-world request would, for proxy-status) and applies
// subscription changes.
func (s *Server) onDeltaRequest(st *deltaStream, req *discoveryv3.DeltaDiscoveryRequest) error {
	typ := req.GetTypeUrl()
	if typ == "" {
		return status.Error(codes.InvalidArgument, "type_url is required for ADS")
	}
	sub := st.subs[typ]
	first := sub == nil
	if first {
		sub = &deltaSub{names: map[string]bool{}, acked: map[string]string{}}
		st.subs[typ] = sub
	}
	// The SotW bookkeeping takes the version the nonce's response carried.
	shim := &discoveryv3.DiscoveryRequest{Node: req.GetNode(), TypeUrl: typ, ResponseNonce: req.GetResponseNonce(), ErrorDetail: req.GetErrorDetail()}
	nonce := req.GetResponseNonce()
	if nonce != "" && nonce != sub.nonce {
		shim.ResponseNonce = "" // stale: an answer to an older response
	} else if nonce != "" {
		shim.VersionInfo = sub.version
	}
	if err := s.onStreamRequest(st.adsStream, shim); err != nil {
		return err
	}
	if shim.ResponseNonce != "" {
		sub.pending = false
		if req.GetErrorDetail() == nil {
			for n, v := range sub.inFlight {
				if v == "" {
					delete(sub.acked, n)
				} else {
					sub.acked[n] = v
				}
			}
		}
		// A NACKed response leaves the proxy with what it had: acked is
		// unchanged, so the next change resends those resources.
		sub.inFlight = nil
	}
	if first {
		for n, v := range req.GetInitialResourceVersions() {
			sub.acked[n] = v
		}
		// Legacy wildcard: a first request naming nothing, for CDS and LDS.
		if len(req.GetResourceNamesSubscribe()) == 0 && (typ == resourcev3.ClusterType || typ == resourcev3.ListenerType) {
			sub.wildcard = true
		}
		sub.dirty = true
	}
	for _, n := range req.GetResourceNamesSubscribe() {
		if n == "*" {
			sub.wildcard = true
		} else {
			sub.names[n] = true
		}
		sub.dirty = true
	}
	for _, n := range req.GetResourceNamesUnsubscribe() {
		if n == "*" {
			sub.wildcard = false
		} else {
			delete(sub.names, n)
		}
		if !sub.wildcard {
			delete(sub.acked, n) // the proxy drops it; no removal is sent
		}
		sub.dirty = true
	}
	return nil
}

// respondDelta sends, in ADS order, each type whose snapshot or
// subscription changed and whose last response was answered: the
// resources whose version differs from what the proxy holds, and the
// names it holds that are gone.
func (s *Server) respondDelta(st *deltaStream) error {
	if st.ps == nil {
		return nil
	}
	for _, typ := range respondOrder {
		sub := st.subs[typ]
		if sub == nil || sub.pending {
			continue
		}
		s.mu.Lock()
		snap := st.ps.snap[typ]
		s.mu.Unlock()
		if snap == nil || (snap.version == sub.version && !sub.dirty) {
			continue
		}
		sub.dirty = false
		set := snap.set.flat()
		resp := &discoveryv3.DeltaDiscoveryResponse{SystemVersionInfo: snap.version, TypeUrl: typ}
		var chunks [][]byte // resp.Resources, encoded (preEncoded)
		inFlight := map[string]string{}
		present := map[string]bool{}
		for i, name := range set.names {
			if !sub.wildcard && !sub.names[name] {
				continue
			}
			present[name] = true
			m := set.items[i]
			v := resourceVersion(m)
			if sub.acked[name] == v {
				continue
			}
			inFlight[name] = v
			if s.preEncoded.Load() {
				chunks = append(chunks, m.deltaEntry())
			} else {
				resp.Resources = append(resp.Resources, &discoveryv3.Resource{Name: name, Version: v, Resource: m.any})
			}
		}
		for name := range sub.acked {
			if !present[name] && (sub.wildcard || sub.names[name]) {
				inFlight[name] = ""
				resp.RemovedResources = append(resp.RemovedResources, name)
			}
		}
		sub.version = snap.version
		if len(resp.Resources) == 0 && len(chunks) == 0 && len(resp.RemovedResources) == 0 && sub.nonce != "" {
			s.onUnchanged(st.adsStream, typ, snap.version) // nothing this proxy holds changed
			continue
		}
		st.nonce++
		resp.Nonce = strconv.FormatInt(st.nonce, 10)
		sub.nonce, sub.pending, sub.inFlight = resp.Nonce, true, inFlight
		s.onStreamResponse(st.adsStream, typ, snap.version, resp.Nonce)
		var err error
		if s.preEncoded.Load() {
			err = st.grpc.SendMsg(&encodedDelta{version: resp.SystemVersionInfo, typeURL: typ, nonce: resp.Nonce, chunks: chunks, removed: resp.RemovedResources})
		} else {
			err = st.grpc.Send(resp)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// onUnchanged records that a push's version of typeURL needs nothing sent
// to the proxy (none of its resources changed), so the proxy has converged
// for that type.
func (s *Server) onUnchanged(st *adsStream, typeURL, version string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := st.ps
	if _, ok := ps.pending[typeURL]; ok && version == ps.snap[typeURL].version {
		delete(ps.pending, typeURL)
		if len(ps.pending) == 0 {
			s.observer.Converged(time.Since(ps.pendingSince))
		}
	}
}
