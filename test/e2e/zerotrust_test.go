package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// nobody is the uid of another local user (65534, "nobody").
const nobody = 65534

// asNobody runs a command as uid/gid 65534 and returns its output.
func asNobody(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// startDiscovery runs `skein discovery` with a durable store in a data dir
// other users may enter (0755), so only the credential file's own mode
// keeps them out, as in a home directory.
func startDiscovery(t *testing.T) (server, dataDir string) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root to run a client as another user")
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("needs curl")
	}
	dataDir = t.TempDir()
	for d := dataDir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	server = fmt.Sprintf("127.0.0.1:%d", freePort(t, "127.0.0.1"))
	grpcAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t, "127.0.0.1"))
	start(t, "discovery", "discovery", "--store-dir", filepath.Join(dataDir, "store"), "--http-addr", server, "--grpc-addr", grpcAddr)
	eventually(t, 30*time.Second, "discovery ready", func() error {
		code, _, err := get("http://"+server+"/ready", nil)
		if err != nil || code != 200 {
			return fmt.Errorf("ready: %d %v", code, err)
		}
		return nil
	})
	return server, dataDir
}

// TestConfigAPIAuth: another local user cannot change or read the mesh's
// config secrets; the owner's CLI works unchanged.
func TestConfigAPIAuth(t *testing.T) {
	server, dataDir := startDiscovery(t)
	cred := filepath.Join(dataDir, "ca", "admin-token")
	fi, err := os.Stat(cred)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("credential file: %v mode %v, want 0600", err, fi.Mode().Perm())
	}
	if out, err := asNobody(t, "cat", cred); err == nil {
		t.Fatalf("uid %d read the credential: %s", nobody, out)
	}
	rogue := `{"objects":[{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"rogue","namespace":"default"},` +
		`"spec":{"selector":{"matchLabels":{"app":"rogue"}},"template":{"metadata":{"labels":{"app":"rogue"}},` +
		`"spec":{"serviceAccountName":"bookinfo-productpage","containers":[{"name":"x","image":"x","command":["id"]}]}}}}]}`
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"no credential", []string{"-H", "Content-Type: application/json"}, "401"},
		{"guessed credential", []string{"-H", "Content-Type: application/json", "-H", "Authorization: Bearer 0000"}, "401"},
		{"text/plain", []string{"-H", "Content-Type: text/plain"}, "415"},
		{"foreign Origin", []string{"-H", "Content-Type: application/json", "-H", "Origin: https://evil.example"}, "403"},
		{"rebinding Host", []string{"-H", "Content-Type: application/json", "-H", "Host: evil.example"}, "403"},
	} {
		args := append([]string{"-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "--data", rogue}, c.args...)
		out, err := asNobody(t, "curl", append(args, "http://"+server+"/api/v1/apply")...)
		if err != nil || out != c.want {
			t.Errorf("%s: curl as uid %d answered %q (%v), want %s", c.name, nobody, out, err, c.want)
		}
	}
	if out, _ := run(t, "", "get", "deployment", "rogue", "-n", "default", "--server", server, "--credential-file", cred); !strings.Contains(out, "NotFound") {
		t.Fatalf("a refused apply stored the Deployment: %s", out)
	}

	// The owner's CLI, with the credential found under SKEIN_HOME.
	env := append(os.Environ(), "SKEIN_HOME="+dataDir)
	cli := func(stdin string, args ...string) string {
		t.Helper()
		cmd := exec.Command(skeinBin, append(args, "--server", server)...)
		cmd.Env, cmd.Dir = env, repoRoot
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("skein %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	key := "c2VjcmV0LWtleS1tYXRlcmlhbA==" // "secret-key-material"
	out := cli(`apiVersion: v1
kind: Secret
metadata: {name: gw-cred, namespace: istio-system}
type: kubernetes.io/tls
data: {tls.crt: Y2VydA==, tls.key: `+key+`}
`, "apply", "-f", "-")
	if !strings.Contains(out, "secret/gw-cred created") {
		t.Fatalf("owner apply: %s", out)
	}
	if out := cli("", "get", "secret", "gw-cred", "-n", "istio-system", "-o", "yaml"); strings.Contains(out, key) || !strings.Contains(out, "tls.key: 19 bytes") {
		t.Errorf("owner get secret -o yaml shows the key or no sizes:\n%s", out)
	}
	for _, path := range []string{"/api/v1/objects/Secret", "/debug/config_dump?proxyID=x", "/debug/syncz", "/debug/pprof/"} {
		if out, err := asNobody(t, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://"+server+path); err != nil || out != "401" {
			t.Errorf("GET %s as uid %d: %q %v, want 401", path, nobody, out, err)
		}
	}
	// What Prometheus and the dashboard read stays open, as istiod's /metrics.
	for _, path := range []string{"/metrics", "/debug/prometheus_sd", "/ready"} {
		if out, err := asNobody(t, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://"+server+path); err != nil || out != "200" {
			t.Errorf("GET %s as uid %d: %q %v, want 200", path, nobody, out, err)
		}
	}
}
