package cli

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/skein-mesh/skein/internal/config"
)

// pinClock makes every AGE "42s": the objects of one apply share their
// creation second.
func pinClock(t *testing.T, cp *controlPlane, kind string) {
	t.Helper()
	created := cp.store.Snapshot().List(kind)[0].Meta.CreationTimestamp
	clock = func() time.Time { return created.Add(42 * time.Second) }
	t.Cleanup(func() { clock = time.Now })
}

func TestGetTables(t *testing.T) {
	cp := newControlPlane(t)
	cp.mustRun(t, "apply", "-f", tutorialDir)
	pinClock(t, cp, "VirtualService")

	tests := []struct {
		args []string
		want string
	}{
		{[]string{"get", "virtualservices"}, `
NAME                 GATEWAYS               HOSTS                    AGE
bookinfo             ["bookinfo-gateway"]   ["*"]                    42s
reviews                                     ["reviews"]              42s
unreliable-service                          ["unreliable-service"]   42s
`},
		{[]string{"get", "dr"}, `
NAME                      HOST      AGE
reviews                   reviews   42s
reviews-circuit-breaker   reviews   42s
`},
		{[]string{"get", "gateway", "bookinfo-gateway"}, `
NAME               AGE
bookinfo-gateway   42s
`},
		{[]string{"get", "peerauthentication,authorizationpolicy"}, `
NAME                                           MODE     AGE
peerauthentication.security.istio.io/default   STRICT   42s

NAME                                                       ACTION   AGE
authorizationpolicy.security.istio.io/productpage-viewer   ALLOW    42s
`},
		{[]string{"get", "vs/reviews", "dr/reviews", "--show-labels"}, `
NAME                                         GATEWAYS   HOSTS         AGE   LABELS
virtualservice.networking.istio.io/reviews              ["reviews"]   42s   <none>

NAME                                          HOST      AGE   LABELS
destinationrule.networking.istio.io/reviews   reviews   42s   <none>
`},
		{[]string{"get", "dr", "-A"}, `
NAMESPACE   NAME                      HOST      AGE
default     reviews                   reviews   42s
default     reviews-circuit-breaker   reviews   42s
`},
		{[]string{"get", "vs", "-o", "name"}, `
virtualservice.networking.istio.io/bookinfo
virtualservice.networking.istio.io/reviews
virtualservice.networking.istio.io/unreliable-service
`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			out := cp.mustRun(t, tt.args...)
			if out != strings.TrimPrefix(tt.want, "\n") {
				t.Errorf("got:\n%s\nwant:\n%s", out, strings.TrimPrefix(tt.want, "\n"))
			}
		})
	}
}

func TestGetKubernetesKinds(t *testing.T) {
	cp := newControlPlane(t)
	objs, _, err := config.LoadReader("k8s.yaml", strings.NewReader(`apiVersion: v1
kind: Namespace
metadata: {name: bookinfo}
---
apiVersion: v1
kind: Service
metadata:
  name: reviews
  namespace: bookinfo
  labels: {app: reviews, service: reviews}
spec:
  clusterIP: 10.96.0.12
  selector: {app: reviews}
  ports:
  - {name: http, port: 9080}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews-v1, namespace: bookinfo}
spec:
  replicas: 1
  selector: {matchLabels: {app: reviews, version: v1}}
  template:
    metadata: {labels: {app: reviews, version: v1}}
    spec:
      containers:
      - {name: reviews, image: reviews:v1}
status: {readyReplicas: 1, updatedReplicas: 1, availableReplicas: 1, replicas: 1}
---
apiVersion: v1
kind: Pod
metadata: {name: reviews-v1-abc, namespace: bookinfo, labels: {app: reviews, version: v1}}
spec:
  nodeName: laptop
  containers:
  - {name: reviews, image: reviews:v1}
status:
  phase: Running
  podIP: 127.0.1.5
  containerStatuses:
  - {name: reviews, ready: true, restartCount: 2, image: reviews:v1, imageID: "", state: {running: {}}}
`), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cp.store.Apply(objs); err != nil {
		t.Fatal(err)
	}
	pinClock(t, cp, "Pod")
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"get", "ns"}, `
NAME       STATUS   AGE
bookinfo   Active   42s
`},
		{[]string{"get", "svc", "-n", "bookinfo", "-o", "wide"}, `
NAME      TYPE        CLUSTER-IP   EXTERNAL-IP   PORT(S)    AGE   SELECTOR
reviews   ClusterIP   10.96.0.12   <none>        9080/TCP   42s   app=reviews
`},
		{[]string{"get", "deploy", "-n", "bookinfo"}, `
NAME         READY   UP-TO-DATE   AVAILABLE   AGE
reviews-v1   1/1     1            1           42s
`},
		{[]string{"get", "pods", "-n", "bookinfo", "-o", "wide", "--show-labels"}, `
NAME             READY   STATUS    RESTARTS   AGE   IP          NODE     LABELS
reviews-v1-abc   1/1     Running   2          42s   127.0.1.5   laptop   app=reviews,version=v1
`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			out := cp.mustRun(t, tt.args...)
			if out != strings.TrimPrefix(tt.want, "\n") {
				t.Errorf("got:\n%s\nwant:\n%s", out, strings.TrimPrefix(tt.want, "\n"))
			}
		})
	}
}

func TestGetDocuments(t *testing.T) {
	cp := newControlPlane(t)
	cp.mustRun(t, "apply", "-f", tutorialDir)

	out := cp.mustRun(t, "get", "vs", "unreliable-service", "-o", "yaml")
	for _, want := range []string{"apiVersion: networking.istio.io/v1\n", "kind: VirtualService\n", "  name: unreliable-service\n",
		"  resourceVersion: \"1\"\n", "    timeout: 10s\n", "      perTryTimeout: 3s\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("yaml lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "kind: List") {
		t.Errorf("one named object must print alone:\n%s", out)
	}
	// What get -o yaml prints can be applied again unchanged.
	again, _, err := cp.run(t, out, "apply", "-f", "-")
	if err != nil || again != "virtualservice.networking.istio.io/unreliable-service unchanged\n" {
		t.Errorf("re-applying get -o yaml: %q %v", again, err)
	}

	out = cp.mustRun(t, "get", "dr", "-o", "json")
	var list struct {
		Kind  string           `json:"kind"`
		Items []map[string]any `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil || list.Kind != "List" || len(list.Items) != 2 {
		t.Errorf("json list: %v\n%s", err, out)
	}
	if !strings.HasPrefix(out, "{\n    \"apiVersion\": \"v1\",\n") {
		t.Errorf("json is not indented like kubectl's:\n%s", out)
	}

	out = cp.mustRun(t, "get", "se", "-o", "yaml")
	if out != "apiVersion: v1\nitems: []\nkind: List\nmetadata:\n  resourceVersion: \"\"\n" {
		t.Errorf("empty yaml list:\n%s", out)
	}
}

func TestGetMessages(t *testing.T) {
	cp := newControlPlane(t)
	cp.mustRun(t, "apply", "-f", tutorialDir)

	_, stderr, err := cp.run(t, "", "get", "gw", "-n", "other")
	if err != nil || stderr != "No resources found in other namespace.\n" {
		t.Errorf("empty namespace: %q %v", stderr, err)
	}
	_, stderr, _ = cp.run(t, "", "get", "se", "-A")
	if stderr != "No resources found\n" {
		t.Errorf("empty -A: %q", stderr)
	}
	out, _, err := cp.run(t, "", "get", "vs", "reviews", "nope")
	if err == nil || err.Error() != `Error from server (NotFound): virtualservices.networking.istio.io "nope" not found` {
		t.Errorf("missing name: %v", err)
	}
	if !strings.Contains(out, "reviews") {
		t.Errorf("the objects found must still print: %q", out)
	}
	if _, _, err := cp.run(t, "", "get", "frobs"); err == nil || err.Error() != `the server doesn't have a resource type "frobs"` {
		t.Errorf("unknown kind: %v", err)
	}
	if _, _, err := cp.run(t, "", "get", "vs", "-o", "xml"); err == nil || !strings.Contains(err.Error(), `output format "xml"`) {
		t.Errorf("bad -o: %v", err)
	}
}

func TestFormatHelpers(t *testing.T) {
	now := time.Date(2025, 1, 10, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		ago  time.Duration
		want string
	}{{5 * time.Second, "5s"}, {3*time.Minute + 10*time.Second, "3m10s"}, {90 * time.Minute, "90m"}, {5 * time.Hour, "5h"}, {50 * time.Hour, "2d2h"}} {
		if got := formatAge(now.Add(-tt.ago), now); got != tt.want {
			t.Errorf("age of %v = %q, want %q", tt.ago, got, tt.want)
		}
	}
	if got := formatAge(time.Time{}, now); got != "<unknown>" {
		t.Errorf("zero age = %q", got)
	}
	pod := &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{
		{State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}}}}}
	if got := podStatus(pod); got != "CrashLoopBackOff" {
		t.Errorf("pod status = %q", got)
	}
	if got := podStatus(&corev1.Pod{}); got != "Pending" {
		t.Errorf("empty pod status = %q", got)
	}
	svc := &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80, NodePort: 30080}, {Port: 443, Protocol: corev1.ProtocolUDP}}}}
	if got := servicePorts(svc) + " " + externalIP(svc); got != "80:30080/TCP,443/UDP <pending>" {
		t.Errorf("service columns = %q", got)
	}
}
