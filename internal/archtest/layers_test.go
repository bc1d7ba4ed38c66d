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
	// The client of discovery's HTTP API speaks its wire types (apiwire)
	// and reads the proxies' sync state (syncz) as xdsserver reports it.
	"internal/apiclient": {"internal/apiwire", "internal/config", "internal/xdsserver"},
	"internal/configapi": {"internal/apiwire", "internal/config", "internal/configstore"},
	// Proxies' node metadata is read through the struct the proxy writes.
	"internal/model":    {"internal/config", "internal/proxy/nodemeta"},
	"internal/registry": {"internal/config", "internal/model"},
	// ... and the grammar of tag-value expressions the proxy evaluates, so
	// translation leaves out (with a warning) what the proxy would NACK.
	"internal/xds":                  {"internal/config", "internal/model", "internal/proxy/attribute", "internal/proxy/nodemeta"},
	"internal/xdsserver":            {"internal/model", "internal/xds"},
	"internal/telemetry/tracestore": {},
	"internal/kube":                 {"internal/ca", "internal/config"},
	// Istio's injection policy and template: pure functions of k8s.io/api
	// types, shared by local mode, kube-inject and the webhook.
	"internal/inject": {},
	// skein install's manifests and server-side apply (dynamic client).
	"internal/install": {"internal/config", "internal/inject"},
	// analyze reads objects (from files, the config API or a cluster,
	// which the CLI fetches) and reports; nothing imports it but the CLI.
	"internal/analyze": {"internal/config"},
	"internal/discovery": {"internal/apiwire", "internal/ca", "internal/config", "internal/configapi", "internal/configstore", "internal/inject",
		"internal/kube", "internal/model", "internal/registry", "internal/telemetry/tracestore", "internal/xds", "internal/xdsserver"},
	// The data plane knows Envoy protos only, never the control plane.
	"internal/proxy/...": {"internal/proxy/..."},
	"internal/dashboard": {"internal/apiclient", "internal/config", "internal/xdsserver"},
	// Pods as local processes on loopback IPs, shared by skein up and
	// skein node: no config, no API client, no dashboard.
	"internal/kubelet": {"internal/inject"},
	"internal/local": {"internal/apiclient", "internal/apiwire", "internal/config", "internal/configstore", "internal/dashboard",
		"internal/inject", "internal/install", "internal/kubelet"},
	// The node agent: a virtual kubelet running a cluster's pods with internal/kubelet.
	"internal/node":        {"internal/kubelet"},
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
	"internal/proxy/matcher": {"internal/proxy/internal/protocheck", "internal/proxy/internal/confparse"},
	// Envoy attribute expressions (Telemetry tag values): a leaf.
	"internal/proxy/attribute": {},

	// Inside the data plane, requests flow listener → hcm → upstream, and
	// each step knows only those after it: sockets and chain selection
	// (listener) hand requests to the connection manager (hcm), which
	// routes (router), runs the HTTP filters and hands the request to the
	// forwarder (upstream). Config compiled by router is read, never
	// re-parsed, further on.
	"internal/proxy/router": {"internal/proxy/matcher", "internal/proxy/internal/..."},
	"internal/proxy/upstream": {"internal/proxy/cluster", "internal/proxy/router", "internal/proxy/stats",
		"internal/proxy/internal/..."},
	"internal/proxy/hcm": {"internal/proxy/router", "internal/proxy/upstream", "internal/proxy/cluster",
		"internal/proxy/filters", "internal/proxy/stats", "internal/proxy/accesslog", "internal/proxy/tracing",
		"internal/proxy/internal/..."},
	"internal/proxy/listener": {"internal/proxy/hcm", "internal/proxy/upstream", "internal/proxy/cluster",
		"internal/proxy/filters", "internal/proxy/filters/metadataexchange", "internal/proxy/filters/rbac",
		"internal/proxy/secrets", "internal/proxy/stats", "internal/proxy/tlsconfig", "internal/proxy/internal/..."},
	// The parse door (counted decode and regexp compile) and the shared
	// hash: leaves.
	"internal/proxy/internal/confparse": {},
	"internal/proxy/internal/hashing":   {},
	// Istio's capture rules (skein iptables): iptables-restore input, a leaf.
	"internal/capture": {},
	// Istio's node metadata keys, typed: a leaf the control plane reads.
	"internal/proxy/nodemeta": {},
}

// testAllowed holds the same kind of rules for test files, where a package
// has them: the data plane's tests, too, run without the control plane.
var testAllowed = map[string][]string{
	"internal/proxy/...": {"internal/proxy/..."},
}

func rulesFor(rules map[string][]string, pkg string) ([]string, bool) {
	if r, ok := rules[pkg]; ok {
		return r, true
	}
	for k, r := range rules {
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
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		pkg := filepath.ToSlash(rel)
		isTest := strings.HasSuffix(path, "_test.go")
		table := allowed
		if isTest {
			table = testAllowed
		}
		rules, ok := rulesFor(table, pkg)
		if !ok {
			if !isTest { // test files without a rule may import anything
				t.Errorf("%s: package %s has no layering rule in internal/archtest", path, pkg)
			}
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

// TestRules checks the rule lookup on the cases the layering rests on.
func TestRules(t *testing.T) {
	for _, tc := range []struct {
		table    map[string][]string
		pkg, imp string
		want     bool
	}{
		{allowed, "internal/proxy/listener", "internal/proxy/hcm", true},
		{allowed, "internal/proxy/router", "internal/proxy/hcm", false},
		{allowed, "internal/proxy/listener", "internal/model", false},
		{testAllowed, "internal/proxy/listener", "internal/config", false},
		{testAllowed, "internal/proxy", "internal/proxy/nodemeta", true},
		{allowed, "internal/model", "internal/proxy/nodemeta", true},
		{allowed, "internal/model", "internal/proxy/listener", false},
		{allowed, "internal/node", "internal/local", false},
		{allowed, "internal/kubelet", "internal/config", false},
	} {
		rules, ok := rulesFor(tc.table, tc.pkg)
		if !ok {
			t.Errorf("%s: no rule", tc.pkg)
			continue
		}
		if got := permits(rules, tc.imp); got != tc.want {
			t.Errorf("%s importing %s: permitted %v, want %v", tc.pkg, tc.imp, got, tc.want)
		}
	}
}
