package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// fortioVersion is the load client Istio's circuit breaking task uses.
// v1.68.2 is the newest release that builds from the module proxy alone:
// from v1.69.0 on, fortio depends on grol.io/grol, which proxy.golang.org
// refuses to serve here (403).
const fortioVersion = "v1.68.2"

// installFortio builds fortio once into the user's cache and returns its
// path. A developer without network access gets a skip; CI (CI=true) must
// not silently lose the test, so there a failed install fails it.
func installFortio(t *testing.T) string {
	t.Helper()
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	bin := filepath.Join(cache, "skein-e2e-bin", "fortio-"+fortioVersion)
	path := filepath.Join(bin, "fortio")
	if _, err := os.Stat(path); err == nil {
		return path
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, "go", "install", "fortio.org/fortio@"+fortioVersion)
	// Outside any module, and without the caller's GOFLAGS (-mod=vendor
	// would refuse a module that is not vendored here).
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "GOBIN="+bin, "GOFLAGS=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg := fmt.Sprintf("installing fortio %s: %v\n%s", fortioVersion, err, out)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Logf("installed fortio %s in %s", fortioVersion, time.Since(start).Round(time.Millisecond))
	return path
}

// fortioResult is what a `fortio load` run reports.
type fortioResult struct {
	codes  map[int]int // "Code 200 : 27 (90.0 %)"
	output string
}

var fortioCodeRE = regexp.MustCompile(`(?m)^Code\s+(-?\d+)\s*:\s*(\d+)`)

// runFortio runs `fortio load args...` with HTTP_PROXY set to proxy, so
// fortio's standard client sends absolute-form requests to a sidecar's
// outbound port, the local stand-in for iptables capture.
func runFortio(t *testing.T, fortio, proxy string, args ...string) fortioResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, fortio, append([]string{"load"}, args...)...)
	cmd.Env = append(os.Environ(), "HTTP_PROXY="+proxy, "http_proxy="+proxy, "NO_PROXY=", "no_proxy=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("fortio load %v: %v\n%s", args, err, out)
	}
	r := fortioResult{codes: map[int]int{}, output: string(out)}
	for _, m := range fortioCodeRE.FindAllStringSubmatch(r.output, -1) {
		code, _ := strconv.Atoi(m[1])
		n, _ := strconv.Atoi(m[2])
		r.codes[code] += n
	}
	if len(r.codes) == 0 {
		t.Fatalf("no \"Code N : count\" lines in fortio's output:\n%s", out)
	}
	return r
}
