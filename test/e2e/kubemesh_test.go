package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/skein-mesh/skein/test/kubetest"
)

// TestKubernetesMesh follows the tutorial on a real cluster: skein install
// (with the control plane outside the cluster, Istio's external istiod),
// a skein node that runs the scheduled pods, kubectl create/label/apply of
// Bookinfo and its gateway, then 100 requests through the ingress
// gateway's pod. A Prometheus configured with the shipped addon's
// kubernetes-pods job (pod annotations, no ServiceMonitor) finds every
// sidecar from the API server, scrapes the merged port 15020, and its
// istio_requests_total counts equal the requests sent.
func TestKubernetesMesh(t *testing.T) {
	promBin := prometheusBinary(t)
	c := kubetest.StartT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	kubectl := func(stdin string, args ...string) string { t.Helper(); return kubectlFor(ctx, c)(t, stdin, args...) }
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")

	// The host running the control plane: its own loopback address, so
	// the webhook URL and the proxies' xDS address name a real host.
	const host = "127.0.99.1"
	xds, httpAddr, webhook := host+":15010", host+":15014", host+":15017"
	start(t, "discovery", "discovery", "--kubeconfig", c.Kubeconfig, "--ca-dir", caDir,
		"--grpc-addr", xds, "--plaintext-xds", "--http-addr", httpAddr,
		"--injection-addr", webhook, "--injection-discovery-address", xds, "--injection-host", host)
	eventually(t, 60*time.Second, "discovery ready", func() error {
		code, body, err := get("http://"+httpAddr+"/ready", nil)
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("%d %v %.200s", code, err, body)
		}
		return nil
	})

	out := mustRun(t, "install", "--kubeconfig", c.Kubeconfig, "--external-discovery", xds, "--ca-dir", caDir, "-y")
	for _, line := range []string{"✔ Istio core installed", "✔ Istiod installed", "✔ Ingress gateways installed", "✔ Installation complete"} {
		if !strings.Contains(out, line) {
			t.Errorf("skein install output lacks %q:\n%s", line, out)
		}
	}
	start(t, "node", "node", "--kubeconfig", c.Kubeconfig, "--name", "skein-e2e", "--data-dir", filepath.Join(dir, "node"),
		"--kubelet-addr", "127.0.0.1:0")
	// kubectl wait fails at once on a Node not yet registered: wait for
	// the agent to register it first.
	eventually(t, 60*time.Second, "node skein-e2e registered", func() error {
		_, err := c.Kubectl(ctx, "get", "node/skein-e2e")
		return err
	})
	kubectl("", "wait", "--for=condition=Ready", "node/skein-e2e", "--timeout=60s")

	// The tutorial's steps, verbatim but for the file's location.
	kubectl("", "create", "namespace", "bookinfo")
	kubectl("", "label", "namespace", "bookinfo", "istio-injection=enabled")
	kubectl("", "apply", "-f", filepath.Join(repoRoot, "samples/bookinfo/platform/kube/bookinfo.yaml"), "-n", "bookinfo")
	kubectl("", "apply", "-f", filepath.Join(repoRoot, "samples/bookinfo/bookinfo-gateway.yaml"))
	kubectl("", "wait", "--for=condition=Available", "deployment", "--all", "-n", "istio-system", "--timeout=120s")
	kubectl("", "wait", "--for=condition=Ready", "pod", "--all", "-n", "bookinfo", "--timeout=180s")

	// Every Bookinfo pod was injected by the webhook: the app, then
	// istio-proxy, and the annotations Prometheus discovers it by.
	pods := kubectl("", "get", "pods", "-n", "bookinfo", "-o",
		`jsonpath={range .items[*]}{.metadata.name} {.spec.containers[*].name} {.metadata.annotations.prometheus\.io/port}{"\n"}{end}`)
	lines := strings.Split(strings.TrimSpace(pods), "\n")
	if len(lines) != 6 {
		t.Fatalf("want 6 Bookinfo pods, got:\n%s", pods)
	}
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) != 4 || f[2] != "istio-proxy" || f[3] != "15020" {
			t.Errorf("pod not injected as Istio would (want: name app istio-proxy 15020): %q", l)
		}
	}
	ingressIP := strings.TrimSpace(kubectl("", "get", "pod", "-n", "istio-system", "-l", "istio=ingressgateway",
		"-o", "jsonpath={.items[0].status.podIP}"))
	ingress := "http://" + ingressIP + ":8080"

	// A tag only this test's requests carry (as in TestIstioMetrics).
	kubectl(`apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata:
  name: mesh-default
  namespace: istio-system
spec:
  accessLogging:
  - providers: [{name: envoy}]
  metrics:
  - providers: [{name: prometheus}]
    overrides:
    - match: {metric: ALL_METRICS, mode: CLIENT_AND_SERVER}
      tagOverrides:
        user_agent: {value: "request.headers['user-agent']"}
`, "apply", "-f", "-")
	eventually(t, 90*time.Second, "productpage through the ingress gateway", func() error {
		code, body, err := get(ingress+"/productpage", map[string]string{"User-Agent": "probe"})
		if err != nil || code != http.StatusOK || !strings.Contains(body, "Book Details") {
			return fmt.Errorf("%d %v %.200s", code, err, body)
		}
		return nil
	})

	prom := startPrometheusWith(t, promBin, kubePodsJob(t, c.Kubeconfig)+fmt.Sprintf(`- job_name: pilot
  static_configs:
  - targets: [%s]
`, httpAddr))
	// Prometheus must find all seven proxies (six sidecars, the gateway)
	// from the API server before the traffic, so no request goes unseen.
	eventually(t, 60*time.Second, "every pod target up", func() error {
		if v, err := prom.one(`sum(up{job="kubernetes-pods"})`); err != nil || v != 7 {
			return fmt.Errorf("pods up = %v (want 7) %v", v, err)
		}
		if v, err := prom.one(`up{job="pilot"}`); err != nil || v != 1 {
			return fmt.Errorf(`up{job="pilot"} = %v %v`, v, err)
		}
		return nil
	})

	ua := fmt.Sprintf("skein-kube-e2e-%d", time.Now().UnixNano())
	for i := 0; i < 100; i++ {
		code, _, err := get(ingress+"/productpage", map[string]string{"User-Agent": ua})
		if err != nil || code != http.StatusOK {
			t.Fatalf("request %d: %d %v", i, code, err)
		}
	}

	sel := fmt.Sprintf(`user_agent=%q`, ua)
	eventually(t, 30*time.Second, "Prometheus counts the 100 requests", func() error {
		for _, q := range []struct {
			expr string
			want float64
		}{
			{`sum(istio_requests_total{reporter="destination",destination_workload="productpage-v1",response_code="200",` + sel + `})`, 100},
			{`sum(istio_requests_total{reporter="source",source_workload="istio-ingressgateway",destination_service_name="productpage",` + sel + `})`, 100},
			{`sum(istio_requests_total{reporter="destination",destination_service_name="details",source_workload="productpage-v1",` + sel + `})`, 100},
			{`sum(istio_requests_total{reporter="destination",destination_service_name="reviews",response_code="200",` + sel + `})`, 100},
			{`sum(istio_requests_total{reporter="source",source_workload="productpage-v1",destination_service_name="reviews",` + sel + `})`, 100},
			{`sum(istio_request_duration_milliseconds_count{reporter="destination",destination_workload="productpage-v1",` + sel + `})`, 100},
		} {
			if v, err := prom.one(q.expr); err != nil || v != q.want {
				return fmt.Errorf("%s = %v (want %v) %v", q.expr, v, q.want, err)
			}
		}
		return nil
	})
	res, err := prom.query(`sum(istio_requests_total{reporter="destination",destination_service_name="reviews",response_code="200",` + sel + `}) by (destination_workload)`)
	if err != nil {
		t.Fatal(err)
	}
	perVersion := map[string]float64{}
	for _, s := range res {
		perVersion[s.Metric["destination_workload"]] = s.value()
	}
	for _, w := range []string{"reviews-v1", "reviews-v2", "reviews-v3"} {
		if perVersion[w] < 20 {
			t.Errorf(`istio_requests_total{reporter="destination",destination_workload=%q,response_code="200"} = %v: round robin over three versions should give ~33`, w, perVersion[w])
		}
	}
	t.Logf("reviews per version (destination reporter): %v", perVersion)

	// The graph view's query returns Bookinfo's edges, labelled by the
	// pods' own labels (namespace, app) through the addon's relabelling.
	// rate needs two scrapes of a series: wait for them.
	eventually(t, 20*time.Second, "the graph's edges", func() error {
		res, err := prom.query(`sum(rate(istio_requests_total{reporter="destination",` + sel + `}[1m])) by (source_workload, destination_workload)`)
		if err != nil {
			return err
		}
		var edges []string
		for _, s := range res {
			edges = append(edges, s.Metric["source_workload"]+"→"+s.Metric["destination_workload"])
		}
		sort.Strings(edges)
		for _, want := range []string{"istio-ingressgateway→productpage-v1", "productpage-v1→details-v1", "productpage-v1→reviews-v1", "reviews-v2→ratings-v1", "reviews-v3→ratings-v1"} {
			if !contains(edges, want) {
				return fmt.Errorf("edge %s missing from %v", want, edges)
			}
		}
		return nil
	})
	if v, err := prom.one(`count(istio_requests_total{namespace="bookinfo",app="reviews"}) > 0`); err != nil || v == 0 {
		t.Errorf("series lack the pod labels the addon's relabelling adds: %v %v", v, err)
	}

	t.Run("grafana dashboard queries", func(t *testing.T) { checkDashboardQueries(t, prom) })

	// The tutorial's add-ons: every manifest is valid for the API server,
	// and the dashboard where the tutorial's Kiali goes runs in the
	// cluster, its graph's edges from this Prometheus with the traffic's
	// rate. The control plane and Prometheus are on the host here, so its
	// Deployment is pointed at them.
	kubectl("", "apply", "--dry-run=server", "-f", filepath.Join(repoRoot, "samples/addons/"))
	kubectl("", "apply", "-f", filepath.Join(repoRoot, "samples/addons/kiali.yaml"))
	kubectl("", "set", "env", "deployment/kiali", "-n", "istio-system", "SKEIN_SERVER="+httpAddr, "PROMETHEUS_URL="+prom.base)
	kubectl("", "rollout", "status", "deployment/kiali", "-n", "istio-system", "--timeout=90s")
	var dash string // the current kiali pod's address (the first one may still be terminating)
	eventually(t, 30*time.Second, "the in-cluster dashboard's graph from Prometheus", func() error {
		out, err := c.Kubectl(ctx, "get", "pod", "-n", "istio-system", "-l", "app=kiali", "-o",
			`jsonpath={range .items[*]}{.status.podIP} {.metadata.deletionTimestamp}{"\n"}{end}`)
		if err != nil {
			return err
		}
		dash = ""
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if f := strings.Fields(l); len(f) == 1 {
				dash = f[0] + ":20001"
			}
		}
		if dash == "" {
			return fmt.Errorf("no running kiali pod: %q", out)
		}
		var g struct {
			Edges []struct {
				Source, Destination string
				RPS                 float64
			}
			Error string
		}
		// Live traffic: rate sees increments of series already scraped.
		if code, _, err := get(ingress+"/productpage", map[string]string{"User-Agent": "dashboard"}); err != nil || code != http.StatusOK {
			return fmt.Errorf("productpage: %d %v", code, err)
		}
		code, body, err := get("http://"+dash+"/api/graph", nil)
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("%d %v %.200s", code, err, body)
		}
		if err := json.Unmarshal([]byte(body), &g); err != nil {
			return err
		}
		if g.Error != "" {
			return errors.New(g.Error)
		}
		for _, e := range g.Edges {
			if e.Source == "bookinfo/productpage-v1" && e.Destination == "bookinfo/reviews-v2" && e.RPS > 0 {
				return nil
			}
		}
		return fmt.Errorf("no productpage-v1 → reviews-v2 edge with traffic in %+v", g.Edges)
	})

	// The tutorial's alert on the control plane, against the host's discovery.
	if v, err := prom.one(`sum(pilot_xds)`); err != nil || v != 7 {
		t.Errorf("pilot_xds = %v %v, want 7 connected proxies", v, err)
	}
	if res, err := prom.query(`avg(up{job="pilot"}) < 0.9`); err != nil || len(res) != 0 {
		t.Errorf("IstioPilotAvailabilityDrop expression: %v %v, want no samples", res, err)
	}

	// proxy-status lists the Kubernetes pods by name, all in sync.
	status := mustRun(t, "proxy-status", "--server", httpAddr, "--credential-file", filepath.Join(caDir, "admin-token"))
	for _, name := range []string{"productpage-v1-", "reviews-v2-", "istio-ingressgateway-"} {
		if !strings.Contains(status, name) {
			t.Errorf("proxy-status lacks %s:\n%s", name, status)
		}
	}
	if strings.Contains(status, "STALE") || strings.Contains(status, "NOT SENT") {
		t.Errorf("proxies out of sync:\n%s", status)
	}

	// kubectl logs reaches the node's kubelet API through the API server:
	// the sidecar's output has Istio's access log lines (Telemetry
	// accessLogging above) for the requests just sent.
	productpage := strings.TrimSpace(kubectl("", "get", "pod", "-n", "bookinfo", "-l", "app=productpage", "-o", "jsonpath={.items[0].metadata.name}"))
	proxyLog := kubectl("", "logs", productpage, "-c", "istio-proxy", "-n", "bookinfo", "--tail=200")
	if !strings.Contains(proxyLog, `"GET /productpage HTTP/1.1" 200`) || !strings.Contains(proxyLog, "inbound|9080||") {
		t.Errorf("kubectl logs %s -c istio-proxy has no inbound access log line for /productpage:\n%.2000s", productpage, proxyLog)
	}
	if tail := kubectl("", "logs", productpage, "-c", "istio-proxy", "-n", "bookinfo", "--tail=1"); strings.Count(strings.TrimSpace(tail), "\n") != 0 {
		t.Errorf("kubectl logs --tail=1 gave %d lines", strings.Count(tail, "\n"))
	}

	// The dashboard shows the control plane's view too: the proxies.
	if code, body, err := get("http://"+dash+"/api/proxies", nil); err != nil || code != http.StatusOK || !strings.Contains(body, "productpage-v1-") {
		t.Errorf("in-cluster dashboard /api/proxies: %d %v %.300s", code, err, body)
	}
	// The tutorial opens it with port-forward (through the API server to
	// the node's kubelet API); a free local port here instead of 20001.
	if body := portForwardGet(t, ctx, c, "/api/graph", "svc/kiali", "-n", "istio-system", ":20001"); !strings.Contains(body, "productpage-v1") {
		t.Errorf("dashboard graph through kubectl port-forward: %.300s", body)
	}
	kubectl("", "delete", "-f", filepath.Join(repoRoot, "samples/addons/kiali.yaml"))

	// Uninstall keeps the CRDs (and the config in them) unless purged.
	out = mustRun(t, "uninstall", "--kubeconfig", c.Kubeconfig, "--external-discovery", xds, "--ca-dir", caDir, "-y")
	if !strings.Contains(out, "Removed MutatingWebhookConfiguration:istio-sidecar-injector") || !strings.Contains(out, "✔ Uninstall complete") {
		t.Errorf("skein uninstall output:\n%s", out)
	}
	if vs := kubectl("", "get", "virtualservice", "-n", "bookinfo", "-o", "name"); !strings.Contains(vs, "bookinfo") {
		t.Errorf("uninstall without --purge lost the VirtualService: %q", vs)
	}
}

// kubePodsJob is the kubernetes-pods scrape job of the shipped addon
// (samples/addons/prometheus.yaml), reaching the API server through the
// test cluster's kubeconfig instead of an in-cluster service account.
func kubePodsJob(t *testing.T, kubeconfig string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot, "samples/addons/prometheus.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range strings.Split(string(raw), "\n---") {
		var cm struct {
			Kind string
			Data map[string]string
		}
		if yaml.Unmarshal([]byte(doc), &cm) != nil || cm.Kind != "ConfigMap" || cm.Data["prometheus.yml"] == "" {
			continue
		}
		var cfg struct {
			ScrapeConfigs []map[string]any `json:"scrape_configs"`
		}
		if err := yaml.Unmarshal([]byte(cm.Data["prometheus.yml"]), &cfg); err != nil {
			t.Fatalf("samples/addons/prometheus.yaml: prometheus.yml: %v", err)
		}
		for _, job := range cfg.ScrapeConfigs {
			if job["job_name"] != "kubernetes-pods" {
				continue
			}
			for _, sd := range job["kubernetes_sd_configs"].([]any) {
				sd.(map[string]any)["kubeconfig_file"] = kubeconfig
			}
			b, err := yaml.Marshal([]any{job})
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}
	}
	t.Fatal("samples/addons/prometheus.yaml has no kubernetes-pods job")
	return ""
}

// kubectlFor runs kubectl against c; a failure fails the test with
// kubectl's stderr. stdin, when not empty, is piped in (for -f -).
// portForwardGet runs `kubectl port-forward args...` until it forwards,
// GETs path through the local port it picked, and stops it.
func portForwardGet(t *testing.T, ctx context.Context, c *kubetest.Cluster, path string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(c.BinDir, "kubectl"), append([]string{"--kubeconfig", c.Kubeconfig, "port-forward"}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel() // kills kubectl
		cmd.Wait()
	}()
	// "Forwarding from 127.0.0.1:41234 -> 20001"
	local := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "Forwarding from 127.0.0.1:"); ok {
				port, _, _ := strings.Cut(rest, " ")
				local <- "127.0.0.1:" + port
				break
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	var addr string
	select {
	case addr = <-local:
	case <-time.After(30 * time.Second):
		t.Fatalf("kubectl port-forward %s did not start forwarding: %s", strings.Join(args, " "), stderr.String())
	}
	code, body, err := get("http://"+addr+path, nil)
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET %s through kubectl port-forward: %d %v %.300s\nkubectl: %s", path, code, err, body, stderr.String())
	}
	return body
}

func kubectlFor(ctx context.Context, c *kubetest.Cluster) func(t *testing.T, stdin string, args ...string) string {
	return func(t *testing.T, stdin string, args ...string) string {
		t.Helper()
		var out []byte
		var err error
		if stdin != "" {
			out, err = c.KubectlStdin(ctx, strings.NewReader(stdin), args...)
		} else {
			out, err = c.Kubectl(ctx, args...)
		}
		if err != nil {
			t.Fatalf("kubectl %s: %v", strings.Join(args, " "), err)
		}
		return string(out)
	}
}
