package xdsserver

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skein-mesh/skein/internal/config"
	"github.com/skein-mesh/skein/internal/configstore"
	"github.com/skein-mesh/skein/internal/model"
	"github.com/skein-mesh/skein/internal/registry"
	"github.com/skein-mesh/skein/internal/xds"
)

// racePolicies is a service with a pod per proxy and policies whose
// creation order is the reverse of the store's namespace/name order, so any
// consumer that sorts a store slice by creation time in place writes to it.
func racePolicies(n, pods int) string {
	var b strings.Builder
	b.WriteString(`apiVersion: v1
kind: Service
metadata: {name: a, namespace: ns}
spec:
  selector: {app: a}
  ports: [{name: http, port: 8000}, {name: tcp, port: 9000}]
`)
	for i := range pods {
		fmt.Fprintf(&b, `---
apiVersion: v1
kind: Pod
metadata: {name: a-%d, namespace: ns, labels: {app: a, pod: "c%d"}}
spec: {containers: [{name: app, image: app}]}
status:
  phase: Running
  podIP: 127.20.0.%d
  conditions: [{type: Ready, status: "True"}]
`, i, i, i+1)
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range n {
		created := base.Add(time.Duration(n-i) * time.Minute).Format(time.RFC3339)
		fmt.Fprintf(&b, `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p-%02d, namespace: ns, creationTimestamp: "%s"}
spec:
  action: ALLOW
  rules: [{to: [{operation: {paths: ["/p%d"]}}]}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: r-%02d, namespace: ns, creationTimestamp: "%s"}
spec:
  jwtRules: [{issuer: "issuer-%d", jwks: '{"keys":[]}'}]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: pa-%02d, namespace: ns, creationTimestamp: "%s"}
spec:
  selector: {matchLabels: {pod: "c%d"}}
  mtls: {mode: STRICT}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: s-%02d, namespace: ns, creationTimestamp: "%s"}
spec:
  workloadSelector: {labels: {pod: "c%d"}}
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
`, i, created, i, i, created, i, i, created, i, i, created, i)
	}
	return b.String()
}

// TestConcurrentGenerationLeavesStoreSnapshotsAlone generates config for
// many proxies concurrently (as a push does) while another goroutine lists
// the same store snapshot, as the config API does. Store snapshots are
// immutable by contract: translation must never reorder the slices the
// store hands out. Run it with -race: an in-place sort is a data race even
// when the lister happens to see the right order.
func TestConcurrentGenerationLeavesStoreSnapshotsAlone(t *testing.T) {
	const proxies = 32
	objs, _, err := config.LoadReader("race.yaml", strings.NewReader(racePolicies(24, proxies)), "")
	if err != nil {
		t.Fatal(err)
	}
	store := configstore.OpenMemory()
	if _, err := store.Mirror(objs, nil); err != nil { // Mirror keeps the creation times
		t.Fatal(err)
	}
	snap := store.Snapshot()
	pc := model.NewPushContext("1", snap, registry.Build(snap, "cluster.local"), "cluster.local", "istio-system")

	srv := New(slog.New(slog.DiscardHandler), xds.Generate)
	for i := range proxies {
		// Each proxy is a pod of the service, so its inbound listeners
		// carry the policies.
		p := &model.Proxy{ID: fmt.Sprintf("sidecar~127.20.0.%d~a-%d.ns~ns.svc.cluster.local", i+1, i), Type: model.SidecarProxy,
			IP: fmt.Sprintf("127.20.0.%d", i+1), PodName: fmt.Sprintf("a-%d", i), Namespace: "ns",
			Labels: map[string]string{"app": "a", "pod": fmt.Sprintf("c%d", i)}}
		srv.proxies[p.ID] = &proxyState{proxy: p, wake: make(chan struct{}, 1),
			snap: map[string]*typeSnap{}, status: map[string]*TypeStatus{}, pending: map[string]time.Time{}}
	}

	kinds := []string{"AuthorizationPolicy", "RequestAuthentication", "PeerAuthentication", "Sidecar"}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var listErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, kind := range kinds {
				list := store.Snapshot().List(kind)
				for i := 1; i < len(list); i++ {
					a, b := list[i-1].Meta, list[i].Meta
					if a.Namespace+"/"+a.Name >= b.Namespace+"/"+b.Name {
						listErr = fmt.Errorf("store lists %s out of namespace/name order: %s/%s before %s/%s", kind, a.Namespace, a.Name, b.Namespace, b.Name)
						return
					}
				}
			}
		}
	}()
	// Generation on more goroutines than Push uses, so the test races even
	// on one core.
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, ps := range srv.proxies {
				xds.Generate(pc, ps.proxy)
			}
		}()
	}
	for range 3 {
		srv.Push(pc)
	}
	close(stop)
	wg.Wait()
	if listErr != nil {
		t.Fatal(listErr)
	}
	for id, ps := range srv.proxies {
		if len(ps.snap) != 4 {
			t.Fatalf("proxy %s got %d xDS types, want 4", id, len(ps.snap))
		}
	}
}
