package xdsserver

import (
	"context"
	"errors"
	"io"
	"sort"
	"strconv"
	"strings"
	"unique"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The ADS server is Skein's own (state of the world only, as Istio's): a
// stream sends each proxy the typeSets its snapshot points to, so nothing
// per stream copies or re-marshals shared resources, and a subscription
// keeps its names once (interned) rather than in per-stream maps.

// respondOrder is the order types are sent in when several changed, as
// Envoy's ADS wants it: clusters before their endpoints, listeners before
// their routes.
var respondOrder = []string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RouteType}

// adsStream is one proxy's ADS stream.
type adsStream struct {
	id    int64
	grpc  discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer
	ps    *proxyState   // set by the first request
	wake  chan struct{} // a push changed ps's snapshot
	subs  map[string]*subscription
	nonce int64
}

// subscription is what a stream asked for and was sent, for one type.
type subscription struct {
	wildcard bool
	named    bool // a non-empty name list was ever sent (then empty means none)
	// names is the sorted requested names, joined by newlines and interned:
	// 2000 proxies asking for the same 1000 EDS names hold one copy.
	names unique.Handle[string]
	dirty bool // names changed since the last response

	nonce   string   // of the last response; "" before the first
	pending bool     // the last response is not answered (ACK or NACK) yet
	version string   // of the last response
	sentAll bool     // the last response held every resource of its version
	sent    []string // names in the last response, unless sentAll
}

func (sub *subscription) setNames(names []string) {
	wildcard := false
	list := make([]string, 0, len(names))
	for _, n := range names {
		if n == "*" {
			wildcard = true
		} else {
			list = append(list, n)
		}
	}
	if len(names) == 0 && !sub.named {
		wildcard = true // legacy wildcard: an empty first request
	}
	if len(names) > 0 {
		sub.named = true
	}
	sort.Strings(list)
	h := unique.Make(strings.Join(list, "\n"))
	if wildcard != sub.wildcard || h != sub.names {
		sub.dirty = true
	}
	sub.wildcard, sub.names = wildcard, h
}

func (sub *subscription) nameList() []string {
	if sub.names.Value() == "" {
		return nil
	}
	return strings.Split(sub.names.Value(), "\n")
}

// StreamAggregatedResources serves one proxy's ADS stream.
func (s *Server) StreamAggregatedResources(g discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	st := &adsStream{id: s.nextStream.Add(1), grpc: g, wake: make(chan struct{}, 1), subs: map[string]*subscription{}}
	if err := s.authenticate(g.Context(), st); err != nil {
		return err
	}
	defer s.forget(st)
	defer s.onStreamClosed(st)
	return serveLoop(g.Context(), st, g.Recv,
		func(req *discoveryv3.DiscoveryRequest) error { return s.onRequest(st, req) },
		func() error { return s.respond(st) })
}

// serveLoop is one stream's life, for state-of-the-world and delta alike:
// requests arrive on their own goroutine (Recv blocks), and after each
// request or push wake-up the stream answers with what its proxy lacks.
func serveLoop[Req any](ctx context.Context, st *adsStream, recv func() (Req, error), onRequest func(Req) error, respond func() error) error {
	reqs := make(chan Req)
	recvErr := make(chan error, 1)
	go func() {
		for {
			req, err := recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case reqs <- req:
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-recvErr:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case req := <-reqs:
			if err := onRequest(req); err != nil {
				return err
			}
		case <-st.wake:
		}
		if err := respond(); err != nil {
			return err
		}
	}
}

// DeltaAggregatedResources serves incremental ADS (delta.go).
func (s *Server) DeltaAggregatedResources(g discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	return s.serveDelta(g)
}

// onRequest registers the proxy on its first request, records ACKs and
// NACKs, and updates the subscription. A request whose nonce is not the
// last one sent for its type is stale (Envoy's rule) and changes nothing.
func (s *Server) onRequest(st *adsStream, req *discoveryv3.DiscoveryRequest) error {
	typ := req.GetTypeUrl()
	if typ == "" {
		return status.Error(codes.InvalidArgument, "type_url is required for ADS")
	}
	if err := s.onStreamRequest(st, req); err != nil {
		return err
	}
	sub := st.subs[typ]
	if sub == nil {
		sub = &subscription{}
		st.subs[typ] = sub
	} else if sub.nonce != "" && req.GetResponseNonce() != sub.nonce {
		return nil
	}
	if req.GetResponseNonce() != "" {
		sub.pending = false
	}
	sub.setNames(req.GetResourceNames())
	return nil
}

// respond sends, in ADS order, every type whose content or subscription
// changed and whose last response was answered. A NACKed version is not
// resent: it waits for a change, as in Istio.
func (s *Server) respond(st *adsStream) error {
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
		set := snap.set
		all := sub.wildcard
		var names []string
		var items []*marshalled
		if !all {
			names, items = set.filter(sub.nameList())
			all = len(names) == set.size()
		}
		sub.dirty = false
		if snap.version == sub.version && all == sub.sentAll && (all || sameNames(names, sub.sent)) {
			continue // a subscription change that does not change what is sent
		}
		st.nonce++
		nonce := strconv.FormatInt(st.nonce, 10)
		sub.nonce, sub.pending, sub.version, sub.sentAll, sub.sent = nonce, true, snap.version, all, names
		s.onStreamResponse(st, typ, snap.version, nonce)
		var err error
		if s.preEncoded.Load() {
			resp := &encodedResponse{version: snap.version, typeURL: typ, nonce: nonce}
			if all {
				resp.chunks = set.chunks()
			} else {
				resp.chunks = [][]byte{encodeItems(items)}
			}
			err = st.grpc.SendMsg(resp)
		} else {
			resp := &discoveryv3.DiscoveryResponse{VersionInfo: snap.version, TypeUrl: typ, Nonce: nonce}
			if all {
				resp.Resources = set.flat().anys
			} else {
				for _, m := range items {
					resp.Resources = append(resp.Resources, m.any)
				}
			}
			err = st.grpc.Send(resp)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func sameNames(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	if len(a) > 0 && &a[0] == &b[0] {
		return true
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

var _ discoveryv3.AggregatedDiscoveryServiceServer = (*Server)(nil)
