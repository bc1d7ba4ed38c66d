package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skein-mesh/skein/internal/config"
	"github.com/skein-mesh/skein/internal/configapi"
	"github.com/skein-mesh/skein/internal/configstore"
)

const meshYAML = `
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: bookinfo}
spec:
  selector: {app: ratings}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Pod
metadata:
  name: ratings-v1-abc12-xyz
  namespace: bookinfo
  labels: {app: ratings, version: v1, pod-template-hash: abc12}
  annotations: {sidecar.istio.io/status: '{"containers":["istio-proxy"]}'}
  ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: ratings-v1-abc12, uid: "1", controller: true}]
spec:
  containers: [{name: ratings, image: ratings}]
status: {podIP: 127.0.0.1}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: bookinfo}
spec:
  hosts: [ratings]
  http:
  - fault: {abort: {percentage: {value: 50}, httpStatus: 500}}
    route: [{destination: {host: ratings}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bookinfo, namespace: bookinfo}
spec:
  hosts: ["*"]
  gateways: [bookinfo-gateway]
  http:
  - route: [{destination: {host: productpage, port: {number: 9080}}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ratings-viewer, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: ratings}}
  rules: [{from: [{source: {principals: [cluster.local/ns/bookinfo/sa/bookinfo-reviews]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: other, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: details}}
`

// testMesh serves the real config API over an in-memory store, holding
// meshYAML, on a loopback port.
func testMesh(t *testing.T) string {
	t.Helper()
	objs, _, err := config.LoadReader("mesh.yaml", strings.NewReader(meshYAML), "")
	if err != nil {
		t.Fatal(err)
	}
	store := configstore.OpenMemory()
	if _, err := store.Apply(objs); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(configapi.NewHandler(store, nil))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// statsServer serves a growing istio_requests_total for reviews-v3 →
// ratings-v1, half of the requests failing, as the ratings "proxy".
func statsServer(t *testing.T) int {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/stats/prometheus" {
			http.NotFound(w, r)
			return
		}
		total := int(n.Add(10))
		text := strings.ReplaceAll(promText("source", total, total/2, "25"), `"reviews-v2"`, `"reviews-v3"`)
		fmt.Fprint(w, strings.ReplaceAll(text, `source_version="v2"`, `source_version="v3"`))
	}))
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	var p int
	fmt.Sscan(port, &p)
	return p
}

func getJSON(t *testing.T, h http.Handler, path string, into any) int {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	if err := json.Unmarshal(rec.Body.Bytes(), into); err != nil {
		t.Fatalf("GET %s: %d %v: %s", path, rec.Code, err, rec.Body)
	}
	return rec.Code
}

func TestHandlers(t *testing.T) {
	d := New(Options{Server: testMesh(t), StatsPort: statsServer(t), ScrapeInterval: 50 * time.Millisecond, Window: time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.scraper.run(ctx)
	h := d.Handler()

	t.Run("graph", func(t *testing.T) {
		var g Graph
		deadline := time.Now().Add(5 * time.Second)
		for {
			if code := getJSON(t, h, "/api/graph", &g); code != http.StatusOK {
				t.Fatalf("status %d", code)
			}
			if len(g.Edges) > 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if len(g.Edges) != 1 {
			t.Fatalf("edges = %+v", g.Edges)
		}
		e := g.Edges[0]
		if e.Source != "bookinfo/reviews-v3" || e.Destination != "bookinfo/ratings-v1" || e.ErrorPct != 50 || e.Health != "red" || e.RPS <= 0 {
			t.Errorf("edge = %+v", e)
		}
		var ratings *Node
		for i := range g.Nodes {
			if g.Nodes[i].ID == "bookinfo/ratings-v1" {
				ratings = &g.Nodes[i]
			}
		}
		if ratings == nil || ratings.Pods != 1 || ratings.Version != "v1" || first(ratings.Services) != "bookinfo/ratings" || ratings.Layer != 1 {
			t.Errorf("ratings node = %+v", ratings)
		}
	})

	t.Run("service", func(t *testing.T) {
		var s ServiceDetail
		if code := getJSON(t, h, "/api/service?namespace=bookinfo&name=ratings", &s); code != http.StatusOK {
			t.Fatalf("status %d", code)
		}
		var cfg []string
		for _, it := range s.Config {
			cfg = append(cfg, it.Kind+"/"+it.Name)
			if len(it.Errors) != 0 {
				t.Errorf("%s/%s: errors %v", it.Kind, it.Name, it.Errors)
			}
		}
		// Not the gateway's VirtualService (hosts "*" but bound to a
		// gateway, routing to productpage), not the details policy.
		if got, want := strings.Join(cfg, ","), "VirtualService/ratings,AuthorizationPolicy/ratings-viewer"; got != want {
			t.Errorf("config = %s, want %s", got, want)
		}
		if len(s.Workloads) != 1 || len(s.Inbound) != 1 || len(s.Outbound) != 0 || s.Health != "red" {
			t.Errorf("service = %+v", s)
		}
		var missing map[string]string
		if code := getJSON(t, h, "/api/service?namespace=bookinfo&name=nope", &missing); code != http.StatusNotFound || !strings.Contains(missing["error"], "bookinfo/nope") {
			t.Errorf("missing service: %d %v", code, missing)
		}
	})

	t.Run("services", func(t *testing.T) {
		var list []ServiceSummary
		getJSON(t, h, "/api/services", &list)
		if len(list) != 1 || list[0].Name != "ratings" || list[0].ErrorPct != 50 || list[0].Health != "red" {
			t.Errorf("services = %+v", list)
		}
	})

	t.Run("traces unavailable", func(t *testing.T) {
		// This control plane serves no Zipkin API: an empty list that says why.
		var tl TraceList
		if code := getJSON(t, h, "/api/traces", &tl); code != http.StatusOK || len(tl.Traces) != 0 || tl.Unavailable == "" {
			t.Errorf("traces: %d %+v", code, tl)
		}
	})
}

func TestWaterfall(t *testing.T) {
	spans := []zipkinSpan{
		{TraceID: "t1", ID: "b", ParentID: "a", Name: "ratings:9080/*", Timestamp: 1_000_500, Duration: 2000,
			LocalEndpoint: &zipkinEndpoint{ServiceName: "ratings.bookinfo"}, Tags: map[string]string{"http.status_code": "500"}},
		{TraceID: "t1", ID: "a", Name: "productpage", Timestamp: 1_000_000, Duration: 4000, LocalEndpoint: &zipkinEndpoint{ServiceName: "istio-ingressgateway"}},
		{TraceID: "t1", ID: "c", ParentID: "a", Name: "details:9080/*", Timestamp: 1_000_100, Duration: 300, LocalEndpoint: &zipkinEndpoint{ServiceName: "details.bookinfo"}},
	}
	sum := summarize(spans)
	if sum.RootName != "productpage" || sum.RootService != "istio-ingressgateway" || sum.DurationMs != 4 || sum.Spans != 3 || sum.Services != 3 || !sum.Error {
		t.Errorf("summary = %+v", sum)
	}
	w := waterfall(spans)
	var got []string
	for _, s := range w.Spans {
		got = append(got, fmt.Sprintf("%d:%s@%.1f+%.1f:%v", s.Depth, s.ID, s.OffsetMs, s.DurationMs, s.Error))
	}
	if want := "0:a@0.0+4.0:false 1:c@0.1+0.3:false 1:b@0.5+2.0:true"; strings.Join(got, " ") != want {
		t.Errorf("waterfall = %s, want %s", strings.Join(got, " "), want)
	}
}

// The Prometheus source asks for rates grouped by the edge labels and
// folds the answer like scraped counters.
func TestPromSource(t *testing.T) {
	var queries []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query().Get("query")
		queries = append(queries, q)
		labels := `"reporter":"source","source_workload":"reviews-v3","source_workload_namespace":"bookinfo","destination_workload":"ratings-v1","destination_workload_namespace":"bookinfo","destination_service_name":"ratings","destination_service_namespace":"bookinfo"`
		var result string
		switch {
		case strings.HasPrefix(q, "sum(rate(istio_requests_total[30s]))"):
			result = `{"metric":{` + labels + `,"response_code":"200"},"value":[1,"3"]},{"metric":{` + labels + `,"response_code":"503"},"value":[1,"1"]}`
		case strings.HasPrefix(q, "sum(rate(istio_request_duration_milliseconds_bucket[30s]))"):
			result = `{"metric":{` + labels + `,"le":"10"},"value":[1,"0"]},{"metric":{` + labels + `,"le":"20"},"value":[1,"4"]},{"metric":{` + labels + `,"le":"+Inf"},"value":[1,"4"]}`
		default:
			w.Write([]byte(`{"status":"error","error":"unexpected query"}`))
			return
		}
		fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":[%s]}}`, result)
	}))
	defer srv.Close()
	p := &promSource{base: srv.URL, rng: 30 * time.Second, client: srv.Client()}
	rates, span, err := p.Rates(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range queries {
		if !strings.Contains(q, "by (reporter, source_workload, source_workload_namespace") {
			t.Errorf("query %q does not group by the edge labels", q)
		}
	}
	edges := edgesFromRates(rates, nil)
	if span != 30*time.Second || len(edges) != 1 || edges[0].RPS != 4 || edges[0].ErrorPct != 25 || edges[0].P99Ms == nil || *edges[0].P99Ms != 19.9 {
		t.Errorf("span %v, edges %+v", span, edges)
	}
}
