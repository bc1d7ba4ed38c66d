package local

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skein-mesh/skein/internal/kubelet"
)

// Istio's labels the injector adds to every injected pod.
const (
	labelTLSMode           = "security.istio.io/tlsMode"
	labelCanonicalName     = "service.istio.io/canonical-name"
	labelCanonicalRevision = "service.istio.io/canonical-revision"
	labelIstio             = "istio"
	// annotationRunner marks the Pods this runner registered, so a later run
	// can tell its own stale Pods from Pods someone applied.
	annotationRunner = "local.skein.dev/runner"
	adminPort        = 15000
	localNodeName    = "local"
)

// planner turns a Deployment's pod template into a kubelet.Plan.
type planner struct {
	Executable     string // the skein binary
	DiscoveryAddr  string // xDS address handed to proxies
	IngressAddress string // where the ingress gateway binds
	LogLevel       string // passed to proxies as SKEIN_LOG_LEVEL
	TokenDir       string // proxies read their token from TokenDir/<ns>/<pod> (empty: none)
	// DiscoveryRoot is the mesh root proxies verify discovery's TLS with
	// (empty: plaintext xDS).
	DiscoveryRoot string
	HostEnv       []string
	LookPath      func(string) (string, error)
	ConfigMaps    kubelet.ConfigMapLookup
}

// podInstance are the per-pod choices made by the controller.
type podInstance struct {
	Name, UID    string
	Mode         proxyMode
	PodIP, AppIP netip.Addr
	Dir          string
	Created      time.Time
}

// plan describes how to run one pod of d.
func (pl *planner) plan(d *appsv1.Deployment, in podInstance) *kubelet.Plan {
	tmpl := d.Spec.Template.DeepCopy()
	hash := templateHash(&d.Spec.Template)
	sa := tmpl.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	labels := map[string]string{}
	for k, v := range tmpl.Labels {
		labels[k] = v
	}
	labels[labelPodTemplateHash] = hash
	annotations := map[string]string{}
	for k, v := range tmpl.Annotations {
		annotations[k] = v
	}
	annotations[annotationRunner] = "skein-up"
	if in.Mode != noProxy {
		addInjectedLabels(labels, d.Name, in.Mode)
		annotations[annotationSidecarStatus] = sidecarStatus(in.Mode)
	}
	p := &kubelet.Plan{
		Deployment: d.Name, Name: in.Name, Namespace: d.Namespace, UID: in.UID,
		TemplateHash: hash, Mode: in.Mode, PodIP: in.PodIP, AppIP: in.AppIP,
		Dir: in.Dir, Created: in.Created,
	}
	id := kubelet.Identity{
		Name: in.Name, Namespace: d.Namespace, UID: in.UID, ServiceAccount: sa,
		NodeName: localNodeName, Labels: labels, Annotations: annotations,
		PodIP: in.PodIP, AppIP: in.AppIP, HostIP: kubelet.HostIP, Sidecar: in.Mode == sidecarProxy,
	}
	appListen := in.PodIP
	if in.Mode == sidecarProxy {
		appListen = in.AppIP
	}

	var registered []corev1.Container
	for i := range tmpl.Spec.Containers {
		c := &tmpl.Spec.Containers[i]
		if in.Mode == gatewayProxy && c.Name == proxyContainerName {
			continue // the gateway proxy takes this container's place
		}
		registered = append(registered, *c)
		cp := pl.appContainer(id, c, in.Dir)
		cp.ProbeIP = appListen
		p.Containers = append(p.Containers, cp)
	}
	if in.Mode != noProxy {
		proxy := pl.proxyContainer(id, labels, d, in.Mode)
		p.Containers = append(p.Containers, proxy)
		registered = append(registered, corev1.Container{
			Name:  proxyContainerName,
			Image: "skein",
			Args:  proxy.Argv[1:],
			Ports: []corev1.ContainerPort{{Name: "http-envoy-prom", ContainerPort: 15090, Protocol: corev1.ProtocolTCP}},
		})
	}
	if len(tmpl.Spec.InitContainers) > 0 {
		err := errors.New("initContainers are not supported by the local runner")
		for i := range p.Containers {
			if !p.Containers[i].IsProxy && p.Containers[i].Err == nil {
				p.Containers[i].Err = err
			}
		}
	}

	pod := &corev1.Pod{Spec: tmpl.Spec}
	pod.Name, pod.Namespace, pod.UID = in.Name, d.Namespace, types.UID(in.UID)
	pod.Labels, pod.Annotations = labels, annotations
	pod.GenerateName = d.Name + "-" + hash + "-"
	pod.OwnerReferences = replicaSetOwner(d.Name, hash)
	pod.Spec.ServiceAccountName = sa
	pod.Spec.NodeName = localNodeName
	pod.Spec.Containers = registered
	pod.Spec.InitContainers = nil
	p.Pod = pod
	return p
}

// appContainer plans one of the pod's own containers.
func (pl *planner) appContainer(id kubelet.Identity, c *corev1.Container, dir string) kubelet.ContainerPlan {
	cp := kubelet.ContainerPlan{Name: c.Name, Dir: dir}
	for _, port := range c.Ports {
		if port.Protocol == "" || port.Protocol == corev1.ProtocolTCP {
			cp.Ports = append(cp.Ports, int(port.ContainerPort))
		}
	}
	if len(c.Command) == 0 {
		cp.Err = fmt.Errorf("container %q has no command: the local runner runs programs, not images (image %q), so set command", c.Name, c.Image)
		return cp
	}
	vars, err := kubelet.ContainerEnv(id, c, pl.ConfigMaps)
	if err != nil {
		cp.Err = fmt.Errorf("container %q: %w", c.Name, err)
		return cp
	}
	lookup := kubelet.EnvLookup(vars)
	argv := make([]string, 0, len(c.Command)+len(c.Args))
	for _, s := range append(append([]string(nil), c.Command...), c.Args...) {
		argv = append(argv, kubelet.ExpandVars(s, lookup))
	}
	if c.WorkingDir != "" {
		cp.Dir = c.WorkingDir
	}
	resolved, err := kubelet.Resolve(pl.Executable, pl.LookPath, argv)
	if err != nil {
		cp.Err = fmt.Errorf("container %q: %w", c.Name, err)
		return cp
	}
	cp.Argv = resolved
	var drop []string
	if id.Sidecar {
		drop = kubelet.SidecarDropEnv
	}
	cp.Env = kubelet.ProcessEnv(pl.HostEnv, vars, drop)
	return cp
}

// proxyContainer plans the sidecar or gateway proxy: `skein proxy sidecar`
// or `skein proxy router` with the pod's identity.
func (pl *planner) proxyContainer(id kubelet.Identity, labels map[string]string, d *appsv1.Deployment, mode proxyMode) kubelet.ContainerPlan {
	argv := []string{pl.Executable, "proxy", "sidecar"}
	if mode == gatewayProxy {
		bind := id.PodIP.String()
		if labels[labelIstio] == "ingressgateway" {
			bind = pl.IngressAddress
		}
		argv = []string{pl.Executable, "proxy", "router", "--bind-address", bind}
	}
	argv = append(argv,
		"--discovery-address", pl.DiscoveryAddr,
		"--pod-ip", id.PodIP.String())
	if pl.DiscoveryRoot != "" {
		argv = append(argv, "--discovery-root-cert", pl.DiscoveryRoot)
	}
	if mode == sidecarProxy {
		argv = append(argv, "--app-ip", id.AppIP.String())
	}
	argv = append(argv,
		"--pod-name", id.Name,
		"--namespace", id.Namespace,
		"--service-account", id.ServiceAccount,
		"--labels", formatLabels(labels),
		"--workload-name", d.Name,
		"--admin-port", strconv.Itoa(adminPort))
	if pl.TokenDir != "" {
		argv = append(argv, "--token-file", filepath.Join(pl.TokenDir, id.Namespace, id.Name))
	}
	vars := kubelet.RunnerEnv(kubelet.Identity{Name: id.Name, Namespace: id.Namespace, ServiceAccount: id.ServiceAccount, PodIP: id.PodIP, AppIP: id.AppIP})
	if pl.LogLevel != "" {
		vars = append(vars, kubelet.EnvVar{Name: "SKEIN_LOG_LEVEL", Value: pl.LogLevel})
	}
	// The proxy dials upstreams itself; a host proxy setting must not
	// redirect it.
	drop := []string{"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"}
	return kubelet.ContainerPlan{
		Name:    proxyContainerName,
		Argv:    argv,
		Env:     kubelet.ProcessEnv(pl.HostEnv, vars, drop),
		IsProxy: true,
		ProbeIP: id.PodIP,
	}
}

// formatLabels renders labels as sorted k=v pairs joined by commas.
func formatLabels(labels map[string]string) string {
	parts := make([]string, 0, len(labels))
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		parts = append(parts, k+"="+labels[k])
	}
	return strings.Join(parts, ",")
}

// addInjectedLabels adds the labels Istio's injection templates put on a
// pod: the canonical service name and revision (telemetry, workload
// identity) and, for sidecars, the TLS mode endpoints advertise.
func addInjectedLabels(labels map[string]string, deployment string, mode proxyMode) {
	if mode == sidecarProxy {
		if _, ok := labels[labelTLSMode]; !ok {
			labels[labelTLSMode] = "istio"
		}
	}
	if _, ok := labels[labelCanonicalName]; !ok {
		labels[labelCanonicalName] = firstNonEmpty(labels["app.kubernetes.io/name"], labels["app"], deployment)
	}
	if _, ok := labels[labelCanonicalRevision]; !ok {
		labels[labelCanonicalRevision] = firstNonEmpty(labels["app.kubernetes.io/version"], labels["version"], "latest")
	}
}

// sidecarStatus is the sidecar.istio.io/status annotation of an injected pod.
func sidecarStatus(mode proxyMode) string {
	tmpl := "sidecar"
	if mode == gatewayProxy {
		tmpl = gatewayTemplate
	}
	b, _ := json.Marshal(map[string]any{
		"containers": []string{proxyContainerName},
		"templates":  []string{tmpl},
		"revision":   "default",
	})
	return string(b)
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// replicaSetOwner names the ReplicaSet Kubernetes would have created for
// this template, so tools that derive a workload name from the owner chain
// (as Istio does) find the Deployment.
func replicaSetOwner(deployment, hash string) []metav1.OwnerReference {
	yes := true
	return []metav1.OwnerReference{{
		APIVersion: "apps/v1", Kind: "ReplicaSet", Name: deployment + "-" + hash,
		Controller: &yes, BlockOwnerDeletion: &yes,
	}}
}
