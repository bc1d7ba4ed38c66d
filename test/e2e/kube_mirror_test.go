package e2e

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/skein-mesh/skein/internal/discovery"
	"github.com/skein-mesh/skein/internal/kube"
	"github.com/skein-mesh/skein/test/kubetest"
)

// vsCRD is a minimal VirtualService CRD: served at v1beta1 and v1, with no
// schema, so the API server accepts what Skein's validation refuses.
const vsCRD = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: virtualservices.networking.istio.io}
spec:
  group: networking.istio.io
  names: {kind: VirtualService, plural: virtualservices, singular: virtualservice, shortNames: [vs], listKind: VirtualServiceList}
  scope: Namespaced
  versions:
  - {name: v1beta1, served: true, storage: false, schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}
  - {name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}
`

// TestKubeMirror runs discovery in Kubernetes mode against the real test
// cluster: Istio YAML applied with kubectl (after discovery started, CRD
// included) shows up in the config API, an invalid object stays out, and a
// TokenRequest token for audience istio-ca authenticates as its service
// account.
func TestKubeMirror(t *testing.T) {
	c := kubetest.StartT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	kubectl := func(stdin string, args ...string) string { t.Helper(); return kubectlFor(ctx, c)(t, stdin, args...) }
	dc, _, err := kube.Dynamic(c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := discovery.New(discovery.Options{Kube: dc, GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"}, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done })
	base := "http://" + srv.HTTPAddr()
	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("after 30s: %s", what)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitFor("discovery ready", func() bool { code, _ := get("/ready"); return code == 200 })

	kubectl("", "create", "namespace", "bookinfo")
	kubectl(vsCRD, "apply", "-f", "-")
	kubectl("", "wait", "--for=condition=Established", "crd/virtualservices.networking.istio.io", "--timeout=60s")
	kubectl(`
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: bookinfo}
spec: {ports: [{name: http, port: 9080}], selector: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: broken, namespace: bookinfo}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {hots: reviews}
`, "apply", "-f", "-")
	waitFor("VirtualService bookinfo/reviews in the config API", func() bool {
		_, body := get("/api/v1/objects/VirtualService?namespace=bookinfo&name=reviews")
		return strings.Contains(body, `"subset":"v1"`)
	})
	waitFor("Service bookinfo/reviews in the config API", func() bool {
		_, body := get("/api/v1/objects/Service?namespace=bookinfo&name=reviews")
		return strings.Contains(body, `"name":"reviews"`)
	})
	if code, body := get("/api/v1/objects/VirtualService?namespace=bookinfo&name=broken"); code != http.StatusNotFound {
		t.Errorf("invalid VirtualService mirrored: %d %s", code, body)
	}
	kubectl("", "delete", "virtualservice", "-n", "bookinfo", "reviews")
	waitFor("VirtualService bookinfo/reviews gone", func() bool {
		_, body := get("/api/v1/objects/VirtualService?namespace=bookinfo&name=reviews")
		return !strings.Contains(body, `"reviews"`)
	})

	kubectl("", "create", "serviceaccount", "-n", "bookinfo", "bookinfo-reviews")
	token := strings.TrimSpace(kubectl("", "create", "token", "-n", "bookinfo", "bookinfo-reviews", "--audience", kube.CAAudience))
	auth := kube.NewTokenReviewAuthenticator(dc, nil, 0)
	id, err := auth.Authenticate(metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer "+token)))
	if err != nil || id.Namespace != "bookinfo" || id.ServiceAccount != "bookinfo-reviews" {
		t.Errorf("TokenReview of an istio-ca token: %+v, %v; want bookinfo/bookinfo-reviews", id, err)
	}
	other := strings.TrimSpace(kubectl("", "create", "token", "-n", "bookinfo", "bookinfo-reviews"))
	if _, err := auth.Authenticate(metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer "+other))); err == nil {
		t.Error("a token for the API server's audience authenticated to the CA")
	}
}
