package cluster

import (
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sort"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/proto"

	"github.com/skein-mesh/skein/internal/proxy/filters/metadataexchange"
	"github.com/skein-mesh/skein/internal/proxy/secrets"
	"github.com/skein-mesh/skein/internal/proxy/stats"
)

// Options configure a Manager.
type Options struct {
	Stats  *stats.Store
	Logger *slog.Logger
	// Resolver resolves STRICT_DNS and LOGICAL_DNS hosts (default net.DefaultResolver).
	Resolver *net.Resolver
	// Now is the clock outlier detection uses (default time.Now).
	Now func() time.Time
	// DrainTime is how long after a cluster is removed or replaced its pooled
	// connections are closed once more, after in-flight requests ended
	// (default 30 s).
	DrainTime time.Duration
	// Secrets holds the workload certificate and trust bundle for mTLS
	// (nil: no identity, plaintext only).
	Secrets *secrets.Manager
	// SourceAddress is the IP upstream connections start from (a sidecar's
	// pod IP, so servers see the client pod as the peer); empty: any.
	SourceAddress string
	// PeerExchange announces the proxy in Istio's TCP metadata exchange on
	// clusters with istio.metadata_exchange (nil: an empty identity).
	PeerExchange *metadataexchange.Exchanger
}

// Manager holds the current clusters. Lookups are lock-free; updates are
// validated completely before anything is swapped in.
type Manager struct {
	b       builder
	log     *slog.Logger
	drain   time.Duration
	current atomic.Pointer[map[string]*Cluster]
	active  *stats.Gauge
}

// NewManager returns a Manager without clusters.
func NewManager(opts Options) *Manager {
	if opts.Stats == nil {
		opts.Stats = stats.NewStore()
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Resolver == nil {
		opts.Resolver = net.DefaultResolver
	}
	if opts.DrainTime <= 0 {
		opts.DrainTime = 30 * time.Second
	}
	if opts.PeerExchange == nil {
		// An empty identity always encodes.
		opts.PeerExchange, _ = metadataexchange.New(nil, "")
	}
	m := &Manager{
		b:      builder{stats: opts.Stats, resolver: opts.Resolver, now: opts.Now, exchange: opts.PeerExchange},
		log:    opts.Logger.With("component", "clusters"),
		drain:  opts.DrainTime,
		active: opts.Stats.Gauge("cluster_manager.active_clusters"),
	}
	if opts.Secrets != nil { // a nil *secrets.Manager must stay a nil interface
		m.b.certs = opts.Secrets
	}
	if a, err := netip.ParseAddr(opts.SourceAddress); err == nil && !a.IsUnspecified() {
		m.b.source = a
	}
	m.current.Store(&map[string]*Cluster{})
	return m
}

// Get returns the cluster called name.
func (m *Manager) Get(name string) (*Cluster, bool) {
	c, ok := (*m.current.Load())[name]
	return c, ok
}

// All returns the clusters sorted by name.
func (m *Manager) All() []*Cluster {
	cur := *m.current.Load()
	out := make([]*Cluster, 0, len(cur))
	for _, c := range cur {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// Update replaces the set of clusters (CDS). Clusters whose config did not
// change are kept as they are, with their connection pools; EDS clusters get
// their endpoints from endpoints (by service name). On error nothing changes.
func (m *Manager) Update(clusters map[string]*clusterv3.Cluster, endpoints map[string]*endpointv3.ClusterLoadAssignment) error {
	prev := *m.current.Load()
	next := make(map[string]*Cluster, len(clusters))
	for _, name := range slices.Sorted(maps.Keys(clusters)) {
		pc := clusters[name]
		if old, ok := prev[name]; ok && proto.Equal(old.config, pc) {
			next[name] = old
			continue
		}
		c, err := m.b.build(pc)
		if err != nil {
			return fmt.Errorf("cluster %q: %v", name, err)
		}
		next[name] = c
	}
	assign, err := prepareAssignments(next, endpoints)
	if err != nil {
		return err
	}
	for c, hosts := range assign {
		c.installHosts(hosts)
	}
	m.current.Store(&next)
	m.active.Set(int64(len(next)))
	for name, c := range next {
		if prev[name] != c {
			c.start()
		}
	}
	for name, old := range prev {
		if next[name] != old {
			m.retire(old)
		}
	}
	return nil
}

// UpdateEndpoints installs EDS load assignments for the current clusters.
// Assignments for unknown clusters are ignored; clusters whose assignment is
// absent keep their endpoints. On error nothing changes.
func (m *Manager) UpdateEndpoints(endpoints map[string]*endpointv3.ClusterLoadAssignment) error {
	assign, err := prepareAssignments(*m.current.Load(), endpoints)
	if err != nil {
		return err
	}
	for c, hosts := range assign {
		c.installHosts(hosts)
	}
	return nil
}

func prepareAssignments(clusters map[string]*Cluster, endpoints map[string]*endpointv3.ClusterLoadAssignment) (map[*Cluster][]hostPort, error) {
	assign := map[*Cluster][]hostPort{}
	for _, name := range slices.Sorted(maps.Keys(clusters)) {
		c := clusters[name]
		if c.kind != clusterv3.Cluster_EDS {
			continue
		}
		cla, ok := endpoints[c.edsName]
		if !ok {
			continue
		}
		hosts, err := parseAssignment(cla, true)
		if err != nil {
			return nil, fmt.Errorf("cluster load assignment %q: %v", c.edsName, err)
		}
		assign[c] = hosts
	}
	return assign, nil
}

func (c *Cluster) installHosts(hosts []hostPort) {
	set := newEndpointSet(reuse(endpointsOf(hosts), c.endpoints.Load()))
	if c.sockets.assign(hosts) {
		c.closeIdle() // an address switched between TLS and plaintext
	}
	if c.outlier != nil {
		c.outlier.sync(set.all)
	}
	c.endpoints.Store(set)
}

// retire closes a dropped cluster's idle connections now and again after
// the drain time, when requests that were in flight have finished.
func (m *Manager) retire(c *Cluster) {
	c.stop()
	c.closeIdle()
	time.AfterFunc(m.drain, c.closeIdle)
}

// Close drops every pooled connection (at shutdown).
func (m *Manager) Close() {
	for _, c := range *m.current.Load() {
		c.stop()
		c.closeIdle()
	}
}
