package inject

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// NamespaceLabels returns a namespace's labels (nil when unknown).
type NamespaceLabels func(namespace string) map[string]string

// Webhook is Istio's sidecar injector as a Kubernetes mutating admission
// webhook: it answers AdmissionReview v1 requests for Pods with the JSON
// Patch that injects them, exactly as Pod does.
type Webhook struct {
	Params     Params
	Namespaces NamespaceLabels
	// Config returns the current istio-sidecar-injector configuration
	// (nil: Params.Config), so a changed ConfigMap applies to the next pod.
	// An error denies the pod, naming the ConfigMap's problem.
	Config func() (*Config, error)
	Log    *slog.Logger
}

// maxReviewBytes bounds an AdmissionReview body (the API server's own limit
// on objects is 3 MiB).
const maxReviewBytes = 6 << 20

// ServeHTTP handles POST /inject.
func (wh *Webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST an AdmissionReview", http.StatusMethodNotAllowed)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		http.Error(w, fmt.Sprintf("Content-Type %q: want application/json", ct), http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxReviewBytes))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil {
		http.Error(w, "AdmissionReview: "+err.Error(), http.StatusBadRequest)
		return
	}
	if review.Request == nil {
		http.Error(w, "AdmissionReview: no request", http.StatusBadRequest)
		return
	}
	resp := wh.review(review.Request)
	resp.UID = review.Request.UID
	out := admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, Response: resp}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// review decides one admission request: anything but a Pod is allowed
// untouched; an injection error denies the pod with the reason (Istio's
// behaviour), so a bad annotation is reported at kubectl apply time.
func (wh *Webhook) review(req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	allow := &admissionv1.AdmissionResponse{Allowed: true}
	if req.Kind.Kind != "Pod" || (req.Operation != "" && req.Operation != admissionv1.Create) {
		return allow
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return deny(fmt.Sprintf("decoding pod: %v", err))
	}
	// At creation a pod may not carry its namespace yet; the request does.
	if pod.Namespace == "" {
		pod.Namespace = req.Namespace
	}
	var nsLabels map[string]string
	if wh.Namespaces != nil {
		nsLabels = wh.Namespaces(pod.Namespace)
	}
	params := wh.Params
	if wh.Config != nil {
		cfg, err := wh.Config()
		if err != nil {
			return deny(err.Error())
		}
		if cfg != nil {
			params.Config = cfg
		}
	}
	mode, err := Pod(&pod, nsLabels, params)
	if err != nil {
		return deny(err.Error())
	}
	if mode == None {
		return allow
	}
	injected, err := json.Marshal(&pod)
	if err != nil {
		return deny(err.Error())
	}
	ops, err := CreatePatch(req.Object.Raw, injected)
	if err != nil {
		return deny(err.Error())
	}
	patch, _ := json.Marshal(ops)
	if wh.Log != nil {
		wh.Log.Info("injected pod", "namespace", pod.Namespace, "pod", firstNonEmpty(pod.Name, pod.GenerateName), "mode", mode, "operations", len(ops))
	}
	pt := admissionv1.PatchTypeJSONPatch
	allow.Patch, allow.PatchType = patch, &pt
	return allow
}

func deny(msg string) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{Status: metav1.StatusFailure, Message: "injection failed: " + msg, Reason: metav1.StatusReasonBadRequest, Code: http.StatusBadRequest}}
}
