package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

const chromiumPath = "/usr/bin/chromium"

var (
	chromiumOnce sync.Once
	chromiumErr  error
)

// ensureChromium installs Chromium once per test binary when it is
// missing. Without it the browser tests skip locally, but fail in CI
// (CI=true), where a missing browser must not pass silently.
func ensureChromium(t *testing.T) {
	t.Helper()
	chromiumOnce.Do(func() {
		if _, err := os.Stat(chromiumPath); err == nil {
			return
		}
		for _, args := range [][]string{{"update"}, {"install", "-y", "chromium"}} {
			cmd := exec.Command("apt-get", args...)
			cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
			if out, err := cmd.CombinedOutput(); err != nil {
				chromiumErr = fmt.Errorf("apt-get %s: %v\n%s", strings.Join(args, " "), err, tail(string(out), 10))
				return
			}
		}
		if _, err := os.Stat(chromiumPath); err != nil {
			chromiumErr = fmt.Errorf("chromium installed but %s is missing: %w", chromiumPath, err)
		}
	})
	if chromiumErr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("headless Chromium is required in CI: %v", chromiumErr)
		}
		t.Skipf("no headless Chromium: %v", chromiumErr)
	}
}

// newBrowser starts headless Chromium with a fresh profile.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	ensureChromium(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true), chromedp.NoSandbox, chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true), chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// screenshot saves a full-page PNG into the test's output directory (and
// test/e2e/screenshots/ when SKEIN_KEEP_SCREENSHOTS is set).
func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG; less is JPEG
	if err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
	if os.Getenv("SKEIN_KEEP_SCREENSHOTS") != "" {
		keep := filepath.Join(repoRoot, "test", "e2e", "screenshots")
		os.MkdirAll(keep, 0o755)
		os.WriteFile(filepath.Join(keep, name+".png"), png, 0o644)
	}
}

// TestDashboard drives the dashboard in headless Chromium against Bookinfo:
// the graph shows the traffic, then a 50 % abort fault on ratings turns the
// reviews → ratings edges red with about 50 % errors. It also opens the
// service, traces and proxies pages.
func TestDashboard(t *testing.T) {
	ctx := newBrowser(t)
	m := startMesh(t, "samples/bookinfo")
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t, "127.0.0.1"))
	dash := start(t, "dashboard", "dashboard", "--server", m.server, "--credential-file", m.credential(), "--addr", addr, "--window", "10s", "--scrape-interval", "1s")
	defer dash.stop()
	base := "http://" + addr
	eventually(t, 10*time.Second, "the dashboard", func() error {
		code, _, err := get(base+"/api/graph", nil)
		if err == nil && code != 200 {
			err = fmt.Errorf("status %d", code)
		}
		return err
	})
	shots := t.TempDir()
	t.Logf("screenshots go to %s", shots)

	// Bookinfo traffic through the ingress gateway, all test long.
	var stop atomic.Bool
	var wg sync.WaitGroup
	defer func() { stop.Store(true); wg.Wait() }()
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				get(m.ingress+"/productpage", nil)
				time.Sleep(50 * time.Millisecond)
			}
		}()
	}

	edge := func(src, dst string) string {
		return fmt.Sprintf(`g.edge[data-source="bookinfo/%s"][data-destination="bookinfo/%s"]`, src, dst)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/#/graph")); err != nil {
		t.Fatal(err)
	}
	// Traffic appears: productpage → reviews is green.
	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := chromedp.Do(waitCtx, chromedp.WaitVisible(chromedp.CSS(edge("productpage-v1", "reviews-v1")+`.health-green`)))
	cancel()
	screenshot(t, ctx, shots, "dashboard-graph-healthy")
	if err != nil {
		html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("main")))
		t.Fatalf("no green productpage → reviews-v1 edge (istio_requests_total from the proxies?): %v\n%.3000s", err, html)
	}

	// 50 % aborts on ratings; everyone goes to reviews v3 (which calls ratings).
	m.apply(t, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v3}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: bookinfo}
spec:
  host: reviews
  subsets:
  - {name: v3, labels: {version: v3}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: bookinfo}
spec:
  hosts: [ratings]
  http:
  - fault:
      abort:
        percentage: {value: 50}
        httpStatus: 500
    route:
    - destination: {host: ratings}
`)
	applied := time.Now()
	red := edge("reviews-v3", "ratings-v1") + `.health-red`
	var label string
	var pct float64
	deadline := applied.Add(15 * time.Second)
	for {
		label, pct = "", 0
		ok, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](fmt.Sprintf(`!!document.querySelector(%q)`, red)))
		if ok {
			// textContent: SVG elements have no innerText.
			label, _ = chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`document.querySelector(%q).textContent`, red+` text.edge-label`)))
			if m := regexp.MustCompile(`([\d.]+)% err`).FindStringSubmatch(label); m != nil {
				pct, _ = strconv.ParseFloat(m[1], 64)
			}
			if pct >= 35 && pct <= 65 {
				break
			}
		}
		if time.Now().After(deadline) {
			screenshot(t, ctx, shots, "dashboard-graph-fault-timeout")
			t.Fatalf("after %v the reviews-v3 → ratings-v1 edge is not red at ~50%% (red: %v, label %q)", time.Since(applied).Round(time.Second), ok, label)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("reviews-v3 → ratings-v1 red at %.1f%% errors %v after the fault was applied (label %q)", pct, time.Since(applied).Round(100*time.Millisecond), label)
	screenshot(t, ctx, shots, "dashboard-graph-fault")

	t.Run("service page", func(t *testing.T) {
		err := chromedp.Do(ctx, chromedp.Navigate(base+"/#/service/bookinfo/ratings"),
			chromedp.WaitVisible(chromedp.CSS(`#service-config tr[data-kind="VirtualService"][data-name="bookinfo/ratings"]`)),
			chromedp.WaitVisible(chromedp.CSS(`#inbound tr.edge-row.health-red[data-source="bookinfo/reviews-v3"]`)))
		text, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
		screenshot(t, ctx, shots, "dashboard-service-ratings")
		if err != nil {
			t.Fatalf("ratings page: %v\n%.2000s", err, text)
		}
		if !strings.Contains(text, "ratings-v1") {
			t.Errorf("ratings page lists no ratings-v1 workload:\n%.2000s", text)
		}
	})
	t.Run("proxies page", func(t *testing.T) {
		err := chromedp.Do(ctx, chromedp.Navigate(base+"/#/proxies"),
			chromedp.WaitVisible(chromedp.CSS(`#proxies tr.proxy-row[data-proxy^="ratings-v1-"] td.sync-synced`)))
		text, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#proxies")))
		screenshot(t, ctx, shots, "dashboard-proxies")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(text, "istio-ingressgateway") {
			t.Errorf("no gateway in the proxies table:\n%s", text)
		}
	})
	t.Run("traces page", func(t *testing.T) {
		// Either traces (when the control plane serves Zipkin's API) or a
		// clear empty state; never an error page.
		err := chromedp.Do(ctx, chromedp.Navigate(base+"/#/traces"),
			chromedp.WaitVisible(chromedp.CSS(`#traces, #traces-empty`)))
		screenshot(t, ctx, shots, "dashboard-traces")
		if err != nil {
			t.Fatal(err)
		}
		n, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#traces tr.trace-row").length`))
		if n == 0 {
			t.Logf("no traces listed (the control plane's Zipkin API answered none)")
			return
		}
		err = chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#traces tr.trace-row a`)),
			chromedp.WaitVisible(chromedp.CSS(`#waterfall .span`)))
		screenshot(t, ctx, shots, "dashboard-trace")
		if err != nil {
			t.Fatal(err)
		}
	})
}
