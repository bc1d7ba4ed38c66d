package config

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

const kubeObjects = `apiVersion: v1
kind: Service
metadata:
  name: reviews
  labels: {app: reviews, service: reviews}
spec:
  ports:
  - port: 9080
    name: http
    targetPort: 9080
  selector: {app: reviews}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: reviews-v1
  annotations: {note: "first"}
spec:
  replicas: 2
  selector:
    matchLabels: {app: reviews, version: v1}
  template:
    metadata:
      labels: {app: reviews, version: v1}
    spec:
      serviceAccountName: bookinfo-reviews
      containers:
      - name: reviews
        image: docker.io/istio/examples-bookinfo-reviews-v1:1.20.3
        env:
        - {name: LOG_DIR, value: /tmp/logs}
        resources:
          requests: {cpu: 100m, memory: 64Mi}
---
apiVersion: v1
kind: Namespace
metadata: {name: bookinfo}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {a: b}
`

func roundTripObjects(t *testing.T) []*Object {
	t.Helper()
	istio, _, err := LoadFiles([]string{"testdata/tutorial"}, "")
	if err != nil {
		t.Fatal(err)
	}
	kube, _, err := loadString(t, kubeObjects, "")
	if err != nil {
		t.Fatal(err)
	}
	objs := append(istio, kube...)
	created := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for i, o := range objs {
		o.Meta.ResourceVersion = "42"
		o.Meta.Generation = int64(i + 1)
		o.Meta.CreationTimestamp = created
		o.SyncMeta()
	}
	objs[0].Status = map[string]any{"conditions": []any{map[string]any{"type": "Ready", "status": "True"}}}
	return objs
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	for _, o := range roundTripObjects(t) {
		t.Run(o.Key().String(), func(t *testing.T) {
			doc, err := Encode(o)
			if err != nil {
				t.Fatal(err)
			}
			md := doc["metadata"].(map[string]any)
			if md["resourceVersion"] != "42" || md["creationTimestamp"] != "2025-03-01T12:00:00Z" {
				t.Errorf("metadata = %v", md)
			}
			// Through real JSON text, as the config API sends it (numbers
			// become float64 on the way back).
			b, err := json.Marshal(doc)
			if err != nil {
				t.Fatal(err)
			}
			var back map[string]any
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			got, err := Decode(back)
			if err != nil {
				t.Fatalf("decode: %v\n%s", err, b)
			}
			if !SpecEqual(o, got) || !ContentEqual(o, got) {
				t.Errorf("content differs after round trip:\n%s", b)
			}
			if !reflect.DeepEqual(o.Meta, got.Meta) || o.GVK != got.GVK {
				t.Errorf("meta differs:\n got %+v %v\nwant %+v %v", got.Meta, got.GVK, o.Meta, o.GVK)
			}
			doc2, err := Encode(got)
			if err != nil {
				t.Fatal(err)
			}
			if !jsonEqual(doc, doc2) {
				b2, _ := json.Marshal(doc2)
				t.Errorf("re-encoding differs:\n%s\n%s", b, b2)
			}
		})
	}
}

func TestEncodeShape(t *testing.T) {
	objs, _, err := LoadFiles([]string{"testdata/tutorial/05-retry-timeout.yaml"}, "")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := Encode(objs[0])
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(doc)
	want := `{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"unreliable-service","namespace":"default"},` +
		`"spec":{"hosts":["unreliable-service"],"http":[{"retries":{"attempts":3,"perTryTimeout":"3s","retryOn":"5xx,gateway-error,connect-failure,refused-stream"},` +
		`"route":[{"destination":{"host":"unreliable-service"}}],"timeout":"10s"}]}}`
	if string(b) != want {
		t.Errorf("encoded\n%s\nwant\n%s", b, want)
	}
}

func TestSpecEqual(t *testing.T) {
	load := func(y string) *Object {
		t.Helper()
		objs, _, err := loadString(t, y, "")
		if err != nil {
			t.Fatal(err)
		}
		return objs[0]
	}
	base := load(istioDoc("DestinationRule", "  host: reviews\n  subsets:\n  - {name: v1, labels: {version: v1}}\n"))

	same := base.DeepCopy()
	same.Meta.ResourceVersion, same.Meta.Generation = "7", 3
	relabelled := base.DeepCopy()
	relabelled.Meta.Labels = map[string]string{"team": "a"}
	changed := load(istioDoc("DestinationRule", "  host: reviews\n  subsets:\n  - {name: v2, labels: {version: v2}}\n"))
	v1beta1 := load(strings.Replace(istioDoc("DestinationRule", "  host: reviews\n  subsets:\n  - {name: v1, labels: {version: v1}}\n"), "networking.istio.io/v1", "networking.istio.io/v1beta1", 1))

	pod := load("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c, image: i}]\n")
	podRunning := pod.DeepCopy()
	podRunning.Spec.(*corev1.Pod).Status.Phase = corev1.PodRunning
	podRunning.Meta.ResourceVersion = "9"
	podImage := pod.DeepCopy()
	podImage.Spec.(*corev1.Pod).Spec.Containers[0].Image = "j"

	tests := []struct {
		name        string
		a, b        *Object
		spec, whole bool
	}{
		{"identical but for store fields", base, same, true, true},
		{"other apiVersion of the same kind", base, v1beta1, true, true},
		{"labels changed", base, relabelled, true, false},
		{"spec changed", base, changed, false, false},
		{"different kinds", base, pod, false, false},
		{"pod status changed", pod, podRunning, true, false},
		{"pod image changed", pod, podImage, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SpecEqual(tt.a, tt.b); got != tt.spec {
				t.Errorf("SpecEqual = %v, want %v", got, tt.spec)
			}
			if got := ContentEqual(tt.a, tt.b); got != tt.whole {
				t.Errorf("ContentEqual = %v, want %v", got, tt.whole)
			}
		})
	}
}

func TestDeepCopyIsIndependent(t *testing.T) {
	objs := roundTripObjects(t)
	for _, o := range objs {
		before, _ := Encode(o)
		c := o.DeepCopy()
		c.Meta.Labels = map[string]string{"changed": "yes"}
		c.Meta.Name = "other"
		if svc, ok := c.Spec.(*corev1.Service); ok {
			svc.Spec.Ports[0].Port = 1
		}
		if c.Status != nil {
			c.Status["conditions"] = nil
		}
		after, _ := Encode(o)
		if !jsonEqual(before, after) {
			t.Errorf("%s changed through its copy", o.Key())
		}
	}
}
