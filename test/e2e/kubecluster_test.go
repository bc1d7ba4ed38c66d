package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/skein-mesh/skein/test/kubetest"
)

// The test cluster that Kubernetes mode's e2e tests run against is a real
// one: the controller manager turns a Deployment into a ReplicaSet and Pods,
// the scheduler finds no node for them, and service-account tokens from
// TokenRequest pass TokenReview for their audience only.
func TestKubeCluster(t *testing.T) {
	start := time.Now()
	c := kubetest.StartT(t)
	t.Logf("cluster up in %v (binaries included): %s", time.Since(start).Round(time.Millisecond), c.Server)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	kubectl := kubectlFor(ctx, c)
	kubectl(t, "", "create", "namespace", "x")
	kubectl(t, `
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: x}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web, version: v1}}
    spec:
      containers:
      - name: web
        image: skein.test/web:v1
        ports: [{containerPort: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: x}
spec:
  selector: {app: web}
  ports: [{name: http, port: 9080}]
`, "apply", "-f", "-")

	var svc struct {
		Spec struct{ ClusterIP string } `json:"spec"`
	}
	mustJSON(t, kubectl(t, "", "get", "service", "web", "-n", "x", "-o", "json"), &svc)
	ip, err := netip.ParseAddr(svc.Spec.ClusterIP)
	if err != nil || !netip.MustParsePrefix(c.ServiceCIDR).Contains(ip) {
		t.Errorf("Service web has ClusterIP %q, want one in %s", svc.Spec.ClusterIP, c.ServiceCIDR)
	}

	// The ReplicaSet controller creates the pods, the scheduler marks them
	// unschedulable (no node has registered).
	var rsName string
	var pods []kubePod
	deadline := time.Now().Add(90 * time.Second)
	for {
		var rsList struct{ Items []kubeObject }
		mustJSON(t, kubectl(t, "", "get", "replicasets", "-n", "x", "-l", "app=web", "-o", "json"), &rsList)
		var podList struct{ Items []kubePod }
		mustJSON(t, kubectl(t, "", "get", "pods", "-n", "x", "-l", "app=web", "-o", "json"), &podList)
		pods = podList.Items
		problem := checkWeb(rsList.Items, pods)
		if problem == "" {
			rsName = rsList.Items[0].Metadata.Name
			break
		}
		if time.Now().After(deadline) {
			out, _ := c.Kubectl(ctx, "get", "all,events", "-n", "x")
			t.Fatalf("%s\n%s", problem, out)
		}
		time.Sleep(500 * time.Millisecond)
	}
	for _, p := range pods {
		if p.Spec.ServiceAccountName != "default" {
			t.Errorf("pod %s: serviceAccountName %q, want default (ServiceAccount admission)", p.Metadata.Name, p.Spec.ServiceAccountName)
		}
		if !strings.HasPrefix(p.Metadata.Name, rsName+"-") {
			t.Errorf("pod %s is not named after ReplicaSet %s", p.Metadata.Name, rsName)
		}
	}

	// Workload identity: a token for the pods' service account, for the
	// audience the CA asks for.
	token := strings.TrimSpace(kubectl(t, "", "create", "token", "default", "-n", "x", "--audience", "istio-ca", "--duration", "1h"))
	if strings.Count(token, ".") != 2 {
		t.Fatalf("TokenRequest returned %q, not a JWT", token)
	}
	tests := []struct {
		name, token, audience string
		want                  bool
	}{
		{"valid", token, "istio-ca", true},
		{"other audience", token, "someone-else", false},
		{"tampered", token[:len(token)-4] + "AAAA", "istio-ca", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			review := fmt.Sprintf(`{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":%q,"audiences":[%q]}}`, tt.token, tt.audience)
			var got struct {
				Status struct {
					Authenticated bool
					User          struct{ Username string }
					Audiences     []string
					Error         string
				}
			}
			mustJSON(t, kubectl(t, review, "create", "-f", "-", "-o", "json"), &got)
			s := got.Status
			if s.Authenticated != tt.want {
				t.Fatalf("TokenReview authenticated = %v (error %q), want %v", s.Authenticated, s.Error, tt.want)
			}
			if tt.want && (s.User.Username != "system:serviceaccount:x:default" || !slices.Contains(s.Audiences, "istio-ca")) {
				t.Errorf("TokenReview user %q audiences %v, want system:serviceaccount:x:default for istio-ca", s.User.Username, s.Audiences)
			}
		})
	}
}

type kubeObject struct {
	Metadata struct {
		Name            string
		OwnerReferences []struct{ Kind, Name string }
	}
}

type kubePod struct {
	Metadata struct {
		Name            string
		OwnerReferences []struct{ Kind, Name string }
	}
	Spec struct {
		NodeName           string
		ServiceAccountName string
	}
	Status struct {
		Phase      string
		Conditions []struct{ Type, Status, Reason string }
	}
}

// checkWeb says what is not yet as expected of Deployment web's ReplicaSet
// and pods, or "".
func checkWeb(rs []kubeObject, pods []kubePod) string {
	if len(rs) != 1 {
		return fmt.Sprintf("%d ReplicaSets for app=web, want 1", len(rs))
	}
	if o := rs[0].Metadata.OwnerReferences; len(o) != 1 || o[0].Kind != "Deployment" || o[0].Name != "web" {
		return fmt.Sprintf("ReplicaSet %s owned by %v, want Deployment web", rs[0].Metadata.Name, o)
	}
	if len(pods) != 2 {
		return fmt.Sprintf("%d pods for app=web, want 2", len(pods))
	}
	for _, p := range pods {
		if o := p.Metadata.OwnerReferences; len(o) != 1 || o[0].Kind != "ReplicaSet" || o[0].Name != rs[0].Metadata.Name {
			return fmt.Sprintf("pod %s owned by %v, want ReplicaSet %s", p.Metadata.Name, o, rs[0].Metadata.Name)
		}
		if p.Status.Phase != "Pending" || p.Spec.NodeName != "" {
			return fmt.Sprintf("pod %s is %s on node %q, want Pending on none", p.Metadata.Name, p.Status.Phase, p.Spec.NodeName)
		}
		unschedulable := slices.ContainsFunc(p.Status.Conditions, func(c struct{ Type, Status, Reason string }) bool {
			return c.Type == "PodScheduled" && c.Status == "False" && c.Reason == "Unschedulable"
		})
		if !unschedulable {
			return fmt.Sprintf("pod %s has conditions %v, want PodScheduled False (Unschedulable) from the scheduler", p.Metadata.Name, p.Status.Conditions)
		}
	}
	return ""
}

func mustJSON(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("%v in %s", err, s)
	}
}
