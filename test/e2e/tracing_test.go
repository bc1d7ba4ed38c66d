package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// zipkinSpan is the part of Zipkin's v2 span the test checks.
type zipkinSpan struct {
	TraceID       string `json:"traceId"`
	ID            string `json:"id"`
	ParentID      string `json:"parentId"`
	Name          string `json:"name"`
	Kind          string `json:"kind"`
	Duration      int64  `json:"duration"`
	LocalEndpoint struct {
		ServiceName string `json:"serviceName"`
	} `json:"localEndpoint"`
	Tags map[string]string `json:"tags"`
}

func (s zipkinSpan) service() string { return strings.SplitN(s.LocalEndpoint.ServiceName, ".", 2)[0] }

// TestTracingAndAccessLogs: with a root Telemetry sampling 100% and no
// provider configured, one Bookinfo request through the ingress becomes
// one trace in the control plane's built-in store, ingress → productpage
// → details and reviews → ratings with correct parent links; a mesh
// config with accessLogFile makes sidecars write Istio's access log lines.
func TestTracingAndAccessLogs(t *testing.T) {
	m := startMesh(t, "samples/bookinfo")
	applied := time.Now()
	m.apply(t, `apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata:
  name: mesh-default
  namespace: istio-system
spec:
  tracing:
  - randomSamplingPercentage: 100
`)

	// Requests until a trace reaches ratings (reviews v2/v3 call it).
	var trace []zipkinSpan
	var firstTrace time.Duration
	requests := 0
	eventually(t, 60*time.Second, "a trace ingress → productpage → details, reviews → ratings", func() error {
		requests++
		if code, _, err := get(m.ingress+"/productpage", nil); err != nil || code != http.StatusOK {
			return fmt.Errorf("GET /productpage: %d %v", code, err)
		}
		time.Sleep(1500 * time.Millisecond) // the proxies flush spans every second
		var traces [][]zipkinSpan
		if err := getJSON("http://"+m.server+"/api/v2/traces?limit=100&serviceName=istio-ingressgateway.istio-system", &traces); err != nil {
			return err
		}
		if len(traces) > 0 && firstTrace == 0 {
			firstTrace = time.Since(applied)
		}
		for _, tr := range traces {
			if err := checkTrace(tr); err == nil {
				trace = tr
				return nil
			}
		}
		return fmt.Errorf("%d traces, none complete yet", len(traces))
	})
	t.Logf("first trace in the store %v after applying the Telemetry; a complete trace after %d requests: %d spans", firstTrace.Round(time.Millisecond), requests, len(trace))
	for _, s := range trace {
		t.Logf("  %-8s %-12s %-55s parent=%-16s id=%s %dµs", s.Kind, s.service(), s.Name, s.ParentID, s.ID, s.Duration)
	}

	// The same trace by id, with Zipkin's query API.
	var byID []zipkinSpan
	if err := getJSON("http://"+m.server+"/api/v2/trace/"+trace[0].TraceID, &byID); err != nil || len(byID) != len(trace) {
		t.Errorf("GET /api/v2/trace/%s: %d spans, %v; want %d", trace[0].TraceID, len(byID), err, len(trace))
	}
	var services []string
	if err := getJSON("http://"+m.server+"/api/v2/services", &services); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"istio-ingressgateway.istio-system", "productpage.bookinfo", "details.bookinfo", "reviews.bookinfo", "ratings.bookinfo"} {
		if !contains(services, want) {
			t.Errorf("services %v lack %s", services, want)
		}
	}

	// Access logs: Istio's text format on the sidecars' stdout.
	m.apply(t, `apiVersion: v1
kind: ConfigMap
metadata:
  name: istio
  namespace: istio-system
data:
  mesh: |
    accessLogFile: /dev/stdout
`)
	logs, _ := filepath.Glob(filepath.Join(m.dataDir, "logs", "bookinfo", "productpage-*", "istio-proxy.log"))
	if len(logs) == 0 {
		t.Fatalf("no productpage istio-proxy.log under %s", m.dataDir)
	}
	// [time] "GET /productpage HTTP/1.1" 200 - via_upstream - "-" 0 <bytes>
	// <ms> <upstream ms> "<xff>" "<ua>" "<request id>" "<authority>"
	// "<app>" inbound|9080|| - <pod>:9080 <peer> <sni> <route>
	line := regexp.MustCompile(`(?m)^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] "GET /productpage HTTP/1\.1" 200 - via_upstream - "-" 0 \d+ \d+ \d+ "[^"]*" "[^"]*" "[0-9a-f-]{36}" "[^"]+" "127\.[\d.]+:9080" inbound\|9080\|\| - 127\.[\d.]+:9080 127\.[\d.]+:\d+ \S+ \S+$`)
	eventually(t, 30*time.Second, "an access log line for GET /productpage in "+logs[0], func() error {
		if _, _, err := get(m.ingress+"/productpage", nil); err != nil {
			return err
		}
		b, err := os.ReadFile(logs[0])
		if err != nil {
			return err
		}
		if l := line.Find(b); l != nil {
			t.Logf("access log line: %s", l)
			return nil
		}
		return fmt.Errorf("no matching line; tail:\n%s", tail(string(b), 600))
	})
}

// checkTrace verifies one trace covers the Bookinfo call graph with
// Envoy's (non-shared) span model: each proxy's span is the parent of the
// next hop's, client spans sit under their workload's server span.
func checkTrace(tr []zipkinSpan) error {
	byID := map[string]zipkinSpan{}
	for _, s := range tr {
		byID[s.ID] = s
	}
	roots := 0
	for _, s := range tr {
		if s.ParentID == "" {
			roots++
			if s.service() != "istio-ingressgateway" || s.Kind != "SERVER" {
				return fmt.Errorf("root span is %s %s", s.Kind, s.service())
			}
			continue
		}
		if _, ok := byID[s.ParentID]; !ok {
			return fmt.Errorf("span %s (%s) has unknown parent %s", s.ID, s.Name, s.ParentID)
		}
	}
	if roots != 1 {
		return fmt.Errorf("%d root spans", roots)
	}
	// server span of `to` whose parent is a client span of `from` whose
	// parent is from's server span (or the ingress root for productpage).
	hop := func(from, to string) error {
		for _, s := range tr {
			if s.Kind != "SERVER" || s.service() != to {
				continue
			}
			c := byID[s.ParentID]
			if from == "istio-ingressgateway" && c.service() == from {
				return nil
			}
			if c.Kind == "CLIENT" && c.service() == from {
				if p := byID[c.ParentID]; p.Kind == "SERVER" && p.service() == from {
					return nil
				}
			}
		}
		return fmt.Errorf("no %s → %s hop", from, to)
	}
	for _, h := range [][2]string{{"istio-ingressgateway", "productpage"}, {"productpage", "details"}, {"productpage", "reviews"}, {"reviews", "ratings"}} {
		if err := hop(h[0], h[1]); err != nil {
			return err
		}
	}
	return nil
}

func getJSON(url string, v any) error {
	code, body, err := get(url, nil)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("GET %s: %d %.200s", url, code, body)
	}
	return json.Unmarshal([]byte(body), v)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
