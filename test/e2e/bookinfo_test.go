package e2e

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// mesh is a running `skein up`.
type mesh struct {
	up      *process
	server  string // control plane HTTP address
	ingress string // ingress gateway base URL
	dataDir string
}

// startMesh runs `skein up -f <files>` on private ports and waits until
// the product page is served through the ingress gateway.
func startMesh(t *testing.T, files ...string) *mesh {
	t.Helper()
	m := &mesh{dataDir: t.TempDir()}
	m.server = fmt.Sprintf("127.0.0.1:%d", freePort(t, "127.0.0.1"))
	grpcAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t, "127.0.0.1"))
	ingressIP := freeIngressIP(t)
	m.ingress = "http://" + ingressIP + ":8080"
	// Tests run their own dashboards; the shared default port stays free.
	args := []string{"up", "--data-dir", m.dataDir, "--http-addr", m.server, "--grpc-addr", grpcAddr, "--ingress-address", ingressIP, "--dashboard-addr", ""}
	for _, f := range files {
		args = append(args, "-f", f)
	}
	m.up = start(t, "skein-up", args...)
	eventually(t, 90*time.Second, "the product page through the ingress gateway", func() error {
		code, body, err := get(m.ingress+"/productpage", nil)
		if err != nil {
			return err
		}
		if code != http.StatusOK || !strings.Contains(body, "Book Details") {
			return fmt.Errorf("status %d: %.200s", code, body)
		}
		if strings.Contains(body, "reviews-error") || strings.Contains(body, "details-error") {
			return fmt.Errorf("page has an error element")
		}
		return nil
	})
	return m
}

// freeIngressIP finds a loopback address whose gateway ports (8080, 8443)
// are free, so several meshes (parallel tests, a developer's own skein up)
// never collide.
func freeIngressIP(t *testing.T) string {
	t.Helper()
	for i := 1; i < 250; i++ {
		ip := fmt.Sprintf("127.0.9.%d", i)
		free := true
		for _, port := range []string{"8080", "8443"} {
			l, err := net.Listen("tcp", ip+":"+port)
			if err != nil {
				free = false
				break
			}
			l.Close()
		}
		if free {
			return ip
		}
	}
	t.Fatal("no free loopback address for the ingress gateway in 127.0.9.0/24")
	return ""
}

// credential is the admin credential file skein up's control plane wrote,
// which the CLI reads as the owner's.
func (m *mesh) credential() string { return filepath.Join(m.dataDir, "ca", "admin-token") }

// adminToken reads the credential.
func (m *mesh) adminToken(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(m.credential())
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func (m *mesh) skein(t *testing.T, args ...string) string {
	t.Helper()
	return mustRun(t, append(args, "--server", m.server, "--credential-file", m.credential())...)
}

// apply applies YAML text through stdin, as `skein apply -f -`.
func (m *mesh) apply(t *testing.T, yaml string) string {
	t.Helper()
	out, err := run(t, yaml, "apply", "-f", "-", "--server", m.server, "--credential-file", m.credential())
	if err != nil {
		t.Fatalf("skein apply: %v\n%s", err, out)
	}
	return out
}

var starRE = regexp.MustCompile(`star-(black|red)`)

// stars fetches the product page and reports which star colours it shows
// ("none" when reviews have no ratings).
func (m *mesh) stars(t *testing.T, user string) string {
	t.Helper()
	headers := map[string]string{}
	if user != "" {
		headers["Cookie"] = "session=" + user
	}
	code, body, err := get(m.ingress+"/productpage", headers)
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /productpage: %d %v", code, err)
	}
	if strings.Contains(body, "reviews-error") {
		return "reviews-error"
	}
	found := map[string]bool{}
	for _, mm := range starRE.FindAllStringSubmatch(body, -1) {
		found[mm[1]] = true
	}
	switch {
	case found["black"] && found["red"]:
		return "mixed"
	case found["black"]:
		return "black"
	case found["red"]:
		return "red"
	}
	return "none"
}

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestBookinfo walks the acceptance scenarios of the local mesh on one
// `skein up`: the page through the ingress, the tutorial's routing applied
// verbatim, a 50/50 split, propagation time, and a control plane restart.
func TestBookinfo(t *testing.T) {
	m := startMesh(t, "samples/bookinfo")

	t.Run("productpage through ingress", func(t *testing.T) {
		code, body, err := get(m.ingress+"/productpage", nil)
		if err != nil || code != 200 {
			t.Fatalf("%d %v", code, err)
		}
		for _, want := range []string{"The Comedy of Errors", "William Shakespeare", "Reviewer1"} {
			if !strings.Contains(body, want) {
				t.Errorf("page lacks %q", want)
			}
		}
	})

	t.Run("proxy-status all synced", func(t *testing.T) {
		eventually(t, 10*time.Second, "every proxy SYNCED", func() error {
			out := m.skein(t, "proxy-status")
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) < 8 { // header + 6 bookinfo pods + ingress
				return fmt.Errorf("want 7 proxies:\n%s", out)
			}
			for _, l := range lines[1:] {
				if !proxySynced(l) {
					return fmt.Errorf("not synced: %s", l)
				}
			}
			return nil
		})
	})

	t.Run("one bad document: the others are stored, exit 1", func(t *testing.T) {
		out, err := run(t, "", "apply", "-f", "test/e2e/testdata/bad-mixed.yaml", "--server", m.server, "--credential-file", m.credential())
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("apply of a file with a bad document: %v, want exit status 1\n%s", err, out)
		}
		for _, want := range []string{"destinationrule.networking.istio.io/ratings created",
			"error: test/e2e/testdata/bad-mixed.yaml (document 2): VirtualService/ratings spec.http[0].route[0].wieght"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		// kubectl stores the valid DestinationRule of the same file.
		if got, err := run(t, "", "get", "destinationrule", "ratings", "-n", "bookinfo", "--server", m.server, "--credential-file", m.credential()); err != nil {
			t.Errorf("DestinationRule ratings not stored: %v\n%s", err, got)
		}
		if got, err := run(t, "", "get", "virtualservice", "ratings", "-n", "bookinfo", "--server", m.server, "--credential-file", m.credential()); err == nil || !strings.Contains(got, "NotFound") {
			t.Errorf("the bad VirtualService was stored: %v\n%s", err, got)
		}
		mustRun(t, "delete", "destinationrule", "ratings", "-n", "bookinfo", "--server", m.server, "--credential-file", m.credential())
	})

	t.Run("tutorial routing verbatim", func(t *testing.T) {
		out := m.apply(t, readTestdata(t, "tutorial-routing.yaml"))
		for _, want := range []string{
			"gateway.networking.istio.io/bookinfo-gateway",
			"virtualservice.networking.istio.io/bookinfo",
			"destinationrule.networking.istio.io/reviews created",
			"virtualservice.networking.istio.io/reviews created",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("apply output lacks %q:\n%s", want, out)
			}
		}
		eventually(t, 5*time.Second, "jason routed to v2", func() error {
			if got := m.stars(t, "jason"); got != "black" {
				return fmt.Errorf("jason sees %s", got)
			}
			return nil
		})
		for i := 0; i < 20; i++ {
			if got := m.stars(t, "jason"); got != "black" {
				t.Fatalf("request %d: jason sees %s stars, want only black", i, got)
			}
			if got := m.stars(t, ""); got != "none" {
				t.Fatalf("request %d: anonymous sees %s stars, want none", i, got)
			}
		}
	})

	t.Run("weighted split 50/50 v1/v3", func(t *testing.T) {
		m.apply(t, readTestdata(t, "reviews-50-v3.yaml"))
		eventually(t, 5*time.Second, "v3 appearing", func() error {
			for i := 0; i < 20; i++ {
				if m.stars(t, "") == "red" {
					return nil
				}
			}
			return fmt.Errorf("no red stars in 20 requests")
		})
		red, none := 0, 0
		for i := 0; i < 400; i++ {
			switch got := m.stars(t, ""); got {
			case "red":
				red++
			case "none":
				none++
			default:
				t.Fatalf("unexpected %s", got)
			}
		}
		pct := float64(red) * 100 / 400
		t.Logf("v3 (red) %d, v1 (none) %d of 400: %.1f%% v3", red, none, pct)
		if pct < 45 || pct > 55 {
			t.Errorf("v3 share %.1f%%, want 45-55%%", pct)
		}
	})

	t.Run("config change visible within 1s", func(t *testing.T) {
		m.apply(t, readTestdata(t, "reviews-v3.yaml"))
		eventually(t, 5*time.Second, "all red", func() error {
			if got := m.stars(t, ""); got != "red" {
				return fmt.Errorf("got %s", got)
			}
			return nil
		})
		for attempt := 0; attempt < 3; attempt++ {
			target := []string{"reviews-v2.yaml", "reviews-v3.yaml", "reviews-v2.yaml"}[attempt]
			want := map[string]string{"reviews-v2.yaml": "black", "reviews-v3.yaml": "red"}[target]
			startT := time.Now()
			m.apply(t, readTestdata(t, target))
			for m.stars(t, "") != want {
				if time.Since(startT) > 5*time.Second {
					t.Fatalf("change to %s not visible after 5s", want)
				}
				time.Sleep(20 * time.Millisecond)
			}
			took := time.Since(startT)
			t.Logf("change to %s visible at the ingress after %s (including the skein apply process)", want, took.Round(time.Millisecond))
			if took > time.Second {
				t.Errorf("change took %s, want < 1s", took)
			}
		}
	})

	t.Run("control plane restart keeps config", func(t *testing.T) {
		before := m.skein(t, "get", "virtualservices", "-n", "bookinfo")
		pidOut, err := findPid(fmt.Sprintf("discovery --store-dir %s", m.dataDir))
		if err != nil {
			t.Fatal(err)
		}
		killPid(t, pidOut)
		// The runner restarts discovery from the durable store; proxies keep
		// their last config meanwhile, then reconnect.
		if got := m.stars(t, ""); got != "black" {
			t.Errorf("while the control plane is down: %s stars, want black (last config)", got)
		}
		eventually(t, 30*time.Second, "control plane back", func() error {
			out, err := run(t, "", "get", "virtualservices", "-n", "bookinfo", "--server", m.server, "--credential-file", m.credential())
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			if names(out) != names(before) {
				return fmt.Errorf("after restart:\n%s\nbefore:\n%s", out, before)
			}
			return nil
		})
		eventually(t, 20*time.Second, "proxies resynced", func() error {
			out := m.skein(t, "proxy-status")
			if strings.Count(out, "\n") < 8 || strings.Contains(out, "STALE") || !allProxiesSynced(out) {
				return fmt.Errorf("%s", out)
			}
			return nil
		})
		m.apply(t, readTestdata(t, "reviews-v3.yaml"))
		eventually(t, 5*time.Second, "routing change after restart", func() error {
			if got := m.stars(t, ""); got != "red" {
				return fmt.Errorf("got %s", got)
			}
			return nil
		})
	})
}

// names extracts the NAME column of a kubectl-style table.
func names(table string) string {
	var out []string
	for i, l := range strings.Split(strings.TrimSpace(table), "\n") {
		if i == 0 {
			continue
		}
		out = append(out, strings.Fields(l)[0])
	}
	return strings.Join(out, ",")
}
