package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const injectDeployment = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: example/web}]
`

// kube-inject reads istioctl's offline files: the injector config (key or
// whole ConfigMap), the values and the mesh config.
func TestKubeInjectOfflineFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	in := write("deploy.yaml", injectDeployment)
	rawConfig := write("inject-config.yaml", `policy: enabled
alwaysInjectSelector: []
neverInjectSelector: []
template: |
  spec:
    containers:
    - name: istio-proxy
      resources:
        limits: {cpu: "100m", memory: "128Mi"}
        requests: {cpu: "10m", memory: "40Mi"}
`)
	configMap := write("injector-cm.yaml", `apiVersion: v1
kind: ConfigMap
metadata: {name: istio-sidecar-injector, namespace: istio-system}
data:
  config: |
    policy: disabled
  values: '{"global":{"proxy":{"privileged":true}}}'
`)
	values := write("values.json", `{"global":{"proxy":{"resources":{"requests":{"cpu":"20m"}}}}}`)
	mesh := write("mesh.yaml", "trustDomain: example.org\ndefaultConfig:\n  discoveryAddress: istiod.example:15010\n")
	bad := write("bad.yaml", "policy: maybe\n")

	cases := []struct {
		name      string
		args      []string
		want      []string
		notWant   []string
		wantError string
	}{
		{name: "tutorial config", args: []string{"--injectConfigFile", rawConfig},
			want: []string{"name: istio-proxy", "cpu: 10m", "memory: 40Mi", "cpu: 100m", "memory: 128Mi"}},
		{name: "values file", args: []string{"--valuesFile", values}, want: []string{"cpu: 20m"}},
		{name: "whole ConfigMap: policy disabled", args: []string{"--injectConfigFile", configMap}, notWant: []string{"istio-proxy"}},
		{name: "mesh config", args: []string{"--meshConfigFile", mesh}, want: []string{"istiod.example:15010", "value: example.org"}},
		{name: "bad config names the file", args: []string{"--injectConfigFile", bad}, wantError: "bad.yaml"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runCLI(t, "", append([]string{"kube-inject", "-f", in}, tc.args...)...)
			if tc.wantError != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantError) {
					t.Fatalf("error %v, want %q", err, tc.wantError)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(out, w) {
					t.Errorf("output has %q", w)
				}
			}
		})
	}
}
