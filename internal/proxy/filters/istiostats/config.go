package istiostats

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/skein-mesh/skein/internal/proxy/filters"
	"github.com/skein-mesh/skein/internal/proxy/internal/confparse"
	"github.com/skein-mesh/skein/internal/proxy/stats"
)

// pluginConfig is Istio's stats.PluginConfig as JSON (the TypedStruct
// value), limited to the fields the proxy implements, plus Skein's
// stats_matcher: the proxyStatsMatcher, which Istio carries in the
// bootstrap and Skein carries here because its proxies have no
// control-plane-made bootstrap.
type pluginConfig struct {
	StatPrefix                string         `json:"stat_prefix"`
	DisableHostHeaderFallback bool           `json:"disable_host_header_fallback"`
	Metrics                   []metricConfig `json:"metrics"`
	StatsMatcher              *matcherConfig `json:"stats_matcher"`
	// InboundServices (Skein) are the services served on this inbound
	// port, Istio's inbound cluster metadata: the server side names its
	// destination_service from them rather than from any Host header.
	InboundServices []string `json:"inbound_services"`
}

// metricConfig overrides one metric (name without the "istio_" prefix;
// empty: every metric), as Istio translates Telemetry metrics overrides.
type metricConfig struct {
	Name         string            `json:"name"`
	Dimensions   map[string]string `json:"dimensions"`
	TagsToRemove []string          `json:"tags_to_remove"`
	Drop         bool              `json:"drop"`
}

type matcherConfig struct {
	InclusionPrefixes []string `json:"inclusion_prefixes"`
	InclusionSuffixes []string `json:"inclusion_suffixes"`
	InclusionRegexps  []string `json:"inclusion_regexps"`
	ExclusionRegexps  []string `json:"exclusion_regexps"`
}

// parseConfig decodes the TypedStruct value, rejecting unknown fields so
// that config the proxy would ignore is a NACK.
func parseConfig(v *structpb.Struct) (*pluginConfig, error) {
	b, err := v.MarshalJSON()
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	var c pluginConfig
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("stats.PluginConfig: %v", err)
	}
	if c.StatPrefix != "" && c.StatPrefix != "istio" {
		return nil, fmt.Errorf("stats.PluginConfig stat_prefix %q: only \"istio\" is supported", c.StatPrefix)
	}
	return &c, nil
}

// matcher compiles the stats matcher; regexps match the whole stat name,
// as Envoy's safe_regex does.
func (m *matcherConfig) matcher() (*stats.Matcher, error) {
	if m == nil {
		return nil, nil
	}
	out := &stats.Matcher{InclusionPrefixes: m.InclusionPrefixes, InclusionSuffixes: m.InclusionSuffixes}
	for _, list := range []struct {
		field string
		in    []string
		out   *[]*regexp.Regexp
	}{
		{"inclusion_regexps", m.InclusionRegexps, &out.InclusionRegexps},
		{"exclusion_regexps", m.ExclusionRegexps, &out.ExclusionRegexps},
	} {
		for i, re := range list.in {
			c, err := confparse.Regexp("^(?:" + re + ")$")
			if err != nil {
				return nil, fmt.Errorf("stats_matcher.%s[%d] %q: %v", list.field, i, re, err)
			}
			*list.out = append(*list.out, c)
		}
	}
	return out, nil
}

// The standard labels of Istio's HTTP metrics, in Istio's order.
var standardLabels = []string{
	"reporter",
	"source_workload", "source_canonical_service", "source_canonical_revision", "source_workload_namespace",
	"source_principal", "source_app", "source_version", "source_cluster",
	"destination_workload", "destination_workload_namespace", "destination_principal",
	"destination_app", "destination_version", "destination_service",
	"destination_canonical_service", "destination_canonical_revision",
	"destination_service_name", "destination_service_namespace", "destination_cluster",
	"request_protocol", "response_code", "grpc_response_status", "response_flags",
	"connection_security_policy",
}

// Indexes into standardLabels.
const (
	lReporter = iota
	lSrcWorkload
	lSrcCanonicalService
	lSrcCanonicalRevision
	lSrcNamespace
	lSrcPrincipal
	lSrcApp
	lSrcVersion
	lSrcCluster
	lDstWorkload
	lDstNamespace
	lDstPrincipal
	lDstApp
	lDstVersion
	lDstService
	lDstCanonicalService
	lDstCanonicalRevision
	lDstServiceName
	lDstServiceNamespace
	lDstCluster
	lProtocol
	lResponseCode
	lGRPCStatus
	lResponseFlags
	lSecurityPolicy
	numLabels
)

// Envoy's default histogram buckets, which Istio's histograms use.
var defaultBuckets = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}

// metric ids.
const (
	mRequests = iota
	mDuration
	mRequestBytes
	mResponseBytes
	mRequestMessages  // gRPC only
	mResponseMessages // gRPC only
	numMetrics
)

// metricNames are the names Telemetry overrides and PluginConfig use.
var metricNames = [numMetrics]string{"requests_total", "request_duration_milliseconds", "request_bytes", "response_bytes",
	"request_messages_total", "response_messages_total"}

// counterMetric says which metrics are counters (the rest are histograms).
var counterMetric = [numMetrics]bool{mRequests: true, mRequestMessages: true, mResponseMessages: true}

// grpcOnlyMetric: Istio reports message counts for gRPC requests only.
var grpcOnlyMetric = [numMetrics]bool{mRequestMessages: true, mResponseMessages: true}

// labelSource says where one label of a metric comes from: a standard
// label (std ≥ 0) or an expression (expr ≥ 0, index into plan.exprs).
type labelSource struct{ std, expr int }

// metricPlan is one metric's shape after overrides.
type metricPlan struct {
	drop    bool
	labels  []string
	sources []labelSource
}

// plan is the compiled metric configuration of one metric set (the HTTP
// metrics, or the TCP ones): per metric its shape, and the expressions the
// shapes' dimensions evaluate.
type plan struct {
	metrics []metricPlan
	exprs   []expr
}

// metricSet is one family of Istio metrics a filter records.
type metricSet struct {
	names  []string // as Telemetry overrides name them, without "istio_"
	labels []int    // the standard labels (indexes into standardLabels)
}

var (
	httpMetrics = metricSet{names: metricNames[:], labels: allLabels()}
	tcpMetrics  = metricSet{names: tcpMetricConfigNames[:], labels: tcpLabelIndexes()}
)

func allLabels() []int {
	out := make([]int, numLabels)
	for i := range out {
		out[i] = i
	}
	return out
}

// knownMetric reports whether name is any metric the filter records: a
// PluginConfig names HTTP and TCP metrics alike, and each set skips the
// other's entries.
func knownMetric(name string) bool {
	return slices.Contains(httpMetrics.names, name) || slices.Contains(tcpMetrics.names, name)
}

// compile applies the metric overrides, in order (later ones win), to the
// standard shapes of set's metrics.
func compile(c *pluginConfig, set metricSet) (*plan, error) {
	type shape struct {
		drop    bool
		removed map[string]bool
		dims    map[string]string
	}
	shapes := make([]shape, len(set.names))
	for i := range shapes {
		shapes[i] = shape{removed: map[string]bool{}, dims: map[string]string{}}
	}
	for i, mc := range c.Metrics {
		if mc.Name != "" && !knownMetric(mc.Name) {
			return nil, fmt.Errorf("metrics[%d].name %q: unknown metric (want one of %s, %s)", i, mc.Name,
				strings.Join(httpMetrics.names, ", "), strings.Join(tcpMetrics.names, ", "))
		}
		for m, n := range set.names {
			if mc.Name != "" && mc.Name != n {
				continue
			}
			s := &shapes[m]
			if mc.Drop {
				s.drop = true
			}
			for _, t := range mc.TagsToRemove {
				s.removed[t] = true
				delete(s.dims, t)
			}
			for t, e := range mc.Dimensions {
				s.dims[t] = e
				delete(s.removed, t)
			}
		}
	}
	p := &plan{metrics: make([]metricPlan, len(set.names))}
	exprIndex := map[string]int{}
	for m, s := range shapes {
		mp := metricPlan{drop: s.drop}
		add := func(label, e string) error {
			j, ok := exprIndex[e]
			if !ok {
				ex, err := parseExpr(e)
				if err != nil {
					return fmt.Errorf("metric %s dimension %q: %v", set.names[m], label, err)
				}
				j = len(p.exprs)
				p.exprs = append(p.exprs, ex)
				exprIndex[e] = j
			}
			mp.labels = append(mp.labels, label)
			mp.sources = append(mp.sources, labelSource{std: -1, expr: j})
			return nil
		}
		std := map[string]bool{}
		for _, i := range set.labels {
			l := standardLabels[i]
			std[l] = true
			if s.removed[l] {
				continue
			}
			if e, ok := s.dims[l]; ok {
				if err := add(l, e); err != nil {
					return nil, err
				}
				continue
			}
			mp.labels = append(mp.labels, l)
			mp.sources = append(mp.sources, labelSource{std: i, expr: -1})
		}
		var extra []string
		for l := range s.dims {
			if !std[l] {
				extra = append(extra, l)
			}
		}
		sort.Strings(extra)
		for _, l := range extra {
			if !validLabel(l) {
				return nil, fmt.Errorf("metric %s dimension %q: not a valid Prometheus label name", set.names[m], l)
			}
			if err := add(l, s.dims[l]); err != nil {
				return nil, err
			}
		}
		p.metrics[m] = mp
	}
	return p, nil
}

// values fills one metric's label values from the standard labels and the
// evaluated expressions.
func (mp *metricPlan) values(std *[numLabels]string, exprVals []string) []string {
	out := make([]string, len(mp.sources))
	for i, src := range mp.sources {
		if src.std >= 0 {
			out[i] = std[src.std]
		} else {
			out[i] = exprVals[src.expr]
		}
	}
	return out
}

// eval evaluates the plan's expressions for one request or connection.
func (p *plan) eval(info *filters.RequestInfo) []string {
	if len(p.exprs) == 0 {
		return nil
	}
	out := make([]string, len(p.exprs))
	for i, e := range p.exprs {
		out[i] = e(info)
	}
	return out
}

func validLabel(l string) bool {
	if l == "" {
		return false
	}
	for i, c := range l {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
