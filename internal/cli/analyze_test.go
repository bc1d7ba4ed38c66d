package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const brokenVS = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: web
  namespace: shop
spec:
  hosts: [web]
  gateways:
  - missing-gateway
  http:
  - route:
    - destination:
        host: web
`

const webService = `apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80}]
`

func TestAnalyzeFiles(t *testing.T) {
	dir := t.TempDir()
	vs := filepath.Join(dir, "vs.yaml")
	svc := filepath.Join(dir, "svc.yaml")
	os.WriteFile(vs, []byte(brokenVS), 0o644)
	os.WriteFile(svc, []byte(webService), 0o644)
	cp := newControlPlane(t)

	cases := []struct {
		name      string
		args      []string
		code      int
		stdout    string // substring; "" means stdout is a blank line
		stderr    string
		notStdout string
	}{
		{
			name:   "error found, exit 79",
			args:   []string{"analyze", "--use-kube=false", "-n", "shop", vs, svc},
			code:   79,
			stdout: `Error [IST0101] (VirtualService shop/web ` + vs + `:9) Referenced gateway not found: "missing-gateway"`,
		},
		{
			name:      "other namespace: nothing to report",
			args:      []string{"analyze", "--use-kube=false", "-n", "default", vs, svc},
			stderr:    "\u2714 No validation issues found when analyzing " + vs + "\n" + svc + ".",
			notStdout: "IST0101",
		},
		{
			name:   "all namespaces",
			args:   []string{"analyze", "--use-kube=false", "-A", vs, svc},
			code:   79,
			stdout: "IST0101",
		},
		{
			name:   "directory",
			args:   []string{"analyze", "--use-kube=false", "-A", dir},
			code:   79,
			stdout: "IST0101",
		},
		{
			name:   "failure threshold above the worst message",
			args:   []string{"analyze", "--use-kube=false", "-A", "--output-threshold", "Error", vs},
			code:   79,
			stdout: `Referenced host not found: "web"`,
		},
		{
			name:      "output threshold hides, exit code still counts every message",
			args:      []string{"analyze", "--use-kube=false", "-A", "--failure-threshold", "Info", "--output-threshold", "Error", "-n", "shop", svc},
			notStdout: "IST",
			stderr:    "\u2714 No validation issues found",
		},
		{
			name:   "live config merged with files",
			args:   []string{"analyze", "-n", "shop", vs},
			code:   79,
			stdout: `Referenced gateway not found`,
		},
		{
			name:   "live config alone, no issues",
			args:   []string{"analyze"},
			stderr: "\u2714 No validation issues found when analyzing namespace: default.",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, err := cp.run(t, "", tc.args...)
			if got := exitCode(err); got != tc.code {
				t.Fatalf("exit code %d (%v), want %d\nstdout: %s\nstderr: %s", got, err, tc.code, stdout, stderr)
			}
			if tc.stdout != "" && !strings.Contains(stdout, tc.stdout) {
				t.Errorf("stdout %q lacks %q", stdout, tc.stdout)
			}
			if tc.notStdout != "" && strings.Contains(stdout, tc.notStdout) {
				t.Errorf("stdout %q has %q", stdout, tc.notStdout)
			}
			if tc.stderr != "" && !strings.Contains(stderr, tc.stderr) {
				t.Errorf("stderr %q lacks %q", stderr, tc.stderr)
			}
		})
	}
}

func TestAnalyzeJSONAndYAML(t *testing.T) {
	dir := t.TempDir()
	vs := filepath.Join(dir, "vs.yaml")
	os.WriteFile(vs, []byte(brokenVS), 0o644)
	for _, format := range []string{"json", "yaml"} {
		stdout, _, err := newControlPlane(t).run(t, "", "analyze", "--use-kube=false", "-n", "shop", "-o", format, vs)
		if err != nil { // istioctl sets no failure exit code for json/yaml
			t.Fatalf("%s: %v", format, err)
		}
		var msgs []map[string]any
		if err := yaml.Unmarshal([]byte(stdout), &msgs); err != nil {
			t.Fatalf("%s: %v\n%s", format, err, stdout)
		}
		if len(msgs) != 2 {
			t.Fatalf("%s: %d messages\n%s", format, len(msgs), stdout)
		}
		b, _ := json.Marshal(msgs[0])
		for _, want := range []string{`"code":"IST0101"`, `"level":"Error"`, `"origin":"VirtualService shop/web"`, `"reference":"` + vs + `:`, `"documentationUrl":"https://istio.io/`} {
			if !strings.Contains(string(b), want) {
				t.Errorf("%s: %s lacks %s", format, b, want)
			}
		}
	}
}

func TestAnalyzeListAndBadFlags(t *testing.T) {
	cp := newControlPlane(t)
	out, _, err := cp.run(t, "", "analyze", "-L")
	if err != nil || !strings.Contains(out, "* virtualservice.GatewayAnalyzer:") {
		t.Errorf("-L: %v %s", err, out)
	}
	if _, _, err := cp.run(t, "", "analyze", "-o", "xml"); err == nil || !strings.Contains(err.Error(), "xml not a valid option") {
		t.Errorf("-o xml: %v", err)
	}
	if _, _, err := cp.run(t, "", "analyze", "--failure-threshold", "Fatal"); err == nil {
		t.Error("--failure-threshold Fatal accepted")
	}
	down := &controlPlane{addr: "127.0.0.1:1"}
	if _, _, err := down.run(t, "", "analyze"); err == nil || !strings.Contains(err.Error(), "--use-kube=false") {
		t.Errorf("unreachable control plane: %v", err)
	}
}

// The running control plane's config and the files are analysed together:
// a gateway applied to the control plane resolves a file's reference.
func TestAnalyzeLiveAndFiles(t *testing.T) {
	dir := t.TempDir()
	gw := filepath.Join(dir, "gw.yaml")
	os.WriteFile(gw, []byte(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: missing-gateway, namespace: shop}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
`), 0o644)
	vs := filepath.Join(dir, "vs.yaml")
	os.WriteFile(vs, []byte(brokenVS), 0o644)
	cp := newControlPlane(t)
	if _, stderr, err := cp.run(t, "", "apply", "-f", gw, "-f", filepath.Join(dir, "svc.yaml")); err == nil {
		t.Fatalf("apply of a missing file succeeded: %s", stderr)
	}
	os.WriteFile(filepath.Join(dir, "svc.yaml"), []byte(webService), 0o644)
	if _, stderr, err := cp.run(t, "", "apply", "-f", gw, "-f", filepath.Join(dir, "svc.yaml")); err != nil {
		t.Fatalf("apply: %v %s", err, stderr)
	}
	stdout, _, err := cp.run(t, "", "analyze", "-n", "shop", vs)
	if strings.Contains(stdout, "Referenced gateway not found") || strings.Contains(stdout, "Referenced host not found") {
		t.Errorf("live gateway and service not seen: %s", stdout)
	}
	// The live Gateway selects no workload: analysed live, that is an error.
	if exitCode(err) != 79 || !strings.Contains(stdout, `(Gateway shop/missing-gateway) Referenced selector not found: "istio=ingressgateway"`) {
		t.Errorf("exit %d, stdout %s", exitCode(err), stdout)
	}
}
