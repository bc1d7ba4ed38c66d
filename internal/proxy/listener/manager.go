package listener

import (
	"context"
	"errors"
	"fmt"
	"github.com/skein-mesh/skein/internal/proxy/filters"
	"github.com/skein-mesh/skein/internal/proxy/filters/metadataexchange"
	"github.com/skein-mesh/skein/internal/proxy/hcm"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/proto"

	"github.com/skein-mesh/skein/internal/proxy/secrets"
	"github.com/skein-mesh/skein/internal/proxy/stats"
)

// Options configure a Manager.
type Options struct {
	// PodIP is where the outbound capture listener (use_original_dst) and
	// every destination_port chain of an inbound listener are bound.
	PodIP string
	// BindAddress replaces 0.0.0.0 (and ::) in other listeners' addresses
	// (default PodIP). A router proxy binds gateway ports here.
	BindAddress string
	Clusters    Clusters
	Routes      Routes
	// HTTPFilters builds the HTTP filters connection managers configure
	// (besides the router); nil accepts only the router.
	HTTPFilters *filters.Registry
	Stats       *stats.Store
	Logger      *slog.Logger
	// DrainTimeout bounds how long a removed listener's in-flight requests
	// may take (default 5 s).
	DrainTimeout time.Duration
	// Secrets holds the workload certificate and trust bundle for mTLS
	// (nil: no identity, plaintext only).
	Secrets *secrets.Manager
	// NodeID and ServiceName identify the proxy in trace spans (node_id
	// tag, local service name).
	NodeID, ServiceName string
	// PeerExchange announces the proxy in Istio's TCP metadata exchange on
	// chains with istio.metadata_exchange (nil: an empty identity).
	PeerExchange *metadataexchange.Exchanger
}

// Manager owns the bound sockets and the compiled listeners.
type Manager struct {
	opts Options
	deps *deps

	mu      sync.Mutex // serialises Update and Shutdown
	sockets map[string]*socket
	closed  bool
	drains  sync.WaitGroup

	state atomic.Pointer[state]
}

// state is one generation of listeners, read lock-free by the outbound
// forward proxy to find the listener of a target port.
type state struct {
	listeners map[string]*Listener
	// handoff: listeners with bind_to_port false, by "ip:port" and, for
	// 0.0.0.0 listeners, by port.
	byAddr   map[string]*Listener
	byPort   map[uint32]*Listener
	bindings map[string]*socketHandler // bound address → what it serves
}

// outbound finds the listener an outbound request to host:port is handed
// to: the exact IP listener first, then the 0.0.0.0 one, as Envoy's
// original-destination matching does.
func (s *state) outbound(host string, port uint32) *Listener {
	if _, err := netip.ParseAddr(host); err == nil {
		if l := s.byAddr[hostPort(host, port)]; l != nil {
			return l
		}
	}
	return s.byPort[port]
}

// NewManager returns a Manager without listeners.
func NewManager(opts Options) (*Manager, error) {
	if _, err := netip.ParseAddr(opts.PodIP); err != nil {
		return nil, fmt.Errorf("listener: pod IP %q is not an IP address", opts.PodIP)
	}
	if opts.BindAddress == "" {
		opts.BindAddress = opts.PodIP
	}
	if _, err := netip.ParseAddr(opts.BindAddress); err != nil {
		return nil, fmt.Errorf("listener: bind address %q is not an IP address", opts.BindAddress)
	}
	if opts.Clusters == nil || opts.Routes == nil {
		return nil, errors.New("listener: Clusters and Routes are required")
	}
	if opts.Stats == nil {
		opts.Stats = stats.NewStore()
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = 5 * time.Second
	}
	m := &Manager{
		opts: opts,
		deps: &deps{Env: hcm.Env{Clusters: opts.Clusters, Routes: opts.Routes, HTTPFilters: opts.HTTPFilters,
			Stats: opts.Stats, Log: opts.Logger.With("component", "listeners")}},
		sockets: map[string]*socket{},
	}
	if opts.Secrets != nil { // a nil *secrets.Manager must stay a nil interface
		m.deps.certs = opts.Secrets
	}
	m.deps.NodeID, m.deps.ServiceName, m.deps.PodIP = opts.NodeID, opts.ServiceName, opts.PodIP
	m.deps.exchange = opts.PeerExchange
	if m.deps.exchange == nil {
		ex, err := metadataexchange.New(nil, opts.NodeID)
		if err != nil {
			return nil, err
		}
		m.deps.exchange = ex
	}
	m.state.Store(&state{listeners: map[string]*Listener{}, byAddr: map[string]*Listener{}, byPort: map[uint32]*Listener{}, bindings: map[string]*socketHandler{}})
	return m, nil
}

// Update replaces the listeners (LDS). Everything is compiled and every new
// address bound before anything changes; on error nothing changes. Sockets
// whose address stays are kept (no re-bind, no dropped connection) and only
// get their new handler; removed ones drain in the background.
func (m *Manager) Update(listeners map[string]*listenerv3.Listener) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errors.New("listener manager is shut down")
	}
	prev := m.state.Load()
	next := &state{
		listeners: make(map[string]*Listener, len(listeners)),
		byAddr:    map[string]*Listener{},
		byPort:    map[uint32]*Listener{},
		bindings:  map[string]*socketHandler{},
	}
	names := make([]string, 0, len(listeners))
	for name := range listeners {
		names = append(names, name)
	}
	sort.Strings(names)
	owner := map[string]string{} // bound address → listener name, for conflicts
	bind := func(addr string, h *socketHandler) error {
		if other, dup := owner[addr]; dup {
			return fmt.Errorf("listeners %q and %q both need address %s", other, h.listener, addr)
		}
		owner[addr] = h.listener
		next.bindings[addr] = h
		return nil
	}
	for _, name := range names {
		pl := listeners[name]
		l := prev.listeners[name]
		if l == nil || !proto.Equal(l.Config, pl) {
			var err error
			if l, err = compileListener(pl, m.deps); err != nil {
				return fmt.Errorf("listener %q: %v", name, err)
			}
		}
		next.listeners[name] = l
		if err := m.plan(l, next, bind); err != nil {
			return err
		}
	}

	// Bind what is new; undo on failure.
	opened := map[string]*socket{}
	for addr := range next.bindings {
		if _, ok := m.sockets[addr]; ok {
			continue
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			for _, s := range opened {
				s.ln.Close()
			}
			return fmt.Errorf("listener %q: cannot bind %s: %v", next.bindings[addr].listener, addr, err)
		}
		opened[addr] = newSocket(ln, m.opts.Stats, m.deps.Log)
	}

	// Commit.
	m.state.Store(next)
	for addr, h := range next.bindings {
		if s, ok := m.sockets[addr]; ok {
			s.handler.Store(h)
			continue
		}
		s := opened[addr]
		s.handler.Store(h)
		m.sockets[addr] = s
		s.start()
		m.deps.Log.Info("listening", "listener", h.listener, "chain", h.chain, "address", addr)
	}
	for addr, s := range m.sockets {
		if _, keep := next.bindings[addr]; keep {
			continue
		}
		delete(m.sockets, addr)
		m.deps.Log.Info("draining removed listener", "address", addr, "listener", s.handler.Load().listener)
		m.drains.Add(1)
		go func() {
			defer m.drains.Done()
			ctx, cancel := context.WithTimeout(context.Background(), m.opts.DrainTimeout)
			defer cancel()
			s.shutdown(ctx)
		}()
	}
	m.opts.Stats.Gauge("listener_manager.total_listeners_active").Set(int64(len(next.listeners)))
	return nil
}

// plan decides which addresses listener l occupies (local-mode rules).
func (m *Manager) plan(l *Listener, next *state, bind func(string, *socketHandler) error) error {
	if !l.bindToPort {
		// Reached only through the outbound capture listener.
		if unspecified(l.ip) {
			if other := next.byPort[l.port]; other != nil {
				return fmt.Errorf("listeners %q and %q both take outbound port %d", other.Name, l.Name, l.port)
			}
			next.byPort[l.port] = l
		} else {
			next.byAddr[hostPort(l.ip, l.port)] = l
		}
		return nil
	}
	if l.originalDst {
		return bind(hostPort(m.opts.PodIP, l.port), &socketHandler{
			listener: l.Name, chain: "outbound forward proxy",
			http: &outboundProxy{state: &m.state, self: l},
		})
	}
	perPort := false
	bound := map[uint32]bool{}
	for _, fc := range l.chains {
		if fc.destPort == 0 || bound[fc.destPort] {
			continue
		}
		perPort, bound[fc.destPort] = true, true
		if err := bind(hostPort(m.opts.PodIP, fc.destPort), chainHandler(l, fc.destPort, fc.name)); err != nil {
			return err
		}
	}
	if perPort {
		return nil // an inbound capture listener is never bound itself
	}
	ip := l.ip
	if unspecified(ip) {
		ip = m.opts.BindAddress
	}
	name := ""
	if l.fallback != nil {
		name = l.fallback.name
	}
	return bind(hostPort(ip, l.port), chainHandler(l, l.port, name))
}

// chainHandler serves a bound port with the listener's chains, chosen per
// connection.
func chainHandler(l *Listener, port uint32, chain string) *socketHandler {
	return &socketHandler{listener: l.Name, chain: chain, l: l, port: port}
}

func unspecified(ip string) bool {
	a, err := netip.ParseAddr(ip)
	return err == nil && a.IsUnspecified()
}

// Status describes one listener for the admin interface.
type Status struct {
	Name   string
	Config *listenerv3.Listener
	// Bound lists the addresses actually bound for it (empty for
	// bind_to_port=false listeners).
	Bound []string
}

// Listeners returns the current listeners sorted by name.
func (m *Manager) Listeners() []Status {
	st := m.state.Load()
	bound := map[string][]string{}
	m.mu.Lock()
	for addr, s := range m.sockets {
		if h := st.bindings[addr]; h != nil {
			bound[h.listener] = append(bound[h.listener], s.ln.Addr().String())
		}
	}
	m.mu.Unlock()
	out := make([]Status, 0, len(st.listeners))
	for name, l := range st.listeners {
		sort.Strings(bound[name])
		out = append(out, Status{Name: name, Config: l.Config, Bound: bound[name]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Shutdown stops accepting on every socket and waits until requests in
// flight finish or ctx ends, then closes what is left.
func (m *Manager) Shutdown(ctx context.Context) {
	m.mu.Lock()
	m.closed = true
	sockets := m.sockets
	m.sockets = map[string]*socket{}
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range sockets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.shutdown(ctx)
		}()
	}
	wg.Wait()
	m.drains.Wait()
}
