package cli

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skein-mesh/skein/internal/config"
	"github.com/skein-mesh/skein/internal/configapi"
	"github.com/skein-mesh/skein/internal/configstore"
)

const tutorialDir = "../config/testdata/tutorial"

// controlPlane is a real config API over a real durable store, served on a
// loopback port, for running the commands against.
type controlPlane struct {
	addr  string
	store *configstore.Store
}

func newControlPlane(t *testing.T) *controlPlane {
	t.Helper()
	store, err := configstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	guard := &configapi.Guard{AdminToken: "owner-token"}
	srv := httptest.NewServer(guard.Handler(configapi.NewHandler(store, slog.New(slog.NewTextHandler(io.Discard, nil)))))
	t.Cleanup(srv.Close)
	// The owner's credential where the CLI looks by default ($SKEIN_HOME).
	home := t.TempDir()
	os.MkdirAll(filepath.Join(home, "ca"), 0o700)
	if err := os.WriteFile(filepath.Join(home, "ca", "admin-token"), []byte("owner-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SKEIN_HOME", home)
	t.Setenv("SKEIN_CREDENTIAL_FILE", "")
	return &controlPlane{addr: strings.TrimPrefix(srv.URL, "http://"), store: store}
}

// run executes one skein command line against the control plane.
func (cp *controlPlane) run(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := NewRootCmd()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(append([]string{"--server", cp.addr}, args...))
	err = root.Execute()
	return out.String(), errOut.String(), err
}

func (cp *controlPlane) mustRunStdin(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, stderr, err := cp.run(t, stdin, args...)
	if err != nil {
		t.Fatalf("skein %s: %v\nstderr: %s", strings.Join(args, " "), err, stderr)
	}
	return out
}

func (cp *controlPlane) mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, stderr, err := cp.run(t, "", args...)
	if err != nil {
		t.Fatalf("skein %s: %v\nstderr: %s", strings.Join(args, " "), err, stderr)
	}
	return out
}

func TestApplyTutorial(t *testing.T) {
	cp := newControlPlane(t)
	out, stderr, err := cp.run(t, "", "apply", "-f", tutorialDir)
	if err != nil {
		t.Fatal(err)
	}
	want := `gateway.networking.istio.io/bookinfo-gateway created
virtualservice.networking.istio.io/bookinfo created
destinationrule.networking.istio.io/reviews created
virtualservice.networking.istio.io/reviews created
destinationrule.networking.istio.io/reviews-circuit-breaker created
virtualservice.networking.istio.io/unreliable-service created
envoyfilter.networking.istio.io/productpage-local-ratelimit created
peerauthentication.security.istio.io/default created
authorizationpolicy.security.istio.io/productpage-viewer created
`
	if out != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", out, want)
	}
	warnings := strings.Split(strings.TrimSpace(stderr), "\n")
	if len(warnings) != 4 || !strings.HasPrefix(warnings[0], "Warning: ") ||
		!strings.Contains(stderr, `Warning: ../config/testdata/tutorial/03-virtual-service-reviews-jason.yaml (document 1): VirtualService/reviews spec.host: VirtualService has no field "host"`) {
		t.Errorf("stderr:\n%s", stderr)
	}

	out = cp.mustRun(t, "apply", "-f", filepath.Join(tutorialDir, "02-destination-rule-reviews.yaml"))
	if out != "destinationrule.networking.istio.io/reviews unchanged\n" {
		t.Errorf("re-apply: %q", out)
	}

	changed := strings.Replace(readFile(t, filepath.Join(tutorialDir, "02-destination-rule-reviews.yaml")), "version: v3", "version: v3-new", 1)
	out, _, err = cp.run(t, changed, "apply", "-f", "-")
	if err != nil || out != "destinationrule.networking.istio.io/reviews configured\n" {
		t.Errorf("apply from stdin: %q %v", out, err)
	}
	if cp.store.Revision() != 2 {
		t.Errorf("revision %d, want 2", cp.store.Revision())
	}
}

func TestApplyOptions(t *testing.T) {
	cp := newControlPlane(t)
	dr := filepath.Join(tutorialDir, "02-destination-rule-reviews.yaml")

	out := cp.mustRun(t, "apply", "-f", dr, "--dry-run")
	if out != "destinationrule.networking.istio.io/reviews created (dry run)\n" || cp.store.Revision() != 0 {
		t.Errorf("dry run: %q, revision %d", out, cp.store.Revision())
	}

	cp.mustRun(t, "apply", "-f", dr, "-n", "bookinfo")
	if _, ok := cp.store.Snapshot().Get(config.Key{Kind: "DestinationRule", Namespace: "bookinfo", Name: "reviews"}); !ok {
		t.Error("-n did not set the namespace")
	}

	inNS := strings.Replace(readFile(t, dr), "  name: reviews\n", "  name: reviews\n  namespace: istio-system\n", 1)
	_, stderr, err := cp.run(t, inNS, "apply", "-f", "-", "-n", "bookinfo")
	if err == nil || !strings.Contains(stderr, `the namespace from the provided object "istio-system" does not match the namespace "bookinfo"`) {
		t.Errorf("namespace mismatch: %v\n%s", err, stderr)
	}

	_, _, err = cp.run(t, "", "apply", "-f", t.TempDir())
	if err == nil || err.Error() != "no objects passed to apply" {
		t.Errorf("empty dir: %v", err)
	}
	_, _, err = cp.run(t, "", "apply")
	if err == nil || !strings.Contains(err.Error(), `required flag(s) "filename" not set`) {
		t.Errorf("no -f: %v", err)
	}
}

func TestControlPlaneNotRunning(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cp := &controlPlane{addr: l.Addr().String()}
	l.Close()
	want := `cannot reach the Skein control plane at ` + cp.addr + ` (is "skein up" or "skein discovery" running?)`
	for _, args := range [][]string{
		{"apply", "-f", tutorialDir},
		{"get", "vs"},
		{"delete", "vs", "reviews"},
	} {
		_, _, err := cp.run(t, "", args...)
		if err == nil || err.Error() != want {
			t.Errorf("skein %s: %v", strings.Join(args, " "), err)
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
