package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestFaultsMirrorCORS walks Istio's fault injection task on Bookinfo
// (the 7 s ratings delay for jason that exposes productpage's 3 s reviews
// timeout, then the abort), then mirrors reviews traffic to another
// Deployment and answers a CORS preflight at the ingress gateway.
func TestFaultsMirrorCORS(t *testing.T) {
	m := startMesh(t, "samples/bookinfo")
	for _, f := range []string{"destination-rule-all.yaml", "virtual-service-all-v1.yaml", "virtual-service-reviews-test-v2.yaml"} {
		m.apply(t, sampleFile(t, f))
	}
	eventually(t, 20*time.Second, "jason on reviews v2 (black stars)", func() error {
		if got := m.stars(t, "jason"); got != "black" {
			return fmt.Errorf("jason sees %s", got)
		}
		return nil
	})

	t.Run("delay", func(t *testing.T) {
		m.apply(t, sampleFile(t, "virtual-service-ratings-test-delay.yaml"))
		var took time.Duration
		eventually(t, 40*time.Second, "jason's page to show the reviews error", func() error {
			start := time.Now()
			got := m.stars(t, "jason")
			took = time.Since(start)
			if got != "reviews-error" {
				return fmt.Errorf("jason sees %s after %v", got, took)
			}
			return nil
		})
		// productpage waits 3 s for reviews and retries once: ~6 s.
		if took < 5*time.Second || took > 9*time.Second {
			t.Errorf("jason's page took %v, want about 6 s (3 s timeout + 1 retry)", took)
		}
		t.Logf("jason's page with the 7 s ratings delay: reviews-error after %v", took.Round(10*time.Millisecond))
		start := time.Now()
		if got := m.stars(t, ""); got != "none" {
			t.Errorf("anonymous user sees %s, want reviews v1 (no stars)", got)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("anonymous page took %v: the delay must apply to jason only", took)
		}
	})

	t.Run("abort", func(t *testing.T) {
		m.apply(t, sampleFile(t, "virtual-service-ratings-test-abort.yaml"))
		eventually(t, 20*time.Second, "jason's page to show the ratings error", func() error {
			body := page(t, m, "jason")
			if !strings.Contains(body, "ratings-error") || strings.Contains(body, "reviews-error") {
				return fmt.Errorf("no ratings-error for jason: %.300s", body)
			}
			return nil
		})
		if body := page(t, m, ""); strings.Contains(body, "ratings-error") || strings.Contains(body, "reviews-error") {
			t.Errorf("anonymous page shows an error")
		}
	})

	t.Run("mirror", func(t *testing.T) {
		v3 := podIP(t, m, "reviews-v3-")
		before := statValue(t, v3, "http.inbound_0.0.0.0_9080.downstream_rq_total")
		m.apply(t, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: bookinfo
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
    mirror: {host: reviews, subset: v3}
    mirrorPercentage: {value: 100}
`)
		eventually(t, 20*time.Second, "reviews v3 to receive mirrored requests", func() error {
			if got := m.stars(t, "jason"); got != "none" {
				return fmt.Errorf("jason sees %s, want v1's page: mirrors must not answer", got)
			}
			if now := statValue(t, v3, "http.inbound_0.0.0.0_9080.downstream_rq_total"); now <= before {
				return fmt.Errorf("reviews-v3 inbound requests %d, still %d", now, before)
			}
			return nil
		})
	})

	t.Run("cors preflight at the ingress", func(t *testing.T) {
		m.apply(t, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: bookinfo
  namespace: bookinfo
spec:
  hosts: ["*"]
  gateways: [bookinfo-gateway]
  http:
  - match:
    - uri: {exact: /productpage}
    - uri: {prefix: /static}
    - uri: {exact: /login}
    - uri: {exact: /logout}
    - uri: {prefix: /api/v1/products}
    corsPolicy:
      allowOrigins: [{exact: "https://shop.example.com"}]
      allowMethods: [GET, POST]
      allowHeaders: [x-custom]
      maxAge: 1h
    route:
    - destination: {host: productpage, port: {number: 9080}}
`)
		preflight := func(origin string) (*http.Response, error) {
			req, _ := http.NewRequest(http.MethodOptions, m.ingress+"/api/v1/products", nil)
			req.Header.Set("Origin", origin)
			req.Header.Set("Access-Control-Request-Method", "POST")
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			return resp, err
		}
		eventually(t, 20*time.Second, "the gateway to answer the preflight", func() error {
			resp, err := preflight("https://shop.example.com")
			if err != nil {
				return err
			}
			h := resp.Header
			if resp.StatusCode != 200 || h.Get("Access-Control-Allow-Origin") != "https://shop.example.com" ||
				h.Get("Access-Control-Allow-Methods") != "GET,POST" || h.Get("Access-Control-Allow-Headers") != "x-custom" ||
				h.Get("Access-Control-Max-Age") != "3600" {
				return fmt.Errorf("preflight: %d %v", resp.StatusCode, h)
			}
			return nil
		})
		resp, err := preflight("https://evil.example.com")
		if err != nil {
			t.Fatal(err)
		}
		if resp.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("an unknown origin got Access-Control-Allow-Origin %q", resp.Header.Get("Access-Control-Allow-Origin"))
		}
		req, _ := http.NewRequest(http.MethodGet, m.ingress+"/api/v1/products", nil)
		req.Header.Set("Origin", "https://shop.example.com")
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "https://shop.example.com" {
			t.Errorf("simple CORS request: %d, Access-Control-Allow-Origin %q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
		}
	})
}

func sampleFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "samples", "bookinfo", "networking", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// page fetches the product page through the ingress as user ("" anonymous).
func page(t *testing.T, m *mesh, user string) string {
	t.Helper()
	headers := map[string]string{}
	if user != "" {
		headers["Cookie"] = "session=" + user
	}
	code, body, err := get(m.ingress+"/productpage", headers)
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /productpage: %d %v", code, err)
	}
	return body
}

// podIP finds the IP of the first pod whose name starts with prefix.
func podIP(t *testing.T, m *mesh, prefix string) string {
	t.Helper()
	out := m.skein(t, "get", "pods", "-A", "-o", "wide")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	header := strings.Fields(lines[0])
	col := -1
	for i, h := range header {
		if h == "IP" {
			col = i
		}
	}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		for _, name := range f {
			if strings.HasPrefix(name, prefix) && col >= 0 && col < len(f) {
				return f[col]
			}
		}
	}
	t.Fatalf("no pod %s* in:\n%s", prefix, out)
	return ""
}

// statValue reads one counter from a proxy's admin /stats on its pod IP.
func statValue(t *testing.T, ip, name string) int {
	t.Helper()
	_, body, err := get("http://"+ip+":15000/stats", nil)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `: (\d+)$`).FindStringSubmatch(body)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}
