package inject

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// applyPatch is a minimal RFC 6902 applier (add, replace, remove), enough
// to check that CreatePatch's output turns one document into the other.
func applyPatch(doc any, ops []PatchOp) (any, error) {
	for _, op := range ops {
		parts := strings.Split(op.Path, "/")[1:]
		for i := range parts {
			parts[i] = strings.ReplaceAll(strings.ReplaceAll(parts[i], "~1", "/"), "~0", "~")
		}
		var err error
		if doc, err = applyAt(doc, parts, op); err != nil {
			return nil, fmt.Errorf("%s %s: %w", op.Op, op.Path, err)
		}
	}
	return doc, nil
}

func applyAt(node any, parts []string, op PatchOp) (any, error) {
	if len(parts) == 0 {
		if op.Op == "remove" {
			return nil, nil
		}
		return op.Value, nil
	}
	switch n := node.(type) {
	case map[string]any:
		k := parts[0]
		if len(parts) == 1 {
			_, exists := n[k]
			switch {
			case op.Op == "remove":
				if !exists {
					return nil, fmt.Errorf("no member %q", k)
				}
				delete(n, k)
			case op.Op == "replace" && !exists:
				return nil, fmt.Errorf("no member %q to replace", k)
			default:
				n[k] = op.Value
			}
			return n, nil
		}
		child, ok := n[k]
		if !ok {
			return nil, fmt.Errorf("no member %q", k)
		}
		v, err := applyAt(child, parts[1:], op)
		n[k] = v
		return n, err
	case []any:
		i, err := strconv.Atoi(parts[0])
		if err != nil || i < 0 || i > len(n) {
			return nil, fmt.Errorf("bad index %q", parts[0])
		}
		if len(parts) == 1 && op.Op == "add" {
			return append(n[:i], append([]any{op.Value}, n[i:]...)...), nil
		}
		if i == len(n) {
			return nil, fmt.Errorf("index %d out of range", i)
		}
		v, err := applyAt(n[i], parts[1:], op)
		n[i] = v
		return n, err
	}
	return nil, fmt.Errorf("not a container")
}

func TestCreatePatchRoundTrips(t *testing.T) {
	tests := []struct{ name, from, to string }{
		{"add member", `{"a":1}`, `{"a":1,"b":{"c":[1]}}`},
		{"remove and replace", `{"a":1,"b":"x"}`, `{"b":"y"}`},
		{"append to array", `{"l":[1,2]}`, `{"l":[1,2,3,4]}`},
		{"array changed and grown", `{"l":[1,2]}`, `{"l":[0,2,3]}`},
		{"array element member", `{"l":[{"n":"a"},{"n":"b"}]}`, `{"l":[{"n":"a"},{"n":"c","x":true}]}`},
		{"escaped keys", `{"m":{"a/b":"1"}}`, `{"m":{"a/b":"2","c~d":"3"}}`},
		{"type change", `{"a":[1]}`, `{"a":{"b":1}}`},
		{"equal", `{"a":[1,{"b":null}]}`, `{"a":[1,{"b":null}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ops, err := CreatePatch([]byte(tt.from), []byte(tt.to))
			if err != nil {
				t.Fatal(err)
			}
			var doc, want any
			_ = json.Unmarshal([]byte(tt.from), &doc)
			_ = json.Unmarshal([]byte(tt.to), &want)
			got, err := applyPatch(doc, roundTripOps(t, ops))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("patch %+v gave %v, want %v", ops, got, want)
			}
		})
	}
}

// roundTripOps sends ops through JSON as the API server receives them.
func roundTripOps(t *testing.T, ops []PatchOp) []PatchOp {
	b, err := json.Marshal(ops)
	if err != nil {
		t.Fatal(err)
	}
	var out []PatchOp
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func postReview(t *testing.T, h http.Handler, review any) *admissionv1.AdmissionReview {
	t.Helper()
	body, _ := json.Marshal(review)
	req := httptest.NewRequest(http.MethodPost, "/inject", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

func podReview(t *testing.T, pod *corev1.Pod, ns string) admissionv1.AdmissionReview {
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	return admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: "uid-1", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Namespace: ns, Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw},
		},
	}
}

func TestWebhookPatchesLikePod(t *testing.T) {
	namespaces := map[string]map[string]string{"shop": enabled, "plain": nil}
	wh := &Webhook{Params: testParams, Namespaces: func(ns string) map[string]string { return namespaces[ns] }}
	newPod := func(annotations map[string]string) *corev1.Pod {
		return &corev1.Pod{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{GenerateName: "web-", Labels: map[string]string{"app": "web"}, Annotations: annotations},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "example/web"}}},
		}
	}
	tests := []struct {
		name        string
		namespace   string
		annotations map[string]string
		wantPatch   bool
		wantDenied  string
	}{
		{name: "enabled namespace", namespace: "shop", wantPatch: true},
		{name: "unlabelled namespace", namespace: "plain"},
		{name: "bad proxy config denies", namespace: "shop", annotations: map[string]string{AnnotationProxyConfig: "{"}, wantDenied: "proxy.istio.io/config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := newPod(tt.annotations)
			out := postReview(t, wh, podReview(t, pod, tt.namespace))
			r := out.Response
			if r == nil || r.UID != "uid-1" || out.APIVersion != "admission.k8s.io/v1" {
				t.Fatalf("response = %+v", out)
			}
			if tt.wantDenied != "" {
				if r.Allowed || r.Result == nil || !strings.Contains(r.Result.Message, tt.wantDenied) {
					t.Fatalf("want denial naming %q, got %+v", tt.wantDenied, r)
				}
				return
			}
			if !r.Allowed || (len(r.Patch) > 0) != tt.wantPatch {
				t.Fatalf("allowed %v patch %s", r.Allowed, r.Patch)
			}
			if !tt.wantPatch {
				return
			}
			if r.PatchType == nil || *r.PatchType != admissionv1.PatchTypeJSONPatch {
				t.Fatalf("patchType = %v", r.PatchType)
			}
			var ops []PatchOp
			if err := json.Unmarshal(r.Patch, &ops); err != nil {
				t.Fatal(err)
			}
			raw, _ := json.Marshal(pod)
			var doc any
			_ = json.Unmarshal(raw, &doc)
			patched, err := applyPatch(doc, ops)
			if err != nil {
				t.Fatal(err)
			}
			want := pod.DeepCopy()
			want.Namespace = tt.namespace
			if _, err := Pod(want, enabled, testParams); err != nil {
				t.Fatal(err)
			}
			wantJSON, _ := json.Marshal(want)
			var wantDoc any
			_ = json.Unmarshal(wantJSON, &wantDoc)
			// The namespace comes from the request, not the patch.
			patched.(map[string]any)["metadata"].(map[string]any)["namespace"] = tt.namespace
			if !reflect.DeepEqual(patched, wantDoc) {
				gotJSON, _ := json.Marshal(patched)
				t.Errorf("patched pod differs from Pod's injection:\n got %s\nwant %s", gotJSON, wantJSON)
			}
		})
	}
}

func TestWebhookBadRequests(t *testing.T) {
	wh := &Webhook{}
	for _, tc := range []struct {
		method, ctype, body string
		want                int
	}{
		{http.MethodGet, "application/json", "", http.StatusMethodNotAllowed},
		{http.MethodPost, "text/plain", "{}", http.StatusUnsupportedMediaType},
		{http.MethodPost, "application/json", "{", http.StatusBadRequest},
		{http.MethodPost, "application/json", `{"kind":"AdmissionReview"}`, http.StatusBadRequest},
	} {
		req := httptest.NewRequest(tc.method, "/inject", strings.NewReader(tc.body))
		req.Header.Set("Content-Type", tc.ctype)
		rec := httptest.NewRecorder()
		wh.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("%s %s %q: status %d, want %d", tc.method, tc.ctype, tc.body, rec.Code, tc.want)
		}
	}
}

// The webhook reads the injector ConfigMap on every pod: a changed config
// (the tutorial's resources template) applies to the next pod, and a broken
// one denies pods naming it.
func TestWebhookReadsInjectorConfig(t *testing.T) {
	var (
		cfg    *Config
		cfgErr error
	)
	wh := &Webhook{Params: testParams, Namespaces: func(string) map[string]string { return enabled },
		Config: func() (*Config, error) { return cfg, cfgErr }}
	pod := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "web", Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "example/web"}}},
	}
	proxyResources := func() string {
		t.Helper()
		out := postReview(t, wh, podReview(t, pod, "shop"))
		if !out.Response.Allowed {
			return "denied: " + out.Response.Result.Message
		}
		var ops []PatchOp
		_ = json.Unmarshal(out.Response.Patch, &ops)
		raw, _ := json.Marshal(pod)
		var doc any
		_ = json.Unmarshal(raw, &doc)
		patched, err := applyPatch(doc, ops)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(patched)
		var got corev1.Pod
		_ = json.Unmarshal(b, &got)
		for i := range got.Spec.Containers {
			if got.Spec.Containers[i].Name == ProxyContainerName {
				return resourcesString(&got.Spec.Containers[i])
			}
		}
		return "no proxy"
	}
	if got := proxyResources(); got != "requests cpu=0 memory=0 limits cpu=0 memory=0" {
		t.Errorf("without config: %s", got)
	}
	cfg = mustConfig(t, tutorialConfig, "")
	if got := proxyResources(); got != "requests cpu=10m memory=40Mi limits cpu=100m memory=128Mi" {
		t.Errorf("tutorial config: %s", got)
	}
	cfg = mustConfig(t, "policy: disabled\n", "")
	if got := proxyResources(); got != "no proxy" {
		t.Errorf("policy disabled: %s", got)
	}
	cfg, cfgErr = nil, errors.New("istio-sidecar-injector config: policy \"x\"")
	if got := proxyResources(); !strings.Contains(got, "denied: injection failed: istio-sidecar-injector") {
		t.Errorf("broken config: %s", got)
	}
}
