package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// resilienceServeArg makes the test binary, re-executed by the local
// runner as a pod's container, the upstream application instead of tests.
const resilienceServeArg = "resilience-serve"

func init() {
	// init runs before the testing package parses flags, so the pod's
	// command line never reaches it.
	if len(os.Args) > 1 && os.Args[1] == resilienceServeArg {
		os.Exit(serveResilience(os.Args[2:]))
	}
}

// serveResilience answers every request with a fixed status after a fixed
// delay: the delay keeps concurrent requests overlapping (so connection
// pool limits bite), the status makes one replica fail on purpose.
func serveResilience(args []string) int {
	fs := flag.NewFlagSet(resilienceServeArg, flag.ContinueOnError)
	addr := fs.String("addr", "", "listen address")
	delay := fs.Duration("delay", 0, "how long each request is held")
	status := fs.Int("status", http.StatusOK, "status of every answer")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	pod := os.Getenv("POD_NAME")
	srv := &http.Server{Addr: *addr, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(*delay)
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(*status)
		fmt.Fprintf(w, "%s %d\n", pod, *status)
	})}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() { <-ctx.Done(); srv.Close() }()
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// resilienceWorkloads: a client pod in an injected namespace, my-service
// (the tutorial's circuit breaker host) holding each request 75 ms, and
// flaky, whose one flaky-bad replica answers 503 to everything. The
// default namespace is not injected, so its pods ask for a sidecar by label.
// self is the test binary, each pod's app.
func resilienceWorkloads(self string) string {
	serve := func(more ...string) []string {
		return append([]string{self, resilienceServeArg, "--addr", "$(SKEIN_APP_IP):8080"}, more...)
	}
	inject := labels{"sidecar.istio.io/inject": "true"}
	return manifests(`apiVersion: v1
kind: Namespace
metadata:
  name: resilience
  labels: {istio-injection: enabled}
`,
		workload{name: "client", namespace: "resilience", labels: labels{"app": "client"}, container: "client",
			command: serve(), port: 8080}.yaml(),
		workload{name: "my-service", namespace: "default", labels: labels{"app": "my-service"}, podLabels: inject,
			command: serve("--delay", "75ms"), port: 8080, servicePort: "http"}.yaml(),
		service("flaky", "default", labels{"app": "flaky"}, "http", 8080),
		workload{name: "flaky-good", namespace: "default", labels: labels{"app": "flaky", "health": "good"}, podLabels: inject,
			replicas: 2, command: serve(), port: 8080}.yaml(),
		workload{name: "flaky-bad", namespace: "default", labels: labels{"app": "flaky", "health": "bad"}, podLabels: inject,
			replicas: 1, command: serve("--status", "503"), port: 8080}.yaml(),
	)
}

// tutorialCircuitBreaker is the tutorial's DestinationRule verbatim
// (no namespace: it lands in default, where my-service is).
const tutorialCircuitBreaker = `apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata:
  name: circuit-breaker
spec:
  host: my-service
  trafficPolicy:
    connectionPool:
      tcp:
        maxConnections: 10
      http:
        http1MaxPendingRequests: 10
        maxRequestsPerConnection: 2
    outlierDetection:
      consecutiveErrors: 3
      interval: 30s
      baseEjectionTime: 30s
`

// tutorialRetryTimeout is the tutorial's retry and timeout VirtualService,
// verbatim but for the host names (its singular "host:" included).
const tutorialRetryTimeout = `apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: retry-timeout
spec:
  host: flaky
  http:
  - route:
    - destination:
        host: flaky
    timeout: 10s
    retries:
      attempts: 3
      perTryTimeout: 3s
      retryOn: 5xx,gateway-error,connect-failure,refused-stream
`

const flakyOutlier = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: flaky
  namespace: default
spec:
  host: flaky
  trafficPolicy:
    outlierDetection:
      consecutive5xxErrors: 1
      interval: 1s
      baseEjectionTime: 30s
`

const (
	myServiceCluster = "outbound|8080||my-service.default.svc.cluster.local"
	flakyCluster     = "outbound|8080||flaky.default.svc.cluster.local"
)

// TestResilience proves DestinationRule connection pools, outlier
// detection and VirtualService retries with real processes: fortio
// through a client sidecar overflows the tutorial's circuit breaker once
// it is tightened to one connection, and 1000 requests to a service with
// one always-failing replica all succeed thanks to retries, while outlier
// detection takes the bad replica out after its first failures.
func TestResilience(t *testing.T) {
	fortio := installFortio(t)
	m := startMesh(t, "samples/bookinfo")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	m.apply(t, resilienceWorkloads(self))
	var pods map[string]string
	eventually(t, 30*time.Second, "the resilience pods ready", func() error {
		pods = map[string]string{}
		for _, ns := range []string{"resilience", "default"} {
			got, err := readyPods(m, ns)
			if err != nil {
				return err
			}
			for name, ip := range got {
				pods[name] = ip
			}
		}
		for prefix, want := range map[string]int{"client-": 1, "my-service-": 1, "flaky-good-": 2, "flaky-bad-": 1} {
			if n := len(podsWithPrefix(pods, prefix)); n != want {
				return fmt.Errorf("%d ready %s* pods, want %d (ready: %v)", n, prefix, want, pods)
			}
		}
		return nil
	})
	clientIP := pods[podsWithPrefix(pods, "client-")[0]]
	proxyURL := "http://" + clientIP + ":15001"
	through := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
		Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: clientIP + ":15001"}), MaxIdleConnsPerHost: 4}}

	t.Run("circuit breaker overflows to 503", func(t *testing.T) {
		out := m.apply(t, tutorialCircuitBreaker)
		if !strings.Contains(out, "destinationrule.networking.istio.io/circuit-breaker created") {
			t.Fatalf("apply: %s", out)
		}
		waitCluster(t, clientIP, myServiceCluster, `"maxConnections":10[,}]`, `"maxRequestsPerConnection":2[,}]`)
		eventually(t, 10*time.Second, "my-service through the client sidecar", func() error {
			return getThrough(through, "http://my-service.default:8080/")
		})
		// Istio's command, plus what stands in for the pod's DNS and
		// iptables: fortio's standard client honours HTTP_PROXY, and
		// -resolve satisfies its up-front lookup of the host name (the
		// proxy, not fortio, resolves my-service.default).
		args := []string{"-c", "3", "-qps", "0", "-n", "30", "-loglevel", "Warning",
			"-stdclient", "-resolve", clientIP, "http://my-service.default:8080/get"}
		r := runFortio(t, fortio, proxyURL, args...)
		t.Logf("tutorial limits (10 connections, 10 pending): %v", r.codes)
		if r.codes[200] != 30 {
			t.Fatalf("with the tutorial's limits, want 30 x 200, got %v\n%s", r.codes, r.output)
		}

		m.apply(t, strings.NewReplacer("maxConnections: 10", "maxConnections: 1",
			"http1MaxPendingRequests: 10", "http1MaxPendingRequests: 1").Replace(tutorialCircuitBreaker))
		waitCluster(t, clientIP, myServiceCluster, `"maxConnections":1[,}]`, `"maxPendingRequests":1[,}]`)
		before := statValue(t, clientIP, "cluster."+myServiceCluster+".upstream_rq_pending_overflow")
		start := time.Now()
		r = runFortio(t, fortio, proxyURL, args...)
		overflow := statValue(t, clientIP, "cluster."+myServiceCluster+".upstream_rq_pending_overflow") - before
		t.Logf("1 connection, 1 pending, fortio -c 3 -n 30 in %s: %v; upstream_rq_pending_overflow +%d",
			time.Since(start).Round(time.Millisecond), r.codes, overflow)
		if r.codes[200] == 0 || r.codes[503] == 0 || r.codes[200]+r.codes[503] != 30 {
			t.Errorf("want both 200 and 503 (and nothing else) in 30 requests, got %v\n%s", r.codes, r.output)
		}
		if overflow <= 0 {
			t.Errorf("upstream_rq_pending_overflow did not grow")
		}
		if overflow != r.codes[503] {
			t.Errorf("upstream_rq_pending_overflow +%d, but fortio saw %d x 503", overflow, r.codes[503])
		}
	})

	t.Run("retries and outlier detection hide a failing replica", func(t *testing.T) {
		m.apply(t, flakyOutlier)
		out := m.apply(t, tutorialRetryTimeout)
		if !strings.Contains(out, "virtualservice.networking.istio.io/retry-timeout created") {
			t.Fatalf("apply: %s", out)
		}
		waitCluster(t, clientIP, flakyCluster, `"consecutive5xx":1[,}]`)
		waitRoute(t, clientIP, "flaky.default.svc.cluster.local:8080", `"numRetries":3[,}]`, `"perTryTimeout":"3s"`)
		badName := podsWithPrefix(pods, "flaky-bad-")[0]
		bad := pods[badName] + ":8080"
		eventually(t, 10*time.Second, "3 flaky endpoints in the client sidecar", func() error {
			eps, err := clusterEndpoints(clientIP, flakyCluster)
			if err != nil {
				return err
			}
			if len(eps) != 3 {
				return fmt.Errorf("endpoints %v", eps)
			}
			if _, ok := eps[bad]; !ok {
				return fmt.Errorf("bad pod %s not among %v", bad, eps)
			}
			return nil
		})

		const n = 1000
		failures := 0
		start := time.Now()
		for i := 0; i < n; i++ {
			if err := getThrough(through, "http://flaky.default:8080/"); err != nil {
				failures++
				if failures <= 5 {
					t.Errorf("request %d: %v", i+1, err)
				}
			}
		}
		took := time.Since(start)
		eps, err := clusterEndpoints(clientIP, flakyCluster)
		if err != nil {
			t.Fatal(err)
		}
		badInbound := statValue(t, pods[badName], "http.inbound_0.0.0.0_8080.downstream_rq_total")
		stat := func(s string) int { return statValue(t, clientIP, "cluster."+flakyCluster+"."+s) }
		t.Logf("%d requests in %s, %d failed; per endpoint (client view) %v; bad pod %s served %d (its sidecar's count); "+
			"retries %d, 503s seen %d, ejections %d, ejected now %d",
			n, took.Round(time.Millisecond), failures, eps, badName, badInbound,
			stat("upstream_rq_retry"), stat("upstream_rq_503"),
			stat("outlier_detection.ejections_enforced_total"), stat("outlier_detection.ejections_active"))
		if failures > 0 {
			t.Errorf("%d of %d requests failed, want 0", failures, n)
		}
		if got := stat("outlier_detection.ejections_enforced_consecutive_5xx"); got < 1 {
			t.Errorf("ejections_enforced_consecutive_5xx = %d, want the bad pod ejected", got)
		}
		if stat("outlier_detection.ejections_active") != 1 {
			t.Errorf("ejections_active = %d, want 1 (the bad pod, for 30 s)", stat("outlier_detection.ejections_active"))
		}
		// Round robin without ejection would send it a third of the
		// requests; ejected after its first 503 it sees about one.
		if eps[bad] < 1 || eps[bad] > 5 {
			t.Errorf("bad pod got %d requests, want 1-5: ejected after its first failure", eps[bad])
		}
	})
}

// getThrough sends one GET through the client sidecar and wants a 200.
func getThrough(c *http.Client, target string) error {
	resp, err := c.Get(target)
	if err != nil {
		return err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d %q (flags %s)", target, resp.StatusCode, b, resp.Header.Get("x-envoy-response-flags"))
	}
	return nil
}

// readyPods lists the ready pods of ns by name with their IPs.
func readyPods(m *mesh, ns string) (map[string]string, error) {
	out, err := exec.Command(skeinBin, "get", "pods", "-n", ns, "-o", "json", "--server", m.server, "--credential-file", m.credential()).Output()
	if err != nil {
		return nil, fmt.Errorf("skein get pods -n %s: %v", ns, err)
	}
	type pod struct {
		Kind     string
		Metadata struct{ Name string }
		Status   struct {
			PodIP      string
			Conditions []struct{ Type, Status string }
		}
	}
	var list struct {
		Kind  string
		Items []pod
	}
	if err := json.Unmarshal(out, &list); err != nil {
		return nil, fmt.Errorf("skein get pods -n %s: %v", ns, err)
	}
	if list.Kind == "Pod" { // a single pod is printed as itself
		var p pod
		if err := json.Unmarshal(out, &p); err != nil {
			return nil, err
		}
		list.Items = []pod{p}
	}
	ready := map[string]string{}
	for _, p := range list.Items {
		for _, c := range p.Status.Conditions {
			if c.Type == "Ready" && c.Status == "True" && p.Status.PodIP != "" {
				ready[p.Metadata.Name] = p.Status.PodIP
			}
		}
	}
	return ready, nil
}

func podsWithPrefix(pods map[string]string, prefix string) []string {
	var names []string
	for n := range pods {
		if strings.HasPrefix(n, prefix) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

// configObjects returns, re-encoded as compact JSON with sorted keys, every
// object in the proxy's /config_dump whose "name" is name.
func configObjects(ip, name string) ([]string, error) {
	_, body, err := get("http://"+ip+":15000/config_dump", nil)
	if err != nil {
		return nil, err
	}
	var doc any
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		return nil, fmt.Errorf("config_dump of %s: %v", ip, err)
	}
	var found []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if v["name"] == name {
				b, _ := json.Marshal(v)
				found = append(found, string(b))
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc)
	return found, nil
}

// waitConfig waits until an object called name in the proxy's config
// matches every pattern.
func waitConfig(t *testing.T, ip, what, name string, patterns ...string) {
	t.Helper()
	eventually(t, 10*time.Second, what+" "+name+" in "+ip+"'s config with "+strings.Join(patterns, ", "), func() error {
		objs, err := configObjects(ip, name)
		if err != nil {
			return err
		}
	next:
		for _, o := range objs {
			for _, p := range patterns {
				if !regexp.MustCompile(p).MatchString(o) {
					continue next
				}
			}
			return nil
		}
		return fmt.Errorf("not yet: %.2000s", strings.Join(objs, "\n"))
	})
}

func waitCluster(t *testing.T, ip, cluster string, patterns ...string) {
	t.Helper()
	waitConfig(t, ip, "cluster", cluster, patterns...)
}

func waitRoute(t *testing.T, ip, virtualHost string, patterns ...string) {
	t.Helper()
	waitConfig(t, ip, "virtual host", virtualHost, patterns...)
}

var clusterRqRE = regexp.MustCompile(`(?m)^(.+)::([^:]+:\d+)::rq_total::(\d+)$`)

// clusterEndpoints reads the proxy's /clusters: requests sent to each
// endpoint of cluster, by address.
func clusterEndpoints(ip, cluster string) (map[string]int, error) {
	_, body, err := get("http://"+ip+":15000/clusters", nil)
	if err != nil {
		return nil, err
	}
	eps := map[string]int{}
	for _, m := range clusterRqRE.FindAllStringSubmatch(body, -1) {
		if m[1] == cluster {
			var n int
			fmt.Sscanf(m[3], "%d", &n)
			eps[m[2]] = n
		}
	}
	return eps, nil
}
