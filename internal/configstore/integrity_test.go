package configstore

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/skein-mesh/skein/internal/config"
)

func nsObj(name string, labels map[string]string) *config.Object {
	ns := &corev1.Namespace{}
	ns.Name, ns.Labels = name, labels
	return &config.Object{GVK: config.GVK{Version: "v1", Kind: "Namespace"}, Meta: config.Meta{Name: name, Labels: labels}, Spec: ns}
}

// TestHandEditedStoreIsFound: an edited value fails its checksum at
// start; the store names file and object and loads the last good revision.
func TestHandEditedStoreIsFound(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply([]*config.Object{nsObj("bookinfo", map[string]string{"istio-injection": "enabled"})}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply([]*config.Object{nsObj("bookinfo", map[string]string{"istio-injection": "disabled"})}); err != nil {
		t.Fatal(err)
	}
	if err := Check(dir); err != nil {
		t.Fatalf("intact store: %v", err)
	}
	if s2, err := Open(dir); err != nil || s2.Recovered() != nil {
		t.Fatalf("reopen intact store: %v %v", err, s2.Recovered())
	}

	path := filepath.Join(dir, storeFile)
	b, _ := os.ReadFile(path)
	edited := strings.Replace(string(b), `"disabled"`, `"enabled"`, 1)
	if edited == string(b) {
		t.Fatal("test did not edit the file")
	}
	os.WriteFile(path, []byte(edited), 0o644)

	var corrupt *CorruptError
	if err := Check(dir); !errors.As(err, &corrupt) || corrupt.Object != "Namespace bookinfo" || !strings.Contains(err.Error(), "store.json") {
		t.Fatalf("Check = %v, want a CorruptError naming store.json and Namespace bookinfo", err)
	}
	s3, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	rec := s3.Recovered()
	if rec == nil || rec.Revision != 1 || !strings.Contains(rec.String(), "Namespace bookinfo") {
		t.Fatalf("recovery = %v", rec)
	}
	obj, ok := s3.Snapshot().Get(config.Key{Kind: "Namespace", Name: "bookinfo"})
	if !ok || obj.Meta.Labels["istio-injection"] != "enabled" || s3.Revision() != 1 {
		t.Errorf("last good revision not loaded: %v rev %d", obj, s3.Revision())
	}
	if kept, _ := filepath.Glob(filepath.Join(dir, storeFile+".corrupt-*")); len(kept) != 1 {
		t.Errorf("corrupt file not kept aside: %v", kept)
	}
}
