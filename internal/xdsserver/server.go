// Package xdsserver serves translated config to proxies over ADS (gRPC,
// state of the world) with go-control-plane. It keeps one snapshot per
// connected proxy, regenerates them on every push, and records what each
// proxy was sent and ACKed or NACKed, for proxy-status.
package xdsserver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"runtime"
	"sort"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

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
	log      *slog.Logger
	cache    cachev3.SnapshotCache
	ads      serverv3.Server
	generate Generator
	hashes   hashMemo

	observer Observer // set before serving; never nil

	mu      sync.Mutex
	push    *model.PushContext
	proxies map[string]*proxyState // by node ID
	streams map[int64]string       // stream ID → node ID
}

type proxyState struct {
	proxy       *model.Proxy
	stream      int64
	connectedAt time.Time
	hashes      map[string]string // type URL → content hash of what is in the snapshot
	versions    map[string]string // type URL → version string in the snapshot
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
	s := &Server{
		log:      log,
		generate: generate,
		observer: nopObserver{},
		proxies:  map[string]*proxyState{},
		streams:  map[int64]string{},
	}
	s.cache = cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)
	s.ads = serverv3.NewServer(context.Background(), nackAwareCache{SnapshotCache: s.cache, server: s}, serverv3.CallbackFuncs{
		StreamRequestFunc:  s.onStreamRequest,
		StreamResponseFunc: s.onStreamResponse,
		StreamClosedFunc:   s.onStreamClosed,
	})
	return s
}

// Register adds the ADS and per-type discovery services to a gRPC server.
func (s *Server) Register(g *grpc.Server) {
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, s.ads)
	clusterservice.RegisterClusterDiscoveryServiceServer(g, s.ads)
	listenerservice.RegisterListenerDiscoveryServiceServer(g, s.ads)
	routeservice.RegisterRouteDiscoveryServiceServer(g, s.ads)
	endpointservice.RegisterEndpointDiscoveryServiceServer(g, s.ads)
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

// update builds and installs one proxy's snapshot. Each type keeps its
// previous version when its content did not change, so proxies are only
// sent what changed.
func (s *Server) update(pc *model.PushContext, ps *proxyState, changed time.Time) {
	res := s.generate(pc, ps.proxy)
	byType := map[string][]types.Resource{
		resourcev3.ClusterType:  toResources(res.Clusters),
		resourcev3.ListenerType: toResources(res.Listeners),
		resourcev3.RouteType:    toResources(res.Routes),
		resourcev3.EndpointType: toResources(res.Endpoints),
	}
	snap := &cachev3.Snapshot{}
	s.mu.Lock()
	// A type the proxy never subscribed to is never sent; forget such a
	// change after a while so it does not hold back later measurements.
	if len(ps.pending) > 0 && !changed.IsZero() && changed.Sub(ps.pendingSince) > time.Minute {
		clear(ps.pending)
	}
	for typ, items := range byType {
		h := s.hashes.hash(pc, items)
		if ps.hashes[typ] != h {
			ps.hashes[typ] = h
			ps.versions[typ] = fmt.Sprintf("%s-%s", pc.Version, h[:8])
			if !changed.IsZero() {
				if len(ps.pending) == 0 {
					ps.pendingSince = changed
				}
				if _, waiting := ps.pending[typ]; !waiting {
					ps.pending[typ] = changed
				}
			}
		}
		snap.Resources[cachev3.GetResponseType(typ)] = cachev3.NewResources(ps.versions[typ], items)
	}
	ps.warnings = res.Warnings
	s.mu.Unlock()
	if err := snap.Consistent(); err != nil {
		s.log.Error("refusing inconsistent snapshot", "proxy", ps.proxy.ID, "err", err)
		s.observer.InternalError()
		return
	}
	if err := s.cache.SetSnapshot(context.Background(), ps.proxy.ID, snap); err != nil {
		s.log.Error("set snapshot", "proxy", ps.proxy.ID, "err", err)
		s.observer.InternalError()
	}
}

func toResources[T types.Resource](items []T) []types.Resource {
	out := make([]types.Resource, len(items))
	for i, it := range items {
		out[i] = it
	}
	return out
}

// hashMemo remembers each resource's content hash for one push context.
// Generation shares most resources (the same pointers) between proxies and
// never mutates one once built, so each is marshalled and hashed once per
// push instead of once per proxy. A new push context starts a new memo,
// which also releases the previous push's resources.
type hashMemo struct {
	mu sync.Mutex
	pc *model.PushContext
	m  *sync.Map // types.Resource → [sha256.Size]byte
}

func (hm *hashMemo) forPush(pc *model.PushContext) *sync.Map {
	hm.mu.Lock()
	defer hm.mu.Unlock()
	if hm.pc != pc || hm.m == nil {
		hm.pc, hm.m = pc, &sync.Map{}
	}
	return hm.m
}

// hash is the content hash of items: a digest over each item's digest.
func (hm *hashMemo) hash(pc *model.PushContext, items []types.Resource) string {
	memo := hm.forPush(pc)
	h := sha256.New()
	for _, it := range items {
		var d [sha256.Size]byte
		if v, ok := memo.Load(it); ok {
			d = v.([sha256.Size]byte)
		} else {
			d = hashResource(it)
			memo.Store(it, d)
		}
		h.Write(d[:])
	}
	return hex.EncodeToString(h.Sum(nil))
}

func hashResource(it types.Resource) [sha256.Size]byte {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(it)
	return sha256.Sum256(b)
}

// onStreamRequest registers a proxy on its first request and records ACKs
// and NACKs. It runs before go-control-plane opens the watch, so a new
// proxy's snapshot is in place when the watch is created.
func (s *Server) onStreamRequest(stream int64, req *discoveryv3.DiscoveryRequest) error {
	s.mu.Lock()
	nodeID, known := s.streams[stream]
	var ps *proxyState
	if !known {
		proxy, err := model.ParseNode(req.GetNode())
		if err != nil {
			s.mu.Unlock()
			s.log.Warn("rejecting xDS stream", "err", err)
			return err
		}
		nodeID = proxy.ID
		s.streams[stream] = nodeID
		ps = &proxyState{proxy: proxy, stream: stream, connectedAt: time.Now(),
			hashes: map[string]string{}, versions: map[string]string{}, status: map[string]*TypeStatus{},
			pending: map[string]time.Time{}}
		s.proxies[nodeID] = ps
		pc := s.push
		s.mu.Unlock()
		s.log.Info("proxy connected", "proxy", nodeID)
		if pc != nil {
			// A proxy's first config is not a convergence: no change time.
			s.update(pc, ps, time.Time{})
		}
		s.mu.Lock()
	}
	ps = s.proxies[nodeID]
	if ps != nil && req.GetResponseNonce() != "" {
		st := ps.statusFor(req.GetTypeUrl())
		if req.GetErrorDetail() != nil {
			if st.NackError == "" {
				s.log.Warn("proxy rejected config", "proxy", nodeID, "type", ShortType(req.GetTypeUrl()), "reason", req.GetErrorDetail().GetMessage())
			}
			st.NackError = req.GetErrorDetail().GetMessage()
			st.AckedNonce = req.GetResponseNonce()
			s.observer.Rejected(req.GetTypeUrl())
		} else if req.GetResponseNonce() == st.SentNonce {
			st.NackError = ""
			st.AckedNonce = req.GetResponseNonce()
			st.AckedVersion = req.GetVersionInfo()
			st.AckedAt = time.Now()
		}
	}
	s.mu.Unlock()
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

func (s *Server) onStreamResponse(_ context.Context, stream int64, _ *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := s.proxies[s.streams[stream]]
	if ps == nil {
		return
	}
	st := ps.statusFor(resp.GetTypeUrl())
	st.SentVersion, st.SentNonce, st.SentAt = resp.GetVersionInfo(), resp.GetNonce(), time.Now()
	s.observer.Sent(resp.GetTypeUrl())
	// Only the response carrying the version the push installed counts: an
	// older version may still be in flight.
	if _, ok := ps.pending[resp.GetTypeUrl()]; ok && resp.GetVersionInfo() == ps.versions[resp.GetTypeUrl()] {
		delete(ps.pending, resp.GetTypeUrl())
		if len(ps.pending) == 0 {
			s.observer.Converged(st.SentAt.Sub(ps.pendingSince))
		}
	}
}

func (s *Server) onStreamClosed(stream int64, _ *corev3.Node) {
	s.mu.Lock()
	nodeID := s.streams[stream]
	delete(s.streams, stream)
	ps := s.proxies[nodeID]
	if ps != nil && ps.stream == stream {
		delete(s.proxies, nodeID)
		s.cache.ClearSnapshot(nodeID)
	}
	s.mu.Unlock()
	if nodeID != "" {
		s.log.Info("proxy disconnected", "proxy", nodeID)
	}
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

// nackAwareCache stops go-control-plane from answering a NACK by resending
// the version the proxy just rejected (its cache sees the request's old
// version and responds at once, looping). Like Istio, a rejected version is
// resent only when config changes: the watch is opened as if the proxy had
// the rejected version.
type nackAwareCache struct {
	cachev3.SnapshotCache
	server *Server
}

func (c nackAwareCache) CreateWatch(req *cachev3.Request, sub cachev3.Subscription, value chan cachev3.Response) (func(), error) {
	if req.GetErrorDetail() != nil {
		if v := c.server.rejectedVersion(req.GetNode().GetId(), req.GetTypeUrl(), req.GetResponseNonce()); v != "" {
			req = proto.Clone(req).(*discoveryv3.DiscoveryRequest)
			req.VersionInfo = v
		}
	}
	return c.SnapshotCache.CreateWatch(req, sub, value)
}

// rejectedVersion returns the version sent with nonce, if that is what the
// proxy last received for typeURL.
func (s *Server) rejectedVersion(nodeID, typeURL, nonce string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := s.proxies[nodeID]
	if ps == nil {
		return ""
	}
	if st := ps.status[typeURL]; st != nil && st.SentNonce == nonce {
		return st.SentVersion
	}
	return ""
}
