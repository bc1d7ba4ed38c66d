package kubelet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Kubelet runs Kubernetes Pods — as the API server stores them, after
// admission and sidecar injection — as local processes on loopback
// addresses. It is the kubelet half of `skein up`'s controller (the same
// process supervision, readiness probing, environment and status), for the
// node agent `skein node`, which owns everything that talks to the cluster.
type Kubelet struct {
	opts  Options
	alloc *IPAllocator
}

// Options configure a Kubelet.
type Options struct {
	// Executable is the skein binary, run for built-in programs and for
	// the images that map to them (skein, bookinfo).
	Executable string
	// NodeName is the node the pods run on (the downward API's spec.nodeName).
	NodeName string
	// LogDir receives LogDir/<namespace>/<pod>/<container>.log.
	LogDir string
	// HostEnv is the environment every process starts from, before the
	// pod's own variables.
	HostEnv []string
	// LookPath finds commands on the host; default exec.LookPath.
	LookPath func(string) (string, error)
	Logger   *slog.Logger
	// Backoff and Probe are tunable for tests; zero means the defaults.
	Backoff Backoff
	Probe   ProbeConfig
}

// New returns a Kubelet handing out pod IPs from the node agent's
// loopback blocks (127.3.0.0/16 pod IPs, 127.4.0.0/16 app IPs), distinct
// from `skein up`'s.
func New(opts Options) (*Kubelet, error) {
	if opts.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("finding the skein executable: %w", err)
		}
		opts.Executable = exe
	}
	if opts.LogDir == "" {
		return nil, errors.New("kubelet: Options.LogDir is required")
	}
	if opts.LookPath == nil {
		opts.LookPath = exec.LookPath
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Backoff == (Backoff{}) {
		opts.Backoff = DefaultBackoff
	}
	if opts.Probe == (ProbeConfig{}) {
		opts.Probe = DefaultProbe
	}
	return &Kubelet{opts: opts, alloc: newNodeIPAllocator()}, nil
}

// PodResources is what the caller resolved from the cluster for one pod.
type PodResources struct {
	// ConfigMaps reads ConfigMaps for envFrom and configMapKeyRef.
	ConfigMaps func(namespace, name string) (data map[string]string, found bool, err error)
	// Volumes maps the pod's volume names to host directories holding
	// their files. Without a container file system, paths in a
	// container's command, args, env and workingDir that lie under one of
	// its volumeMounts are rewritten to the volume's directory.
	Volumes map[string]string
	// Dir is the working directory of containers whose workingDir is not
	// on a volume (an image's file system does not exist here).
	Dir string
}

// RunningPod is a pod whose processes the Kubelet runs.
type RunningPod struct {
	k *Kubelet
	p *Pod
}

// Run allocates the pod's addresses and starts its containers, the proxy
// first. A container that cannot run (an image with no program, a bad env
// reference) is reported in the status, not as an error; the error is for
// a pod that cannot run at all (no address left). changed is called from
// any goroutine whenever the pod's status changes.
func (k *Kubelet) Run(pod *corev1.Pod, res PodResources, changed func()) (*RunningPod, error) {
	mode := kubeProxyMode(pod)
	ports := ContainerPorts(&pod.Spec)
	if mode != noProxy {
		ports = append(ports, ProxyPorts...)
	}
	podIP, appIP, err := k.alloc.Allocate(mode == sidecarProxy, ports)
	if err != nil {
		return nil, fmt.Errorf("pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	plan := k.plan(pod, mode, podIP, appIP, res)
	k.opts.Logger.Info("starting pod", "pod", pod.Namespace+"/"+pod.Name, "ip", podIP, "proxy", mode)
	p := StartPod(plan, k.opts.LogDir, k.opts.Backoff, terminationGrace(pod), k.opts.Probe, k.opts.Logger, changed)
	return &RunningPod{k: k, p: p}, nil
}

// PodIP is the pod's address (where its sidecar, or its app, listens).
func (r *RunningPod) PodIP() netip.Addr { return r.p.plan.PodIP }

// AppIP is where the app of a sidecar pod listens; invalid without one.
func (r *RunningPod) AppIP() netip.Addr { return r.p.plan.AppIP }

// Proxy reports the proxy the pod runs: "sidecar", "gateway" or "".
func (r *RunningPod) Proxy() string {
	if r.p.plan.Mode == noProxy {
		return ""
	}
	return r.p.plan.Mode.String()
}

// Status returns the pod's status as the kubelet reports it, and a version
// that changes whenever something worth reporting did.
func (r *RunningPod) Status() (corev1.PodStatus, int64) {
	st, v := r.p.State()
	return PodStatus(r.p.plan, st), v
}

// Pids returns the process id of each running container, by name.
func (r *RunningPod) Pids() map[string]int {
	pids := map[string]int{}
	for i, c := range r.p.plan.Containers {
		if proc := r.p.procs[i]; proc != nil {
			if st := proc.Status(); st.Running {
				pids[c.Name] = st.Pid
			}
		}
	}
	return pids
}

// Stop terminates the pod's processes (SIGTERM, then SIGKILL when ctx is
// done or the pod's terminationGracePeriodSeconds pass: pass a context
// with the deletion's grace period) and releases its addresses.
func (r *RunningPod) Stop(ctx context.Context) {
	r.p.Stop(ctx)
	r.k.alloc.Release(r.p.plan.PodIP)
}

// kubeProxyMode reads which proxy an injected pod runs from its istio-proxy
// container: `proxy router` is a gateway, anything else a sidecar.
func kubeProxyMode(pod *corev1.Pod) proxyMode {
	for _, c := range pod.Spec.Containers {
		if c.Name != proxyContainerName {
			continue
		}
		argv := append(append([]string(nil), c.Command...), c.Args...)
		for i, a := range argv {
			if a == "proxy" && i+1 < len(argv) && argv[i+1] == "router" {
				return gatewayProxy
			}
		}
		return sidecarProxy
	}
	return noProxy
}

// terminationGrace is the pod's terminationGracePeriodSeconds (Kubernetes'
// default 30 s when unset).
func terminationGrace(pod *corev1.Pod) time.Duration {
	if s := pod.Spec.TerminationGracePeriodSeconds; s != nil {
		if *s <= 0 {
			return time.Millisecond // 0 means kill at once; 0 here would mean the default
		}
		return time.Duration(*s) * time.Second
	}
	return 30 * time.Second
}

func restartPolicyOf(pod *corev1.Pod) restartPolicy {
	switch pod.Spec.RestartPolicy {
	case corev1.RestartPolicyNever:
		return restartNever
	case corev1.RestartPolicyOnFailure:
		return restartOnFailure
	}
	return restartAlways
}

// plan turns a stored pod into a Plan; nothing is added to it (the
// injector already did), only resolved.
func (k *Kubelet) plan(pod *corev1.Pod, mode proxyMode, podIP, appIP netip.Addr, res PodResources) *Plan {
	pod = pod.DeepCopy()
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	created := pod.CreationTimestamp.Time
	if created.IsZero() {
		created = time.Now()
	}
	p := &Plan{
		Name: pod.Name, Namespace: pod.Namespace, UID: string(pod.UID), Mode: mode,
		PodIP: podIP, AppIP: appIP, Dir: res.Dir, Created: created, Pod: pod,
		Restart: restartPolicyOf(pod),
	}
	nodeName := pod.Spec.NodeName
	if nodeName == "" {
		nodeName = k.opts.NodeName
	}
	id := Identity{
		Name: pod.Name, Namespace: pod.Namespace, UID: string(pod.UID), ServiceAccount: sa,
		NodeName: nodeName, Labels: pod.Labels, Annotations: pod.Annotations,
		PodIP: podIP, AppIP: appIP, HostIP: HostIP, Sidecar: mode == sidecarProxy,
	}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		isProxy := mode != noProxy && c.Name == proxyContainerName
		cp := k.container(id, c, res, isProxy)
		p.Containers = append(p.Containers, cp)
	}
	if len(pod.Spec.InitContainers) > 0 {
		err := errors.New("initContainers are not supported by skein node")
		for i := range p.Containers {
			if p.Containers[i].Err == nil {
				p.Containers[i].Err = err
			}
		}
	}
	return p
}

// container plans one container of a stored pod.
func (k *Kubelet) container(id Identity, c *corev1.Container, res PodResources, isProxy bool) ContainerPlan {
	cp := ContainerPlan{Name: c.Name, Dir: res.Dir, IsProxy: isProxy, ProbeIP: id.PodIP}
	if !isProxy && id.Sidecar {
		cp.ProbeIP = id.AppIP
	}
	if isProxy {
		// The proxy dials upstreams itself: it must not get the app's
		// HTTP_PROXY.
		id.Sidecar = false
	}
	for _, port := range c.Ports {
		if port.Protocol == "" || port.Protocol == corev1.ProtocolTCP {
			cp.Ports = append(cp.Ports, int(port.ContainerPort))
		}
	}
	if err := readinessProbe(&cp, c); err != nil {
		cp.Err = fmt.Errorf("container %q: %w", c.Name, err)
		return cp
	}
	img, known := imageProgram(c.Image)
	command, args := c.Command, c.Args
	if len(command) == 0 {
		if !known {
			cp.Err = &imageError{fmt.Sprintf("container %q: image %q cannot run on a skein node: there is no container runtime, only programs; "+
				"use an image skein maps to a built-in program (%s) or set command to a program on the node", c.Name, c.Image, strings.Join(knownImageNames(), ", "))}
			return cp
		}
		command = img.Entrypoint
		if len(args) == 0 {
			args = img.Cmd
		}
	}
	vars, err := ContainerEnv(id, c, res.ConfigMaps)
	if err != nil {
		cp.Err = fmt.Errorf("container %q: %w", c.Name, err)
		return cp
	}
	mounts := mountMap(c, res.Volumes)
	for i := range vars {
		vars[i].Value = rewritePaths(vars[i].Value, mounts)
	}
	vars = append(append([]EnvVar(nil), img.Env...), vars...) // the image's ENV, then the pod's, which win
	lookup := EnvLookup(vars)
	argv := make([]string, 0, len(command)+len(args))
	for _, s := range append(append([]string(nil), command...), args...) {
		argv = append(argv, rewritePaths(ExpandVars(s, lookup), mounts))
	}
	if c.WorkingDir != "" {
		if dir := rewritePaths(c.WorkingDir, mounts); dir != c.WorkingDir {
			cp.Dir = dir
		}
	}
	if known {
		if prefix, ok := builtinPrograms[path.Base(argv[0])]; ok {
			// The image's own binary is a built-in of skein.
			argv = append(append([]string{k.opts.Executable}, prefix...), argv[1:]...)
		}
	}
	if argv[0] != k.opts.Executable {
		if argv, err = Resolve(k.opts.Executable, k.opts.LookPath, argv); err != nil {
			cp.Err = fmt.Errorf("container %q: %w", c.Name, err)
			return cp
		}
	}
	cp.Argv = argv
	drop := []string{"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"}
	if !isProxy && !id.Sidecar {
		drop = nil
	} else if !isProxy {
		drop = SidecarDropEnv
	}
	cp.Env = ProcessEnv(k.opts.HostEnv, vars, drop)
	return cp
}

// readinessProbe applies a container's readinessProbe: httpGet replaces
// the default check, tcpSocket narrows it to one port; exec probes cannot
// run without the image, so the default (declared ports) stands.
func readinessProbe(cp *ContainerPlan, c *corev1.Container) error {
	p := c.ReadinessProbe
	if p == nil {
		return nil
	}
	switch {
	case p.HTTPGet != nil:
		port, err := probePort(c, p.HTTPGet.Port)
		if err != nil {
			return fmt.Errorf("readinessProbe.httpGet.port: %w", err)
		}
		pth := p.HTTPGet.Path
		if !strings.HasPrefix(pth, "/") {
			pth = "/" + pth
		}
		cp.HTTPProbe = &HTTPProbe{Port: port, Path: pth}
	case p.TCPSocket != nil:
		port, err := probePort(c, p.TCPSocket.Port)
		if err != nil {
			return fmt.Errorf("readinessProbe.tcpSocket.port: %w", err)
		}
		cp.Ports = []int{port}
	}
	return nil
}

// probePort resolves a probe's port, a number or a container port's name.
func probePort(c *corev1.Container, port intstr.IntOrString) (int, error) {
	if port.Type == intstr.Int {
		if port.IntVal < 1 || port.IntVal > 65535 {
			return 0, fmt.Errorf("%d is not a valid port", port.IntVal)
		}
		return int(port.IntVal), nil
	}
	for _, p := range c.Ports {
		if p.Name == port.StrVal {
			return int(p.ContainerPort), nil
		}
	}
	return 0, fmt.Errorf("no container port named %q", port.StrVal)
}

// mount is one volumeMount: its path in the container and on the host.
type mount struct{ container, host string }

// mountMap lists c's volume mounts that have a host directory, longest
// container path first so nested mounts win.
func mountMap(c *corev1.Container, volumes map[string]string) []mount {
	var ms []mount
	for _, vm := range c.VolumeMounts {
		dir, ok := volumes[vm.Name]
		if !ok || vm.MountPath == "" {
			continue
		}
		host := dir
		if vm.SubPath != "" {
			host = filepath.Join(dir, vm.SubPath)
		}
		ms = append(ms, mount{container: strings.TrimSuffix(vm.MountPath, "/"), host: host})
	}
	for i := 1; i < len(ms); i++ {
		for j := i; j > 0 && len(ms[j].container) > len(ms[j-1].container); j-- {
			ms[j], ms[j-1] = ms[j-1], ms[j]
		}
	}
	return ms
}

// rewritePaths replaces a container path under a mount with its host path,
// where it is the whole value or follows "=" (--token-file=/var/run/...).
func rewritePaths(s string, mounts []mount) string {
	if len(mounts) == 0 || !strings.Contains(s, "/") {
		return s
	}
	prefix, value := "", s
	if i := strings.IndexByte(s, '='); i >= 0 && !strings.HasPrefix(s, "/") {
		prefix, value = s[:i+1], s[i+1:]
	}
	for _, m := range mounts {
		if value == m.container {
			return prefix + m.host
		}
		if rest, ok := strings.CutPrefix(value, m.container+"/"); ok {
			return prefix + filepath.Join(m.host, rest)
		}
	}
	return s
}
