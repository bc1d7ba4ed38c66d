package addons

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// metricRE finds metric names: an identifier followed by a selector or range.
var metricRE = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{\[]`)

var varRE = regexp.MustCompile(`\$\{?([a-zA-Z_][a-zA-Z0-9_]*)`)

// knownMetrics are what Skein's proxies and control plane export, under
// Istio's and cAdvisor's names.
var knownMetrics = []string{
	"istio_requests_total",
	"istio_request_duration_milliseconds_bucket",
	"istio_request_bytes_bucket",
	"istio_response_bytes_bucket",
	"istio_tcp_sent_bytes_total",
	"istio_tcp_received_bytes_total",
	"pilot_xds_pushes",
	"pilot_proxy_convergence_time_bucket",
	"pilot_total_xds_rejects",
	"galley_validation_failed",
	"container_cpu_usage_seconds_total",
}

// TestDashboards checks each dashboard's data source template, that every
// query names known metrics and defined variables and is balanced, and
// that each view has the standard panels.
func TestDashboards(t *testing.T) {
	ds, err := Dashboards()
	if err != nil {
		t.Fatal(err)
	}
	// Every view: request volume and success rate (istio_requests_total),
	// P50/P90/P99 latency, and the TCP byte counters.
	standard := []string{"istio_requests_total", "response_code!~\"5.*\"", "histogram_quantile(0.50, sum(rate(istio_request_duration_milliseconds_bucket",
		"histogram_quantile(0.90", "histogram_quantile(0.99", "istio_tcp_sent_bytes_total", "istio_tcp_received_bytes_total"}
	sizes := []string{"istio_request_bytes_bucket", "istio_response_bytes_bucket"}
	for _, tc := range []struct {
		file string
		want []string
	}{
		{"istio-mesh-dashboard.json", append(slices.Clone(standard), "pilot_xds", "pilot_proxy_convergence_time_bucket")},
		{"istio-service-dashboard.json", append(slices.Clone(standard), sizes...)},
		{"istio-workload-dashboard.json", append(slices.Clone(standard), sizes...)},
	} {
		t.Run(tc.file, func(t *testing.T) {
			d := ds[tc.file]
			if d == nil {
				t.Fatalf("dashboard %s missing", tc.file)
			}
			vars := map[string]bool{}
			for _, v := range d.Templating.List {
				vars[v.Name] = true
				if v.Type == "query" && (v.Datasource == nil || v.Datasource.UID != "${datasource}") {
					t.Errorf("variable %s: datasource must be ${datasource}", v.Name)
				}
			}
			if len(d.Templating.List) == 0 || d.Templating.List[0].Name != "datasource" || d.Templating.List[0].Type != "datasource" ||
				string(d.Templating.List[0].Query) != `"prometheus"` {
				t.Errorf("first template variable must be the Prometheus $datasource, got %+v", d.Templating.List)
			}
			var all strings.Builder
			for _, p := range d.Panels {
				if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
					t.Errorf("panel %d %q: datasource must be ${datasource}", p.ID, p.Title)
				}
				if len(p.Targets) == 0 {
					t.Errorf("panel %d %q has no queries", p.ID, p.Title)
				}
				for _, tg := range p.Targets {
					where := p.Title + " " + tg.RefID
					if tg.Datasource == nil || tg.Datasource.UID != "${datasource}" {
						t.Errorf("%s: query datasource must be ${datasource}", where)
					}
					if err := balanced(tg.Expr); err != "" {
						t.Errorf("%s: %s in %s", where, err, tg.Expr)
					}
					for _, m := range metricRE.FindAllStringSubmatch(tg.Expr, -1) {
						if !slices.Contains(knownMetrics, m[1]) && !strings.HasPrefix(m[1], "pilot_") {
							t.Errorf("%s: unknown metric %s", where, m[1])
						}
					}
					for _, m := range varRE.FindAllStringSubmatch(tg.Expr, -1) {
						if !vars[m[1]] {
							t.Errorf("%s: variable $%s is not defined", where, m[1])
						}
					}
					all.WriteString(tg.Expr + "\n")
				}
			}
			for _, w := range tc.want {
				if !strings.Contains(all.String(), w) {
					t.Errorf("no panel queries %s", w)
				}
			}
		})
	}
}

// balanced reports the first unbalanced bracket or unterminated string.
func balanced(expr string) string {
	var stack []rune
	pairs := map[rune]rune{')': '(', '}': '{', ']': '['}
	inString := false
	for i := 0; i < len(expr); i++ {
		c := rune(expr[i])
		switch {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case inString:
		case c == '(' || c == '{' || c == '[':
			stack = append(stack, c)
		case pairs[c] != 0:
			if len(stack) == 0 || stack[len(stack)-1] != pairs[c] {
				return "unbalanced " + string(c)
			}
			stack = stack[:len(stack)-1]
		}
	}
	if inString {
		return "unterminated string"
	}
	if len(stack) > 0 {
		return "unclosed " + string(stack[len(stack)-1])
	}
	return ""
}

func TestBalanced(t *testing.T) {
	for _, tc := range []struct{ expr, want string }{
		{`sum(rate(x{a="(}"}[1m]))`, ""},
		{`sum(rate(x{a="b"}[1m])`, "unclosed ("},
		{`x{a="b}`, "unterminated string"},
		{`x}`, "unbalanced }"},
	} {
		if got := balanced(tc.expr); got != tc.want {
			t.Errorf("balanced(%q) = %q, want %q", tc.expr, got, tc.want)
		}
	}
}

func TestExpand(t *testing.T) {
	got := Expand(`x{a=~"$service", b="${reporter}", c="$services"}`, map[string]string{"service": "s", "reporter": "r", "services": "many"})
	if want := `x{a=~"s", b="r", c="many"}`; got != want {
		t.Errorf("Expand = %s, want %s", got, want)
	}
}

// manifest finds a kind/name document in a multi-document YAML file.
func manifest(t *testing.T, file, kind, name string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range strings.Split(string(b), "\n---\n") {
		var obj map[string]any
		if err := yaml.Unmarshal([]byte(doc+"\n"), &obj); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		meta, _ := obj["metadata"].(map[string]any)
		if obj["kind"] == kind && meta["name"] == name {
			return obj
		}
	}
	t.Fatalf("%s: no %s %s", file, kind, name)
	return nil
}

// TestManifestsMatchFiles keeps the Kubernetes manifests' copies of the
// dashboards and alert rules identical to the files tests run.
func TestManifestsMatchFiles(t *testing.T) {
	cm := manifest(t, "grafana.yaml", "ConfigMap", "istio-grafana-dashboards")
	data, _ := cm["data"].(map[string]any)
	files, _ := filepath.Glob("dashboards/*.json")
	if len(files) != 3 || len(data) != len(files) {
		t.Fatalf("dashboards: %d files, %d in grafana.yaml", len(files), len(data))
	}
	for _, f := range files {
		want, _ := os.ReadFile(f)
		if data[filepath.Base(f)] != string(want) {
			t.Errorf("grafana.yaml's %s differs from %s", filepath.Base(f), f)
		}
	}
	prom := manifest(t, "prometheus.yaml", "ConfigMap", "prometheus")
	pdata, _ := prom["data"].(map[string]any)
	rules, _ := os.ReadFile("prometheus/istio.rules.yml")
	if pdata["alerting_rules.yml"] != string(rules) {
		t.Errorf("prometheus.yaml's alerting_rules.yml differs from prometheus/istio.rules.yml")
	}
	if cfg, _ := pdata["prometheus.yml"].(string); !strings.Contains(cfg, "job_name: pilot") || !strings.Contains(cfg, "__meta_kubernetes_pod_annotation_prometheus_io_scrape") {
		t.Errorf("prometheus.yml lacks the pilot job or the prometheus.io/scrape pod annotation rule")
	}
}

// TestTutorialAddons: the objects the tutorial's commands name exist where
// it expects them (rollout status deployment/kiali, port-forward
// svc/kiali 20001, and Istio's default Zipkin address).
func TestTutorialAddons(t *testing.T) {
	for _, tc := range []struct {
		file, kind, name string
		port             float64
	}{
		{"kiali.yaml", "Service", "kiali", 20001},
		{"jaeger.yaml", "Service", "zipkin", 9411},
		{"jaeger.yaml", "Service", "tracing", 80},
		{"prometheus.yaml", "Service", "prometheus", 9090},
	} {
		obj := manifest(t, tc.file, tc.kind, tc.name)
		if ns := obj["metadata"].(map[string]any)["namespace"]; ns != "istio-system" {
			t.Errorf("%s %s is in namespace %v, want istio-system", tc.kind, tc.name, ns)
		}
		ports, _ := obj["spec"].(map[string]any)["ports"].([]any)
		if len(ports) == 0 || ports[0].(map[string]any)["port"] != tc.port {
			t.Errorf("%s %s ports %v, want %v first", tc.kind, tc.name, ports, tc.port)
		}
	}
	for _, d := range []struct{ file, name string }{{"kiali.yaml", "kiali"}, {"jaeger.yaml", "jaeger"}} {
		manifest(t, d.file, "Deployment", d.name)
	}
	// The dashboard serves on all interfaces in a pod, so port-forward reaches it.
	dep := manifest(t, "kiali.yaml", "Deployment", "kiali")
	c := dep["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)
	if args := fmt.Sprint(c["args"]); !strings.Contains(args, "dashboard") || !strings.Contains(args, "--addr=:20001") {
		t.Errorf("kiali runs %s, want skein dashboard --addr=:20001", args)
	}
}
