package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"
	appsv1 "k8s.io/api/apps/v1"
)

func loadString(t *testing.T, yaml, ns string) ([]*Object, []Warning, error) {
	t.Helper()
	return LoadReader("test.yaml", strings.NewReader(yaml), ns)
}

func TestLoadTutorial(t *testing.T) {
	objs, warns, err := LoadFiles([]string{"testdata/tutorial"}, "")
	if err != nil {
		t.Fatalf("tutorial must load: %v", err)
	}
	var keys []string
	for _, o := range objs {
		keys = append(keys, o.Key().String())
	}
	want := []string{
		"Gateway/default/bookinfo-gateway",
		"VirtualService/default/bookinfo",
		"DestinationRule/default/reviews",
		"VirtualService/default/reviews",
		"DestinationRule/default/reviews-circuit-breaker",
		"VirtualService/default/unreliable-service",
		"EnvoyFilter/default/productpage-local-ratelimit",
		"PeerAuthentication/default/default",
		"AuthorizationPolicy/default/productpage-viewer",
	}
	if strings.Join(keys, " ") != strings.Join(want, " ") {
		t.Fatalf("objects:\n got %v\nwant %v", keys, want)
	}

	byKey := map[string]*Object{}
	for _, o := range objs {
		byKey[o.Key().String()] = o
	}
	reviews := byKey["VirtualService/default/reviews"].Spec.(*networking.VirtualService)
	if got := reviews.GetHosts(); len(got) != 1 || got[0] != "reviews" {
		t.Errorf("singular host not repaired: hosts = %v", got)
	}
	if got := reviews.GetHttp()[0].GetMatch()[0].GetHeaders()["end-user"].GetExact(); got != "jason" {
		t.Errorf("jason match = %q", got)
	}
	retry := byKey["VirtualService/default/unreliable-service"].Spec.(*networking.VirtualService)
	r := retry.GetHttp()[0]
	if r.GetTimeout().AsDuration() != 10*time.Second || r.GetRetries().GetPerTryTimeout().AsDuration() != 3*time.Second ||
		r.GetRetries().GetAttempts() != 3 || r.GetRetries().GetRetryOn() != "5xx,gateway-error,connect-failure,refused-stream" {
		t.Errorf("retry route decoded wrong: %v", r)
	}
	cb := byKey["DestinationRule/default/reviews-circuit-breaker"].Spec.(*networking.DestinationRule)
	od := cb.GetTrafficPolicy().GetOutlierDetection()
	if od.GetConsecutiveErrors() != 3 || od.GetInterval().AsDuration() != 30*time.Second || od.GetBaseEjectionTime().AsDuration() != 30*time.Second {
		t.Errorf("outlier detection decoded wrong: %v", od)
	}
	pa := byKey["PeerAuthentication/default/default"].Spec.(*security.PeerAuthentication)
	if pa.GetMtls().GetMode() != security.PeerAuthentication_MutualTLS_STRICT {
		t.Errorf("mtls mode = %v", pa.GetMtls().GetMode())
	}
	ef := byKey["EnvoyFilter/default/productpage-local-ratelimit"].Spec.(*networking.EnvoyFilter)
	tc := ef.GetConfigPatches()[0].GetPatch().GetValue().GetFields()["typed_config"].GetStructValue()
	if got := tc.GetFields()["value"].GetStructValue().GetFields()["token_bucket"].GetStructValue().GetFields()["fill_interval"].GetStringValue(); got != "60s" {
		t.Errorf("Struct contents must be left alone: fill_interval = %q", got)
	}

	// The warnings a user should see: the missing separator, two singular
	// hosts, the deprecated consecutiveErrors.
	var text []string
	for _, w := range warns {
		text = append(text, w.String())
	}
	all := strings.Join(text, "\n")
	for _, want := range []string{
		"01-bookinfo-gateway.yaml (document 1): found 2 resources without a \"---\" separator between them (apiVersion at lines 3, 17)",
		"03-virtual-service-reviews-jason.yaml (document 1): VirtualService/reviews spec.host: VirtualService has no field \"host\"; treating \"host: reviews\" as \"hosts: [reviews]\"",
		"05-retry-timeout.yaml (document 1): VirtualService/unreliable-service spec.host:",
		"04-circuit-breaker.yaml (document 1): DestinationRule/reviews-circuit-breaker spec.trafficPolicy.outlierDetection.consecutiveErrors: field \"consecutiveErrors\" is deprecated",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("missing warning %q in:\n%s", want, all)
		}
	}
	if len(warns) != 4 {
		t.Errorf("want 4 warnings, got %d:\n%s", len(warns), all)
	}
}

func TestSplitDocuments(t *testing.T) {
	tests := []struct {
		name  string
		input string
		names []string
		warns int
	}{
		{"separators, empty and comment-only documents", "---\n# nothing\n---\n" + gw("a") + "---\n\n---\n" + gw("b") + "...\n", []string{"a", "b"}, 0},
		{"separator with trailing comment", gw("a") + "--- # next\n" + gw("b"), []string{"a", "b"}, 0},
		{"two resources without a separator", gw("a") + gw("b") + gw("c"), []string{"a", "b", "c"}, 1},
		{"comment before the first apiVersion stays", "# header\n" + gw("a") + gw("b"), []string{"a", "b"}, 1},
		{"List", "apiVersion: v1\nkind: List\nitems:\n- " + strings.ReplaceAll(strings.TrimSpace(gw("a")), "\n", "\n  ") + "\n", []string{"a"}, 0},
		{"GatewayList", "apiVersion: networking.istio.io/v1\nkind: GatewayList\nitems:\n- " + strings.ReplaceAll(strings.TrimSpace(gw("a")), "\n", "\n  ") + "\n", []string{"a"}, 0},
		{"JSON stream", `{"apiVersion":"networking.istio.io/v1","kind":"Gateway","metadata":{"name":"a"},"spec":{"servers":[{"port":{"number":80,"protocol":"HTTP","name":"http"},"hosts":["*"]}]}}
{"apiVersion":"networking.istio.io/v1","kind":"Gateway","metadata":{"name":"b"},"spec":{"servers":[{"port":{"number":80,"protocol":"HTTP","name":"http"},"hosts":["*"]}]}}`, []string{"a", "b"}, 0},
		{"CRLF line endings", strings.ReplaceAll(gw("a")+"---\n"+gw("b"), "\n", "\r\n"), []string{"a", "b"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, warns, err := loadString(t, tt.input, "")
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, o := range objs {
				names = append(names, o.Meta.Name)
			}
			if strings.Join(names, ",") != strings.Join(tt.names, ",") {
				t.Errorf("names = %v, want %v", names, tt.names)
			}
			if len(warns) != tt.warns {
				t.Errorf("warnings = %v, want %d", warns, tt.warns)
			}
		})
	}
}

func gw(name string) string {
	return "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: " + name +
		"\nspec:\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n"
}

func TestLoadFilesPaths(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("b.yml", gw("from-b"))
	write("a.yaml", gw("from-a"))
	write("c.json", `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"from-c"}}`)
	write("notes.txt", "not: config")
	write("sub/d.yaml", gw("from-sub")) // not recursive

	objs, _, err := LoadFilesFrom(strings.NewReader(gw("from-stdin")), []string{dir, "-"}, "")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, o := range objs {
		names = append(names, o.Meta.Name)
	}
	if got, want := strings.Join(names, ","), "from-a,from-b,from-c,from-stdin"; got != want {
		t.Errorf("loaded %s, want %s", got, want)
	}

	_, _, err = LoadFiles([]string{filepath.Join(dir, "missing.yaml")}, "")
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing file: err = %v", err)
	}
}

func TestNamespaces(t *testing.T) {
	withNS := strings.Replace(gw("a"), "  name: a", "  name: a\n  namespace: istio-system", 1)
	ns := "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: bookinfo\n  namespace: ignored\n"
	tests := []struct {
		name, input, flag, wantNS, wantErr string
	}{
		{"default when nothing given", gw("a"), "", "default", ""},
		{"-n fills an empty namespace", gw("a"), "bookinfo", "bookinfo", ""},
		{"explicit namespace kept", withNS, "", "istio-system", ""},
		{"explicit namespace equal to -n", withNS, "istio-system", "istio-system", ""},
		{"explicit namespace differs from -n", withNS, "bookinfo", "", `metadata.namespace: the namespace from the provided object "istio-system" does not match the namespace "bookinfo". You must pass '--namespace=istio-system' to perform this operation.`},
		{"cluster-scoped kinds have none", ns, "bookinfo", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, _, err := loadString(t, tt.input, tt.flag)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if objs[0].Meta.Namespace != tt.wantNS {
				t.Errorf("namespace = %q, want %q", objs[0].Meta.Namespace, tt.wantNS)
			}
		})
	}
}

func TestDurationsNormalised(t *testing.T) {
	tests := []struct{ in, want string }{
		{"5m", "300s"}, {"1h", "3600s"}, {"100ms", "0.100s"}, {"1.5s", "1.500s"}, {"30s", "30s"},
		{"1h30m", "5400s"}, {"1500us", "0.001500s"}, {"0.5s", "0.500s"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			yaml := "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a}\nspec:\n  hosts: [a]\n  http:\n  - route:\n    - destination: {host: a}\n    timeout: " + tt.in + "\n"
			objs, _, err := loadString(t, yaml, "")
			if err != nil {
				t.Fatal(err)
			}
			doc, err := Encode(objs[0])
			if err != nil {
				t.Fatal(err)
			}
			got := doc["spec"].(map[string]any)["http"].([]any)[0].(map[string]any)["timeout"]
			// protojson prints 0, 3, 6 or 9 fractional digits.
			want, _ := time.ParseDuration(tt.want)
			gotD, _ := time.ParseDuration(got.(string))
			if gotD != want {
				t.Errorf("timeout %s encoded as %v, want %s", tt.in, got, tt.want)
			}
		})
	}
	if got := protoDurationString(1500 * time.Millisecond); got != "1.5s" {
		t.Errorf("protoDurationString(1.5s) = %q", got)
	}
	if got := protoDurationString(100 * time.Millisecond); got != "0.1s" {
		t.Errorf("protoDurationString(100ms) = %q", got)
	}
}

func TestKubernetesKinds(t *testing.T) {
	yaml := `apiVersion: apps/v1
kind: Deployment
metadata:
  name: reviews-v1
  labels: {app: reviews, version: v1}
spec:
  replicas: 1
  selector:
    matchLabels: {app: reviews, version: v1}
  template:
    metadata:
      labels: {app: reviews, version: v1}
    spec:
      containers:
      - name: reviews
        image: docker.io/istio/examples-bookinfo-reviews-v1:1.20.3
        ports:
        - containerPort: 9080
        resources:
          limits: {cpu: 500m}
`
	objs, _, err := loadString(t, yaml, "bookinfo")
	if err != nil {
		t.Fatal(err)
	}
	d := objs[0].Spec.(*appsv1.Deployment)
	if d.Namespace != "bookinfo" || objs[0].Meta.Namespace != "bookinfo" {
		t.Errorf("ObjectMeta not synced: %q / %q", d.Namespace, objs[0].Meta.Namespace)
	}
	if d.Spec.Template.Spec.Containers[0].Ports[0].ContainerPort != 9080 || objs[0].Meta.Labels["version"] != "v1" {
		t.Errorf("decoded wrong: %+v", d.Spec)
	}
	if d.Kind != "Deployment" || d.APIVersion != "apps/v1" {
		t.Errorf("TypeMeta = %+v", d.TypeMeta)
	}
}
