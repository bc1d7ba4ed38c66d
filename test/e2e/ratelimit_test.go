package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// tutorialRateLimit is the tutorial's rate-limit EnvoyFilter, verbatim: no
// namespace, no workloadSelector.
const tutorialRateLimit = "test/e2e/testdata/tutorial-rate-limit.yaml"

// echoInDefault is a workload in the default namespace (the details app,
// injected by pod label) for the EnvoyFilter applied as the tutorial does.
const echoInDefault = `
apiVersion: v1
kind: Service
metadata:
  name: echo
  namespace: default
spec:
  ports:
  - port: 9080
    name: http
  selector:
    app: echo
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: echo
  namespace: default
spec:
  replicas: 1
  selector:
    matchLabels: {app: echo}
  template:
    metadata:
      labels:
        app: echo
        sidecar.istio.io/inject: "true"
    spec:
      containers:
      - name: echo
        image: skein/bookinfo:latest
        command: ["bookinfo", "details"]
        ports:
        - containerPort: 9080
`

// luaOnDetails inserts an HTTP filter the proxy does not implement.
const luaOnDetails = `
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: lua-details
  namespace: bookinfo
spec:
  workloadSelector:
    labels: {app: details}
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: SIDECAR_INBOUND
      listener:
        filterChain:
          filter:
            name: envoy.filters.network.http_connection_manager
            subFilter: {name: envoy.filters.http.router}
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.filters.http.lua
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua
          default_source_code:
            inline_string: "function envoy_on_request(h) end"
`

// TestRateLimitEnvoyFilter applies EnvoyFilters to a running mesh: one the
// proxy cannot implement (NACKed, last good config kept), then the
// tutorial's local rate limit, mesh-namespace-wide on Bookinfo and, as the
// tutorial applies it, in the default namespace.
func TestRateLimitEnvoyFilter(t *testing.T) {
	m := startMesh(t, "samples/bookinfo")
	m.apply(t, echoInDefault)

	t.Run("unimplemented filter is NACKed, traffic keeps working", func(t *testing.T) {
		m.apply(t, luaOnDetails)
		eventually(t, 10*time.Second, "details NACKing the lua filter", func() error {
			out := m.skein(t, "proxy-status")
			if !strings.Contains(out, "rejected LDS") || !strings.Contains(out, "envoy.filters.http.lua") || !strings.Contains(out, "not supported") {
				return fmt.Errorf("no NACK of the lua filter:\n%s", out)
			}
			stale := false
			for _, l := range strings.Split(out, "\n") {
				if strings.HasPrefix(l, "details-") && strings.Contains(l, "STALE") {
					stale = true
				}
			}
			if !stale {
				return fmt.Errorf("details not STALE:\n%s", out)
			}
			t.Logf("proxy-status:\n%s", out)
			return nil
		})
		for i := 0; i < 5; i++ {
			if body := page(t, m, ""); strings.Contains(body, "details-error") {
				t.Fatalf("request %d: details failing after the NACK", i)
			}
		}
		m.skein(t, "delete", "envoyfilter", "lua-details", "-n", "bookinfo")
		eventually(t, 10*time.Second, "details synced again", func() error {
			if out := m.skein(t, "proxy-status"); strings.Contains(out, "STALE") {
				return fmt.Errorf("%s", out)
			}
			return nil
		})
	})

	t.Run("tutorial filter with -n bookinfo limits the product page", func(t *testing.T) {
		out := m.skein(t, "apply", "-n", "bookinfo", "-f", tutorialRateLimit)
		if !strings.Contains(out, "envoyfilter.networking.istio.io/rate-limit-filter created") {
			t.Fatalf("apply: %s", out)
		}
		for _, pod := range []string{"productpage-v1", "details-v1", "reviews-v1", "reviews-v2", "reviews-v3", "ratings-v1"} {
			waitForFilter(t, podIP(t, m, pod))
		}
		codes := burst(t, 101, func() (int, string, error) { return get(m.ingress+"/productpage", nil) })
		ip := podIP(t, m, "productpage-v1")
		t.Logf("productpage: %d ok, %d rate limited", statValue(t, ip, "local_rate_limiter.http_local_rate_limit.ok"),
			statValue(t, ip, "local_rate_limiter.http_local_rate_limit.rate_limited"))
		checkHundredThen429(t, codes)
		if got := statValue(t, ip, "local_rate_limiter.http_local_rate_limit.enforced"); got != 1 {
			t.Errorf("productpage enforced = %d, want 1", got)
		}
	})

	t.Run("tutorial filter verbatim limits the default namespace", func(t *testing.T) {
		var ip string
		eventually(t, 30*time.Second, "the echo pod serving", func() error {
			out, err := run(t, "", "get", "pods", "-n", "default", "-o", "wide", "--server", m.server, "--credential-file", m.credential())
			if err != nil || !strings.Contains(out, "echo-") {
				return fmt.Errorf("no echo pod: %v %s", err, out)
			}
			ip = podIP(t, m, "echo-")
			code, _, err := get("http://"+ip+":9080/details/0", nil)
			if err != nil || code != http.StatusOK {
				return fmt.Errorf("GET /details/0 on %s: %d %v", ip, code, err)
			}
			return nil
		})
		out := m.skein(t, "apply", "-f", tutorialRateLimit)
		if !strings.Contains(out, "envoyfilter.networking.istio.io/rate-limit-filter created") {
			t.Fatalf("apply: %s", out)
		}
		if got := m.skein(t, "get", "envoyfilters", "-n", "default"); !strings.Contains(got, "rate-limit-filter") {
			t.Fatalf("the filter is not in the default namespace:\n%s", got)
		}
		waitForFilter(t, ip)
		codes := burst(t, 101, func() (int, string, error) { return get("http://"+ip+":9080/details/0", nil) })
		checkHundredThen429(t, codes)
	})
}

// waitForFilter waits until the proxy at ip runs the local rate limit
// filter, reading its admin config dump (which spends no tokens).
func waitForFilter(t *testing.T, ip string) {
	t.Helper()
	eventually(t, 10*time.Second, "local_ratelimit in "+ip+"'s config", func() error {
		_, body, err := get("http://"+ip+":15000/config_dump", nil)
		if err != nil {
			return err
		}
		if !strings.Contains(body, "envoy.filters.http.local_ratelimit") {
			return fmt.Errorf("not yet")
		}
		return nil
	})
}

type result struct {
	code int
	body string
}

// burst sends n requests one after the other and records the answers.
func burst(t *testing.T, n int, do func() (int, string, error)) []result {
	t.Helper()
	start := time.Now()
	out := make([]result, 0, n)
	for i := 0; i < n; i++ {
		code, body, err := do()
		if err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
		out = append(out, result{code, body})
	}
	t.Logf("%d requests in %s", n, time.Since(start).Round(time.Millisecond))
	return out
}

// checkHundredThen429 is the tutorial's promise: 100 requests a minute
// pass, the 101st is refused by the local rate limiter.
func checkHundredThen429(t *testing.T, rs []result) {
	t.Helper()
	for i, r := range rs[:100] {
		if r.code != http.StatusOK {
			t.Fatalf("request %d: %d %.100q, want 200", i+1, r.code, r.body)
		}
	}
	if last := rs[100]; last.code != http.StatusTooManyRequests || !strings.Contains(last.body, "local_rate_limited") {
		t.Fatalf("request 101: %d %.100q, want 429 local_rate_limited", last.code, last.body)
	}
}
