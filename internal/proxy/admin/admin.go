// Package admin serves the proxy's Envoy-compatible admin interface
// (/config_dump, /ready, /stats, /clusters, /listeners, /server_info,
// /quitquitquit), the health endpoint (/healthz/ready) and Prometheus stats,
// using Envoy's own admin protos so tools written for Envoy can read them.
package admin

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"regexp"
	"sort"
	"strings"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/skein-mesh/skein/internal/proxy/cluster"
	"github.com/skein-mesh/skein/internal/proxy/listener"
	"github.com/skein-mesh/skein/internal/proxy/stats"
	"github.com/skein-mesh/skein/internal/proxy/xdsclient"
)

// Source is the running proxy as the admin interface sees it.
type Source interface {
	// Bootstrap is the proxy's effective bootstrap (node, ADS, admin).
	Bootstrap() *bootstrapv3.Bootstrap
	// Config is the accepted xDS configuration.
	Config() *xdsclient.Snapshot
	// State is Envoy's server state: PRE_INITIALIZING until the initial
	// configuration is in force, then LIVE, DRAINING once shutting down.
	State() adminv3.ServerInfo_State
	Clusters() []*cluster.Cluster
	Listeners() []listener.Status
}

// Options configure the admin handlers.
type Options struct {
	Source  Source
	Stats   *stats.Store
	Version string
	Started time.Time
	// Quit is called by POST /quitquitquit to stop the proxy.
	Quit   func()
	Logger *slog.Logger
	// Mutations limits who may call /quitquitquit (and any other endpoint
	// that changes the proxy); its zero value refuses everyone.
	Mutations MutationPolicy
}

// Handler returns the admin mux (port 15000).
func Handler(opts Options) http.Handler {
	a := &admin{opts: opts}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", a.help)
	mux.HandleFunc("GET /config_dump", a.configDump)
	mux.HandleFunc("GET /ready", a.ready)
	mux.HandleFunc("GET /stats", a.stats)
	mux.HandleFunc("GET /stats/prometheus", a.prometheus)
	mux.HandleFunc("GET /clusters", a.clusters)
	mux.HandleFunc("GET /listeners", a.listeners)
	mux.HandleFunc("GET /server_info", a.serverInfo)
	mux.HandleFunc("POST /quitquitquit", a.mutating(a.quit))
	mux.HandleFunc("GET /quitquitquit", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "This endpoint requires POST", http.StatusMethodNotAllowed)
	})
	// Go's profiler, for finding where the data plane spends CPU and memory
	// (Envoy's admin has /cpuprofiler and /heapprofiler for the same job).
	// The admin port is bound to the pod IP only.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return mux
}

// HealthHandler serves /healthz/ready (port 15021), as Istio's agent does.
func HealthHandler(src Source) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz/ready", func(w http.ResponseWriter, r *http.Request) {
		if src.State() != adminv3.ServerInfo_LIVE {
			http.Error(w, "proxy is not ready: initial configuration not received", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	return mux
}

// PrometheusHandler serves /stats/prometheus alone (port 15090).
func PrometheusHandler(st *stats.Store) http.Handler {
	a := &admin{opts: Options{Stats: st}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats/prometheus", a.prometheus)
	return mux
}

type admin struct{ opts Options }

func (a *admin) help(w http.ResponseWriter, r *http.Request) {
	io.WriteString(w, `admin commands are:
  /clusters: upstream cluster status (?format=json)
  /config_dump: current configuration (?include_eds)
  /listeners: listeners and their addresses (?format=json)
  /quitquitquit: exit the server (POST)
  /ready: print server state, 200 when LIVE
  /server_info: server version, state and node
  /stats: counters and gauges (?filter=REGEX, ?format=json)
  /stats/prometheus: stats in Prometheus text format
`)
}

func (a *admin) ready(w http.ResponseWriter, r *http.Request) {
	state := a.opts.Source.State()
	if state != adminv3.ServerInfo_LIVE {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	io.WriteString(w, state.String()+"\n")
}

func (a *admin) quit(w http.ResponseWriter, r *http.Request) {
	io.WriteString(w, "OK\n")
	if a.opts.Quit != nil {
		go a.opts.Quit()
	}
}

func (a *admin) serverInfo(w http.ResponseWriter, r *http.Request) {
	state := a.opts.Source.State()
	uptime := durationpb.New(time.Since(a.opts.Started).Truncate(time.Second))
	writeProto(w, &adminv3.ServerInfo{
		Version:            a.opts.Version,
		State:              state,
		UptimeCurrentEpoch: uptime,
		UptimeAllEpochs:    uptime,
		Node:               a.opts.Source.Bootstrap().GetNode(),
	})
}

var jsonOptions = protojson.MarshalOptions{Multiline: true, Indent: "  "}

func writeProto(w http.ResponseWriter, m proto.Message) {
	b, err := jsonOptions.Marshal(m)
	if err != nil {
		http.Error(w, "cannot encode: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(b, '\n'))
}

func (a *admin) stats(w http.ResponseWriter, r *http.Request) {
	var filter *regexp.Regexp
	if f := r.URL.Query().Get("filter"); f != "" {
		var err error
		if filter, err = regexp.Compile(f); err != nil {
			http.Error(w, "invalid filter regex: "+err.Error(), http.StatusBadRequest)
			return
		}
	}
	usedOnly := r.URL.Query().Has("usedonly")
	var out []stats.Stat
	for _, s := range a.opts.Stats.Snapshot() {
		if (filter == nil || filter.MatchString(s.Name)) && (!usedOnly || s.Value != 0) {
			out = append(out, s)
		}
	}
	if r.URL.Query().Get("format") == "json" {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"stats":[`)
		for i, s := range out {
			if i > 0 {
				io.WriteString(w, ",")
			}
			fmt.Fprintf(w, "\n{\"name\":%q,\"value\":%d}", s.Name, s.Value)
		}
		io.WriteString(w, "\n]}\n")
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
	for _, s := range out {
		fmt.Fprintf(w, "%s: %d\n", s.Name, s.Value)
	}
}

func (a *admin) clusters(w http.ResponseWriter, r *http.Request) {
	all := a.opts.Source.Clusters()
	if r.URL.Query().Get("format") == "json" {
		out := &adminv3.Clusters{}
		for _, c := range all {
			cs := &adminv3.ClusterStatus{Name: c.Name(), AddedViaApi: true}
			for _, ep := range c.Endpoints() {
				health := corev3.HealthStatus_HEALTHY
				if !ep.Healthy {
					health = corev3.HealthStatus_UNHEALTHY
				}
				cs.HostStatuses = append(cs.HostStatuses, &adminv3.HostStatus{
					Address: socketAddress(ep.Address),
					Stats: []*adminv3.SimpleMetric{
						{Type: adminv3.SimpleMetric_COUNTER, Name: "rq_total", Value: ep.TotalRequests()},
						{Type: adminv3.SimpleMetric_COUNTER, Name: "rq_error", Value: ep.FailedRequests()},
						{Type: adminv3.SimpleMetric_GAUGE, Name: "rq_active", Value: uint64(max(ep.ActiveRequests(), 0))},
					},
					HealthStatus: &adminv3.HostHealthStatus{EdsHealthStatus: health},
					Priority:     ep.Priority,
				})
			}
			out.ClusterStatuses = append(out.ClusterStatuses, cs)
		}
		writeProto(w, out)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
	for _, c := range all {
		n := c.Name()
		fmt.Fprintf(w, "%s::observability_name::%s\n", n, n)
		fmt.Fprintf(w, "%s::added_via_api::true\n", n)
		for _, ep := range c.Endpoints() {
			p := n + "::" + ep.Address + "::"
			health := "healthy"
			if !ep.Healthy {
				health = "/failed_eds_health"
			}
			fmt.Fprintf(w, "%srq_active::%d\n%srq_error::%d\n%srq_total::%d\n%shealth_flags::%s\n%spriority::%d\n",
				p, ep.ActiveRequests(), p, ep.FailedRequests(), p, ep.TotalRequests(), p, health, p, ep.Priority)
		}
	}
}

func (a *admin) listeners(w http.ResponseWriter, r *http.Request) {
	all := a.opts.Source.Listeners()
	if r.URL.Query().Get("format") == "json" {
		out := &adminv3.Listeners{}
		for _, l := range all {
			addr := l.Config.GetAddress()
			if len(l.Bound) > 0 {
				addr = socketAddress(l.Bound[0])
			}
			out.ListenerStatuses = append(out.ListenerStatuses, &adminv3.ListenerStatus{Name: l.Name, LocalAddress: addr})
		}
		writeProto(w, out)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
	for _, l := range all {
		if len(l.Bound) == 0 {
			sa := l.Config.GetAddress().GetSocketAddress()
			fmt.Fprintf(w, "%s::%s:%d\n", l.Name, sa.GetAddress(), sa.GetPortValue())
			continue
		}
		for _, b := range l.Bound {
			fmt.Fprintf(w, "%s::%s\n", l.Name, b)
		}
	}
}

func socketAddress(hostPort string) *corev3.Address {
	i := strings.LastIndexByte(hostPort, ':')
	if i < 0 {
		return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: hostPort}}}
	}
	var port uint32
	fmt.Sscan(hostPort[i+1:], &port)
	host := strings.TrimSuffix(strings.TrimPrefix(hostPort[:i], "["), "]")
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// sortedNames returns a map's keys in order.
func sortedNames[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
