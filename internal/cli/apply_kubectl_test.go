package cli

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skein-mesh/skein/internal/config"
)

const (
	drReviews = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
  labels: {app: reviews}
spec:
  host: reviews
  subsets:
  - name: v1
    labels: {version: v1}
`
	vsBadWeight = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ratings
spec:
  hosts: [ratings]
  http:
  - route:
    - destination: {host: ratings, subset: v1}
    - destination: {host: ratings, subset: v2}
`
	vsRatings = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ratings
  labels: {app: ratings}
spec:
  hosts: [ratings]
  http:
  - route:
    - destination: {host: ratings}
`
)

func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if err != nil {
		return 1
	}
	return 0
}

func has(cp *controlPlane, kind, ns, name string) bool {
	_, ok := cp.store.Snapshot().Get(config.Key{Kind: kind, Namespace: ns, Name: name})
	return ok
}

// A multi-document apply with one bad document stores the others, reports
// the bad one with file, document, Kind/name and field, and exits 1.
func TestApplyPartial(t *testing.T) {
	cp := newControlPlane(t)
	file := filepath.Join(t.TempDir(), "mixed.yaml")
	writeFile(t, file, drReviews+"---\n"+vsBadWeight+"---\n"+vsRatings+"---\napiVersion: v1\nkind: Sevrice\nmetadata: {name: x}\n")
	out, stderr, err := cp.run(t, "", "apply", "-f", file)
	if exitCode(err) != 1 {
		t.Fatalf("exit %d (%v), want 1", exitCode(err), err)
	}
	if out != "destinationrule.networking.istio.io/reviews created\nvirtualservice.networking.istio.io/ratings created\n" {
		t.Errorf("stdout %q", out)
	}
	for _, want := range []string{
		"error: " + file + " (document 2): VirtualService/ratings spec.http[0].route: total destination weight = 0",
		"error: " + file + ` (document 4): Sevrice/x kind: unknown kind "Sevrice" in apiVersion "v1" (did you mean "Service"?)`,
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if !has(cp, "DestinationRule", "default", "reviews") {
		t.Error("the valid document was not stored")
	}
	// Document 3 shares its name with bad document 2 but is valid:
	// kubectl stores it, so Skein does.
	if !has(cp, "VirtualService", "default", "ratings") {
		t.Error("valid document 3 was not stored")
	}
}

func TestApplyDryRun(t *testing.T) {
	cp := newControlPlane(t)
	for _, tc := range []struct{ flag, want string }{
		{"--dry-run=server", "destinationrule.networking.istio.io/reviews created (server dry run)\n"},
		{"--dry-run=client", "destinationrule.networking.istio.io/reviews created (dry run)\n"},
		{"--dry-run", "destinationrule.networking.istio.io/reviews created (dry run)\n"},
	} {
		out, _, err := cp.run(t, drReviews, "apply", "-f", "-", tc.flag)
		if err != nil || out != tc.want || cp.store.Revision() != 0 {
			t.Errorf("%s: %q %v, revision %d", tc.flag, out, err, cp.store.Revision())
		}
	}
	cp.mustRunStdin(t, drReviews, "apply", "-f", "-")
	out, _, _ := cp.run(t, drReviews, "apply", "-f", "-", "--dry-run=client")
	if out != "destinationrule.networking.istio.io/reviews unchanged (dry run)\n" {
		t.Errorf("client dry run of an unchanged object: %q", out)
	}
	changed := strings.Replace(drReviews, "version: v1}", "version: v2}", 1)
	for _, flag := range []string{"--dry-run=client", "--dry-run=server"} {
		out, _, _ = cp.run(t, changed, "apply", "-f", "-", flag)
		if !strings.HasPrefix(out, "destinationrule.networking.istio.io/reviews configured (") || cp.store.Revision() != 1 {
			t.Errorf("%s of a change: %q, revision %d", flag, out, cp.store.Revision())
		}
	}
	if _, _, err := cp.run(t, drReviews, "apply", "-f", "-", "--dry-run=maybe"); err == nil || !strings.Contains(err.Error(), `invalid dry-run value (maybe)`) {
		t.Errorf("bad --dry-run: %v", err)
	}
}

func TestApplyServerSide(t *testing.T) {
	cp := newControlPlane(t)
	out, _, err := cp.run(t, drReviews, "apply", "-f", "-", "--server-side", "--field-manager", "team-a")
	if err != nil || out != "destinationrule.networking.istio.io/reviews serverside-applied\n" {
		t.Fatalf("%q %v", out, err)
	}
	obj, _ := cp.store.Snapshot().Get(config.Key{Kind: "DestinationRule", Namespace: "default", Name: "reviews"})
	if obj.Meta.Annotations[FieldManagerAnnotation] != "team-a" {
		t.Errorf("field manager not recorded: %v", obj.Meta.Annotations)
	}
	_, _, err = cp.run(t, drReviews, "apply", "-f", "-", "--server-side", "--field-manager", "team-b")
	if err == nil || !strings.Contains(err.Error(), `conflict with "team-a"`) {
		t.Errorf("second manager: %v", err)
	}
	out, _, err = cp.run(t, drReviews, "apply", "-f", "-", "--server-side", "--field-manager", "team-b", "--force-conflicts")
	if err != nil || !strings.Contains(out, "serverside-applied") {
		t.Errorf("forced: %q %v", out, err)
	}
	obj, _ = cp.store.Snapshot().Get(config.Key{Kind: "DestinationRule", Namespace: "default", Name: "reviews"})
	if obj.Meta.Annotations[FieldManagerAnnotation] != "team-b" {
		t.Errorf("forced apply did not take ownership: %v", obj.Meta.Annotations)
	}
	if _, _, err := cp.run(t, drReviews, "apply", "-f", "-", "--force-conflicts"); err == nil {
		t.Error("--force-conflicts without --server-side accepted")
	}
}

func TestApplyPrune(t *testing.T) {
	cp := newControlPlane(t)
	cp.mustRunStdin(t, drReviews+"---\n"+vsRatings, "apply", "-f", "-")
	other := strings.ReplaceAll(vsRatings, "ratings", "details")
	cp.mustRunStdin(t, other, "apply", "-f", "-")

	if _, _, err := cp.run(t, drReviews, "apply", "-f", "-", "--prune"); err == nil || !strings.Contains(err.Error(), "specify a label selector") {
		t.Errorf("--prune without -l: %v", err)
	}
	// Only the DestinationRule is applied: VirtualService ratings matches
	// the selector and is pruned; details does not match and stays.
	out, _, err := cp.run(t, drReviews, "apply", "-f", "-", "--prune", "-l", "app in (reviews, ratings)", "--dry-run=server")
	if err != nil || !strings.Contains(out, "virtualservice.networking.istio.io/ratings pruned (server dry run)") || !has(cp, "VirtualService", "default", "ratings") {
		t.Errorf("dry-run prune: %q %v", out, err)
	}
	out, _, err = cp.run(t, drReviews, "apply", "-f", "-", "--prune", "-l", "app in (reviews, ratings)")
	want := "destinationrule.networking.istio.io/reviews unchanged\nvirtualservice.networking.istio.io/ratings pruned\n"
	if err != nil || out != want {
		t.Errorf("prune: %q %v, want %q", out, err, want)
	}
	if has(cp, "VirtualService", "default", "ratings") || !has(cp, "VirtualService", "default", "details") || !has(cp, "DestinationRule", "default", "reviews") {
		t.Error("prune removed the wrong objects")
	}
}

func TestDiff(t *testing.T) {
	cp := newControlPlane(t)
	out, _, err := cp.run(t, drReviews, "diff", "-f", "-")
	if exitCode(err) != 1 || !strings.Contains(out, "diff -u -N /tmp/LIVE/networking.istio.io.v1.DestinationRule.default.reviews /tmp/MERGED/networking.istio.io.v1.DestinationRule.default.reviews") ||
		!strings.Contains(out, "+  host: reviews\n") {
		t.Errorf("new object: exit %d\n%s", exitCode(err), out)
	}
	cp.mustRunStdin(t, drReviews, "apply", "-f", "-")
	out, _, err = cp.run(t, drReviews, "diff", "-f", "-")
	if err != nil || out != "" {
		t.Errorf("no change: exit %d\n%s", exitCode(err), out)
	}
	changed := strings.Replace(drReviews, "version: v1}", "version: v2}", 1)
	out, _, err = cp.run(t, changed, "diff", "-f", "-")
	if exitCode(err) != 1 || !strings.Contains(out, "-      version: v1\n+      version: v2\n") || !strings.Contains(out, "--- /tmp/LIVE/") {
		t.Errorf("change: exit %d\n%s", exitCode(err), out)
	}
	_, _, err = cp.run(t, vsBadWeight, "diff", "-f", "-")
	if exitCode(err) != 2 {
		t.Errorf("invalid input: exit %d, want 2", exitCode(err))
	}
}

// The Gateway API's Gateway and Istio's Gateway share a Kind but never a
// list: each is stored, listed and deleted on its own.
func TestGatewayKindsApart(t *testing.T) {
	cp := newControlPlane(t)
	both := `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ['*']
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: istio
  listeners:
  - {name: http, port: 80, protocol: HTTP}
`
	out, stderr, err := cp.run(t, both, "apply", "-f", "-")
	if err != nil || out != "gateway.networking.istio.io/gw created\ngateway.gateway.networking.k8s.io/gw created\n" {
		t.Fatalf("%q %v", out, err)
	}
	if !strings.Contains(stderr, "Warning: -") || !strings.Contains(stderr, "Skein does not program Gateway API resources yet") {
		t.Errorf("no kubectl-style warning:\n%s", stderr)
	}
	if len(cp.store.Snapshot().List("Gateway")) != 1 || len(cp.store.Snapshot().List("Gateway."+config.GatewayAPIGroup)) != 1 {
		t.Error("the two Gateway kinds share a list")
	}
	out = cp.mustRun(t, "get", "gateways.gateway.networking.k8s.io")
	if !strings.Contains(out, "gw") {
		t.Errorf("get: %q", out)
	}
	cp.mustRun(t, "delete", "gateways.gateway.networking.k8s.io", "gw")
	if len(cp.store.Snapshot().List("Gateway")) != 1 || len(cp.store.Snapshot().List("Gateway."+config.GatewayAPIGroup)) != 0 {
		t.Error("delete removed the wrong Gateway")
	}
}
