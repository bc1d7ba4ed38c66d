package node

import (
	"context"
	"encoding/base64"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// projectedToken is a service-account token the agent keeps fresh in a
// pod's volume, as the kubelet does for projected serviceAccountToken
// sources (the injector's istio-token, audience istio-ca).
type projectedToken struct {
	pod       *corev1.Pod
	path      string
	audience  string
	expiry    int64 // seconds asked for
	refreshAt time.Time
}

// prepareVolumes creates each volume's host directory and files; the
// result maps volume names to directories for the Kubelet.
func (a *Agent) prepareVolumes(ctx context.Context, pod *corev1.Pod, dir string) (map[string]string, []*projectedToken, error) {
	vols := map[string]string{}
	var tokens []*projectedToken
	for _, v := range pod.Spec.Volumes {
		vdir := filepath.Join(dir, "volumes", v.Name)
		if err := os.MkdirAll(vdir, 0o700); err != nil {
			return nil, nil, err
		}
		vols[v.Name] = vdir
		var err error
		switch {
		case v.EmptyDir != nil:
		case v.ConfigMap != nil:
			err = a.writeConfigMap(ctx, pod.Namespace, v.ConfigMap.Name, v.ConfigMap.Items, v.ConfigMap.Optional, vdir)
		case v.Secret != nil:
			err = a.writeSecret(ctx, pod.Namespace, v.Secret.SecretName, v.Secret.Items, v.Secret.Optional, vdir)
		case v.DownwardAPI != nil:
			err = writeDownward(pod, v.DownwardAPI.Items, vdir)
		case v.Projected != nil:
			for _, src := range v.Projected.Sources {
				switch {
				case src.ServiceAccountToken != nil:
					t := &projectedToken{pod: pod, path: filepath.Join(vdir, src.ServiceAccountToken.Path), audience: src.ServiceAccountToken.Audience, expiry: 3600}
					if s := src.ServiceAccountToken.ExpirationSeconds; s != nil {
						t.expiry = *s
					}
					if err = a.mintToken(ctx, t); err == nil {
						tokens = append(tokens, t)
					}
				case src.ConfigMap != nil:
					err = a.writeConfigMap(ctx, pod.Namespace, src.ConfigMap.Name, src.ConfigMap.Items, src.ConfigMap.Optional, vdir)
				case src.Secret != nil:
					err = a.writeSecret(ctx, pod.Namespace, src.Secret.Name, src.Secret.Items, src.Secret.Optional, vdir)
				case src.DownwardAPI != nil:
					err = writeDownward(pod, src.DownwardAPI.Items, vdir)
				}
				if err != nil {
					break
				}
			}
		default:
			err = fmt.Errorf("only emptyDir, configMap, secret, downwardAPI and projected volumes are supported by skein node")
		}
		if err != nil {
			return nil, tokens, fmt.Errorf("volume %q: %w", v.Name, err)
		}
	}
	return vols, tokens, nil
}

// mintToken asks the TokenRequest API for a token bound to the pod and
// writes it atomically, 0600.
func (a *Agent) mintToken(ctx context.Context, t *projectedToken) error {
	sa := t.pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	spec := map[string]any{
		"expirationSeconds": t.expiry,
		"boundObjectRef":    map[string]any{"apiVersion": "v1", "kind": "Pod", "name": t.pod.Name, "uid": string(t.pod.UID)},
	}
	if t.audience != "" {
		spec["audiences"] = []any{t.audience}
	}
	req := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec,
		// The dynamic client puts the subresource under this name.
		"metadata": map[string]any{"name": sa},
	}}
	resp, err := a.dc.Resource(saGVR).Namespace(t.pod.Namespace).Create(ctx, req, metav1.CreateOptions{}, "token")
	if err != nil {
		return fmt.Errorf("TokenRequest for serviceaccount %s/%s: %w", t.pod.Namespace, sa, err)
	}
	token, _, _ := unstructured.NestedString(resp.Object, "status", "token")
	if token == "" {
		return fmt.Errorf("TokenRequest for serviceaccount %s/%s: no status.token in the answer", t.pod.Namespace, sa)
	}
	ttl := time.Duration(t.expiry) * time.Second
	if exp, _, _ := unstructured.NestedString(resp.Object, "status", "expirationTimestamp"); exp != "" {
		if at, err := time.Parse(time.RFC3339, exp); err == nil {
			ttl = time.Until(at)
		}
	}
	// Refresh at 80% of the lifetime, as the kubelet does.
	t.refreshAt = time.Now().Add(ttl * 8 / 10)
	return writeAtomic(t.path, []byte(token))
}

// tokenLoop refreshes tokens that reached 80% of their lifetime.
func (a *Agent) tokenLoop(ctx context.Context) {
	a.every(ctx, a.opts.TokenCheck, func() {
		a.mu.Lock()
		var due []*projectedToken
		for _, e := range a.running {
			if e.stopping {
				continue
			}
			for _, t := range e.tokens {
				if time.Now().After(t.refreshAt) {
					due = append(due, t)
				}
			}
		}
		a.mu.Unlock()
		for _, t := range due {
			if err := a.mintToken(ctx, t); err != nil && ctx.Err() == nil {
				a.log.Warn("token refresh failed; will retry", "pod", t.pod.Namespace+"/"+t.pod.Name, "error", err)
			}
		}
	})
}

func writeAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// configMap reads a ConfigMap for env resolution.
func (a *Agent) configMap(namespace, name string) (map[string]string, bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	u, err := a.dc.Resource(cmGVR).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	data, _, _ := unstructured.NestedStringMap(u.Object, "data")
	return data, true, nil
}

func (a *Agent) writeConfigMap(ctx context.Context, ns, name string, items []corev1.KeyToPath, optional *bool, dir string) error {
	data, found, err := a.configMap(ns, name)
	if err != nil {
		return err
	}
	if !found {
		if optional != nil && *optional {
			return nil
		}
		return fmt.Errorf("configmap %s/%s not found", ns, name)
	}
	b := map[string][]byte{}
	for k, v := range data {
		b[k] = []byte(v)
	}
	return writeItems(b, items, dir)
}

func (a *Agent) writeSecret(ctx context.Context, ns, name string, items []corev1.KeyToPath, optional *bool, dir string) error {
	u, err := a.dc.Resource(secretGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		if optional != nil && *optional {
			return nil
		}
		return fmt.Errorf("secret %s/%s not found", ns, name)
	}
	if err != nil {
		return err
	}
	data, _, _ := unstructured.NestedStringMap(u.Object, "data")
	b := map[string][]byte{}
	for k, v := range data {
		raw, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			return fmt.Errorf("secret %s/%s key %q: %w", ns, name, k, err)
		}
		b[k] = raw
	}
	return writeItems(b, items, dir)
}

// writeItems writes every key, or only items (key → path) when given.
func writeItems(data map[string][]byte, items []corev1.KeyToPath, dir string) error {
	if len(items) == 0 {
		for k, v := range data {
			if err := writeAtomic(filepath.Join(dir, k), v); err != nil {
				return err
			}
		}
		return nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			return fmt.Errorf("no key %q", it.Key)
		}
		if err := writeAtomic(filepath.Join(dir, it.Path), v); err != nil {
			return err
		}
	}
	return nil
}

// writeDownward writes downwardAPI items with a metadata fieldRef, the
// only fields the kubelet allows in volumes.
func writeDownward(pod *corev1.Pod, items []corev1.DownwardAPIVolumeFile, dir string) error {
	for _, it := range items {
		if it.FieldRef == nil {
			continue // resourceFieldRef: no resources locally
		}
		v, ok := downwardField(pod, it.FieldRef.FieldPath)
		if !ok {
			continue
		}
		if err := writeAtomic(filepath.Join(dir, it.Path), []byte(v)); err != nil {
			return err
		}
	}
	return nil
}

// downwardField is a metadata field's value as the kubelet writes it:
// labels and annotations as sorted key="value" lines (Istio's proxy reads
// its pod's labels from such a file), one of them by metadata.labels['k'].
func downwardField(pod *corev1.Pod, path string) (string, bool) {
	switch path {
	case "metadata.name":
		return pod.Name, true
	case "metadata.namespace":
		return pod.Namespace, true
	case "metadata.uid":
		return string(pod.UID), true
	case "metadata.labels":
		return formatMap(pod.Labels), true
	case "metadata.annotations":
		return formatMap(pod.Annotations), true
	}
	for prefix, m := range map[string]map[string]string{"metadata.labels": pod.Labels, "metadata.annotations": pod.Annotations} {
		if k, ok := strings.CutPrefix(path, prefix+"['"); ok && strings.HasSuffix(k, "']") {
			return m[strings.TrimSuffix(k, "']")], true
		}
	}
	return "", false
}

// formatMap is the kubelet's fieldpath.FormatMap.
func formatMap(m map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(&b, "%v=%q\n", k, m[k])
	}
	return strings.TrimSuffix(b.String(), "\n")
}
