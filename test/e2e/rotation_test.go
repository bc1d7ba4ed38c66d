package e2e

import (
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestCertRotationUnderLoad is the zero-trust acceptance run: with a 10 s
// certificate lifetime, 200 requests per second through the ingress for
// 60 s (each fanning out over mTLS to details, reviews and ratings) see no
// failure, and every proxy's certificate rotates throughout.
func TestCertRotationUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("60 s load run")
	}
	t.Setenv("SECRET_TTL", "10s")
	m := startMesh(t, "samples/bookinfo")
	// STRICT so every hop really is mutual TLS with the rotating certs.
	m.apply(t, `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: default
  namespace: istio-system
spec:
  mtls:
    mode: STRICT
`)
	proxies := proxyAdminAddrs(t, m)
	if len(proxies) != 8 {
		t.Fatalf("want 8 proxies (6 Bookinfo sidecars, ingress and egress gateways), got %v", proxies)
	}
	before := map[string]int{}
	for name, addr := range proxies {
		before[name] = rotations(t, addr)
	}

	const rate, duration = 200, 60 * time.Second
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	jobs := make(chan struct{}, rate)
	var wg sync.WaitGroup
	for i := 0; i < 48; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				code, body, err := get(m.ingress+"/productpage", nil)
				if err != nil || code != 200 || strings.Contains(body, "-error") {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, strings.TrimSpace(strconv.Itoa(code)+" "+errString(err)+" "+errorElement(body)))
					continue
				}
				ok.Add(1)
			}
		}()
	}
	start := time.Now()
	tick := time.NewTicker(time.Second / rate)
	for time.Since(start) < duration {
		<-tick.C
		select {
		case jobs <- struct{}{}:
		default:
			failed.Add(1) // the client could not keep the rate: count it, never hide it
			firstErr.CompareAndSwap(nil, "load generator fell behind (requests slower than the rate)")
		}
	}
	tick.Stop()
	close(jobs)
	wg.Wait()
	elapsed := time.Since(start)

	t.Logf("%d requests ok, %d failed in %s (%.0f rps)", ok.Load(), failed.Load(), elapsed.Round(time.Second), float64(ok.Load())/elapsed.Seconds())
	if failed.Load() != 0 {
		t.Errorf("%d failed requests during rotation; first: %v", failed.Load(), firstErr.Load())
	}
	for name, addr := range proxies {
		n := rotations(t, addr) - before[name]
		t.Logf("%s rotated %d times", name, n)
		// A 10 s certificate renews at half-life: about 12 times a minute.
		if n < 8 {
			t.Errorf("%s rotated only %d times in %s with a 10 s certificate", name, n, elapsed.Round(time.Second))
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

var errorElementRE = regexp.MustCompile(`class="[a-z]+-error"`)

func errorElement(body string) string { return errorElementRE.FindString(body) }

// proxyAdminAddrs maps each proxy's pod to its admin address (podIP:15000).
func proxyAdminAddrs(t *testing.T, m *mesh) map[string]string {
	t.Helper()
	var list struct {
		Items []struct {
			Metadata struct{ Name, Namespace string }
			Spec     struct {
				Containers []struct{ Name string }
			}
			Status struct{ PodIP string }
		}
	}
	if err := json.Unmarshal([]byte(m.skein(t, "get", "pods", "-A", "-o", "json")), &list); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, p := range list.Items {
		for _, c := range p.Spec.Containers {
			if c.Name == "istio-proxy" && p.Status.PodIP != "" {
				out[p.Metadata.Namespace+"/"+p.Metadata.Name] = p.Status.PodIP + ":15000"
			}
		}
	}
	return out
}

var rotationsRE = regexp.MustCompile(`(?m)^skein\.secrets\.rotations: (\d+)$`)

func rotations(t *testing.T, adminAddr string) int {
	t.Helper()
	_, body, err := get("http://"+adminAddr+"/stats", nil)
	if err != nil {
		t.Fatalf("stats of %s: %v", adminAddr, err)
	}
	m := rotationsRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no skein.secrets.rotations at %s", adminAddr)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}
