package discovery

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/skein-mesh/skein/internal/apiwire"
	"github.com/skein-mesh/skein/internal/config"
	"github.com/skein-mesh/skein/internal/configstore"
	"github.com/skein-mesh/skein/internal/model"
	"github.com/skein-mesh/skein/internal/xdsserver"
)

// metrics are istiod's control plane metrics, under Istio's names so its
// dashboards and alerts work unchanged. They live in a registry of their
// own (not the global one) so two servers in one test process never clash.
type metrics struct {
	reg *prometheus.Registry

	pushes          *prometheus.CounterVec // pilot_xds_pushes{type}
	rejects         *prometheus.CounterVec // pilot_total_xds_rejects{type}
	convergence     prometheus.Histogram   // pilot_proxy_convergence_time
	internalErrors  prometheus.Counter     // pilot_total_xds_internal_errors
	cfgEvents       *prometheus.CounterVec // pilot_k8s_cfg_events{type,event}
	regEvents       *prometheus.CounterVec // pilot_k8s_reg_events{type,event}
	validationFails *prometheus.CounterVec // galley_validation_failed{resource,reason}
	rejectedConfigs prometheus.Counter     // pilot_total_rejected_configs
}

var _ xdsserver.Observer = (*metrics)(nil)

// proxyLister is what the metrics need from the ADS server.
type proxyLister interface {
	Proxies() []*model.Proxy
}

func newMetrics(proxies proxyLister) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pilot_xds_pushes",
			Help: "Pilot build and send errors for lds, rds, cds and eds.",
		}, []string{"type"}),
		rejects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pilot_total_xds_rejects",
			Help: "Total number of XDS responses from pilot rejected by proxy.",
		}, []string{"type"}),
		// Istio's buckets, with two below 100ms: a local push takes tens
		// of milliseconds.
		convergence: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pilot_proxy_convergence_time",
			Help:    "Delay in seconds between config change and a proxy receiving all required configuration.",
			Buckets: []float64{.01, .05, .1, .5, 1, 3, 5, 10, 20, 30},
		}),
		internalErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pilot_total_xds_internal_errors",
			Help: "Total number of internal XDS errors in pilot.",
		}),
		cfgEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pilot_k8s_cfg_events",
			Help: "Events from k8s config.",
		}, []string{"type", "event"}),
		regEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pilot_k8s_reg_events",
			Help: "Events from k8s registry.",
		}, []string{"type", "event"}),
		validationFails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "galley_validation_failed",
			Help: "Resource validation failed.",
		}, []string{"reason"}),
		rejectedConfigs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pilot_total_rejected_configs",
			Help: "Total number of configs that Pilot had to reject or ignore.",
		}),
	}
	// Every type starts at zero, so rate() and dashboards see a series
	// before the first NACK.
	for _, typ := range xdsserver.TypeURLs {
		m.pushes.WithLabelValues(xdsType(typ))
		m.rejects.WithLabelValues(xdsType(typ))
	}
	m.reg.MustRegister(m.pushes, m.rejects, m.convergence, m.internalErrors,
		m.cfgEvents, m.regEvents, m.validationFails, m.rejectedConfigs,
		xdsConnections{proxies},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Sent counts a response sent to a proxy as a push of its type.
func (m *metrics) Sent(typeURL string) { m.pushes.WithLabelValues(xdsType(typeURL)).Inc() }

// Rejected counts a NACK.
func (m *metrics) Rejected(typeURL string) { m.rejects.WithLabelValues(xdsType(typeURL)).Inc() }

// Converged records how long a push took to reach a proxy.
func (m *metrics) Converged(d time.Duration) { m.convergence.Observe(d.Seconds()) }

// InternalError counts a config the server could not build or install.
func (m *metrics) InternalError() { m.internalErrors.Inc() }

// xdsType is Istio's label value: cds, lds, eds, rds.
func xdsType(typeURL string) string { return strings.ToLower(xdsserver.ShortType(typeURL)) }

var pilotXDSDesc = prometheus.NewDesc("pilot_xds", "Number of endpoints connected to this pilot using XDS.", []string{"version"}, nil)

// xdsConnections reports pilot_xds from the connected proxies at scrape
// time, so the gauge cannot drift from the truth.
type xdsConnections struct{ proxies proxyLister }

func (c xdsConnections) Describe(ch chan<- *prometheus.Desc) { ch <- pilotXDSDesc }

func (c xdsConnections) Collect(ch chan<- prometheus.Metric) {
	byVersion := map[string]int{}
	for _, p := range c.proxies.Proxies() {
		v := p.Version
		if v == "" {
			v = "unknown"
		}
		byVersion[v]++
	}
	for v, n := range byVersion {
		ch <- prometheus.MustNewConstMetric(pilotXDSDesc, prometheus.GaugeValue, float64(n), v)
	}
}

// countConfigAPI wraps the config API to count what istiod counts from its
// informers and validation webhook: accepted changes as
// pilot_k8s_cfg_events (Istio kinds) or pilot_k8s_reg_events (Kubernetes
// kinds), and applies refused by validation as galley_validation_failed and
// pilot_total_rejected_configs.
func (m *metrics) countConfigAPI(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		isApply := r.URL.Path == "/api/v1/apply"
		if r.Method != http.MethodPost || (!isApply && r.URL.Path != "/api/v1/delete") {
			next.ServeHTTP(w, r)
			return
		}
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		switch {
		case rec.status == http.StatusOK && r.URL.Query().Get("dryRun") != "true":
			var resp apiwire.ResultsResponse
			if json.Unmarshal(rec.body.Bytes(), &resp) == nil {
				m.countResults(resp.Results)
			}
		case rec.status == http.StatusBadRequest && isApply:
			var resp apiwire.ErrorResponse
			_ = json.Unmarshal(rec.body.Bytes(), &resp)
			reason := resp.Reason
			if reason == "" {
				reason = apiwire.ReasonBadRequest
			}
			m.validationFails.WithLabelValues(reason).Inc()
			m.rejectedConfigs.Inc()
		}
	})
}

// cfgEvent maps a store action to Istio's event label.
var cfgEvent = map[string]string{
	configstore.ActionCreated:    "add",
	configstore.ActionConfigured: "update",
	configstore.ActionDeleted:    "delete",
}

func (m *metrics) countResults(results []config.ApplyResult) {
	for _, res := range results {
		event, ok := cfgEvent[res.Action]
		if !ok {
			continue // unchanged: no event reaches the control plane
		}
		schema, ok := config.SchemaForKind(res.Resource)
		if !ok {
			continue
		}
		if schema.IsIstio() {
			m.cfgEvents.WithLabelValues(schema.Kind, event).Inc()
		} else {
			m.regEvents.WithLabelValues(schema.Kind, event).Inc()
		}
	}
}

// recorder keeps a copy of a config API answer (a few KiB) to count it.
type recorder struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (r *recorder) WriteHeader(status int) {
	r.status = status
	r.ResponseWriter.WriteHeader(status)
}

func (r *recorder) Write(b []byte) (int, error) {
	r.body.Write(b)
	return r.ResponseWriter.Write(b)
}

// sdTargetGroup is one entry of Prometheus's HTTP service discovery answer.
type sdTargetGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// Where Istio's proxies serve their merged stats, as the sidecar injector
// annotates pods (prometheus.io/port, prometheus.io/path).
const (
	proxyStatsPort = "15090"
	proxyStatsPath = "/stats/prometheus"
)

// prometheusSD answers Prometheus's http_sd_configs with what a Kubernetes
// Prometheus finds through pod annotations: every connected proxy's stats
// port (job envoy-stats, as in Istio's addon config) and this control plane
// (job pilot, which Istio's alerts query).
func (s *Server) prometheusSD(w http.ResponseWriter, r *http.Request) {
	groups := []sdTargetGroup{{
		Targets: []string{s.selfAddr(r)},
		Labels: map[string]string{
			"job": "pilot", "namespace": s.opts.RootNamespace, "app": "istiod",
			"__metrics_path__": "/metrics",
		},
	}}
	proxies := s.xds.Proxies()
	sort.Slice(proxies, func(i, j int) bool { return proxies[i].ID < proxies[j].ID })
	for _, p := range proxies {
		labels := map[string]string{
			"job": "envoy-stats", "namespace": p.Namespace, "pod": p.PodName,
			"__metrics_path__": proxyStatsPath,
		}
		for _, k := range []string{"app", "version"} {
			if v := p.Labels[k]; v != "" {
				labels[k] = v
			}
		}
		groups = append(groups, sdTargetGroup{Targets: []string{net.JoinHostPort(p.IP, proxyStatsPort)}, Labels: labels})
	}
	writeJSON(w, groups)
}

// selfAddr is a dialable address of this server's HTTP port: the bound
// one, or the host the request used when bound to a wildcard address.
func (s *Server) selfAddr(r *http.Request) string {
	host, port, err := net.SplitHostPort(s.HTTPAddr())
	if err != nil {
		return s.HTTPAddr()
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		if h, _, err := net.SplitHostPort(r.Host); err == nil {
			host = h
		} else if r.Host != "" {
			host = r.Host
		} else {
			host = "127.0.0.1"
		}
	}
	return net.JoinHostPort(host, port)
}
