package kube

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"sigs.k8s.io/yaml"

	"github.com/skein-mesh/skein/internal/config"
	"github.com/skein-mesh/skein/internal/configstore"
)

// countingSink is the real store, counting writes to check batching.
type countingSink struct {
	*configstore.Store
	mu     sync.Mutex
	writes int
}

func (s *countingSink) Mirror(puts []*config.Object, deletes []config.Key) ([]config.ApplyResult, error) {
	s.mu.Lock()
	s.writes++
	s.mu.Unlock()
	return s.Store.Mirror(puts, deletes)
}

func (s *countingSink) Writes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writes
}

// syncBuffer is a log destination safe for the informers' goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// fakeClient serves every version of every kind Skein knows, and CRDs.
func fakeClient(objs ...runtime.Object) *dynamicfake.FakeDynamicClient {
	lists := map[schema.GroupVersionResource]string{crdGVR: "CustomResourceDefinitionList"}
	for _, s := range config.Schemas {
		for _, v := range s.Versions {
			lists[schema.GroupVersionResource{Group: s.Group, Version: v, Resource: s.Plural}] = s.Kind + "List"
		}
	}
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), lists, objs...)
}

func obj(t *testing.T, y string) *unstructured.Unstructured {
	t.Helper()
	j, err := yaml.YAMLToJSON([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(j); err != nil {
		t.Fatal(err)
	}
	return u
}

func crd(t *testing.T, plural, group, kind string, served ...string) *unstructured.Unstructured {
	var versions strings.Builder
	for _, v := range served {
		fmt.Fprintf(&versions, "  - {name: %s, served: true, storage: false}\n", v)
	}
	versions.WriteString("  - {name: v0old, served: false, storage: false}\n")
	return obj(t, fmt.Sprintf(`apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: %s.%s, resourceVersion: "1"}
spec:
  group: %s
  names: {plural: %s, kind: %s}
  scope: Namespaced
  versions:
%sstatus:
  conditions: [{type: Established, status: "True"}]
`, plural, group, group, plural, kind, versions.String()))
}

func vs(t *testing.T, version, name, host string) *unstructured.Unstructured {
	return obj(t, fmt.Sprintf(`apiVersion: networking.istio.io/%s
kind: VirtualService
metadata:
  name: %s
  namespace: bookinfo
  resourceVersion: "10"
  annotations: {kubectl.kubernetes.io/last-applied-configuration: "{...}"}
  managedFields: [{manager: kubectl, operation: Apply}]
spec:
  hosts: [%s]
  http:
  - route:
    - destination: {host: %s}
`, version, name, host, host))
}

func gvr(kind, version string) schema.GroupVersionResource {
	s, _ := config.SchemaForKind(kind)
	return schema.GroupVersionResource{Group: s.Group, Version: version, Resource: s.Plural}
}

type harness struct {
	t       *testing.T
	client  *dynamicfake.FakeDynamicClient
	sink    *countingSink
	mirror  *Mirror
	logs    *syncBuffer
	invalid chan config.Key
}

func start(t *testing.T, objs ...runtime.Object) *harness {
	t.Helper()
	h := &harness{t: t, client: fakeClient(objs...), sink: &countingSink{Store: configstore.OpenMemory()},
		logs: &syncBuffer{}, invalid: make(chan config.Key, 100)}
	h.mirror = NewMirror(h.client, h.sink, MirrorOptions{
		Batch:     20 * time.Millisecond,
		Log:       slog.New(slog.NewTextHandler(h.logs, nil)),
		OnInvalid: func(k config.Key, _ error) { h.invalid <- k },
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.mirror.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-h.mirror.Ready():
	case err := <-done:
		t.Fatalf("Run ended before ready: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("mirror not ready after 10s")
	}
	return h
}

func (h *harness) get(kind, ns, name string) (*config.Object, bool) {
	return h.sink.Snapshot().Get(config.Key{Kind: kind, Namespace: ns, Name: name})
}

// eventually waits for cond, failing with what after 5s.
func (h *harness) eventually(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("after 5s: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (h *harness) create(gvr schema.GroupVersionResource, u *unstructured.Unstructured) {
	h.t.Helper()
	if _, err := h.client.Resource(gvr).Namespace(u.GetNamespace()).Create(context.Background(), u, metav1.CreateOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

func TestMirrorInitialList(t *testing.T) {
	h := start(t,
		crd(t, "virtualservices", "networking.istio.io", "VirtualService", "v1alpha3", "v1beta1", "v1"),
		obj(t, "apiVersion: v1\nkind: Namespace\nmetadata: {name: bookinfo, labels: {istio-injection: enabled}}"),
		obj(t, `apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: bookinfo}
spec: {ports: [{name: http, port: 9080, targetPort: 9080}], selector: {app: reviews}}`),
		obj(t, `apiVersion: v1
kind: Pod
metadata: {name: reviews-v1-abc, namespace: bookinfo, labels: {app: reviews}}
spec: {serviceAccountName: bookinfo-reviews, containers: [{name: reviews, image: skein/reviews}]}
status: {podIP: 127.0.1.5, phase: Running}`),
		vs(t, "v1", "reviews", "reviews"),
		// Served at v1 too, but the mirror watches v1 only.
		vs(t, "v1beta1", "ratings-old", "ratings"),
		obj(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata: {mesh: 'accessLogFile: /dev/stdout'}"),
		obj(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio-sidecar-injector, namespace: istio-system}\ndata: {config: 'policy: enabled'}"),
		obj(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: kube-root-ca.crt, namespace: istio-system}\ndata: {ca.crt: x}"),
		obj(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: default}\ndata: {mesh: ''}"),
		obj(t, "apiVersion: v1\nkind: Secret\nmetadata: {name: bookinfo-credential, namespace: istio-system}\ntype: kubernetes.io/tls\ndata: {tls.crt: Y2VydA==, tls.key: a2V5}"),
		obj(t, "apiVersion: v1\nkind: Secret\nmetadata: {name: db-password, namespace: bookinfo}\ntype: Opaque\ndata: {password: aHVudGVyMg==}"),
		obj(t, `apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews-v1, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: reviews}}
  template: {metadata: {labels: {app: reviews}}, spec: {containers: [{name: reviews, image: skein/reviews}]}}`),
	)
	if got := h.sink.Writes(); got != 1 {
		t.Errorf("initial list took %d store writes, want 1", got)
	}
	if got := h.sink.Revision(); got != 1 {
		t.Errorf("revision after initial list %d, want 1", got)
	}
	cases := []struct {
		kind, ns, name string
		want           bool
	}{
		{"Namespace", "", "bookinfo", true},
		{"Service", "bookinfo", "reviews", true},
		{"Pod", "bookinfo", "reviews-v1-abc", true},
		{"VirtualService", "bookinfo", "reviews", true},
		{"VirtualService", "bookinfo", "ratings-old", false}, // only v1 is watched
		{"ConfigMap", "istio-system", "istio", true},
		{"ConfigMap", "istio-system", "istio-sidecar-injector", true},
		{"ConfigMap", "istio-system", "kube-root-ca.crt", false},
		{"ConfigMap", "default", "istio", false},
		{"Secret", "istio-system", "bookinfo-credential", true},
		{"Secret", "bookinfo", "db-password", false},
		{"Deployment", "bookinfo", "reviews-v1", false},
	}
	for _, c := range cases {
		if _, got := h.get(c.kind, c.ns, c.name); got != c.want {
			t.Errorf("%s %s/%s stored = %v, want %v", c.kind, c.ns, c.name, got, c.want)
		}
	}
	v, _ := h.get("VirtualService", "bookinfo", "reviews")
	if v.GVK.Version != "v1" || v.Meta.ResourceVersion != "10" {
		t.Errorf("VirtualService %s resourceVersion %q, want v1 and the cluster's 10", v.GVK.APIVersion(), v.Meta.ResourceVersion)
	}
	if _, ok := v.Meta.Annotations[lastApplied]; ok {
		t.Error("last-applied-configuration annotation kept")
	}
	if hosts := v.ProtoSpec().ProtoReflect().Descriptor().Fields().ByName("hosts"); hosts == nil {
		t.Fatal("VirtualService spec is not the typed proto")
	}
	p, _ := h.get("Pod", "bookinfo", "reviews-v1-abc")
	if ip := podIP(p); ip != "127.0.1.5" {
		t.Errorf("pod IP %q, want 127.0.1.5 (status must survive the conversion)", ip)
	}
	if got := h.mirror.watchedKinds(); !contains(got, "VirtualService.v1") || contains(got, "Deployment.v1") || contains(got, "DestinationRule.v1") {
		t.Errorf("watched %v: want VirtualService at v1, no Deployment, no DestinationRule (no CRD)", got)
	}
}

func TestMirrorInvalidObjects(t *testing.T) {
	bad := obj(t, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: broken, namespace: bookinfo, resourceVersion: "3"}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {hots: reviews}
`)
	h := start(t, crd(t, "virtualservices", "networking.istio.io", "VirtualService", "v1"), bad, vs(t, "v1", "reviews", "reviews"))

	if _, ok := h.get("VirtualService", "bookinfo", "broken"); ok {
		t.Error("invalid VirtualService stored")
	}
	if _, ok := h.get("VirtualService", "bookinfo", "reviews"); !ok {
		t.Error("a valid VirtualService next to an invalid one is missing")
	}
	select {
	case k := <-h.invalid:
		if k.String() != "VirtualService/bookinfo/broken" {
			t.Errorf("OnInvalid(%s), want VirtualService/bookinfo/broken", k)
		}
	case <-time.After(time.Second):
		t.Error("OnInvalid not called")
	}
	logs := h.logs.String()
	for _, want := range []string{"kind=VirtualService", "namespace=bookinfo", "name=broken", `resourceVersion=3`, "spec.http[0].route[0].destination.hots", "kubernetes: VirtualService/broken"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}

	// An update that breaks a valid object keeps its last valid version.
	broken := vs(t, "v1", "reviews", "reviews")
	broken.SetResourceVersion("11")
	_ = unstructured.SetNestedField(broken.Object, "not-a-list", "spec", "http")
	if _, err := h.client.Resource(gvr("VirtualService", "v1")).Namespace("bookinfo").Update(context.Background(), broken, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.invalid:
	case <-time.After(5 * time.Second):
		t.Fatal("the broken update was not reported")
	}
	h.mirror.flush()
	if v, ok := h.get("VirtualService", "bookinfo", "reviews"); !ok || v.Meta.ResourceVersion != "10" {
		t.Errorf("after a broken update: stored %v (resourceVersion %q), want the last valid version 10", ok, v.Meta.ResourceVersion)
	}
}

func TestMirrorCRDAppearsLaterAndGoes(t *testing.T) {
	dr := obj(t, `apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: reviews, namespace: bookinfo}
spec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}]}`)
	h := start(t, dr)
	if _, ok := h.get("DestinationRule", "bookinfo", "reviews"); ok {
		t.Fatal("DestinationRule mirrored without its CRD")
	}
	// v1 is preferred, but this CRD serves only v1alpha3 and v1beta1.
	// Created but not yet Established (the API server would answer 404):
	// no watch until its status says so.
	pending := crd(t, "destinationrules", "networking.istio.io", "DestinationRule", "v1alpha3", "v1beta1")
	unstructured.RemoveNestedField(pending.Object, "status")
	h.create(crdGVR, pending)
	time.Sleep(200 * time.Millisecond)
	if got := h.mirror.watchedKinds(); contains(got, "DestinationRule.v1beta1") {
		t.Fatalf("watching %v before the CRD is Established", got)
	}
	if _, err := h.client.Resource(crdGVR).Update(context.Background(), crd(t, "destinationrules", "networking.istio.io", "DestinationRule", "v1alpha3", "v1beta1"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.eventually("DestinationRule mirrored once its CRD exists", func() bool {
		_, ok := h.get("DestinationRule", "bookinfo", "reviews")
		return ok
	})
	if got := h.mirror.watchedKinds(); !contains(got, "DestinationRule.v1beta1") {
		t.Errorf("watched %v, want DestinationRule.v1beta1", got)
	}
	if err := h.client.Resource(crdGVR).Delete(context.Background(), "destinationrules.networking.istio.io", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.eventually("DestinationRule removed with its CRD", func() bool {
		_, ok := h.get("DestinationRule", "bookinfo", "reviews")
		return !ok
	})
}

func TestMirrorUpdatesDeletesAndBatches(t *testing.T) {
	h := start(t, crd(t, "virtualservices", "networking.istio.io", "VirtualService", "v1"), vs(t, "v1", "reviews", "reviews"))
	steps := []struct {
		name  string
		do    func()
		check func() bool
	}{
		{"update", func() {
			u := vs(t, "v1", "reviews", "reviews-v2")
			u.SetResourceVersion("20")
			if _, err := h.client.Resource(gvr("VirtualService", "v1")).Namespace("bookinfo").Update(context.Background(), u, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}, func() bool {
			v, ok := h.get("VirtualService", "bookinfo", "reviews")
			return ok && v.Meta.ResourceVersion == "20"
		}},
		{"delete", func() {
			if err := h.client.Resource(gvr("VirtualService", "v1")).Namespace("bookinfo").Delete(context.Background(), "reviews", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}, func() bool {
			_, ok := h.get("VirtualService", "bookinfo", "reviews")
			return !ok
		}},
	}
	for _, st := range steps {
		st.do()
		h.eventually(st.name, st.check)
	}

	before := h.sink.Writes()
	const n = 50
	start := time.Now()
	for i := range n {
		h.create(gvr("Service", "v1"), obj(t, fmt.Sprintf(
			"apiVersion: v1\nkind: Service\nmetadata: {name: svc-%d, namespace: bookinfo}\nspec: {ports: [{port: 80}]}", i)))
	}
	created := time.Since(start)
	h.eventually("50 Services mirrored", func() bool { return len(h.sink.Snapshot().List("Service")) == n })
	// One write per batch window the creates spanned (plus the last
	// window's and a straggler's), not one per object: on a loaded machine
	// or under -race the creates span more windows, never n of them.
	limit := int(created/(20*time.Millisecond)) + 2
	if got := h.sink.Writes() - before; got > limit || got >= n {
		t.Errorf("%d Services created over %s took %d store writes, want them batched (≤ %d)", n, created, got, limit)
	}
}

func podIP(o *config.Object) string {
	doc, err := config.Encode(o)
	if err != nil {
		return ""
	}
	ip, _, _ := unstructured.NestedString(doc, "status", "podIP")
	return ip
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
