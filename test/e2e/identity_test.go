package e2e

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestWorkloadIdentity: every proxy gets a SPIFFE certificate from the
// control plane's CA, and with a 4 s lifetime (SECRET_TTL, forwarded by
// the runner to each proxy) certificates rotate while requests keep
// succeeding.
func TestWorkloadIdentity(t *testing.T) {
	t.Setenv("SECRET_TTL", "4s")
	m := startMesh(t, "samples/bookinfo")

	pods := m.skein(t, "get", "pods", "-n", "bookinfo", "-o", "wide")
	var pod, podIP string
	for _, l := range strings.Split(pods, "\n") {
		if f := strings.Fields(l); len(f) > 5 && strings.HasPrefix(f[0], "productpage-") {
			pod = f[0]
			for _, x := range f {
				if strings.HasPrefix(x, "127.") {
					podIP = x
				}
			}
		}
	}
	if pod == "" || podIP == "" {
		t.Fatalf("no productpage pod with an IP in:\n%s", pods)
	}

	serialRE := regexp.MustCompile(`(?m)^default\s+Cert Chain\s+ACTIVE\s+true\s+([0-9a-f]+)\s`)
	out := m.skein(t, "proxy-config", "secret", pod+".bookinfo")
	for _, want := range []string{"RESOURCE NAME", "SERIAL NUMBER", "ROOTCA", "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-productpage"} {
		if !strings.Contains(out, want) {
			t.Errorf("proxy-config secret lacks %q:\n%s", want, out)
		}
	}
	if !regexp.MustCompile(`(?m)^ROOTCA\s+CA\s+ACTIVE\s+true\s`).MatchString(out) {
		t.Errorf("no valid ROOTCA row:\n%s", out)
	}
	t.Logf("skein proxy-config secret %s.bookinfo:\n%s", pod, out)
	first := serialRE.FindStringSubmatch(out)
	if first == nil {
		t.Fatalf("no valid default certificate row:\n%s", out)
	}
	if js := m.skein(t, "proxy-config", "secret", pod+".bookinfo", "-o", "json"); !strings.Contains(js, `"[redacted]"`) || !strings.Contains(js, `"ROOTCA"`) {
		t.Errorf("-o json: private key not redacted or no ROOTCA:\n%.2000s", js)
	}

	statsURL := "http://" + podIP + ":15000/stats"
	rotations := func() int {
		_, body, err := get(statsURL, nil)
		if err != nil {
			t.Fatalf("GET %s: %v", statsURL, err)
		}
		m := regexp.MustCompile(`(?m)^skein\.secrets\.rotations: (\d+)$`).FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("no skein.secrets.rotations in %s", statsURL)
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	before := rotations()
	// 7 s of traffic spans at least three rotations at a 2 s half-life.
	var ok, failed int
	for end := time.Now().Add(7 * time.Second); time.Now().Before(end); {
		code, body, err := get(m.ingress+"/productpage", nil)
		if err != nil || code != 200 || strings.Contains(body, "reviews-error") || strings.Contains(body, "details-error") {
			failed++
			t.Errorf("request during rotation: %d %v", code, err)
		} else {
			ok++
		}
		time.Sleep(50 * time.Millisecond)
	}
	after := rotations()
	t.Logf("%d requests ok, %d failed; productpage proxy rotated %d → %d", ok, failed, before, after)
	if after-before < 3 {
		t.Errorf("only %d rotations in 7 s with a 4 s certificate lifetime", after-before)
	}
	out = m.skein(t, "proxy-config", "secret", pod+".bookinfo")
	if now := serialRE.FindStringSubmatch(out); now == nil || now[1] == first[1] {
		t.Errorf("certificate not replaced (was %s):\n%s", first[1], out)
	}

	t.Run("proxy-config cluster", func(t *testing.T) {
		out := m.skein(t, "proxy-config", "cluster", pod+".bookinfo")
		t.Logf("%.1500s", out)
		for _, want := range []string{"SERVICE FQDN", "reviews.bookinfo.svc.cluster.local", "outbound", "inbound", "PassthroughCluster"} {
			if !strings.Contains(out, want) {
				t.Errorf("lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("proxy-config route", func(t *testing.T) {
		out := m.skein(t, "proxy-config", "route", pod+".bookinfo")
		if !strings.Contains(out, "VHOST NAME") || !strings.Contains(out, "reviews.bookinfo.svc.cluster.local:9080") {
			t.Errorf("route table:\n%s", out)
		}
	})
}
