package admin

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/skein-mesh/skein/internal/proxy/stats"
)

func TestPrometheusNames(t *testing.T) {
	cases := []struct{ stat, name, labels string }{
		{"cluster.outbound|9080||reviews.default.svc.cluster.local.upstream_rq_total",
			"envoy_cluster_upstream_rq_total", `{envoy_cluster_name="outbound|9080||reviews.default.svc.cluster.local"}`},
		{"cluster.inbound|9080||.upstream_rq_503",
			"envoy_cluster_upstream_rq", `{envoy_cluster_name="inbound|9080||",envoy_response_code="503"}`},
		{"cluster.x.upstream_rq_2xx", "envoy_cluster_upstream_rq_xx", `{envoy_cluster_name="x",envoy_response_code_class="2"}`},
		{"http.outbound_0.0.0.0_9080.downstream_rq_total",
			"envoy_http_downstream_rq_total", `{envoy_http_conn_manager_prefix="outbound_0.0.0.0_9080"}`},
		{"listener.127.0.0.2:15001.downstream_cx_active",
			"envoy_listener_downstream_cx_active", `{envoy_listener_address="127.0.0.2:15001"}`},
		{"control_plane.connected_state", "envoy_control_plane_connected_state", ""},
	}
	for _, tc := range cases {
		name, labels := promName(tc.stat)
		if name != tc.name || labels != tc.labels {
			t.Errorf("promName(%q) = %s%s, want %s%s", tc.stat, name, labels, tc.name, tc.labels)
		}
	}
}

func TestStatsFormats(t *testing.T) {
	st := stats.NewStore()
	st.Counter("cluster.c.upstream_rq_total").Add(3)
	st.Gauge("cluster.c.upstream_cx_active").Set(1)
	st.Counter("cluster.c.upstream_rq_timeout")
	h := Handler(Options{Stats: st})
	for _, tc := range []struct{ query, want string }{
		{"/stats", "cluster.c.upstream_cx_active: 1\ncluster.c.upstream_rq_timeout: 0\ncluster.c.upstream_rq_total: 3\n"},
		{"/stats?usedonly", "cluster.c.upstream_cx_active: 1\ncluster.c.upstream_rq_total: 3\n"},
		{"/stats?filter=rq_total", "cluster.c.upstream_rq_total: 3\n"},
		{"/stats?filter=rq_total&format=json", "{\"stats\":[\n{\"name\":\"cluster.c.upstream_rq_total\",\"value\":3}\n]}\n"},
		{"/stats/prometheus", "# TYPE envoy_cluster_upstream_cx_active gauge\nenvoy_cluster_upstream_cx_active{envoy_cluster_name=\"c\"} 1\n"},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", tc.query, nil))
		if !strings.HasPrefix(rec.Body.String(), tc.want) {
			t.Errorf("GET %s =\n%s\nwant prefix\n%s", tc.query, rec.Body.String(), tc.want)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/stats?filter=(", nil))
	if rec.Code != http.StatusBadRequest {
		t.Errorf("bad filter regex answered %d", rec.Code)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/quitquitquit", nil))
	if body, _ := io.ReadAll(rec.Body); rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET /quitquitquit answered %d %s, want 405", rec.Code, body)
	}
}

func TestPprofIsServed(t *testing.T) {
	h := Handler(Options{Stats: stats.NewStore()})
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap?debug=1", "/debug/pprof/goroutine?debug=1"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != http.StatusOK || rec.Body.Len() == 0 {
			t.Errorf("GET %s = %d (%d bytes)", path, rec.Code, rec.Body.Len())
		}
	}
}
