package admin

import (
	"io"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/skein-mesh/skein/internal/proxy/stats"
)

func TestPrometheusFamiliesAndMatcher(t *testing.T) {
	st := stats.NewStore()
	st.Counter("cluster.outbound|9080||reviews.bookinfo.svc.cluster.local.upstream_rq_total").Add(3)
	st.Gauge("server.live").Set(1)
	req := st.Family("istio_requests_total", stats.KindCounter, []string{"reporter", "response_code"}, nil)
	vals := []string{"destination", "200"}
	req.With(stats.Key(vals), vals).Counter.Add(5)
	// A second shape of the same metric (a client-side override) shares
	// the TYPE line.
	other := st.Family("istio_requests_total", stats.KindCounter, []string{"reporter"}, nil)
	ov := []string{"source"}
	other.With(stats.Key(ov), ov).Counter.Inc()
	dur := st.Family("istio_request_duration_milliseconds", stats.KindHistogram, []string{"reporter"}, []float64{1, 10})
	dv := []string{`a"b`}
	h := dur.With(stats.Key(dv), dv).Histogram
	h.Observe(0.5)
	h.Observe(7)
	h.Observe(100)

	scrape := func() string {
		rec := httptest.NewRecorder()
		PrometheusHandler(st).ServeHTTP(rec, httptest.NewRequest("GET", "/stats/prometheus", nil))
		b, _ := io.ReadAll(rec.Body)
		return string(b)
	}
	body := scrape()
	for _, want := range []string{
		`envoy_cluster_upstream_rq_total{envoy_cluster_name="outbound|9080||reviews.bookinfo.svc.cluster.local"} 3`,
		"# TYPE istio_requests_total counter\nistio_requests_total{reporter=\"source\"} 1\nistio_requests_total{reporter=\"destination\",response_code=\"200\"} 5\n",
		"# TYPE istio_request_duration_milliseconds histogram\n" +
			`istio_request_duration_milliseconds_bucket{reporter="a\"b",le="1"} 1` + "\n" +
			`istio_request_duration_milliseconds_bucket{reporter="a\"b",le="10"} 2` + "\n" +
			`istio_request_duration_milliseconds_bucket{reporter="a\"b",le="+Inf"} 3` + "\n" +
			`istio_request_duration_milliseconds_sum{reporter="a\"b"} 107.5` + "\n" +
			`istio_request_duration_milliseconds_count{reporter="a\"b"} 3` + "\n",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("missing %q in:\n%s", want, body)
		}
	}
	if strings.Count(body, "# TYPE istio_requests_total") != 1 {
		t.Errorf("TYPE line repeated:\n%s", body)
	}

	st.SetMatcher(&stats.Matcher{InclusionPrefixes: []string{"server"}, ExclusionRegexps: []*regexp.Regexp{regexp.MustCompile(`^(?:nothing)$`)}})
	body = scrape()
	if strings.Contains(body, "envoy_cluster_upstream_rq_total") {
		t.Errorf("matcher did not exclude cluster stats:\n%s", body)
	}
	if !strings.Contains(body, "envoy_server_live 1") || !strings.Contains(body, "istio_requests_total{") {
		t.Errorf("matcher dropped included stats:\n%s", body)
	}
}
