package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runCLI runs the command tree with args and stdin; it returns stdout and
// the error.
func runCLI(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	root := NewRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestManifestGenerate(t *testing.T) {
	caDir := filepath.Join(t.TempDir(), "ca")
	out, err := runCLI(t, "", "manifest", "generate", "--ca-dir", caDir, "--set", "profile=demo", "--external-discovery", "192.0.2.10:15012")
	if err != nil {
		t.Fatal(err)
	}
	root, err := os.ReadFile(filepath.Join(caDir, "root-cert.pem"))
	if err != nil {
		t.Fatalf("manifest generate did not create the mesh CA: %v", err)
	}
	for _, want := range []string{
		"kind: CustomResourceDefinition", "name: virtualservices.networking.istio.io",
		"kind: MutatingWebhookConfiguration", "url: https://192.0.2.10:15017/inject",
		"name: istio-ingressgateway", "name: istio-egressgateway", // demo profile
	} {
		if !strings.Contains(out, want) {
			t.Errorf("manifest lacks %q", want)
		}
	}
	if n := strings.Count(out, "kind: Deployment"); n != 2 {
		t.Errorf("%d Deployments, want the two gateways only (istiod runs outside)", n)
	}
	for _, unwanted := range []string{"kind: Secret", "PRIVATE KEY"} {
		if strings.Contains(out, unwanted) {
			t.Errorf("manifest with --external-discovery contains %q", unwanted)
		}
	}
	if len(root) == 0 || !strings.Contains(out, "caBundle: ") {
		t.Error("webhook has no caBundle")
	}

	// The same CA directory gives the same bundle: a second run is stable.
	again, err := runCLI(t, "", "manifest", "generate", "--ca-dir", caDir, "--set", "profile=demo", "--external-discovery", "192.0.2.10:15012")
	if err != nil || again != out {
		t.Errorf("second manifest generate differs (err %v)", err)
	}
}

func TestInstallFlagErrors(t *testing.T) {
	caDir := filepath.Join(t.TempDir(), "ca")
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"manifest", "generate", "--ca-dir", caDir, "--set", "values.nope=1"}, "values.nope"},
		{[]string{"manifest", "generate", "--ca-dir", caDir, "--external-discovery", "no-port"}, "--external-discovery \"no-port\": want HOST:PORT"},
		// No terminal, no -y: refuse rather than install unasked.
		{[]string{"install", "--ca-dir", caDir, "--kubeconfig", "/nonexistent"}, "pass -y"},
		{[]string{"uninstall", "--ca-dir", caDir, "--kubeconfig", "/nonexistent"}, "pass -y"},
	}
	for _, tt := range tests {
		_, err := runCLI(t, "", tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("skein %s: error %v, want one containing %q", strings.Join(tt.args, " "), err, tt.want)
		}
	}
	// Answering no cancels without touching the cluster.
	out, err := runCLI(t, "n\n", "install", "--ca-dir", caDir, "--kubeconfig", "/nonexistent")
	if err != nil || !strings.Contains(out, "Cancelled.") {
		t.Errorf("install answered n: %q %v", out, err)
	}
}

// The tutorial's install line is accepted and its values reach the
// injector ConfigMap that manifest generate prints.
func TestManifestGenerateTutorialValues(t *testing.T) {
	out, err := runCLI(t, "", "manifest", "generate", "--ca-dir", filepath.Join(t.TempDir(), "ca"),
		"--set", "values.global.proxy.resources.requests.cpu=10m", "--set", "values.global.proxy.resources.requests.memory=40Mi",
		"--set", "values.global.proxy.resources.limits.cpu=100m", "--set", "values.global.proxy.resources.limits.memory=128Mi")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `"resources":{"limits":{"cpu":"100m","memory":"128Mi"},"requests":{"cpu":"10m","memory":"40Mi"}}`) {
		t.Errorf("injector values missing from:\n%s", out)
	}
	if _, err := runCLI(t, "", "manifest", "generate", "--ca-dir", filepath.Join(t.TempDir(), "ca"), "--set", "values.global.proxy.resourcez.requests.cpu=1"); err == nil ||
		!strings.Contains(err.Error(), "did you mean values.global.proxy.resources") {
		t.Errorf("unknown key: %v", err)
	}
}
