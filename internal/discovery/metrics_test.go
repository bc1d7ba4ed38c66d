package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	prommodel "github.com/prometheus/common/model"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/skein-mesh/skein/internal/proxy/xdsclient"
)

// acceptor installs everything except the types it is told to reject.
type acceptor struct{ reject string }

func (a acceptor) Apply(typeURL string, _ *xdsclient.Snapshot) error {
	if typeURL == a.reject {
		return errors.New("test proxy rejects this type")
	}
	return nil
}

func testNode(ip, pod, app, version string) *corev3.Node {
	md, _ := structpb.NewStruct(map[string]any{
		"NAMESPACE": "bookinfo", "ISTIO_VERSION": "1.31.0",
		"LABELS": map[string]any{"app": app, "version": version},
	})
	return &corev3.Node{Id: fmt.Sprintf("sidecar~%s~%s.bookinfo~bookinfo.svc.cluster.local", ip, pod), Metadata: md}
}

const serviceJSON = `{"apiVersion":"v1","kind":"Service","metadata":{"name":%q,"namespace":"bookinfo"},
  "spec":{"selector":{"app":%q},"ports":[{"name":"http","port":9080}]}}`

// TestMetricsAndServiceDiscovery runs the control plane with two real ADS
// clients (one NACKs listeners), changes config, and reads /metrics and
// /debug/prometheus_sd as Prometheus would.
func TestMetricsAndServiceDiscovery(t *testing.T) {
	srv, api := startServer(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base := "http://" + srv.HTTPAddr()

	apply := func(docs ...string) (int, string) {
		t.Helper()
		body := `{"objects":[` + strings.Join(docs, ",") + `]}`
		req, _ := http.NewRequest("POST", base+"/api/v1/apply", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+srv.AdminToken())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := apply(fmt.Sprintf(serviceJSON, "reviews", "reviews")); code != http.StatusOK {
		t.Fatalf("apply Service: %d %s", code, body)
	}

	clients := map[string]*xdsclient.Client{}
	for _, c := range []struct {
		ip, pod, app, reject string
	}{
		{"127.0.0.5", "reviews-v1-a", "reviews", ""},
		{"127.0.0.6", "ratings-v1-b", "ratings", xdsclient.ListenerType},
	} {
		tokenFile := filepath.Join(t.TempDir(), "token")
		os.WriteFile(tokenFile, []byte(addPod(t, srv, api, "bookinfo", c.pod, "default")), 0o600)
		cl, err := xdsclient.New(xdsclient.Options{Address: srv.GRPCAddr(), Node: testNode(c.ip, c.pod, c.app, "v1"),
			TokenFile: tokenFile, DialOptions: []grpc.DialOption{tlsDial(srv)},
			Consumer: acceptor{reject: c.reject}, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		go cl.Run(ctx)
		clients[c.pod] = cl
	}
	waitFor(t, "the accepting proxy to sync", func() bool { return clients["reviews-v1-a"].Synced() })

	// A change after both are connected: a new Service changes CDS and EDS.
	if code, body := apply(fmt.Sprintf(serviceJSON, "ratings", "ratings")); code != http.StatusOK {
		t.Fatalf("apply Service: %d %s", code, body)
	}
	// Validation refuses a VirtualService without hosts.
	bad := `{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"bad","namespace":"bookinfo"},"spec":{"hosts":[]}}`
	if code, body := apply(bad); code != http.StatusBadRequest {
		t.Fatalf("invalid VirtualService: want 400, got %d %s", code, body)
	}
	good := `{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"reviews","namespace":"bookinfo"},
	  "spec":{"hosts":["reviews"],"http":[{"route":[{"destination":{"host":"reviews"}}]}]}}`
	if code, body := apply(good); code != http.StatusOK {
		t.Fatalf("apply VirtualService: %d %s", code, body)
	}

	var fams map[string]*dto.MetricFamily
	waitFor(t, "convergence to be measured and the NACK counted", func() bool {
		fams = scrape(t, base+"/metrics")
		return sampleCount(fams, "pilot_proxy_convergence_time") > 0 && value(fams, "pilot_total_xds_rejects", "type", "lds") > 0
	})
	for _, c := range []struct {
		name, label, value string
		want               float64 // minimum
	}{
		{"pilot_xds", "version", "1.31.0", 2},
		{"pilot_xds_pushes", "type", "cds", 2},
		{"pilot_xds_pushes", "type", "lds", 2},
		{"pilot_xds_pushes", "type", "eds", 1},
		{"pilot_k8s_reg_events", "type", "Service", 2},
		{"pilot_k8s_cfg_events", "type", "VirtualService", 1},
		{"galley_validation_failed", "reason", "Invalid", 1},
		{"pilot_total_rejected_configs", "", "", 1},
		{"pilot_total_xds_internal_errors", "", "", 0},
		{"go_goroutines", "", "", 1},
		{"process_cpu_seconds_total", "", "", 0},
	} {
		if _, ok := fams[c.name]; !ok {
			t.Errorf("%s missing from /metrics", c.name)
			continue
		}
		if got := value(fams, c.name, c.label, c.value); got < c.want {
			t.Errorf("%s{%s=%q} = %v, want >= %v", c.name, c.label, c.value, got, c.want)
		}
	}
	if got := value(fams, "pilot_xds", "version", "1.31.0"); got != 2 {
		t.Errorf("pilot_xds = %v, want exactly 2 connected proxies", got)
	}
	if got := value(fams, "galley_validation_failed", "reason", "Invalid"); got != 1 {
		t.Errorf("galley_validation_failed = %v, want 1", got)
	}

	resp, err := http.Get(base + "/debug/prometheus_sd")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var groups []sdTargetGroup
	if err := json.NewDecoder(resp.Body).Decode(&groups); err != nil {
		t.Fatal(err)
	}
	want := []sdTargetGroup{
		{Targets: []string{srv.HTTPAddr()}, Labels: map[string]string{"job": "pilot", "namespace": "istio-system", "app": "istiod", "__metrics_path__": "/metrics"}},
		{Targets: []string{"127.0.0.5:15090"}, Labels: map[string]string{"job": "envoy-stats", "namespace": "bookinfo", "pod": "reviews-v1-a", "app": "reviews", "version": "v1", "__metrics_path__": "/stats/prometheus"}},
		{Targets: []string{"127.0.0.6:15090"}, Labels: map[string]string{"job": "envoy-stats", "namespace": "bookinfo", "pod": "ratings-v1-b", "app": "ratings", "version": "v1", "__metrics_path__": "/stats/prometheus"}},
	}
	got, _ := json.Marshal(groups)
	wantJSON, _ := json.Marshal(want)
	if string(got) != string(wantJSON) {
		t.Errorf("prometheus_sd:\n got %s\nwant %s", got, wantJSON)
	}
}

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(prommodel.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// value sums the samples of a counter or gauge family whose label has the
// given value (every sample when label is empty).
func value(fams map[string]*dto.MetricFamily, name, label, want string) float64 {
	sum := 0.0
	for _, m := range fams[name].GetMetric() {
		match := label == ""
		for _, l := range m.GetLabel() {
			if l.GetName() == label && l.GetValue() == want {
				match = true
			}
		}
		if match {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

func sampleCount(fams map[string]*dto.MetricFamily, name string) uint64 {
	var n uint64
	for _, m := range fams[name].GetMetric() {
		n += m.GetHistogram().GetSampleCount()
	}
	return n
}
