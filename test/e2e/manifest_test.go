package e2e

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// labels are Kubernetes labels or a label selector.
type labels map[string]string

// workload is the Deployment shape of the test applications here: one
// container running a command (usually this test binary, re-executed as
// the app) and listening on one port, optionally behind a Service of the
// same name that selects its pods.
type workload struct {
	name, namespace string
	labels          labels // the Deployment's selector, and pod labels
	podLabels       labels // more pod labels, outside the selector (sidecar.istio.io/inject)
	replicas        int    // 0 leaves the default, 1
	container       string // the container's name; "server" when empty
	command         []string
	port            int
	servicePort     string // when set, the name of the port of a Service named like the workload
}

// yaml renders the workload's Service (when it has one) and Deployment.
func (w workload) yaml() string {
	var b strings.Builder
	if w.servicePort != "" {
		b.WriteString(service(w.name, w.namespace, w.labels, w.servicePort, w.port))
		b.WriteString("---\n")
	}
	fmt.Fprintf(&b, "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: %q, namespace: %q}\nspec:\n", w.name, w.namespace)
	if w.replicas > 0 {
		fmt.Fprintf(&b, "  replicas: %d\n", w.replicas)
	}
	pod := maps.Clone(w.labels)
	maps.Copy(pod, w.podLabels)
	container := w.container
	if container == "" {
		container = "server"
	}
	fmt.Fprintf(&b, "  selector: {matchLabels: %s}\n", w.labels.flow())
	fmt.Fprintf(&b, "  template:\n    metadata: {labels: %s}\n", pod.flow())
	fmt.Fprintf(&b, "    spec:\n      containers:\n      - name: %q\n", container)
	fmt.Fprintf(&b, "        command: %s\n", flowList(w.command))
	fmt.Fprintf(&b, "        ports: [{containerPort: %d}]\n", w.port)
	return b.String()
}

// service renders a Service exposing one port of the pods selector picks.
func service(name, namespace string, selector labels, portName string, port int) string {
	return fmt.Sprintf("apiVersion: v1\nkind: Service\nmetadata: {name: %q, namespace: %q}\nspec:\n  selector: %s\n  ports: [{name: %q, port: %d}]\n",
		name, namespace, selector.flow(), portName, port)
}

// manifests joins YAML documents into one stream.
func manifests(docs ...string) string {
	for i, d := range docs {
		docs[i] = strings.TrimSpace(d) + "\n"
	}
	return strings.Join(docs, "---\n")
}

// flow renders l as a YAML flow mapping, keys sorted so that the text is
// stable; every scalar is quoted so that values like "true" stay strings.
func (l labels) flow() string {
	parts := make([]string, 0, len(l))
	for _, k := range slices.Sorted(maps.Keys(l)) {
		parts = append(parts, strconv.Quote(k)+": "+strconv.Quote(l[k]))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// flowList renders ss as a YAML flow sequence of quoted strings.
func flowList(ss []string) string {
	parts := make([]string, len(ss))
	for i, s := range ss {
		parts[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}
