package e2e

import (
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// promSample is one line of a /stats/prometheus page.
type promSample struct {
	name   string
	labels map[string]string
	value  float64
}

var (
	promLine  = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$`)
	promLabel = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)
)

// scrape reads a proxy's Prometheus endpoint on its pod IP.
func scrape(t *testing.T, ip string) []promSample {
	t.Helper()
	code, body, err := get("http://"+ip+":15090/stats/prometheus", nil)
	if err != nil || code != http.StatusOK {
		t.Fatalf("scrape %s: %d %v", ip, code, err)
	}
	var out []promSample
	for _, l := range strings.Split(body, "\n") {
		m := promLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			t.Fatalf("scrape %s: bad value in %q", ip, l)
		}
		s := promSample{name: m[1], labels: map[string]string{}, value: v}
		for _, lm := range promLabel.FindAllStringSubmatch(m[2], -1) {
			s.labels[lm[1]] = lm[2]
		}
		out = append(out, s)
	}
	return out
}

// sum adds the samples of name whose labels include want, grouped by the
// value of label by.
func sum(samples []promSample, name string, want map[string]string, by string) map[string]float64 {
	out := map[string]float64{}
next:
	for _, s := range samples {
		if s.name != name {
			continue
		}
		for k, v := range want {
			if s.labels[k] != v {
				continue next
			}
		}
		out[s.labels[by]] += s.value
	}
	return out
}

func total(m map[string]float64) float64 {
	var n float64
	for _, v := range m {
		n += v
	}
	return n
}

// TestIstioMetrics: Istio's standard metrics agree between the two ends of
// every call: 100 product pages make 100 calls to reviews, reported once by
// productpage's sidecar (reporter=source) and once by the reviews pods'
// sidecars (reporter=destination), labelled through the metadata exchange.
func TestIstioMetrics(t *testing.T) {
	m := startMesh(t, "samples/bookinfo")
	var pods map[string]string
	eventually(t, 30*time.Second, "bookinfo pods ready", func() error {
		var err error
		pods, err = readyPods(m, "bookinfo")
		if err == nil && len(podsWithPrefix(pods, "reviews-")) < 3 {
			err = fmt.Errorf("reviews pods: %v", pods)
		}
		return err
	})
	productpage := podsWithPrefix(pods, "productpage-v1")
	if len(productpage) != 1 {
		t.Fatalf("productpage pods: %v", pods)
	}
	ppIP := pods[productpage[0]]
	reviewsIPs := map[string]string{}
	for _, p := range podsWithPrefix(pods, "reviews-") {
		reviewsIPs[p] = pods[p]
	}

	// Tag every metric with the caller's User-Agent (a Telemetry
	// tagOverride; productpage propagates the header to reviews), so the
	// counts below are this test's requests and nothing else's.
	m.apply(t, `apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata:
  name: mesh-default
  namespace: istio-system
spec:
  metrics:
  - providers: [{name: prometheus}]
    overrides:
    - match: {metric: ALL_METRICS, mode: CLIENT_AND_SERVER}
      tagOverrides:
        user_agent: {value: "request.headers['user-agent']"}
`)
	ua := fmt.Sprintf("skein-metrics-e2e-%d", time.Now().UnixNano())
	eventually(t, 30*time.Second, "the user_agent tag on both sides", func() error {
		if _, _, err := get(m.ingress+"/productpage", map[string]string{"User-Agent": "probe"}); err != nil {
			return err
		}
		probe := map[string]string{"user_agent": "probe", "destination_service_name": "reviews"}
		if len(sum(scrape(t, ppIP), "istio_requests_total", probe, "reporter")) == 0 {
			return fmt.Errorf("productpage reports no user_agent=probe request to reviews")
		}
		for _, ip := range reviewsIPs {
			if len(sum(scrape(t, ip), "istio_requests_total", probe, "reporter")) > 0 {
				return nil
			}
		}
		return fmt.Errorf("no reviews sidecar reports user_agent=probe")
	})

	dest := map[string]string{"reporter": "destination", "source_workload": "productpage-v1", "response_code": "200", "destination_service_name": "reviews", "user_agent": ua}
	src := map[string]string{"reporter": "source", "source_workload": "productpage-v1", "response_code": "200", "destination_service_name": "reviews", "user_agent": ua}
	const n = 100
	for i := range n {
		code, _, err := get(m.ingress+"/productpage", map[string]string{"User-Agent": ua})
		if err != nil || code != http.StatusOK {
			t.Fatalf("request %d: %d %v", i, code, err)
		}
	}
	destCount, destHist := map[string]float64{}, map[string]float64{}
	for _, ip := range reviewsIPs {
		s := scrape(t, ip)
		for k, v := range sum(s, "istio_requests_total", dest, "destination_workload") {
			destCount[k] += v
		}
		for k, v := range sum(s, "istio_request_duration_milliseconds_count", dest, "destination_workload") {
			destHist[k] += v
		}
	}
	pp := scrape(t, ppIP)
	srcCount := sum(pp, "istio_requests_total", src, "destination_workload")
	srcHist := sum(pp, "istio_request_duration_milliseconds_count", src, "destination_workload")
	t.Logf("reporter=destination: %v; reporter=source: %v", destCount, srcCount)
	if total(destCount) != n {
		t.Errorf("reviews sidecars report %v requests from productpage-v1 (%v), want %d", total(destCount), destCount, n)
	}
	for w, c := range destCount {
		if !strings.HasPrefix(w, "reviews-v") {
			t.Errorf("destination_workload %q", w)
		}
		if srcCount[w] != c {
			t.Errorf("%s: destination reports %v, source reports %v", w, c, srcCount[w])
		}
		if destHist[w] != c || srcHist[w] != c {
			t.Errorf("%s: duration histogram _count dest %v source %v, want %v", w, destHist[w], srcHist[w], c)
		}
	}
	if total(srcCount) != n {
		t.Errorf("productpage sidecar reports %v requests to reviews, want %d", total(srcCount), n)
	}
	// The ingress gateway reports its calls to productpage as the source.
	gw := map[string]string{"reporter": "destination", "source_workload": "istio-ingressgateway", "user_agent": ua, "response_code": "200"}
	if got := total(sum(pp, "istio_requests_total", gw, "destination_workload")); got != n {
		t.Errorf("productpage reports %v requests from the ingress gateway, want %d", got, n)
	}

	// Full label set on one series, as Istio shows it.
	for _, s := range scrape(t, ppIP) {
		if s.name != "istio_requests_total" || s.labels["reporter"] != "destination" || s.labels["user_agent"] != ua {
			continue
		}
		for k, want := range map[string]string{
			"destination_workload": "productpage-v1", "destination_app": "productpage", "destination_version": "v1",
			"destination_service": "productpage.bookinfo.svc.cluster.local", "destination_workload_namespace": "bookinfo",
			"request_protocol": "http", "connection_security_policy": "mutual_tls",
		} {
			if s.labels[k] != want {
				t.Errorf("productpage inbound: %s = %q, want %q (%v)", k, s.labels[k], want, s.labels)
			}
		}
		if s.labels["source_workload"] == "unknown" || !strings.HasPrefix(s.labels["source_principal"], "spiffe://") {
			t.Errorf("productpage inbound: source not identified: %v", s.labels)
		}
		break
	}

	// Istio's default proxyStatsMatcher: Envoy's per-cluster stats are not
	// exported, the server ones are.
	var sawServer bool
	for _, s := range scrape(t, ppIP) {
		if s.name == "envoy_cluster_upstream_rq_total" {
			t.Errorf("default stats matcher exported %s %v", s.name, s.labels)
		}
		sawServer = sawServer || strings.HasPrefix(s.name, "envoy_server_")
	}
	if !sawServer {
		t.Error("envoy_server_* stats missing")
	}
}
