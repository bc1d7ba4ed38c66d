package discovery

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"

	"github.com/skein-mesh/skein/internal/config"
)

// TestKubernetesMode runs discovery over a fake cluster: the mirrored
// Service is readable over the config API, writes are refused with a
// pointer to kubectl, and /ready waits for the initial list.
func TestKubernetesMode(t *testing.T) {
	lists := map[schema.GroupVersionResource]string{{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}: "CustomResourceDefinitionList"}
	for _, s := range config.Schemas {
		for _, v := range s.Versions {
			lists[schema.GroupVersionResource{Group: s.Group, Version: v, Resource: s.Plural}] = s.Kind + "List"
		}
	}
	svc := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Service",
		"metadata": map[string]any{"name": "reviews", "namespace": "bookinfo"},
		"spec":     map[string]any{"ports": []any{map[string]any{"port": int64(9080)}}}}}
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), lists, svc)

	srv, err := New(Options{Kube: client, StoreDir: t.TempDir(), GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + srv.HTTPAddr()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(base + "/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready after 10s: %v %v", resp, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cases := []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"GET", "/api/v1/objects/Service?namespace=bookinfo", "", 200, `"name":"reviews"`},
		{"POST", "/api/v1/apply", `{"objects":[]}`, 405, "use kubectl apply -f"},
		{"POST", "/api/v1/delete", `{"keys":[]}`, 405, "config is in Kubernetes"},
	}
	for _, c := range cases {
		req, _ := http.NewRequest(c.method, base+c.path, strings.NewReader(c.body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+srv.AdminToken())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code || !strings.Contains(string(b), c.want) {
			t.Errorf("%s %s: %d %s, want %d containing %q", c.method, c.path, resp.StatusCode, b, c.code, c.want)
		}
	}
}
