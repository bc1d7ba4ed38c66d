// Package dashboard is Skein's built-in mesh dashboard (`skein dashboard`,
// also started by `skein up`): a small Kiali. It serves a single-page UI
// embedded in the binary (plain HTML, CSS, JavaScript and SVG) and the JSON
// it draws from under /api/:
//
//   - /api/graph: workloads and the traffic between them (rps, error %, p99)
//   - /api/services, /api/service: services, the config that applies to them
//     with its validation messages, and their inbound/outbound traffic
//   - /api/config: every Istio object with its validation messages
//   - /api/traces, /api/trace: recent traces from the control plane's
//     Zipkin API, and one trace as a waterfall
//   - /api/proxies: per-proxy xDS sync state (/debug/syncz)
//
// Traffic comes from Istio's standard metrics (istio_requests_total and
// istio_request_duration_milliseconds): scraped from every proxy's
// :15090/stats/prometheus over a sliding window, or queried from Prometheus.
//
// Health of an edge is its share of failed requests (5xx or no response)
// over the window: green when none failed, orange below 5 %, red at 5 % or
// more; grey (idle) without traffic.
package dashboard

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/skein-mesh/skein/internal/apiclient"
	"github.com/skein-mesh/skein/internal/xdsserver"
)

//go:embed static
var staticFiles embed.FS

// Options configure a dashboard.
type Options struct {
	// Server is the control plane's HTTP address (config API, /debug/syncz,
	// the Zipkin API).
	Server string
	// CredentialFile holds the control plane's admin credential (for
	// /debug/syncz); empty: the default location.
	CredentialFile string
	// PrometheusURL, when set, is queried instead of scraping the proxies.
	PrometheusURL string
	// Window is the span rates are computed over (default 30 s).
	Window time.Duration
	// ScrapeInterval is how often proxies are scraped (default 2 s).
	ScrapeInterval time.Duration
	// StatsPort is the proxies' Prometheus port (default 15090).
	StatsPort int
	Logger    *slog.Logger
}

// Dashboard serves the UI and its API.
type Dashboard struct {
	opts    Options
	api     ConfigLister
	status  *apiclient.Client // proxies' sync state, read with the admin credential
	metrics MetricsSource
	scraper *scraper // nil with Prometheus
	traces  *traceClient
	http    *http.Client
	log     *slog.Logger
}

// New builds a dashboard; call Serve to run it.
func New(opts Options) *Dashboard {
	if opts.Window <= 0 {
		opts.Window = 30 * time.Second
	}
	if opts.ScrapeInterval <= 0 {
		opts.ScrapeInterval = 2 * time.Second
	}
	if opts.StatsPort == 0 {
		opts.StatsPort = 15090
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	cp := newAPIClient(opts)
	d := &Dashboard{opts: opts, api: cp, status: cp, http: hc, log: opts.Logger,
		traces: &traceClient{base: "http://" + opts.Server, client: hc}}
	if opts.PrometheusURL != "" {
		d.metrics = &promSource{base: opts.PrometheusURL, rng: opts.Window, client: hc}
	} else {
		d.scraper = &scraper{
			pods:   func(ctx context.Context) ([]podInfo, error) { return listPods(ctx, d.api) },
			client: &http.Client{Timeout: scrapeTimeout}, port: strconv.Itoa(opts.StatsPort),
			interval: opts.ScrapeInterval, win: &window{span: opts.Window}, log: opts.Logger,
		}
		d.metrics = d.scraper
	}
	return d
}

// Listen binds addr, so a caller learns at once whether the port is free.
func Listen(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }

// Serve serves on l (and scrapes, in local mode) until ctx is done.
func (d *Dashboard) Serve(ctx context.Context, l net.Listener) error {
	if d.scraper != nil {
		go d.scraper.run(ctx)
	}
	srv := &http.Server{Handler: d.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Handler serves the UI and /api/.
func (d *Dashboard) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFiles, "static")
	mux.Handle("GET /", http.FileServerFS(static))
	mux.HandleFunc("GET /api/graph", d.handleGraph)
	mux.HandleFunc("GET /api/services", d.handleServices)
	mux.HandleFunc("GET /api/service", d.handleService)
	mux.HandleFunc("GET /api/config", d.handleConfig)
	mux.HandleFunc("GET /api/traces", d.handleTraces)
	mux.HandleFunc("GET /api/trace", d.handleTrace)
	mux.HandleFunc("GET /api/proxies", d.handleProxies)
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeErr(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

// snapshot is what several pages join: pods, services and the graph.
type snapshot struct {
	pods     []podInfo
	services []serviceInfo
	graph    Graph
}

func (d *Dashboard) snapshot(ctx context.Context) (snapshot, error) {
	pods, err := listPods(ctx, d.api)
	if err != nil {
		return snapshot{}, err
	}
	services, err := listServices(ctx, d.api)
	if err != nil {
		return snapshot{}, err
	}
	rates, span, err := d.metrics.Rates(ctx)
	g := buildGraph(pods, services, edgesFromRates(rates, workloadsOf(pods, services)))
	g.WindowSeconds = span.Seconds()
	if err != nil {
		g.Error = "metrics: " + err.Error()
	}
	return snapshot{pods: pods, services: services, graph: g}, nil
}

func (d *Dashboard) handleGraph(w http.ResponseWriter, r *http.Request) {
	s, err := d.snapshot(r.Context())
	if err != nil {
		writeErr(w, http.StatusBadGateway, err)
		return
	}
	writeJSON(w, http.StatusOK, s.graph)
}

func (d *Dashboard) handleServices(w http.ResponseWriter, r *http.Request) {
	s, err := d.snapshot(r.Context())
	if err != nil {
		writeErr(w, http.StatusBadGateway, err)
		return
	}
	items, err := listConfig(r.Context(), d.api)
	if err != nil {
		writeErr(w, http.StatusBadGateway, err)
		return
	}
	writeJSON(w, http.StatusOK, serviceSummaries(s.services, s.pods, items, s.graph))
}

func (d *Dashboard) handleService(w http.ResponseWriter, r *http.Request) {
	ns, name := r.URL.Query().Get("namespace"), r.URL.Query().Get("name")
	s, err := d.snapshot(r.Context())
	if err != nil {
		writeErr(w, http.StatusBadGateway, err)
		return
	}
	items, err := listConfig(r.Context(), d.api)
	if err != nil {
		writeErr(w, http.StatusBadGateway, err)
		return
	}
	for _, svc := range s.services {
		if svc.Namespace == ns && svc.Name == name {
			writeJSON(w, http.StatusOK, serviceDetail(svc, s.pods, items, s.graph))
			return
		}
	}
	writeErr(w, http.StatusNotFound, errors.New("service "+ns+"/"+name+" not found"))
}

func (d *Dashboard) handleConfig(w http.ResponseWriter, r *http.Request) {
	items, err := listConfig(r.Context(), d.api)
	if err != nil {
		writeErr(w, http.StatusBadGateway, err)
		return
	}
	if items == nil {
		items = []ConfigItem{}
	}
	writeJSON(w, http.StatusOK, items)
}

// TraceList is the traces page's data. Unavailable explains an empty list
// when the control plane serves no traces (yet).
type TraceList struct {
	Services    []string       `json:"services"`
	Traces      []TraceSummary `json:"traces"`
	Unavailable string         `json:"unavailable,omitempty"`
}

func (d *Dashboard) handleTraces(w http.ResponseWriter, r *http.Request) {
	limit, err := strconv.Atoi(r.URL.Query().Get("limit"))
	if err != nil || limit <= 0 || limit > 1000 {
		limit = 50
	}
	out := TraceList{Services: []string{}, Traces: []TraceSummary{}}
	services, err := d.traces.services(r.Context())
	if err == nil {
		out.Services = services
		var ts []TraceSummary
		ts, err = d.traces.traces(r.Context(), r.URL.Query().Get("service"), limit)
		if ts != nil {
			out.Traces = ts
		}
	}
	if err != nil {
		out.Unavailable = err.Error()
	}
	writeJSON(w, http.StatusOK, out)
}

func (d *Dashboard) handleTrace(w http.ResponseWriter, r *http.Request) {
	wf, err := d.traces.trace(r.Context(), r.URL.Query().Get("id"))
	if errors.Is(err, errNoTraces) {
		writeErr(w, http.StatusNotFound, err)
		return
	}
	if err != nil {
		writeErr(w, http.StatusBadGateway, err)
		return
	}
	writeJSON(w, http.StatusOK, wf)
}

// ProxyRow is one row of the proxies page.
type ProxyRow struct {
	xdsserver.ProxyStatus
	States map[string]string `json:"states"` // istioctl's SYNCED, STALE, NOT SENT per type
}

func (d *Dashboard) handleProxies(w http.ResponseWriter, r *http.Request) {
	list, err := d.status.ProxyStatus(r.Context())
	if err != nil {
		writeErr(w, http.StatusBadGateway, err)
		return
	}
	rows := make([]ProxyRow, 0, len(list))
	for _, p := range list {
		row := ProxyRow{ProxyStatus: p, States: map[string]string{}}
		for _, t := range []string{"CDS", "LDS", "EDS", "RDS"} {
			row.States[t] = p.Types[t].State()
		}
		rows = append(rows, row)
	}
	writeJSON(w, http.StatusOK, rows)
}

func newAPIClient(opts Options) *apiclient.Client {
	if opts.CredentialFile != "" {
		return apiclient.NewWithCredentialFile(opts.Server, opts.CredentialFile)
	}
	return apiclient.New(opts.Server)
}
