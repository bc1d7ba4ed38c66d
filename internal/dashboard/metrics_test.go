package dashboard

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

// promText renders what a proxy's /stats/prometheus shows for a
// reviews-v2 → ratings-v1 edge after total requests, failed of them 500s,
// with every request in the bucket le=bucket (and above).
func promText(reporter string, total, failed int, bucket string) string {
	labels := func(code string) string {
		return fmt.Sprintf(`reporter=%q,source_workload="reviews-v2",source_workload_namespace="bookinfo",source_app="reviews",source_version="v2",`+
			`destination_workload="ratings-v1",destination_workload_namespace="bookinfo",destination_app="ratings",destination_version="v1",`+
			`destination_service="ratings.bookinfo.svc.cluster.local",destination_service_name="ratings",destination_service_namespace="bookinfo",`+
			`request_protocol="http",response_code=%q,response_flags="-",connection_security_policy="unknown"`, reporter, code)
	}
	var b strings.Builder
	b.WriteString("# HELP istio_requests_total Total requests.\n# TYPE istio_requests_total counter\n")
	fmt.Fprintf(&b, "istio_requests_total{%s} %d\n", labels("200"), total-failed)
	if failed > 0 {
		fmt.Fprintf(&b, "istio_requests_total{%s} %d\n", labels("500"), failed)
	}
	b.WriteString("# TYPE istio_request_duration_milliseconds histogram\n")
	for _, le := range []string{"1", "5", "10", "25", "50", "100", "+Inf"} {
		n := 0
		if le == "+Inf" || parseMust(le) >= parseMust(bucket) {
			n = total
		}
		fmt.Fprintf(&b, "istio_request_duration_milliseconds_bucket{%s,le=%q} %d\n", labels("200"), le, n)
	}
	fmt.Fprintf(&b, "istio_request_duration_milliseconds_count{%s} %d\n", labels("200"), total)
	b.WriteString("envoy_cluster_upstream_rq_total{cluster_name=\"x\"} 7\n")
	return b.String()
}

func parseMust(s string) float64 {
	v, err := parseFloat(s)
	if err != nil {
		panic(err)
	}
	return v
}

func TestParsePromText(t *testing.T) {
	in := `# TYPE x counter
istio_requests_total{a="q\"uo\\te",b="line\nbreak", c="x,y}z"} 12 1700000000000
istio_requests_total 3
other{a="b"} 1
istio_request_duration_milliseconds_bucket{le="+Inf"} 4
`
	got, err := parsePromText(strings.NewReader(in), wantFamilies)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("got %d samples, want 3 (other family skipped): %+v", len(got), got)
	}
	if l := got[0].Labels; l["a"] != `q"uo\te` || l["b"] != "line\nbreak" || l["c"] != "x,y}z" || got[0].Value != 12 {
		t.Errorf("labels/value: %q %v", l, got[0].Value)
	}
	if got[1].Value != 3 || len(got[1].Labels) != 0 {
		t.Errorf("unlabelled sample: %+v", got[1])
	}
	for _, bad := range []string{`istio_requests_total{a="x} 1`, `istio_requests_total{a=x} 1`, `istio_requests_total{a="x"}`, `istio_requests_total abc`} {
		if _, err := parsePromText(strings.NewReader(bad), nil); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestQuantile(t *testing.T) {
	inf := math.Inf(1)
	tests := []struct {
		name    string
		q       float64
		buckets map[float64]float64
		want    float64
	}{
		{"all in one bucket interpolates inside it", 0.99, map[float64]float64{10: 0, 25: 100, inf: 100}, 10 + 15*0.99},
		{"lowest bucket starts at 0", 0.5, map[float64]float64{10: 100, inf: 100}, 5},
		{"rank in +Inf bucket answers the highest finite bound", 0.99, map[float64]float64{10: 50, 25: 90, inf: 100}, 25},
		{"spread", 0.9, map[float64]float64{1: 10, 5: 50, 10: 100, inf: 100}, 5 + 5*(90.0-50)/50},
		{"no observations", 0.99, map[float64]float64{10: 0, inf: 0}, math.NaN()},
		{"no +Inf bucket", 0.99, map[float64]float64{10: 5}, math.NaN()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := quantile(tt.q, tt.buckets)
			if math.IsNaN(tt.want) != math.IsNaN(got) || !math.IsNaN(got) && math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("quantile = %v, want %v", got, tt.want)
			}
		})
	}
}

func scrapeOf(t *testing.T, at time.Time, targets map[string]string) scrape {
	t.Helper()
	s := scrape{At: at, Targets: map[string]map[edgeKey]*counters{}}
	for ip, text := range targets {
		samples, err := parsePromText(strings.NewReader(text), wantFamilies)
		if err != nil {
			t.Fatal(err)
		}
		s.Targets[ip] = fromSamples(samples)
	}
	return s
}

func TestWindowRatesToEdges(t *testing.T) {
	t0 := time.Unix(1000, 0)
	w := &window{span: 30 * time.Second}
	if r, _ := w.rates(); r != nil {
		t.Fatal("rates from no scrapes")
	}
	// The source proxy (reviews-v2) sees the injected aborts; the
	// destination (ratings) sees only the requests that reached it.
	w.add(scrapeOf(t, t0, map[string]string{
		"127.0.0.2": promText("source", 1000, 100, "25"),
		"127.0.0.3": promText("destination", 900, 0, "25"),
	}))
	w.add(scrapeOf(t, t0.Add(10*time.Second), map[string]string{
		"127.0.0.2": promText("source", 1200, 200, "25"), // +200 requests, +100 failed
		"127.0.0.3": promText("destination", 1000, 0, "25"),
	}))
	rates, span := w.rates()
	if span != 10*time.Second {
		t.Errorf("span = %v", span)
	}
	edges := edgesFromRates(rates, nil)
	if len(edges) != 1 {
		t.Fatalf("edges = %+v, want one", edges)
	}
	e := edges[0]
	if e.Source != "bookinfo/reviews-v2" || e.Destination != "bookinfo/ratings-v1" || e.Service != "ratings" {
		t.Errorf("edge identity: %+v", e)
	}
	if e.Reporter != "source" || e.RPS != 20 || e.ErrorPct != 50 || e.Health != "red" {
		t.Errorf("edge = reporter %s, %v rps, %v%% errors, %s; want source, 20, 50, red", e.Reporter, e.RPS, e.ErrorPct, e.Health)
	}
	if e.Codes["500"] != 10 || e.Codes["200"] != 10 {
		t.Errorf("codes = %v", e.Codes)
	}
	if e.P99Ms == nil || math.Abs(*e.P99Ms-24.9) > 0.01 {
		t.Errorf("p99 = %v, want 24.9 (10 + 15*0.99 in the 10..25 bucket)", e.P99Ms)
	}

	// A restarted proxy's counters fall: its new values are the delta.
	// Only the destination reports now, and old scrapes fall out.
	w.add(scrapeOf(t, t0.Add(50*time.Second), map[string]string{"127.0.0.3": promText("destination", 1300, 0, "25")}))
	w.add(scrapeOf(t, t0.Add(60*time.Second), map[string]string{"127.0.0.3": promText("destination", 100, 1, "5")}))
	// Kept: t0+10 s (the last at or before the window's start), +50, +60.
	if len(w.scrapes) != 3 {
		t.Errorf("window keeps %d scrapes, want 3", len(w.scrapes))
	}
	// Increase: 300 before the restart, 100 after it, over 50 s; one 500.
	edges = edgesFromRates(func() map[edgeKey]*counters { r, _ := w.rates(); return r }(), nil)
	if len(edges) != 1 || edges[0].Reporter != "destination" || edges[0].RPS != 8 || edges[0].ErrorPct != 0.3 || edges[0].Health != "orange" {
		t.Errorf("after restart: %+v", edges)
	}
}

func TestHealth(t *testing.T) {
	for _, tt := range []struct {
		rps, pct float64
		want     string
	}{{0, 0, "idle"}, {1, 0, "green"}, {1, 0.1, "orange"}, {1, 4.9, "orange"}, {1, 5, "red"}, {1, 50, "red"}} {
		if got := health(tt.rps, tt.pct); got != tt.want {
			t.Errorf("health(%v, %v) = %s, want %s", tt.rps, tt.pct, got, tt.want)
		}
	}
}

func TestBuildGraphLayersBookinfo(t *testing.T) {
	e := func(src, dst string) Edge {
		s, d := strings.Split(src, "/"), strings.Split(dst, "/")
		return Edge{Source: src, Destination: dst, SourceNamespace: s[0], SourceWorkload: s[1], DestinationNamespace: d[0], DestinationWorkload: d[1], RPS: 1, Health: "green"}
	}
	edges := []Edge{
		e("istio-system/istio-ingressgateway", "bookinfo/productpage-v1"),
		e("bookinfo/productpage-v1", "bookinfo/reviews-v2"),
		e("bookinfo/productpage-v1", "bookinfo/details-v1"),
		e("bookinfo/reviews-v2", "bookinfo/ratings-v1"),
		e("bookinfo/ratings-v1", "bookinfo/reviews-v2"), // a cycle must not loop
	}
	edges[3].Health = "red"
	pods := []podInfo{{Name: "reviews-v1-abc", Namespace: "bookinfo", Workload: "reviews-v1", Labels: map[string]string{"app": "reviews", "version": "v1"}}}
	services := []serviceInfo{{Name: "reviews", Namespace: "bookinfo", Selector: map[string]string{"app": "reviews"}}}
	g := buildGraph(pods, services, edges)
	layers := map[string]int{}
	for _, n := range g.Nodes {
		layers[n.ID] = n.Layer
	}
	want := map[string]int{"istio-system/istio-ingressgateway": 0, "bookinfo/productpage-v1": 1, "bookinfo/reviews-v2": 2,
		"bookinfo/details-v1": 2, "bookinfo/ratings-v1": 3, "bookinfo/reviews-v1": 0}
	for id, l := range want {
		if got, ok := layers[id]; !ok || got != l {
			t.Errorf("%s: layer %d (present %v), want %d", id, got, ok, l)
		}
	}
	for _, n := range g.Nodes {
		if n.ID == "bookinfo/ratings-v1" && n.Health != "red" {
			t.Errorf("ratings health %s, want red from its inbound edge", n.Health)
		}
		if n.ID == "bookinfo/reviews-v1" && (n.App != "reviews" || n.Version != "v1" || first(n.Services) != "bookinfo/reviews") {
			t.Errorf("reviews-v1 node: %+v", n)
		}
	}
	again := buildGraph(pods, services, edges)
	if fmt.Sprint(again.Nodes) != fmt.Sprint(g.Nodes) {
		t.Error("layout is not deterministic")
	}
}

func TestHostMatches(t *testing.T) {
	svc := serviceInfo{Name: "ratings", Namespace: "bookinfo"}
	for _, tt := range []struct {
		host, ns string
		want     bool
	}{
		{"ratings", "bookinfo", true}, {"ratings", "default", false}, {"ratings.bookinfo", "default", true},
		{"ratings.bookinfo.svc", "x", true}, {"ratings.bookinfo.svc.cluster.local", "x", true},
		{"*.bookinfo.svc.cluster.local", "x", true}, {"*", "x", true}, {"*.other.svc.cluster.local", "x", false},
		{"reviews", "bookinfo", false},
	} {
		if got := hostMatches(tt.host, tt.ns, svc); got != tt.want {
			t.Errorf("hostMatches(%q in %s) = %v, want %v", tt.host, tt.ns, got, tt.want)
		}
	}
}

// An injected abort is reported by the source proxy only, with no
// destination workload: it joins the edge to the service's only workload,
// or goes to a service node when several workloads serve it.
func TestEdgesAttributeUnknownDestination(t *testing.T) {
	ok := keyOf(map[string]string{"reporter": "source", "source_workload": "reviews-v3", "source_workload_namespace": "bookinfo",
		"destination_workload": "ratings-v1", "destination_workload_namespace": "bookinfo", "destination_app": "ratings", "destination_version": "v1",
		"destination_service_name": "ratings", "destination_service_namespace": "bookinfo"})
	aborted := ok
	aborted.DstWorkload, aborted.DstNS, aborted.DstApp, aborted.DstVersion = "unknown", "unknown", "", ""
	idle := ok
	idle.SrcWorkload = "reviews-v2"
	rates := map[edgeKey]*counters{
		ok:      {Requests: 10, Codes: map[string]float64{"200": 10}, Buckets: map[float64]float64{}},
		aborted: {Requests: 10, Codes: map[string]float64{"500": 10}, Buckets: map[float64]float64{}},
		idle:    {Requests: 0, Codes: map[string]float64{"200": 0}, Buckets: map[float64]float64{}},
	}
	tests := []struct {
		name      string
		workloads []string
		want      map[string]float64 // destination → error %
	}{
		{"one workload", []string{"ratings-v1"}, map[string]float64{"bookinfo/ratings-v1": 50}},
		{"several workloads", []string{"ratings-v1", "ratings-v2"}, map[string]float64{"bookinfo/ratings-v1": 0, "bookinfo/service:ratings": 100}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			edges := edgesFromRates(rates, func(ns, svc string) []string {
				if ns == "bookinfo" && svc == "ratings" {
					return tt.workloads
				}
				return nil
			})
			got := map[string]float64{}
			for _, e := range edges {
				if e.Source != "bookinfo/reviews-v3" {
					t.Errorf("unexpected edge (idle edges are dropped): %+v", e)
				}
				got[e.Destination] = e.ErrorPct
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("edges = %v, want %v", got, tt.want)
			}
			g := buildGraph(nil, nil, edges)
			for _, n := range g.Nodes {
				if n.ID == "bookinfo/service:ratings" && (n.Kind != "service" || n.App != "ratings" || n.Health != "red") {
					t.Errorf("service node: %+v", n)
				}
			}
		})
	}
}
