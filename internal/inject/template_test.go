package inject

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

var enabled = map[string]string{LabelNamespaceInjection: "enabled"}

var testParams = Params{DiscoveryAddress: "istiod.istio-system.svc:15010", LogLevel: "info"}

// TestGolden injects each testdata/*.yaml manifest and compares with its
// .golden.yaml; injecting the output again must change nothing.
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range inputs {
		if strings.HasSuffix(in, ".golden.yaml") {
			continue
		}
		t.Run(filepath.Base(in), func(t *testing.T) {
			src, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Manifests(src, "default", enabled, testParams)
			if err != nil {
				t.Fatal(err)
			}
			golden := strings.TrimSuffix(in, ".yaml") + ".golden.yaml"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./internal/inject -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from %s (go test ./internal/inject -update to accept):\n%s", in, golden, got)
			}
			again, err := Manifests(got, "default", enabled, testParams)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again, got) {
				t.Errorf("injecting twice changed the output:\n%s", again)
			}
		})
	}
}

func TestTemplateErrors(t *testing.T) {
	tests := []struct {
		name        string
		annotations map[string]string
		want        string
	}{
		{"proxy config not YAML", map[string]string{AnnotationProxyConfig: "{"}, "annotation proxy.istio.io/config"},
		{"proxy config unknown field", map[string]string{AnnotationProxyConfig: "noSuchField: 1"}, "noSuchField"},
		{"merge-metrics not boolean", map[string]string{annoMergeMetrics: "sometimes"}, "prometheus.istio.io/merge-metrics"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl := &corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Annotations: tt.annotations},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}},
			}
			_, err := Template(tmpl, Target{Namespace: "ns", NamespaceLabels: enabled, WorkloadName: "w"}, Params{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one naming %q", err, tt.want)
			}
		})
	}
}

func TestManifestErrorsNameTheDocument(t *testing.T) {
	in := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\nspec: {}\n"
	_, err := Manifests([]byte(in), "default", enabled, Params{})
	if err == nil || !strings.Contains(err.Error(), "document 2: Deployment shop/web: spec.template") {
		t.Fatalf("err = %v", err)
	}
}

func TestPodWorkloadAndPrometheusMerge(t *testing.T) {
	yes := true
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "reviews-v1-5d8f9-", Namespace: "bookinfo",
			Labels:          map[string]string{"app": "reviews", "version": "v1", "pod-template-hash": "5d8f9"},
			Annotations:     map[string]string{annoPromScrape: "true", annoPromPort: "9102"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "reviews-v1-5d8f9", Controller: &yes}},
		},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "reviews"}}},
	}
	mode, err := Pod(pod, enabled, Params{})
	if err != nil || mode != Sidecar {
		t.Fatalf("mode %v err %v", mode, err)
	}
	proxy := pod.Spec.Containers[len(pod.Spec.Containers)-1]
	env := map[string]string{}
	for _, e := range proxy.Env {
		env[e.Name] = e.Value
	}
	checks := map[string]string{
		"ISTIO_META_WORKLOAD_NAME":     "reviews-v1",
		"ISTIO_META_OWNER":             "kubernetes://apis/apps/v1/namespaces/bookinfo/deployments/reviews-v1",
		envPromAnnos:                   `{"scrape":"true","path":"","port":"9102"}`,
		"CA_ADDR":                      DefaultDiscoveryAddress,
		"ISTIO_META_INTERCEPTION_MODE": "NONE",
	}
	for k, want := range checks {
		if env[k] != want {
			t.Errorf("%s = %q, want %q", k, env[k], want)
		}
	}
	if pod.Annotations[annoPromPort] != "15020" || pod.Annotations[annoPromPath] != StatsPath {
		t.Errorf("prometheus annotations = %v", pod.Annotations)
	}
	if pod.Labels[LabelCanonicalName] != "reviews" || pod.Labels[LabelCanonicalRevision] != "v1" || pod.Labels[LabelTLSMode] != "istio" {
		t.Errorf("labels = %v", pod.Labels)
	}
	// The status annotation makes a second pass a no-op.
	before := pod.DeepCopy()
	if mode, err := Pod(pod, enabled, Params{}); err != nil || mode != None || len(pod.Spec.Containers) != len(before.Spec.Containers) {
		t.Errorf("second injection: mode %v err %v containers %d", mode, err, len(pod.Spec.Containers))
	}
}
