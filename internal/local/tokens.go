package local

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/skein-mesh/skein/internal/apiwire"
)

// tokenAPI is the control plane call that issues workload tokens.
type tokenAPI interface {
	IssueToken(ctx context.Context, adminToken, namespace, pod string) (*apiwire.TokenResponse, error)
}

// tokenWriter gives each proxied pod its workload token, as the kubelet
// projects a service account token into a pod: it asks the control plane
// (with the admin token discovery wrote into its CA directory) once the
// Pod is registered, and writes the token 0600 where `skein proxy
// --token-file` reads it.
type tokenWriter struct {
	api            tokenAPI
	adminTokenFile string // <data-dir>/ca/admin-token
	dir            string // <data-dir>/tokens
}

// path is where the token of namespace/pod lives.
func (w *tokenWriter) path(namespace, pod string) string {
	return filepath.Join(w.dir, namespace, pod)
}

// issue fetches and writes the token of a registered pod.
func (w *tokenWriter) issue(ctx context.Context, namespace, pod string) error {
	admin, err := os.ReadFile(w.adminTokenFile)
	if err != nil {
		return fmt.Errorf("reading the control plane's admin token: %w", err)
	}
	resp, err := w.api.IssueToken(ctx, strings.TrimSpace(string(admin)), namespace, pod)
	if err != nil {
		return fmt.Errorf("issuing the workload token of pod %s/%s: %w", namespace, pod, err)
	}
	path := w.path(namespace, pod)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	// Write then rename: the proxy may read the file at any moment.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(resp.Token+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// remove deletes a stopped pod's token.
func (w *tokenWriter) remove(namespace, pod string) { os.Remove(w.path(namespace, pod)) }
