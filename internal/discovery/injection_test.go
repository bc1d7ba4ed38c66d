package discovery

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/skein-mesh/skein/internal/apiclient"
	"github.com/skein-mesh/skein/internal/config"
	"github.com/skein-mesh/skein/internal/inject"
)

// TestInjectionWebhookOverTLS posts AdmissionReviews to the webhook as the
// API server would: over TLS, trusting only the mesh CA's root, dialling
// istiod's Service name; namespace labels come from the config store.
func TestInjectionWebhookOverTLS(t *testing.T) {
	srv, err := New(Options{
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Injection: InjectionOptions{Addr: "127.0.0.1:0", Params: inject.Params{DiscoveryAddress: "10.0.0.5:15010"}},
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"istio-injection": "enabled"}}}
	if _, err := apiclient.NewWithToken(srv.HTTPAddr(), srv.AdminToken()).Apply(ctx, []*config.Object{{
		GVK: config.GVK{Version: "v1", Kind: "Namespace"}, Meta: config.Meta{Name: "shop", Labels: ns.Labels}, Spec: ns,
	}}); err != nil {
		t.Fatal(err)
	}

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(srv.CA().RootPEM())
	addr := srv.InjectionAddr()
	post := func(t *testing.T, serverName string, namespace string) (*admissionv1.AdmissionReview, error) {
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: serverName},
		}}
		pod := &corev1.Pod{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{GenerateName: "web-", Labels: map[string]string{"app": "web"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "example/web"}}},
		}
		raw, _ := json.Marshal(pod)
		body, _ := json.Marshal(admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request: &admissionv1.AdmissionRequest{UID: "u1", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
				Namespace: namespace, Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw}},
		})
		resp, err := client.Post("https://"+addr+"/inject", "application/json", bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		var out admissionv1.AdmissionReview
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			return nil, err
		}
		return &out, nil
	}

	tests := []struct {
		name, serverName, namespace string
		wantPatch                   bool
		wantTLSError                bool
	}{
		{name: "service name, enabled namespace", serverName: "istiod.istio-system.svc", namespace: "shop", wantPatch: true},
		{name: "listen IP", serverName: "127.0.0.1", namespace: "shop", wantPatch: true},
		{name: "namespace without label", serverName: "istiod.istio-system.svc.cluster.local", namespace: "other"},
		{name: "name not in certificate", serverName: "evil.example", namespace: "shop", wantTLSError: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := post(t, tt.serverName, tt.namespace)
			if tt.wantTLSError {
				if err == nil || !strings.Contains(err.Error(), "certificate") {
					t.Fatalf("want a certificate error, got %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			r := out.Response
			if r == nil || !r.Allowed || r.UID != "u1" {
				t.Fatalf("response %+v", r)
			}
			if (len(r.Patch) > 0) != tt.wantPatch {
				t.Fatalf("patch = %s, want patch %v", r.Patch, tt.wantPatch)
			}
			if tt.wantPatch && !strings.Contains(string(r.Patch), "10.0.0.5:15010") {
				t.Errorf("patch does not carry the discovery address: %s", r.Patch)
			}
		})
	}
	t.Run("injector ConfigMap", func(t *testing.T) { injectorConfigMapCase(t, ctx, srv, post) })
}

// injectorConfigMapCase applies the tutorial's istio-sidecar-injector
// ConfigMap to the store: the next pod's proxy gets its resources.
func injectorConfigMapCase(t *testing.T, ctx context.Context, srv *Server, post func(t *testing.T, serverName, namespace string) (*admissionv1.AdmissionReview, error)) {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: inject.InjectorConfigMap, Namespace: "istio-system"},
		Data: map[string]string{"config": "policy: enabled\nalwaysInjectSelector: []\nneverInjectSelector: []\ntemplate: |\n  spec:\n    containers:\n    - name: istio-proxy\n      resources:\n        limits: {cpu: 100m, memory: 128Mi}\n        requests: {cpu: 10m, memory: 40Mi}\n"}}
	if _, err := apiclient.NewWithToken(srv.HTTPAddr(), srv.AdminToken()).Apply(ctx, []*config.Object{{
		GVK: config.GVK{Version: "v1", Kind: "ConfigMap"}, Meta: config.Meta{Name: cm.Name, Namespace: cm.Namespace}, Spec: cm,
	}}); err != nil {
		t.Fatal(err)
	}
	out, err := post(t, "istiod.istio-system.svc", "shop")
	if err != nil {
		t.Fatal(err)
	}
	if p := string(out.Response.Patch); !strings.Contains(p, `"requests":{"cpu":"10m","memory":"40Mi"}`) || !strings.Contains(p, `"limits":{"cpu":"100m","memory":"128Mi"}`) {
		t.Errorf("patch lacks the ConfigMap's resources: %s", p)
	}
}

func TestNoWebhookByDefault(t *testing.T) {
	srv, err := New(Options{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.grpcLis.Close()
	defer srv.httpLis.Close()
	if srv.InjectionAddr() != "" {
		t.Fatalf("webhook listening on %s without Injection.Addr", srv.InjectionAddr())
	}
}
