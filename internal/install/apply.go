package install

import (
	"context"
	"fmt"
	"io"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// resources maps the kinds an installation holds to their REST resource
// and scope: a fixed list, so no discovery client is needed.
var resources = map[string]struct {
	gvr        schema.GroupVersionResource
	namespaced bool
}{
	"CustomResourceDefinition":     {schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}, false},
	"Namespace":                    {schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}, false},
	"ServiceAccount":               {schema.GroupVersionResource{Version: "v1", Resource: "serviceaccounts"}, true},
	"ConfigMap":                    {schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}, true},
	"Secret":                       {schema.GroupVersionResource{Version: "v1", Resource: "secrets"}, true},
	"Service":                      {schema.GroupVersionResource{Version: "v1", Resource: "services"}, true},
	"Deployment":                   {schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}, true},
	"HorizontalPodAutoscaler":      {schema.GroupVersionResource{Group: "autoscaling", Version: "v2", Resource: "horizontalpodautoscalers"}, true},
	"ClusterRole":                  {schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"}, false},
	"ClusterRoleBinding":           {schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"}, false},
	"MutatingWebhookConfiguration": {schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "mutatingwebhookconfigurations"}, false},
}

func client(dc dynamic.Interface, u *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	r, ok := resources[u.GetKind()]
	if !ok {
		return nil, fmt.Errorf("%s %s: kind not known to the installer", u.GetKind(), u.GetName())
	}
	if r.namespaced {
		return dc.Resource(r.gvr).Namespace(u.GetNamespace()), nil
	}
	return dc.Resource(r.gvr), nil
}

// Apply server-side applies each component's objects in order (field
// manager skein-install, taking over conflicting fields as istioctl
// does), waits for the CRDs to be Established before anything else, and
// prints istioctl's progress lines.
func Apply(ctx context.Context, dc dynamic.Interface, comps []Component, out io.Writer, crdTimeout time.Duration) error {
	icons := map[string]string{"Istio core": "⛵️", "Istiod": "🧠", "Ingress gateways": "🛬", "Egress gateways": "🛫"}
	for _, c := range comps {
		var crds []string
		for _, u := range c.Objects {
			ri, err := client(dc, u)
			if err != nil {
				return err
			}
			if _, err := ri.Apply(ctx, u.GetName(), u, metav1.ApplyOptions{FieldManager: fieldManager, Force: true}); err != nil {
				return fmt.Errorf("applying %s %s: %w", u.GetKind(), qualified(u), err)
			}
			if u.GetKind() == "CustomResourceDefinition" {
				crds = append(crds, u.GetName())
			}
		}
		if err := waitEstablished(ctx, dc, crds, crdTimeout); err != nil {
			return err
		}
		fmt.Fprintf(out, "✔ %s installed %s\n", c.Name, icons[c.Name])
	}
	fmt.Fprintln(out, "✔ Installation complete")
	return nil
}

// waitEstablished polls the CRDs until each has condition Established=True.
func waitEstablished(ctx context.Context, dc dynamic.Interface, names []string, timeout time.Duration) error {
	if len(names) == 0 {
		return nil
	}
	if timeout <= 0 {
		timeout = time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ri := dc.Resource(resources["CustomResourceDefinition"].gvr)
	pending := append([]string(nil), names...)
	for {
		var still []string
		for _, n := range pending {
			u, err := ri.Get(ctx, n, metav1.GetOptions{})
			if err != nil || !established(u) {
				still = append(still, n)
			}
		}
		if len(still) == 0 {
			return nil
		}
		pending = still
		select {
		case <-ctx.Done():
			return fmt.Errorf("CRDs not Established after %v: %v", timeout, pending)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func established(u *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Established" && m["status"] == "True" {
			return true
		}
	}
	return false
}

// Uninstall deletes an installation's objects in reverse order, skipping
// those already gone. Without purge the CRDs (and with them every Istio
// object users applied) and the istio-system namespace are kept, as
// `istioctl uninstall --revision` keeps the base chart; with purge they go
// too. It prints one line per deleted object.
func Uninstall(ctx context.Context, dc dynamic.Interface, objs []*unstructured.Unstructured, purge bool, out io.Writer) error {
	policy := metav1.DeletePropagationBackground
	for i := len(objs) - 1; i >= 0; i-- {
		u := objs[i]
		if !purge && (u.GetKind() == "CustomResourceDefinition" || u.GetKind() == "Namespace") {
			continue
		}
		ri, err := client(dc, u)
		if err != nil {
			return err
		}
		err = ri.Delete(ctx, u.GetName(), metav1.DeleteOptions{PropagationPolicy: &policy})
		switch {
		case apierrors.IsNotFound(err):
			continue
		case err != nil:
			return fmt.Errorf("deleting %s %s: %w", u.GetKind(), qualified(u), err)
		}
		fmt.Fprintf(out, "  Removed %s:%s.\n", u.GetKind(), qualified(u))
	}
	fmt.Fprintln(out, "✔ Uninstall complete")
	return nil
}

func qualified(u *unstructured.Unstructured) string {
	if ns := u.GetNamespace(); ns != "" {
		return ns + ":" + u.GetName()
	}
	return u.GetName()
}
