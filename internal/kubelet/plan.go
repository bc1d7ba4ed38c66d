package kubelet

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// HostIP is the node's address as pods see it (status.hostIP).
const HostIP = "127.0.0.1"

// builtinPrograms are programs of the skein binary a container may name as
// its command[0] when no such executable is on PATH: `bookinfo details`
// runs as `<skein> bookinfo details`. The value is the subcommand prefix.
var builtinPrograms = map[string][]string{
	"bookinfo": {"bookinfo"},
	"skein":    nil,
}

// Plan is everything decided about one pod before it starts; it does
// not change afterwards.
type Plan struct {
	Deployment   string // name of the owning Deployment
	Name         string
	Namespace    string
	UID          string
	TemplateHash string
	Mode         proxyMode
	PodIP        netip.Addr
	AppIP        netip.Addr // valid only with a sidecar
	Dir          string     // working directory of the app containers
	Created      time.Time
	// Pod is the Kubernetes Pod as registered in the store, status aside.
	Pod        *corev1.Pod
	Containers []ContainerPlan
	Restart    restartPolicy
}

// ContainerPlan is one process of a pod, or the reason it cannot run.
type ContainerPlan struct {
	Name    string
	Argv    []string
	Env     []string
	Dir     string
	Ports   []int // TCP ports that must accept connections for readiness
	ProbeIP netip.Addr
	IsProxy bool
	// HTTPProbe replaces the default readiness check with the container's
	// readinessProbe httpGet, when it has one.
	HTTPProbe *HTTPProbe
	Err       error // a configuration error: the container is never started
}

// HTTPProbe is a readinessProbe's httpGet on the container's address.
type HTTPProbe struct {
	Port int
	Path string
}

// Resolve finds argv[0]: a path is used as is (relative to the working
// directory), a bare name is looked up on PATH and then among the skein
// binary's built-in programs.
func Resolve(executable string, lookPath func(string) (string, error), argv []string) ([]string, error) {
	name := argv[0]
	if strings.ContainsRune(name, '/') {
		return argv, nil
	}
	if path, err := lookPath(name); err == nil {
		return append([]string{path}, argv[1:]...), nil
	}
	if prefix, ok := builtinPrograms[name]; ok {
		out := append([]string{executable}, prefix...)
		return append(out, argv[1:]...), nil
	}
	return nil, fmt.Errorf("executable %q not found in $PATH and not a built-in program of skein (%s)", name, strings.Join(slices.Sorted(maps.Keys(builtinPrograms)), ", "))
}

// ContainerPorts lists the TCP ports a pod's containers declare.
func ContainerPorts(spec *corev1.PodSpec) []int {
	var ports []int
	for _, c := range spec.Containers {
		for _, p := range c.Ports {
			if p.Protocol == "" || p.Protocol == corev1.ProtocolTCP {
				ports = append(ports, int(p.ContainerPort))
			}
		}
	}
	return ports
}
