package admin

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/skein-mesh/skein/internal/proxy/stats"
)

// prometheus serves the stats in Prometheus text format with Envoy's tag
// extraction for the stat families the proxy has: cluster.<name>.x becomes
// envoy_cluster_x{envoy_cluster_name="<name>"}, and so on; response codes
// and classes become envoy_response_code / envoy_response_code_class tags.
func (a *admin) prometheus(w http.ResponseWriter, r *http.Request) {
	type sample struct {
		labels string
		value  int64
	}
	families := map[string][]sample{}
	kinds := map[string]stats.Kind{}
	matcher := a.opts.Stats.Matcher()
	for _, s := range a.opts.Stats.Snapshot() {
		if !matcher.Match(s.Name) {
			continue
		}
		name, labels := promName(s.Name)
		families[name] = append(families[name], sample{labels, s.Value})
		kinds[name] = s.Kind
	}
	names := make([]string, 0, len(families))
	for n := range families {
		names = append(names, n)
	}
	sort.Strings(names)
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	for _, n := range names {
		kind := "counter"
		if kinds[n] == stats.KindGauge {
			kind = "gauge"
		}
		fmt.Fprintf(w, "# TYPE %s %s\n", n, kind)
		for _, s := range families[n] {
			io.WriteString(w, n+s.labels+" "+strconv.FormatInt(s.value, 10)+"\n")
		}
	}
	prev := ""
	for _, f := range a.opts.Stats.Families() {
		if writeFamily(w, f, f.Name != prev) {
			prev = f.Name
		}
	}
	writeContainerCPU(w)
}

// writeFamily renders a labelled family (Istio's istio_* metrics) as Envoy
// does: counters as name{labels} v, histograms as _bucket{...,le=""},
// _sum and _count.
func writeFamily(w io.Writer, f *stats.Family, header bool) bool {
	series := f.Series()
	if len(series) == 0 {
		return false
	}
	kind := "counter"
	if f.Kind == stats.KindHistogram {
		kind = "histogram"
	}
	var b strings.Builder
	if header {
		fmt.Fprintf(&b, "# TYPE %s %s\n", f.Name, kind)
	}
	for _, s := range series {
		var lb strings.Builder
		for i, l := range f.Labels {
			if i > 0 {
				lb.WriteByte(',')
			}
			lb.WriteString(l)
			lb.WriteString(`="`)
			lb.WriteString(escapeLabel(s.Values[i]))
			lb.WriteByte('"')
		}
		labels := lb.String()
		if f.Kind != stats.KindHistogram {
			b.WriteString(f.Name + "{" + labels + "} " + strconv.FormatUint(s.Counter.Value(), 10) + "\n")
			continue
		}
		v := s.Histogram.Value()
		sep := ","
		if labels == "" {
			sep = ""
		}
		for i, bound := range v.Bounds {
			b.WriteString(f.Name + "_bucket{" + labels + sep + `le="` + strconv.FormatFloat(bound, 'g', -1, 64) + `"} ` + strconv.FormatUint(v.Cumulative[i], 10) + "\n")
		}
		b.WriteString(f.Name + "_bucket{" + labels + sep + `le="+Inf"} ` + strconv.FormatUint(v.Count, 10) + "\n")
		b.WriteString(f.Name + "_sum{" + labels + "} " + strconv.FormatFloat(v.Sum, 'g', -1, 64) + "\n")
		b.WriteString(f.Name + "_count{" + labels + "} " + strconv.FormatUint(v.Count, 10) + "\n")
	}
	io.WriteString(w, b.String())
	return true
}

// escapeLabel escapes a label value for the text format.
func escapeLabel(v string) string {
	if !strings.ContainsAny(v, "\\\"\n") {
		return v
	}
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(v)
}

// tagged families: stat prefix → label holding the middle part. The last
// dot-separated segment is the metric; the middle may contain dots (cluster
// names, listener addresses).
var taggedFamilies = []struct{ prefix, label string }{
	{"cluster.", "envoy_cluster_name"},
	{"http.", "envoy_http_conn_manager_prefix"},
	{"listener.", "envoy_listener_address"},
	{"tcp.", "envoy_tcp_prefix"},
}

func promName(stat string) (name, labels string) {
	var tags []string
	for _, f := range taggedFamilies {
		rest, ok := strings.CutPrefix(stat, f.prefix)
		if !ok {
			continue
		}
		if i := strings.LastIndexByte(rest, '.'); i > 0 {
			tags = append(tags, fmt.Sprintf("%s=%q", f.label, rest[:i]))
			stat = strings.TrimSuffix(f.prefix, ".") + "." + rest[i+1:]
		}
		break
	}
	// upstream_rq_503 → upstream_rq{envoy_response_code="503"},
	// upstream_rq_5xx → upstream_rq_xx{envoy_response_code_class="5"}.
	if i := strings.LastIndexByte(stat, '_'); i > 0 {
		suffix := stat[i+1:]
		if len(suffix) == 3 && isDigits(suffix) {
			tags = append(tags, fmt.Sprintf("envoy_response_code=%q", suffix))
			stat = stat[:i]
		} else if len(suffix) == 3 && strings.HasSuffix(suffix, "xx") && isDigits(suffix[:1]) {
			tags = append(tags, fmt.Sprintf("envoy_response_code_class=%q", suffix[:1]))
			stat = stat[:i] + "_xx"
		}
	}
	name = "envoy_" + sanitize(stat)
	if len(tags) > 0 {
		labels = "{" + strings.Join(tags, ",") + "}"
	}
	return name, labels
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}
