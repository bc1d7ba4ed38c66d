package node

import (
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic/fake"
	k8stesting "k8s.io/client-go/testing"
)

const testNode = "skein-test"

// newFake is a fake dynamic client holding objs; List needs every GVR the
// agent lists (only pods, through the informer).
func newFake(t *testing.T, objs ...runtime.Object) *fake.FakeDynamicClient {
	t.Helper()
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, coordinationv1.AddToScheme, authenticationv1.AddToScheme} {
		if err := add(s); err != nil {
			t.Fatal(err)
		}
	}
	return fake.NewSimpleDynamicClientWithCustomListKinds(s, map[schema.GroupVersionResource]string{
		podsGVR: "PodList", nodesGVR: "NodeList", leaseGVR: "LeaseList",
	}, objs...)
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newAgent builds an agent on dc with a temporary data directory.
func newAgent(t *testing.T, dc *fake.FakeDynamicClient) *Agent {
	t.Helper()
	a, err := New(Options{Client: dc, NodeName: testNode, DataDir: t.TempDir(), Version: "v1.2.3", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	a.started = time.Now().Add(-time.Hour)
	return a
}

// actionsOf lists dc's recorded actions with this verb and resource.
func actionsOf(dc *fake.FakeDynamicClient, verb, resource string) []k8stesting.Action {
	var out []k8stesting.Action
	for _, act := range dc.Actions() {
		if act.GetVerb() == verb && act.GetResource().Resource == resource {
			out = append(out, act)
		}
	}
	return out
}

func testPod(name string) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: "demo", UID: types.UID("uid-" + name),
			CreationTimestamp: metav1.NewTime(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)),
			Labels:            map[string]string{"app": "web", "version": "v1"},
			Annotations:       map[string]string{"note": `say "hi"`},
		},
		Spec: corev1.PodSpec{NodeName: testNode, ServiceAccountName: "web-sa",
			Containers: []corev1.Container{{Name: "app", Image: "example/app:1"}}},
	}
}

// equalJSON compares values as the API server would see them.
func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(ja) == string(jb)
}

// unstructuredOf converts a typed object; the fake's watch passes on the
// stored objects as they are, and the dynamic informer wants unstructured.
func unstructuredOf(t *testing.T, obj runtime.Object) *unstructured.Unstructured {
	t.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	return &unstructured.Unstructured{Object: m}
}

// newUnstructuredFake is a fake whose scheme knows no types, holding objs
// as unstructured, as an informer needs: with typed objects the fake's
// watch sends typed events, and with typed kinds its List fails.
func newUnstructuredFake(t *testing.T, objs ...runtime.Object) *fake.FakeDynamicClient {
	t.Helper()
	var us []runtime.Object
	for _, o := range objs {
		us = append(us, unstructuredOf(t, o))
	}
	return fake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		podsGVR: "PodList", nodesGVR: "NodeList", leaseGVR: "LeaseList",
	}, us...)
}
