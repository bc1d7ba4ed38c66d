package admin

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/skein-mesh/skein/internal/proxy/stats"
)

func TestParseAppScrape(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    *AppScrape
		wantErr bool
	}{
		{in: "", want: nil},
		{in: `{"scrape":"true","port":"9080","path":"/metrics/app"}`, want: &AppScrape{Scrape: "true", Port: "9080", Path: "/metrics/app"}},
		{in: `{"scrape":"true","port":"9080"}`, want: &AppScrape{Scrape: "true", Port: "9080", Path: "/metrics"}},
		{in: `{"scrape":"false","port":"9080"}`, want: nil},
		{in: `{"scrape":`, wantErr: true},
	} {
		got, err := ParseAppScrape(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("ParseAppScrape(%q) error = %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if (got == nil) != (tc.want == nil) || got != nil && *got != *tc.want {
			t.Errorf("ParseAppScrape(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

// TestMergedPrometheus checks the merged endpoint serves the proxy's
// metrics followed by the app's, and still the proxy's (with the failure
// counted) when the app does not answer.
func TestMergedPrometheus(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/app-metrics" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, "# TYPE app_orders_total counter\napp_orders_total 7")
	}))
	defer app.Close()
	host, port, _ := net.SplitHostPort(app.Listener.Addr().String())

	st := stats.NewStore()
	st.Counter("cluster.inbound|9080||.upstream_rq_total").Add(2)
	scrape := func(h http.Handler) string {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/stats/prometheus", nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("status %d", rec.Code)
		}
		return rec.Body.String()
	}

	body := scrape(MergedPrometheusHandler(st, &AppScrape{Scrape: "true", Port: port, Path: "/app-metrics"}, host))
	proxyAt := strings.Index(body, `envoy_cluster_upstream_rq_total{envoy_cluster_name="inbound|9080||"} 2`)
	appAt := strings.Index(body, "app_orders_total 7\n")
	if proxyAt < 0 || appAt < 0 || appAt < proxyAt {
		t.Fatalf("merged body lacks the proxy's metrics followed by the app's:\n%s", body)
	}
	if strings.Contains(body, "agent_scrape_app_errors") && !strings.Contains(body, "app_errors 0") {
		t.Fatalf("a successful app scrape counted as an error:\n%s", body)
	}

	down := MergedPrometheusHandler(st, &AppScrape{Scrape: "true", Port: port, Path: "/missing"}, host)
	body = scrape(down)
	if !strings.Contains(body, `envoy_cluster_upstream_rq_total{envoy_cluster_name="inbound|9080||"} 2`) || strings.Contains(body, "app_orders_total") {
		t.Fatalf("with the app failing, want the proxy's metrics alone:\n%s", body)
	}
	if got := st.Counter("agent.scrape.app_errors").Value(); got != 1 {
		t.Fatalf("agent.scrape.app_errors = %d, want 1", got)
	}

	// No app annotations: the proxy's metrics only.
	if body := scrape(MergedPrometheusHandler(st, nil, host)); !strings.Contains(body, "envoy_cluster_upstream_rq_total") || strings.Contains(body, "app_orders_total") {
		t.Fatalf("without app scrape config:\n%s", body)
	}
}
