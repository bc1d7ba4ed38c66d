// Package proxy wires Skein's Go data plane (`skein proxy`): an ADS client
// feeding a cluster manager, RDS route tables and a listener manager, plus
// the admin, health and Prometheus endpoints, all bound on the pod IP as
// local mode requires. It consumes Envoy protos only.
package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/skein-mesh/skein/internal/proxy/admin"
	"github.com/skein-mesh/skein/internal/proxy/cluster"
	"github.com/skein-mesh/skein/internal/proxy/filters/istiostats"
	"github.com/skein-mesh/skein/internal/proxy/filters/metadataexchange"
	"github.com/skein-mesh/skein/internal/proxy/listener"
	"github.com/skein-mesh/skein/internal/proxy/secrets"
	"github.com/skein-mesh/skein/internal/proxy/stats"
	"github.com/skein-mesh/skein/internal/proxy/tracing"
	"github.com/skein-mesh/skein/internal/proxy/xdsclient"
)

// Options configure a proxy. Zero ports mean "any free port" (tests).
type Options struct {
	Mode             Mode
	DiscoveryAddress string // host:port of the control plane's ADS
	// DiscoveryRootCert is the mesh root (PEM file) the control plane's
	// TLS certificate is verified with; empty dials plaintext (15010).
	DiscoveryRootCert string
	PodIP             string // where the proxy listens (and what EDS publishes)
	AppIP             string // sidecar: where the app listens (APP_IP metadata)
	BindAddress       string // replaces 0.0.0.0 in listener addresses (default PodIP)
	PodName           string
	Namespace         string
	ServiceAccount    string
	WorkloadName      string // default: derived from PodName
	Labels            map[string]string
	ClusterID         string
	Domain            string // default <namespace>.svc.cluster.local
	AdminPort         int    // 15000
	HealthPort        int    // 15021
	PrometheusPort    int    // 15090
	// MergedMetricsPort serves Istio's merged metrics (the agent's 15020:
	// the proxy's and AppMetrics' in one scrape); negative: not served.
	MergedMetricsPort int
	// AppMetrics is the app's own metrics endpoint (at AppIP, else the pod
	// IP) that the merged endpoint appends; nil: none.
	AppMetrics *admin.AppScrape
	// DrainTimeout bounds how long in-flight requests may take at shutdown
	// and when a listener is removed (default 5 s).
	DrainTimeout time.Duration
	// InitialFetchTimeout: the proxy turns ready this long after its first
	// clusters and listeners even if referenced endpoints or routes never
	// arrive, like Envoy's initial_fetch_timeout (default 15 s).
	InitialFetchTimeout time.Duration
	Version             string
	Logger              *slog.Logger
	// Identity: with a CAAddress or a TokenFile the proxy gets a workload
	// certificate from the mesh CA and keeps it fresh (see package secrets).
	Identity IdentityOptions
}

// Proxy is a running data plane.
type Proxy struct {
	opts      Options
	log       *slog.Logger
	stats     *stats.Store
	node      *corev3.Node
	started   time.Time
	xds       *xdsclient.Client
	dataplane *dataplane
	secrets   *secrets.Manager
	servers   []*http.Server
	addrs     map[string]string // admin, health, prometheus → bound address

	ready    atomic.Bool
	draining atomic.Bool
	quit     chan struct{}
	quitOnce sync.Once
	done     chan struct{}
}

// Start validates opts, binds the admin, health and Prometheus ports and
// starts the xDS client. The proxy runs until ctx ends or POST
// /quitquitquit, then drains; Wait returns after that.
func Start(ctx context.Context, opts Options) (*Proxy, error) {
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = 5 * time.Second
	}
	if opts.InitialFetchTimeout <= 0 {
		opts.InitialFetchTimeout = 15 * time.Second
	}
	node := opts.Node()
	log := opts.Logger.With("proxy", node.GetId())
	p := &Proxy{
		opts:    opts,
		log:     log,
		stats:   stats.NewStore(),
		node:    node,
		started: time.Now(),
		addrs:   map[string]string{},
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	dial, err := controlPlaneDial(opts.DiscoveryAddress, opts.DiscoveryRootCert)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	if p.secrets, err = opts.Identity.manager(opts, dial, p.stats, log); err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	self := istiostats.NodeMetadata(istioNode(&opts))
	exchange, err := metadataexchange.New(self, opts.NodeID())
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	clusters := cluster.NewManager(cluster.Options{Stats: p.stats, Logger: log, Secrets: p.secrets, SourceAddress: opts.PodIP, PeerExchange: exchange})
	httpFilters := httpFilters(&opts, p.stats)
	p.dataplane = &dataplane{clusters: clusters, filters: httpFilters}
	listeners, err := listener.NewManager(listener.Options{
		PodIP:        opts.PodIP,
		BindAddress:  opts.BindAddress,
		Clusters:     clusters,
		Routes:       p.dataplane,
		HTTPFilters:  httpFilters,
		Stats:        p.stats,
		Logger:       log,
		DrainTimeout: opts.DrainTimeout,
		Secrets:      p.secrets,
		NodeID:       opts.NodeID(),
		ServiceName:  tracing.ServiceName(opts.Labels, opts.WorkloadName, opts.Namespace),
		PeerExchange: exchange,
	})
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	p.dataplane.listeners = listeners
	p.xds, err = xdsclient.New(xdsclient.Options{
		Address:     opts.DiscoveryAddress,
		DialOptions: dial,
		TokenFile:   opts.Identity.TokenFile,
		Node:        node,
		Consumer:    p.dataplane,
		Logger:      log,
		Stats:       p.stats,
	})
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}

	adminHandler := admin.Handler(admin.Options{
		Source: p, Stats: p.stats, Version: opts.Version, Started: p.started, Quit: p.Quit, Logger: log,
		Mutations: admin.MutationPolicy{TokenFile: opts.Identity.TokenFile, TrustedSource: admin.PodLocal(opts.PodIP)},
	})
	type portServer struct {
		name    string
		port    int
		handler http.Handler
	}
	servers := []portServer{
		{"admin", opts.AdminPort, adminHandler},
		{"health", opts.HealthPort, admin.HealthHandler(p)},
		{"prometheus", opts.PrometheusPort, admin.PrometheusHandler(p.stats)},
	}
	if opts.MergedMetricsPort >= 0 {
		appHost := opts.AppIP
		if appHost == "" {
			appHost = opts.PodIP
		}
		servers = append(servers, portServer{"merged-metrics", opts.MergedMetricsPort, admin.MergedPrometheusHandler(p.stats, opts.AppMetrics, appHost)})
	}
	for _, s := range servers {
		addr := net.JoinHostPort(opts.PodIP, strconv.Itoa(s.port))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			p.closeServers()
			return nil, fmt.Errorf("proxy: %s port: %w", s.name, err)
		}
		srv := &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second}
		p.servers = append(p.servers, srv)
		p.addrs[s.name] = ln.Addr().String()
		go srv.Serve(ln)
	}
	p.stats.Gauge("server.state").Set(2) // PRE_INITIALIZING, as Envoy numbers it

	xdsCtx, stopXDS := context.WithCancel(context.Background())
	p.startSecrets(xdsCtx)
	xdsDone := make(chan struct{})
	go func() {
		defer close(xdsDone)
		p.xds.Run(xdsCtx)
	}()
	log.Info("proxy started", "mode", opts.Mode, "discovery", opts.DiscoveryAddress,
		"admin", p.addrs["admin"], "bindAddress", opts.BindAddress)

	go func() {
		defer close(p.done)
		select {
		case <-ctx.Done():
		case <-p.quit:
		}
		p.shutdown(stopXDS, xdsDone)
	}()
	return p, nil
}

// shutdown drains: stop accepting, let in-flight requests finish (up to
// the drain timeout), then stop the xDS client and the admin servers.
func (p *Proxy) shutdown(stopXDS context.CancelFunc, xdsDone <-chan struct{}) {
	p.log.Info("draining", "timeout", p.opts.DrainTimeout)
	p.draining.Store(true)
	p.stats.Gauge("server.state").Set(1) // DRAINING
	ctx, cancel := context.WithTimeout(context.Background(), p.opts.DrainTimeout)
	defer cancel()
	p.dataplane.listeners.Shutdown(ctx)
	stopXDS()
	<-xdsDone
	if p.secrets != nil {
		p.secrets.Close()
	}
	p.dataplane.clusters.Close()
	p.closeServers()
	p.log.Info("proxy stopped")
}

func (p *Proxy) closeServers() {
	for _, s := range p.servers {
		s.Close()
	}
}

// Quit asks the proxy to drain and stop (POST /quitquitquit).
func (p *Proxy) Quit() { p.quitOnce.Do(func() { close(p.quit) }) }

// Done is closed when the proxy has stopped.
func (p *Proxy) Done() <-chan struct{} { return p.done }

// Wait blocks until the proxy has stopped.
func (p *Proxy) Wait() { <-p.done }

// AdminAddr is the bound admin address (host:port).
func (p *Proxy) AdminAddr() string { return p.addrs["admin"] }

// HealthAddr is the bound health address (host:port).
func (p *Proxy) HealthAddr() string { return p.addrs["health"] }

// PrometheusAddr is the bound Prometheus stats address (host:port).
func (p *Proxy) PrometheusAddr() string { return p.addrs["prometheus"] }

// MergedMetricsAddr is the bound merged metrics address (host:port); ""
// when not served.
func (p *Proxy) MergedMetricsAddr() string { return p.addrs["merged-metrics"] }

// Stats is the proxy's metrics registry.
func (p *Proxy) Stats() *stats.Store { return p.stats }

// State is the server state (admin.Source): DRAINING when shutting down,
// LIVE when ready, else PRE_INITIALIZING.
func (p *Proxy) State() adminv3.ServerInfo_State {
	switch {
	case p.draining.Load():
		return adminv3.ServerInfo_DRAINING
	case p.Ready():
		return adminv3.ServerInfo_LIVE
	}
	return adminv3.ServerInfo_PRE_INITIALIZING
}

// Ready reports whether the initial configuration is in force: clusters and
// listeners accepted and every endpoint and route configuration they need
// received, or the initial fetch timeout passed since the first of them.
// Once ready, a proxy stays ready.
func (p *Proxy) Ready() bool {
	if p.ready.Load() {
		return true
	}
	snap := p.xds.Snapshot()
	cds, okC := snap.Updated[xdsclient.ClusterType]
	lds, okL := snap.Updated[xdsclient.ListenerType]
	if !okC || !okL {
		return false
	}
	if !p.identityReady() {
		return false
	}
	if p.xds.Synced() || time.Since(later(cds, lds)) > p.opts.InitialFetchTimeout {
		if p.ready.CompareAndSwap(false, true) {
			p.stats.Gauge("server.state").Set(0) // LIVE
			p.log.Info("proxy ready")
		}
		return true
	}
	return false
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Config is the accepted xDS configuration (admin.Source).
func (p *Proxy) Config() *xdsclient.Snapshot { return p.xds.Snapshot() }

// Clusters lists the clusters (admin.Source).
func (p *Proxy) Clusters() []*cluster.Cluster { return p.dataplane.clusters.All() }

// Listeners lists the listeners (admin.Source).
func (p *Proxy) Listeners() []listener.Status { return p.dataplane.listeners.Listeners() }

// Bootstrap describes the proxy's static setup the way Envoy's bootstrap
// would: node, ADS over the xds-grpc cluster, admin address (admin.Source).
func (p *Proxy) Bootstrap() *bootstrapv3.Bootstrap {
	ads := &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
	host, portText, _ := net.SplitHostPort(p.opts.DiscoveryAddress)
	port, _ := strconv.Atoi(portText)
	_, adminPortText, _ := net.SplitHostPort(p.AdminAddr())
	adminPort, _ := strconv.Atoi(adminPortText)
	xdsType := clusterv3.Cluster_STRICT_DNS
	if _, err := netip.ParseAddr(host); err == nil {
		xdsType = clusterv3.Cluster_STATIC
	}
	return &bootstrapv3.Bootstrap{
		Node: p.node,
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{Clusters: []*clusterv3.Cluster{{
			Name:                 "xds-grpc",
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: xdsType},
			ConnectTimeout:       durationpb.New(time.Second),
			LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: "xds-grpc", Endpoints: []*endpointv3.LocalityLbEndpoints{{
				LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
					Address: socketAddress(host, uint32(port)),
				}}}},
			}}},
		}}},
		DynamicResources: &bootstrapv3.Bootstrap_DynamicResources{
			AdsConfig: &corev3.ApiConfigSource{
				ApiType:             corev3.ApiConfigSource_GRPC,
				TransportApiVersion: corev3.ApiVersion_V3,
				GrpcServices: []*corev3.GrpcService{{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
					EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: "xds-grpc"},
				}}},
			},
			CdsConfig: ads,
			LdsConfig: ads,
		},
		Admin: &bootstrapv3.Admin{Address: socketAddress(p.opts.PodIP, uint32(adminPort))},
	}
}

func socketAddress(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

var _ admin.Source = (*Proxy)(nil)
