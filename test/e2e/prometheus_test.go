package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skein-mesh/skein/samples/addons"
)

// prometheusVersion is the Prometheus server the test builds from its Go
// module (v0.316.0 is Prometheus 3.x's module version).
const prometheusVersion = "v0.316.0"

var prometheusOnce struct {
	sync.Once
	bin string
	err error
}

// prometheusBinary builds Prometheus once per machine into the user cache
// (reused by later runs). Without it the test skips, except under CI where
// it fails: CI must exercise the real thing.
func prometheusBinary(t *testing.T) string {
	t.Helper()
	prometheusOnce.Do(func() {
		cache, err := os.UserCacheDir()
		if err != nil {
			prometheusOnce.err = err
			return
		}
		dir := filepath.Join(cache, "skein-e2e-bin", "prometheus-"+prometheusVersion)
		bin := filepath.Join(dir, "prometheus")
		if _, err := os.Stat(bin); err == nil {
			prometheusOnce.bin = bin
			return
		}
		// Build into a private directory and rename, so a concurrent or
		// interrupted build never leaves a half-written binary behind.
		tmp, err := os.MkdirTemp(filepath.Dir(dir), "build-")
		if err != nil {
			if err = os.MkdirAll(filepath.Dir(dir), 0o755); err == nil {
				tmp, err = os.MkdirTemp(filepath.Dir(dir), "build-")
			}
			if err != nil {
				prometheusOnce.err = err
				return
			}
		}
		defer os.RemoveAll(tmp)
		start := time.Now()
		// The web UI assets are not in the module (builtinassets is off):
		// the HTTP API, which is all the test uses, works without them.
		// Prometheus' own build tags leave out every service discovery but
		// file, HTTP and Kubernetes (the ones the tests use): the cloud SDKs
		// are most of a cold build's minutes. -s -w skips DWARF at link time.
		cmd := exec.Command("go", "install", "-tags", "remove_all_sd,enable_kubernetes_sd", "-ldflags", "-s -w",
			"github.com/prometheus/prometheus/cmd/prometheus@"+prometheusVersion)
		cmd.Env = append(os.Environ(), "GOFLAGS=", "GOBIN="+tmp)
		out, err := cmd.CombinedOutput()
		if err != nil {
			prometheusOnce.err = fmt.Errorf("go install prometheus@%s: %v\n%s", prometheusVersion, err, tail(string(out), 3000))
			return
		}
		t.Logf("built Prometheus %s in %s", prometheusVersion, time.Since(start).Round(time.Second))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			prometheusOnce.err = err
			return
		}
		if err := os.Rename(filepath.Join(tmp, "prometheus"), bin); err != nil {
			prometheusOnce.err = err
			return
		}
		prometheusOnce.bin = bin
	})
	if prometheusOnce.err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("Prometheus is required under CI: %v", prometheusOnce.err)
		}
		t.Skipf("no Prometheus server: %v", prometheusOnce.err)
	}
	return prometheusOnce.bin
}

// promServer is a running Prometheus.
type promServer struct{ base string }

func startPrometheus(t *testing.T, bin, sdURL string) *promServer {
	t.Helper()
	return startPrometheusWith(t, bin, fmt.Sprintf(`- job_name: skein-mesh
  http_sd_configs:
  - url: %s
    refresh_interval: 1s
`, sdURL))
}

// startPrometheusWith runs Prometheus with the given scrape_configs list
// (YAML), scraping every second, and the tutorial's alert rules.
func startPrometheusWith(t *testing.T, bin, scrapeConfigs string) *promServer {
	t.Helper()
	dir := t.TempDir()
	rules, err := os.ReadFile(filepath.Join(repoRoot, "samples", "addons", "prometheus", "istio.rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	rulesPath := filepath.Join(dir, "istio.rules.yml")
	if err := os.WriteFile(rulesPath, rules, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
- %s
scrape_configs:
%s`, rulesPath, scrapeConfigs)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t, "127.0.0.1"))
	logPath := filepath.Join(dir, "prometheus.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logFile.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("prometheus log:\n%s", tail(string(b), 3000))
		}
	})
	p := &promServer{base: "http://" + addr}
	eventually(t, 30*time.Second, "Prometheus to be ready", func() error {
		code, body, err := get(p.base+"/-/ready", nil)
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("%d %v %.100s", code, err, body)
		}
		return nil
	})
	return p
}

// vecSample is one element of an instant vector.
type vecSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

func (s vecSample) value() float64 {
	v, _ := s.Value[1].(string)
	f, _ := strconv.ParseFloat(v, 64)
	return f
}

// query runs an instant PromQL query; a parse or evaluation error is an
// error, as Grafana would show it.
func (p *promServer) query(expr string) ([]vecSample, error) {
	code, body, err := get(p.base+"/api/v1/query?query="+url.QueryEscape(expr), nil)
	if err != nil {
		return nil, err
	}
	var resp struct {
		Status, Error, ErrorType string
		Data                     struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		}
	}
	if err := json.Unmarshal([]byte(body), &resp); err != nil {
		return nil, fmt.Errorf("query %s: HTTP %d: %.200s", expr, code, body)
	}
	if resp.Status != "success" {
		return nil, fmt.Errorf("query %s: %s: %s", expr, resp.ErrorType, resp.Error)
	}
	if resp.Data.ResultType != "vector" {
		return nil, fmt.Errorf("query %s: result type %s, want vector", expr, resp.Data.ResultType)
	}
	var out []vecSample
	err = json.Unmarshal(resp.Data.Result, &out)
	return out, err
}

// one runs expr and wants exactly one sample.
func (p *promServer) one(expr string) (float64, error) {
	res, err := p.query(expr)
	if err != nil {
		return 0, err
	}
	if len(res) != 1 {
		return 0, fmt.Errorf("%s: %d samples, want 1: %v", expr, len(res), res)
	}
	return res[0].value(), nil
}

// TestPrometheus scrapes Bookinfo with a real Prometheus through the
// control plane's service discovery, evaluates the tutorial's alerts, and
// runs the queries a service graph and the Grafana dashboards use.
func TestPrometheus(t *testing.T) {
	bin := prometheusBinary(t)
	m := startMesh(t, "samples/bookinfo")
	prom := startPrometheus(t, bin, "http://"+m.server+"/debug/prometheus_sd")

	var proxies []struct {
		Name string `json:"name"`
	}
	code, body, err := get("http://"+m.server+"/debug/syncz", map[string]string{"Authorization": "Bearer " + m.adminToken(t)})
	if err != nil || code != http.StatusOK || json.Unmarshal([]byte(body), &proxies) != nil {
		t.Fatalf("/debug/syncz: %d %v %.200s", code, err, body)
	}
	nProxies := len(proxies)
	t.Logf("%d proxies connected", nProxies)

	begin := time.Now()
	for i := 0; i < 50; i++ {
		if code, _, err := get(m.ingress+"/productpage", nil); err != nil || code != http.StatusOK {
			t.Fatalf("request %d: %d %v", i, code, err)
		}
	}
	t.Logf("50 requests through the ingress in %s", time.Since(begin).Round(time.Millisecond))

	begin = time.Now()
	eventually(t, 60*time.Second, "every target scraped and up", func() error {
		if v, err := prom.one(`up{job="pilot"}`); err != nil || v != 1 {
			return fmt.Errorf("up{job=\"pilot\"} = %v %v", v, err)
		}
		if v, err := prom.one(`sum(up{job="envoy-stats"})`); err != nil || int(v) != nProxies {
			return fmt.Errorf("proxies up = %v (want %d) %v", v, nProxies, err)
		}
		return nil
	})
	t.Logf("all %d targets up %s after the traffic", nProxies+1, time.Since(begin).Round(time.Millisecond))

	t.Run("alert expressions", func(t *testing.T) {
		if v, err := prom.one(`avg(up{job="pilot"})`); err != nil || v != 1 {
			t.Errorf(`avg(up{job="pilot"}) = %v %v, want 1`, v, err)
		}
		for _, expr := range []string{
			`avg(up{job="pilot"}) < 0.9`,
			`rate(container_cpu_usage_seconds_total{container="istio-proxy"}[5m]) > 0.8`,
		} {
			res, err := prom.query(expr)
			if err != nil {
				t.Errorf("%v", err)
			} else if len(res) != 0 {
				t.Errorf("%s fires: %v", expr, res)
			}
		}
		// The CPU the alert watches exists for every sidecar and gateway,
		// labelled with its pod and namespace.
		res, err := prom.query(`container_cpu_usage_seconds_total{container="istio-proxy"}`)
		if err != nil || len(res) != nProxies {
			t.Errorf("container_cpu_usage_seconds_total: %d series (want %d) %v", len(res), nProxies, err)
		}
		for _, s := range res {
			if s.Metric["pod"] == "" || s.Metric["namespace"] == "" {
				t.Errorf("CPU series without pod/namespace: %v", s.Metric)
			}
		}
		// Prometheus loaded both rules and evaluates them without error.
		eventually(t, 15*time.Second, "both alert rules evaluated", func() error {
			_, body, err := get(prom.base+"/api/v1/rules?type=alert", nil)
			if err != nil {
				return err
			}
			var resp struct {
				Data struct {
					Groups []struct {
						Rules []struct {
							Name, Health, State, LastError string
						}
					}
				}
			}
			if err := json.Unmarshal([]byte(body), &resp); err != nil {
				return err
			}
			var ok []string
			for _, g := range resp.Data.Groups {
				for _, r := range g.Rules {
					if r.Health != "ok" {
						return fmt.Errorf("rule %s: health %q %s", r.Name, r.Health, r.LastError)
					}
					if r.State != "inactive" {
						return fmt.Errorf("rule %s is %s", r.Name, r.State)
					}
					ok = append(ok, r.Name)
				}
			}
			sort.Strings(ok)
			if strings.Join(ok, ",") != "IstioHighCpuUsage,IstioPilotAvailabilityDrop" {
				return fmt.Errorf("rules: %v", ok)
			}
			return nil
		})
	})

	t.Run("control plane metrics", func(t *testing.T) {
		if v, err := prom.one(`sum(pilot_xds_pushes)`); err != nil || v <= 0 {
			t.Errorf("pilot_xds_pushes = %v %v, want > 0", v, err)
		}
		if v, err := prom.one(`sum(pilot_xds)`); err != nil || int(v) != nProxies {
			t.Errorf("pilot_xds = %v %v, want %d", v, err, nProxies)
		}
		if v, err := prom.one(`sum(pilot_total_xds_rejects) or vector(0)`); err != nil || v != 0 {
			t.Errorf("pilot_total_xds_rejects = %v %v, want 0 for Bookinfo", v, err)
		}
		n, err := prom.one(`sum(pilot_proxy_convergence_time_count)`)
		if err != nil || n == 0 {
			t.Errorf("pilot_proxy_convergence_time has no observations: %v %v", n, err)
		}
		p50, _ := prom.one(`histogram_quantile(0.5, sum(pilot_proxy_convergence_time_bucket) by (le))`)
		p99, _ := prom.one(`histogram_quantile(0.99, sum(pilot_proxy_convergence_time_bucket) by (le))`)
		pushes, _ := prom.query(`sum(pilot_xds_pushes) by (type)`)
		t.Logf("proxy convergence: %v observations, p50 %.3fs p99 %.3fs; pushes by type %v", n, p50, p99, pushes)
	})

	t.Run("service graph edges", func(t *testing.T) {
		const expr = `sum(rate(istio_requests_total{reporter="destination"}[1m])) by (source_workload, destination_workload)`
		want := []string{"productpage-v1→details-v1", "reviews-v2→ratings-v1", "reviews-v3→ratings-v1"}
		var edges []string
		begin := time.Now()
		eventually(t, 45*time.Second, "the Bookinfo edges in istio_requests_total", func() error {
			res, err := prom.query(expr)
			if err != nil {
				return err
			}
			edges = edges[:0]
			reviews := false
			for _, s := range res {
				e := s.Metric["source_workload"] + "→" + s.Metric["destination_workload"]
				edges = append(edges, e)
				if strings.HasPrefix(e, "productpage-v1→reviews-v") {
					reviews = true
				}
			}
			sort.Strings(edges)
			var missing []string
			for _, w := range want {
				if !slices.Contains(edges, w) {
					missing = append(missing, w)
				}
			}
			if !reviews {
				missing = append(missing, "productpage-v1→reviews-v*")
			}
			if len(missing) > 0 {
				return fmt.Errorf("missing %v; have %v", missing, edges)
			}
			return nil
		})
		t.Logf("edges after %s: %v", time.Since(begin).Round(time.Millisecond), edges)
	})

	t.Run("dashboard queries", func(t *testing.T) { checkDashboardQueries(t, prom) })
}

// checkDashboardQueries evaluates every PromQL query of the shipped Grafana
// dashboards (variables set to productpage's): none may fail, and each
// view's headline panel must have data.
func checkDashboardQueries(t *testing.T, prom *promServer) {
	t.Helper()
	queries, err := addons.Queries()
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{
		"service": "productpage.bookinfo.svc.cluster.local", "reporter": "destination",
		"namespace": "bookinfo", "workload": "productpage-v1",
	}
	// The headline panel of each view has data for productpage once
	// two scrapes of its traffic are in.
	headline := map[string]bool{}
	for _, q := range queries {
		if strings.HasSuffix(q.Where, `panel 1 "Global Request Volume" A`) ||
			strings.HasSuffix(q.Where, `panel 1 "Client Request Volume" A`) ||
			strings.HasSuffix(q.Where, `panel 1 "Incoming Request Volume" A`) {
			headline[q.Expr] = true
		}
	}
	if len(headline) != 3 {
		t.Fatalf("headline panels: %v", headline)
	}
	headline[`histogram_quantile(0.99, sum(rate(pilot_proxy_convergence_time_bucket[1m])) by (le))`] = true
	eventually(t, 20*time.Second, "data in the headline panels", func() error {
		for expr := range headline {
			if res, err := prom.query(addons.Expand(expr, vars)); err != nil || len(res) == 0 {
				return fmt.Errorf("%s: %v %v", expr, res, err)
			}
		}
		return nil
	})
	var empty []string
	for _, q := range queries {
		res, err := prom.query(addons.Expand(q.Expr, vars))
		if err != nil {
			t.Errorf("%s: %v", q.Where, err)
			continue
		}
		if len(res) == 0 {
			empty = append(empty, q.Where)
		}
	}
	t.Logf("%d dashboard queries evaluated; %d returned no data: %s", len(queries), len(empty), strings.Join(empty, "; "))
}
