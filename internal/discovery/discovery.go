// Package discovery is the control plane process (`skein discovery`): it
// wires the durable config store, the registry, translation and the ADS
// server, and serves the config API and debug endpoints over HTTP.
package discovery

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"k8s.io/client-go/dynamic"

	"github.com/skein-mesh/skein/internal/configapi"
	"github.com/skein-mesh/skein/internal/configstore"
	"github.com/skein-mesh/skein/internal/kube"
	"github.com/skein-mesh/skein/internal/model"
	"github.com/skein-mesh/skein/internal/registry"
	"github.com/skein-mesh/skein/internal/telemetry/tracestore"
	"github.com/skein-mesh/skein/internal/xds"
	"github.com/skein-mesh/skein/internal/xdsserver"
)

// Options configure the control plane.
type Options struct {
	StoreDir string // durable store directory; empty keeps config in memory
	GRPCAddr string // xDS and CA, e.g. 127.0.0.1:15012 (TLS)
	// PlaintextXDS serves GRPCAddr without TLS (Istio's 15010): streams
	// still authenticate, but no gateway key material is sent.
	PlaintextXDS bool
	// XDSHosts are extra names or IPs for the xDS serving certificate.
	XDSHosts []string
	HTTPAddr string // config API and debug, e.g. 127.0.0.1:15014
	// HTTPHosts are host names (besides IP literals, localhost and
	// Kubernetes service names) callers may send in the Host header.
	HTTPHosts     []string
	Domain        string // cluster DNS domain
	RootNamespace string
	// Debounce is how long config must be quiet before a push; pushes are
	// never delayed more than MaxDebounce after the first change. Zero
	// takes Istio's PILOT_DEBOUNCE_AFTER and PILOT_DEBOUNCE_MAX from the
	// environment, else Istio's defaults (100ms, 10s).
	Debounce    time.Duration
	MaxDebounce time.Duration
	CA          CAOptions
	Injection   InjectionOptions
	// Kube turns on Kubernetes mode: config is mirrored from the cluster
	// into an in-memory store (StoreDir then only places the CA), the
	// config API is read-only and the CA checks service-account tokens
	// with TokenReviews.
	Kube dynamic.Interface
}

func (o *Options) defaults() {
	if o.Domain == "" {
		o.Domain = "cluster.local"
	}
	if o.RootNamespace == "" {
		o.RootNamespace = "istio-system"
	}
}

// debounce resolves the debounce settings, zero ones from Istio's
// environment variables.
func (o *Options) debounce(getenv func(string) string) error {
	if o.Debounce != 0 && o.MaxDebounce != 0 {
		return nil
	}
	env, err := xdsserver.DebounceFromEnv(getenv)
	if err != nil {
		return err
	}
	if o.Debounce == 0 {
		o.Debounce = env.After
	}
	if o.MaxDebounce == 0 {
		o.MaxDebounce = env.Max
	}
	return nil
}

// Server is a running control plane.
type Server struct {
	opts   Options
	log    *slog.Logger
	store  *configstore.Store
	xds    *xdsserver.Server
	pushes atomic.Int64
	// lastPush is the latest push context, which the next one replaces.
	lastPush atomic.Pointer[model.PushContext]
	grpcLis  net.Listener
	httpLis  net.Listener

	// injectLis and injectCert serve the sidecar injector webhook (nil
	// when Options.Injection.Addr is empty).
	injectLis  net.Listener
	injectCert *servingCert

	identity *identity
	metrics  *metrics
	mirror   *kube.Mirror // Kubernetes mode only
	// traces is the built-in trace collector (Zipkin and OTLP ingest,
	// Zipkin query API) on the HTTP port, the default tracing backend.
	traces *tracestore.Store
}

// New opens the store and binds the listeners (so callers know the ports
// before Run).
func New(opts Options, log *slog.Logger) (*Server, error) {
	opts.defaults()
	if err := opts.debounce(os.Getenv); err != nil {
		return nil, err
	}
	var store *configstore.Store
	var err error
	if opts.StoreDir == "" || opts.Kube != nil {
		store = configstore.OpenMemory()
	} else if store, err = configstore.Open(opts.StoreDir); err != nil {
		return nil, fmt.Errorf("open config store: %w", err)
	}
	if rec := store.Recovered(); rec != nil {
		log.Error("config store was corrupt; serving the last good revision", "problem", rec.String())
	}
	s := &Server{opts: opts, log: log, store: store, xds: xdsserver.New(log, xds.Generate), traces: tracestore.New(0)}
	s.metrics = newMetrics(s.xds)
	s.xds.SetObserver(s.metrics)
	if opts.Kube != nil {
		s.newMirror()
	}
	if err := s.setupCA(); err != nil {
		return nil, err
	}
	if s.grpcLis, err = net.Listen("tcp", opts.GRPCAddr); err != nil {
		return nil, fmt.Errorf("xDS listener: %w", err)
	}
	if s.httpLis, err = net.Listen("tcp", opts.HTTPAddr); err != nil {
		s.grpcLis.Close()
		return nil, fmt.Errorf("HTTP listener: %w", err)
	}
	if err := s.listenInjection(); err != nil {
		s.grpcLis.Close()
		s.httpLis.Close()
		return nil, err
	}
	return s, nil
}

// GRPCAddr and HTTPAddr report the bound addresses.
func (s *Server) GRPCAddr() string { return s.grpcLis.Addr().String() }
func (s *Server) HTTPAddr() string { return s.httpLis.Addr().String() }

// Run serves until ctx is cancelled.
func (s *Server) Run(ctx context.Context) error {
	s.pushNow()
	s.runMirror(ctx)
	changes, unsubscribe := s.store.Subscribe()
	defer unsubscribe()
	go s.debouncePushes(ctx, changes)

	creds, err := s.xdsCredentials()
	if err != nil {
		return err
	}
	grpcOpts := []grpc.ServerOption{
		grpc.MaxConcurrentStreams(100000),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		s.xds.GRPCServerOption(),
	}
	if creds != nil {
		grpcOpts = append(grpcOpts, creds)
	}
	g := grpc.NewServer(grpcOpts...)
	s.xds.SetAuthenticator(s.streamAuthenticator())
	s.xds.Register(g)
	s.registerCA(g)
	hs := &http.Server{Handler: s.httpHandler(), ReadHeaderTimeout: 10 * time.Second}

	errc := make(chan error, 3)
	go func() { errc <- g.Serve(s.grpcLis) }()
	go func() { errc <- hs.Serve(s.httpLis) }()
	stopInjection := s.serveInjection(errc)
	s.log.Info("control plane serving", "xds", s.GRPCAddr(), "http", s.HTTPAddr(), "store", s.opts.StoreDir)

	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = hs.Shutdown(shutdownCtx)
	stopInjection(shutdownCtx)
	stopped := make(chan struct{})
	go func() { g.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-shutdownCtx.Done():
		g.Stop()
	}
	if errors.Is(err, http.ErrServerClosed) || errors.Is(err, grpc.ErrServerStopped) {
		err = nil
	}
	return err
}

// debouncePushes coalesces bursts of store changes into one push
// (xdsserver.Debounce).
func (s *Server) debouncePushes(ctx context.Context, changes <-chan struct{}) {
	xdsserver.Debounce{After: s.opts.Debounce, Max: s.opts.MaxDebounce}.Run(ctx, changes, s.pushAt)
}

// pushNow builds a new push context from the current store snapshot and
// sends it to every proxy.
func (s *Server) pushNow() { s.pushAt(time.Now()) }

// pushAt pushes for a config change made at changed (the first of a
// debounced burst), which proxy convergence time is measured from.
func (s *Server) pushAt(changed time.Time) {
	start := time.Now()
	snap := s.store.Snapshot()
	reg := registry.Build(snap, s.opts.Domain)
	version := strconv.FormatInt(snap.Revision(), 10)
	pc := model.NewPushContext(version, s.translationConfig(snap), reg, s.opts.Domain, s.opts.RootNamespace)
	pc.TraceCollector = dialable(s.HTTPAddr())
	// Linked to the push it replaces, so kinds that did not change keep
	// their generated resources (a VirtualService change rebuilds routes,
	// not clusters and endpoints).
	pc.SetPrevious(s.lastPush.Swap(pc))
	s.xds.PushAt(pc, changed)
	pc.ForgetPrevious() // every connected proxy is built: free the old push
	s.pushes.Add(1)
	s.log.Debug("pushed config", "revision", version, "took", time.Since(start))
}

// httpHandler serves the config API, debug and telemetry endpoints behind
// the Guard (docs/security.md): writes, Secrets and /debug/* need the admin
// credential; /metrics, /ready, /debug/prometheus_sd and the trace API stay
// open, as istiod's /metrics and its Zipkin collector are.
func (s *Server) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/api/", s.metrics.countConfigAPI(s.configAPI()))
	s.handleCA(mux)
	mux.HandleFunc("GET /ready", s.ready)
	admin := func(pattern string, h http.HandlerFunc) { mux.Handle(pattern, configapi.RequireAdmin(h)) }
	admin("GET /debug/syncz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, s.xds.Status())
	})
	admin("GET /debug/config_dump", s.configDump)
	s.traces.Register(mux)
	mux.Handle("GET /metrics", s.metrics.handler())
	mux.HandleFunc("GET /debug/prometheus_sd", s.prometheusSD)
	// Go's profiler, for finding where the control plane spends CPU and
	// memory at scale (Istio's istiod serves the same on 15014).
	admin("GET /debug/pprof/", pprof.Index)
	admin("GET /debug/pprof/cmdline", pprof.Cmdline)
	admin("GET /debug/pprof/profile", pprof.Profile)
	admin("GET /debug/pprof/symbol", pprof.Symbol)
	admin("GET /debug/pprof/trace", pprof.Trace)
	return s.guard().Handler(mux)
}

// guard authenticates HTTP callers: the admin credential, or a workload
// token (a pod's, as its proxy holds it).
func (s *Server) guard() *configapi.Guard {
	return &configapi.Guard{
		AdminToken: s.identity.adminToken,
		Workload: func(token string) bool {
			_, err := s.identity.tokens.Verify(token)
			return err == nil
		},
		Hosts:            s.opts.HTTPHosts,
		LooseContentType: isTraceIngest,
	}
}

// isTraceIngest: proxies post spans as Zipkin JSON or OTLP protobuf, with
// their own content types.
func isTraceIngest(path string) bool { return path == "/api/v2/spans" || path == "/v1/traces" }

// configDump answers what the control plane would send one proxy, as JSON
// with each resource in protojson form.
func (s *Server) configDump(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("proxyID")
	res, ok := s.xds.Resources(id)
	if !ok {
		http.Error(w, fmt.Sprintf("proxy %q is not connected", id), http.StatusNotFound)
		return
	}
	out := map[string][]json.RawMessage{}
	add := func(kind string, m proto.Message) {
		b, _ := protojson.Marshal(m)
		out[kind] = append(out[kind], redactKeys(b))
	}
	for _, c := range res.Clusters {
		add("clusters", c)
	}
	for _, l := range res.Listeners {
		add("listeners", l)
	}
	for _, rc := range res.Routes {
		add("routes", rc)
	}
	for _, e := range res.Endpoints {
		add("endpoints", e)
	}
	writeJSON(w, map[string]any{"resources": out, "warnings": res.Warnings})
}

// redactKeys replaces every private key in a protojson resource (a
// gateway's credentialName key inlined in its listener, a DestinationRule's
// client key) as Envoy's config_dump does: "[redacted]".
func redactKeys(b []byte) []byte {
	if !bytes.Contains(b, []byte(`"privateKey"`)) {
		return b
	}
	var v any
	if json.Unmarshal(b, &v) != nil {
		return b
	}
	var walk func(any)
	walk = func(v any) {
		switch t := v.(type) {
		case map[string]any:
			for k, c := range t {
				if k == "privateKey" {
					t[k] = map[string]any{"inlineString": "[redacted]"}
					continue
				}
				walk(c)
			}
		case []any:
			for _, c := range t {
				walk(c)
			}
		}
	}
	walk(v)
	out, err := json.Marshal(v)
	if err != nil {
		return b
	}
	return out
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// dialable turns a listen address into one proxies can connect to: an
// unspecified host (":15014", "0.0.0.0:15014") becomes loopback.
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
