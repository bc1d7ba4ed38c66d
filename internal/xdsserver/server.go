// Package xdsserver serves translated config to proxies over ADS (gRPC,
// state of the world). It keeps one snapshot per connected proxy,
// regenerates them on every push, marshals each resource once per push for
// every proxy that shares it, and records what each proxy was sent and
// ACKed or NACKed, for proxy-status.
package xdsserver

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/skein-mesh/skein/internal/model"
	"github.com/skein-mesh/skein/internal/xds"
)

// TypeURLs in the order proxy-status prints them.
var TypeURLs = []string{resourcev3.ClusterType, resourcev3.ListenerType, resourcev3.EndpointType, resourcev3.RouteType}

// ShortType maps a type URL to Istio's short name (CDS, LDS, ...).
func ShortType(typeURL string) string {
	switch typeURL {
	case resourcev3.ClusterType:
		return "CDS"
	case resourcev3.ListenerType:
		return "LDS"
	case resourcev3.EndpointType:
		return "EDS"
	case resourcev3.RouteType:
		return "RDS"
	case resourcev3.SecretType:
		return "SDS"
	}
	return typeURL
}

// Generator translates a push for one proxy; xds.Generate in production.
type Generator func(*model.PushContext, *model.Proxy) *xds.Resources

// Server is the ADS server.
type Server struct {
	log        *slog.Logger
	generate   Generator
	nextStream atomic.Int64
	// preEncoded: the gRPC server has the codec (GRPCServerOption), so
	// streams send encodedResponses.
	preEncoded atomic.Bool

	observer Observer // set before serving; never nil
	auth     streamAuth

	mu      sync.Mutex
	push    *model.PushContext
	proxies map[string]*proxyState // by node ID
}

type proxyState struct {
	proxy       *model.Proxy
	stream      int64
	wake        chan<- struct{} // tells the proxy's stream that snap changed
	connectedAt time.Time
	snap        map[string]*typeSnap // type URL → what the proxy is to have
	status      map[string]*TypeStatus
	warnings    []string
	// pending holds, per type URL whose content changed in a push, when the
	// config change behind that push happened; cleared as each is sent.
	pending      map[string]time.Time
	pendingSince time.Time // the earliest change in pending
}

// Observer is told what the server does, for the control plane's metrics.
// Calls may be made with the server's lock held: they must be quick and must
// not call back into the server.
type Observer interface {
	// Sent: a response of typeURL went to a proxy.
	Sent(typeURL string)
	// Rejected: a proxy NACKed typeURL.
	Rejected(typeURL string)
	// Converged: a proxy was sent every type a push changed for it, d after
	// the config change that caused the push.
	Converged(d time.Duration)
	// InternalError: the server could not build or install a proxy's config.
	InternalError()
}

type nopObserver struct{}

func (nopObserver) Sent(string)             {}
func (nopObserver) Rejected(string)         {}
func (nopObserver) Converged(time.Duration) {}
func (nopObserver) InternalError()          {}

// SetObserver installs o; call it before serving.
func (s *Server) SetObserver(o Observer) {
	if o == nil {
		o = nopObserver{}
	}
	s.observer = o
}

// TypeStatus is what one proxy was sent and answered for one resource type.
type TypeStatus struct {
	SentVersion  string    `json:"sent_version,omitempty"`
	SentNonce    string    `json:"sent_nonce,omitempty"`
	AckedVersion string    `json:"acked_version,omitempty"`
	AckedNonce   string    `json:"acked_nonce,omitempty"`
	NackError    string    `json:"nack_error,omitempty"`
	SentAt       time.Time `json:"sent_at,omitempty"`
	AckedAt      time.Time `json:"acked_at,omitempty"`
}

// State is istioctl's: SYNCED, NOT SENT, or STALE when the latest push is
// not ACKed (NACKed, or not answered yet; "Never Acknowledged" when nothing
// sent was ever ACKed).
func (t *TypeStatus) State() string {
	switch {
	case t == nil || t.SentNonce == "":
		return "NOT SENT"
	case t.NackError == "" && t.AckedNonce == t.SentNonce:
		return "SYNCED"
	case t.AckedVersion == "":
		return "STALE (Never Acknowledged)"
	}
	return "STALE"
}

// New creates a server; call Push before proxies connect to serve config.
func New(log *slog.Logger, generate Generator) *Server {
	return &Server{
		log:      log,
		generate: generate,
		observer: nopObserver{},
		proxies:  map[string]*proxyState{},
	}
}

// Register adds the ADS service to a gRPC server.
func (s *Server) Register(g *grpc.Server) {
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, s)
}

// Push regenerates every connected proxy's config from pc.
func (s *Server) Push(pc *model.PushContext) { s.PushAt(pc, time.Now()) }

// PushAt is Push for a push caused by a config change at changed (before
// debouncing), from which proxy convergence time is measured.
func (s *Server) PushAt(pc *model.PushContext, changed time.Time) {
	s.mu.Lock()
	s.push = pc
	states := make([]*proxyState, 0, len(s.proxies))
	for _, ps := range s.proxies {
		states = append(states, ps)
	}
	s.mu.Unlock()
	// Proxies are independent: generate them on every core, no more at once
	// than there are cores (each holds a whole config while it is built).
	work := make(chan *proxyState)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(states)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ps := range work {
				s.update(pc, ps, changed)
			}
		}()
	}
	for _, ps := range states {
		work <- ps
	}
	close(work)
	wg.Wait()
}

// update builds and installs one proxy's snapshot and wakes its stream.
// Each type keeps its previous version when its content did not change, so
// proxies are only sent what changed.
func (s *Server) update(pc *model.PushContext, ps *proxyState, changed time.Time) {
	res := s.generate(pc, ps.proxy)
	memo := memoFor(pc)
	sets := map[string]*typeSet{}
	var errs [3]error
	sets[resourcev3.ListenerType], errs[0] = setOf(memo, resourcev3.ListenerType, res.Listeners)
	sets[resourcev3.RouteType], errs[1] = setOf(memo, resourcev3.RouteType, res.Routes)
	sets[resourcev3.EndpointType], errs[2] = setOf(memo, resourcev3.EndpointType, res.Endpoints)
	if err := errors.Join(errs[:]...); err != nil {
		s.log.Error("refusing snapshot", "proxy", ps.proxy.ID, "err", err)
		s.observer.InternalError()
		return
	}
	cds, err := memo.clusters(res)
	if err != nil {
		s.log.Error("refusing snapshot", "proxy", ps.proxy.ID, "err", err)
		s.observer.InternalError()
		return
	}
	sets[resourcev3.ClusterType] = cds
	// Checked before it is installed, as go-control-plane's snapshot cache
	// does: every EDS name a cluster uses and every route a listener uses is
	// there, and nothing else.
	err = consistent(sets[resourcev3.ClusterType], sets[resourcev3.EndpointType], "endpoints")
	if err == nil {
		err = consistent(sets[resourcev3.ListenerType], sets[resourcev3.RouteType], "route configuration")
	}
	if err != nil {
		s.log.Error("refusing inconsistent snapshot", "proxy", ps.proxy.ID, "err", err)
		s.observer.InternalError()
		return
	}
	s.mu.Lock()
	// A type the proxy never subscribed to is never sent; forget such a
	// change after a while so it does not hold back later measurements.
	if len(ps.pending) > 0 && !changed.IsZero() && changed.Sub(ps.pendingSince) > time.Minute {
		clear(ps.pending)
	}
	for typ, ts := range sets {
		if old := ps.snap[typ]; old != nil && old.set.hash == ts.hash {
			continue
		}
		ps.snap[typ] = &typeSnap{version: fmt.Sprintf("%s-%s", pc.Version, ts.hash[:8]), set: ts}
		if !changed.IsZero() {
			if len(ps.pending) == 0 {
				ps.pendingSince = changed
			}
			if _, waiting := ps.pending[typ]; !waiting {
				ps.pending[typ] = changed
			}
		}
	}
	ps.warnings = res.Warnings
	wake := ps.wake
	s.mu.Unlock()
	if wake != nil {
		select {
		case wake <- struct{}{}:
		default: // already woken
		}
	}
}

// clusters returns the CDS set of res: its shared clusters (the same set
// for every proxy of its shared key, found by identity) composed with its
// own, so only the proxy's own clusters are marshalled, sorted and hashed
// per proxy.
func (pm *pushMemo) clusters(res *xds.Resources) (*typeSet, error) {
	n := res.SharedClusters
	if n == 0 || n > len(res.Clusters) {
		return setOf(pm, resourcev3.ClusterType, res.Clusters)
	}
	shared, err := setOf(pm, resourcev3.ClusterType, res.Clusters[:n])
	if err != nil {
		return nil, err
	}
	own, err := setOf(pm, resourcev3.ClusterType, res.Clusters[n:])
	if err != nil {
		return nil, err
	}
	if ts := pm.compose(shared, own); ts != nil {
		return ts, nil
	}
	return setOf(pm, resourcev3.ClusterType, res.Clusters)
}

// onStreamRequest registers a proxy on its stream's first request (and
// builds its snapshot, so the first response can go at once) and records
// ACKs and NACKs.
func (s *Server) onStreamRequest(st *adsStream, req *discoveryv3.DiscoveryRequest) error {
	if st.ps == nil {
		proxy, err := model.ParseNode(req.GetNode())
		if err != nil {
			s.log.Warn("rejecting xDS stream", "err", err)
			return status.Error(codes.InvalidArgument, err.Error())
		}
		if err := s.authorizeNode(st, proxy); err != nil {
			return err
		}
		ps := &proxyState{proxy: proxy, stream: st.id, wake: st.wake, connectedAt: time.Now(),
			snap: map[string]*typeSnap{}, status: map[string]*TypeStatus{}, pending: map[string]time.Time{}}
		st.ps = ps
		s.mu.Lock()
		s.proxies[proxy.ID] = ps
		pc := s.push
		s.mu.Unlock()
		s.log.Info("proxy connected", "proxy", proxy.ID)
		if pc != nil {
			// A proxy's first config is not a convergence: no change time.
			s.update(pc, ps, time.Time{})
		}
	}
	if req.GetResponseNonce() == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := st.ps
	st2 := ps.statusFor(req.GetTypeUrl())
	if req.GetErrorDetail() != nil {
		if st2.NackError == "" {
			s.log.Warn("proxy rejected config", "proxy", ps.proxy.ID, "type", ShortType(req.GetTypeUrl()), "reason", req.GetErrorDetail().GetMessage())
		}
		st2.NackError = req.GetErrorDetail().GetMessage()
		st2.AckedNonce = req.GetResponseNonce()
		s.observer.Rejected(req.GetTypeUrl())
	} else if req.GetResponseNonce() == st2.SentNonce {
		st2.NackError = ""
		st2.AckedNonce = req.GetResponseNonce()
		st2.AckedVersion = req.GetVersionInfo()
		st2.AckedAt = time.Now()
	}
	return nil
}

func (ps *proxyState) statusFor(typeURL string) *TypeStatus {
	st := ps.status[typeURL]
	if st == nil {
		st = &TypeStatus{}
		ps.status[typeURL] = st
	}
	return st
}

// onStreamResponse records a response about to be sent.
func (s *Server) onStreamResponse(st *adsStream, typeURL, version, nonce string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := st.ps
	ts := ps.statusFor(typeURL)
	ts.SentVersion, ts.SentNonce, ts.SentAt = version, nonce, time.Now()
	s.observer.Sent(typeURL)
	// Only the response carrying the version the push installed counts: an
	// older version may still be in flight.
	if _, ok := ps.pending[typeURL]; ok && version == ps.snap[typeURL].version {
		delete(ps.pending, typeURL)
		if len(ps.pending) == 0 {
			s.observer.Converged(ts.SentAt.Sub(ps.pendingSince))
		}
	}
}

func (s *Server) onStreamClosed(st *adsStream) {
	ps := st.ps
	if ps == nil {
		return
	}
	s.mu.Lock()
	if s.proxies[ps.proxy.ID] == ps {
		delete(s.proxies, ps.proxy.ID)
	}
	s.mu.Unlock()
	s.log.Info("proxy disconnected", "proxy", ps.proxy.ID)
}

// ProxyStatus is one connected proxy's sync state.
type ProxyStatus struct {
	ID          string                 `json:"proxy"`
	Name        string                 `json:"name"` // pod.namespace
	Type        string                 `json:"type"`
	ClusterID   string                 `json:"cluster_id"`
	Version     string                 `json:"proxy_version,omitempty"`
	ConnectedAt time.Time              `json:"connected_at"`
	Types       map[string]*TypeStatus `json:"types"` // keyed by CDS, LDS, EDS, RDS
	Warnings    []string               `json:"warnings,omitempty"`
}

// Status lists every connected proxy, sorted by name.
func (s *Server) Status() []ProxyStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ProxyStatus, 0, len(s.proxies))
	for _, ps := range s.proxies {
		st := ProxyStatus{ID: ps.proxy.ID, Name: ps.proxy.PodName + "." + ps.proxy.Namespace, Type: string(ps.proxy.Type),
			ClusterID: ps.proxy.ClusterID, Version: ps.proxy.Version, ConnectedAt: ps.connectedAt,
			Types: map[string]*TypeStatus{}, Warnings: ps.warnings}
		for _, t := range TypeURLs {
			if ts := ps.status[t]; ts != nil {
				c := *ts
				st.Types[ShortType(t)] = &c
			}
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Proxies lists the connected proxies, in no particular order.
func (s *Server) Proxies() []*model.Proxy {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*model.Proxy, 0, len(s.proxies))
	for _, ps := range s.proxies {
		out = append(out, ps.proxy)
	}
	return out
}

// Resources returns what the current push would send a proxy, for
// /debug/config_dump.
func (s *Server) Resources(nodeID string) (*xds.Resources, bool) {
	s.mu.Lock()
	ps, pc := s.proxies[nodeID], s.push
	s.mu.Unlock()
	if ps == nil || pc == nil {
		return nil, false
	}
	return s.generate(pc, ps.proxy), true
}
