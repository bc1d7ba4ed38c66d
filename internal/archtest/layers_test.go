// Package archtest holds the architecture's import rules as a test, so the
// one-way data flow (config + registry → model → xds → xdsserver → proxy)
// cannot erode unnoticed.
package archtest

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/skein-mesh/skein/"

// allowed lists, for each package (or subtree, ending in "/..."), the
// module packages its non-test files may import. Anything not listed is a
// layering violation; a new package must be added here on purpose.
var allowed = map[string][]string{
	"internal/config":      {},
	"internal/ca":          {"internal/apiwire"},
	"internal/apiwire":     {"internal/config"}, // the config API's wire types, one definition
	"internal/configstore": {"internal/config"},
	"internal/apiclient":   {"internal/apiwire", "internal/config"},
	"internal/configapi":   {"internal/apiwire", "internal/config", "internal/configstore"},
	"internal/model":       {"internal/config"},
	"internal/registry":    {"internal/config", "internal/model"},
	// ... and the grammar of tag-value expressions the proxy evaluates, so
	// translation leaves out (with a warning) what the proxy would NACK.
	"internal/xds":                  {"internal/config", "internal/model", "internal/proxy/attribute"},
	"internal/xdsserver":            {"internal/model", "internal/xds"},
	"internal/telemetry/tracestore": {},
	"internal/kube":                 {"internal/ca", "internal/config"},
	// Istio's injection policy and template: pure functions of k8s.io/api
	// types, shared by local mode, kube-inject and the webhook.
	"internal/inject": {},
	// skein install's manifests and server-side apply (dynamic client).
	"internal/install": {"internal/config", "internal/inject"},
	"internal/discovery": {"internal/apiwire", "internal/ca", "internal/config", "internal/configapi", "internal/configstore", "internal/inject",
		"internal/kube", "internal/model", "internal/registry", "internal/telemetry/tracestore", "internal/xds", "internal/xdsserver"},
	// The data plane knows Envoy protos only, never the control plane.
	"internal/proxy/...": {"internal/proxy/..."},
	"internal/dashboard": {"internal/apiclient", "internal/config", "internal/xdsserver"},
	"internal/local":     {"internal/apiclient", "internal/apiwire", "internal/config", "internal/configstore", "internal/dashboard", "internal/inject", "internal/install"},
	// The node agent: a virtual kubelet running a cluster's pods with local's runner.
	"internal/node":        {"internal/local"},
	"internal/cli":         {"..."}, // the command line wires everything
	"samples/bookinfo/...": {},
	"samples/addons":       {},
	"internal/archtest":    {},
	"cmd/...":              {"internal/cli", "samples/bookinfo/app"},
	"test/...":             {"..."},
	// The Kubernetes test cluster stands alone: e2e tests import it, it
	// imports nothing of Skein's, so it can test any part of it.
	"test/kubetest": {},

	// Envoy's matching semantics, shared by the router and RBAC: a leaf of
	// the data plane, narrower than internal/proxy/... .
	"internal/proxy/matcher": {"internal/proxy/internal/protocheck"},
	// Envoy attribute expressions (Telemetry tag values): a leaf.
	"internal/proxy/attribute": {},
}

func rulesFor(pkg string) ([]string, bool) {
	if r, ok := allowed[pkg]; ok {
		return r, true
	}
	for k, r := range allowed {
		if base, ok := strings.CutSuffix(k, "/..."); ok && (pkg == base || strings.HasPrefix(pkg, base+"/")) {
			return r, true
		}
	}
	return nil, false
}

func permits(rules []string, imp string) bool {
	for _, r := range rules {
		if r == "..." || r == imp {
			return true
		}
		if base, ok := strings.CutSuffix(r, "/..."); ok && (imp == base || strings.HasPrefix(imp, base+"/")) {
			return true
		}
	}
	return false
}

func TestLayering(t *testing.T) {
	root := filepath.Join("..", "..")
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); name == ".git" || name == "testdata" || name == "node_modules" || name == "bin" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		pkg := filepath.ToSlash(rel)
		rules, ok := rulesFor(pkg)
		if !ok {
			t.Errorf("%s: package %s has no layering rule in internal/archtest", path, pkg)
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, spec := range f.Imports {
			imp, _ := strconv.Unquote(spec.Path.Value)
			local, ok := strings.CutPrefix(imp, module)
			if !ok || local == pkg {
				continue
			}
			if !permits(rules, local) {
				t.Errorf("%s imports %s: %s may import only %v (docs/architecture.md)", path, local, pkg, rules)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
