package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// externalServer is a server outside the mesh (no sidecar, started by the
// test itself) on a loopback address; it records who called it.
type externalServer struct {
	name string
	addr string // ip:port
	srv  *http.Server
	mu   sync.Mutex
	from []string // remote IPs, in order
}

func startExternal(t *testing.T, name, ip string, port int) *externalServer {
	t.Helper()
	if port == 0 {
		port = freePort(t, ip)
	}
	l, err := net.Listen("tcp", fmt.Sprintf("%s:%d", ip, port))
	if err != nil {
		t.Fatalf("external server %s: %v", name, err)
	}
	e := &externalServer{name: name, addr: l.Addr().String()}
	e.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		e.mu.Lock()
		e.from = append(e.from, host)
		e.mu.Unlock()
		fmt.Fprintf(w, "external %s host=%s\n", e.name, r.Host)
	})}
	go e.srv.Serve(l)
	t.Cleanup(func() { e.srv.Close() })
	return e
}

// calls returns how many requests the server saw and the last caller's IP.
func (e *externalServer) calls() (int, string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.from) == 0 {
		return 0, ""
	}
	return len(e.from), e.from[len(e.from)-1]
}

// viaSidecar sends an absolute-form request to a sidecar's 15001, exactly
// what the app does with HTTP_PROXY set.
func viaSidecar(sidecarIP, target string) (int, string, error) {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: sidecarIP + ":15001"}), DisableKeepAlives: true}}
	resp, err := c.Get(target)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// TestEgress walks Istio's egress tasks on Bookinfo, with "external"
// services on loopback addresses outside the mesh: a ServiceEntry makes a
// host reachable by name, ALLOW_ANY passes unknown destinations through and
// REGISTRY_ONLY refuses them, and an egress gateway carries the traffic
// for the external host out of the mesh.
func TestEgress(t *testing.T) {
	m := startMesh(t, "samples/bookinfo")
	api := startExternal(t, "api", "127.0.10.1", 0)
	// unknown: not in the registry, on a mesh HTTP port (9080, Bookinfo's)
	// and on a port no service uses.
	unknownHTTP := startExternal(t, "unknown-http", "127.0.10.2", 9080)
	unknownTCP := startExternal(t, "unknown", "127.0.10.2", 0)
	_, apiPort, _ := net.SplitHostPort(api.addr)
	pp := podIP(t, m, "productpage-v1")

	m.apply(t, fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: bookinfo}
spec:
  hosts: [api.example.test]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.10.1, ports: {http: %s}}]
`, apiPort))

	t.Run("ServiceEntry STATIC by name", func(t *testing.T) {
		eventually(t, 20*time.Second, "api.example.test through productpage's sidecar", func() error {
			code, body, err := viaSidecar(pp, "http://api.example.test/")
			if err != nil {
				return err
			}
			if code != http.StatusOK || !strings.Contains(body, "external api host=api.example.test") {
				return fmt.Errorf("status %d: %.200s", code, body)
			}
			return nil
		})
		n, from := api.calls()
		t.Logf("api.example.test answered %d requests, last from %s (productpage pod %s)", n, from, pp)
	})

	t.Run("ALLOW_ANY passes unknown hosts through", func(t *testing.T) {
		for _, e := range []*externalServer{unknownHTTP, unknownTCP} {
			code, body, err := viaSidecar(pp, "http://"+e.addr+"/")
			if err != nil || code != http.StatusOK || !strings.Contains(body, "external "+e.name) {
				t.Errorf("%s under ALLOW_ANY: %d %v %.200s", e.addr, code, err, body)
			}
		}
	})

	t.Run("REGISTRY_ONLY refuses unknown hosts", func(t *testing.T) {
		m.apply(t, `apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    outboundTrafficPolicy:
      mode: REGISTRY_ONLY
`)
		eventually(t, 20*time.Second, "502 for an unknown host on an HTTP port", func() error {
			code, body, err := viaSidecar(pp, "http://"+unknownHTTP.addr+"/")
			if err != nil {
				return err
			}
			if code != http.StatusBadGateway {
				return fmt.Errorf("status %d: %.200s", code, body)
			}
			return nil
		})
		before, _ := unknownTCP.calls()
		code, body, err := viaSidecar(pp, "http://"+unknownTCP.addr+"/")
		if err == nil && code == http.StatusOK {
			t.Errorf("unknown port under REGISTRY_ONLY: %d %.200s, want refused", code, body)
		}
		if after, _ := unknownTCP.calls(); after != before {
			t.Errorf("the unknown server was reached under REGISTRY_ONLY")
		}
		t.Logf("unknown port under REGISTRY_ONLY: status %d err %v", code, err)
		code, body, err = viaSidecar(pp, "http://api.example.test/")
		if err != nil || code != http.StatusOK || !strings.Contains(body, "external api") {
			t.Errorf("ServiceEntry host under REGISTRY_ONLY: %d %v %.200s", code, err, body)
		}
		if got := m.stars(t, ""); got == "reviews-error" {
			t.Errorf("Bookinfo broke under REGISTRY_ONLY: %s", got)
		}
	})

	t.Run("egress gateway", func(t *testing.T) {
		eg := podIP(t, m, "istio-egressgateway")
		m.apply(t, `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: istio-egressgateway, namespace: bookinfo}
spec:
  selector: {istio: egressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [api.example.test]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: egressgateway-for-api, namespace: bookinfo}
spec:
  host: istio-egressgateway.istio-system.svc.cluster.local
  subsets: [{name: api}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: direct-api-through-egress-gateway, namespace: bookinfo}
spec:
  hosts: [api.example.test]
  gateways: [istio-egressgateway, mesh]
  http:
  - match: [{gateways: [mesh], port: 80}]
    route:
    - destination: {host: istio-egressgateway.istio-system.svc.cluster.local, subset: api, port: {number: 80}}
      weight: 100
  - match: [{gateways: [istio-egressgateway], port: 80}]
    route:
    - destination: {host: api.example.test, port: {number: 80}}
      weight: 100
`)
		const stat = "cluster.outbound|80||api.example.test.upstream_rq_200"
		eventually(t, 30*time.Second, "api.example.test reached from the egress gateway's pod IP", func() error {
			before := statValue(t, eg, stat)
			code, body, err := viaSidecar(pp, "http://api.example.test/")
			if err != nil {
				return err
			}
			if code != http.StatusOK || !strings.Contains(body, "external api") {
				return fmt.Errorf("status %d: %.200s", code, body)
			}
			if _, from := api.calls(); from != eg {
				return fmt.Errorf("request came from %s, want the egress gateway %s", from, eg)
			}
			if after := statValue(t, eg, stat); after <= before {
				return fmt.Errorf("egress gateway %s: %s %d → %d", eg, stat, before, after)
			}
			return nil
		})
		t.Logf("api.example.test reached through the egress gateway at %s", eg)
	})
}

// proxySynced reports whether a `skein proxy-status` line shows a proxy in
// sync. The built-in egress gateway has no routes until a Gateway selects
// it, so its RDS is NOT SENT, as istioctl shows for an idle gateway.
func proxySynced(line string) bool {
	if strings.HasPrefix(line, "istio-egressgateway-") {
		return strings.Count(line, "SYNCED") == 3 && strings.Contains(line, "NOT SENT") || strings.Count(line, "SYNCED") == 4
	}
	return strings.Count(line, "SYNCED") == 4
}

// allProxiesSynced applies proxySynced to every proxy of a proxy-status table.
func allProxiesSynced(out string) bool {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, l := range lines[1:] {
		if !proxySynced(l) {
			return false
		}
	}
	return true
}
