package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/skein-mesh/skein/internal/apiclient"
	"github.com/skein-mesh/skein/internal/apiwire"
	"github.com/skein-mesh/skein/internal/config"
	"github.com/skein-mesh/skein/internal/configstore"
	"github.com/skein-mesh/skein/internal/dashboard"
	"github.com/skein-mesh/skein/internal/kubelet"
	corev1 "k8s.io/api/core/v1"
)

// Options configure a local mesh.
type Options struct {
	// Files are manifests (files, directories, "-") applied after the
	// built-in istio-system manifests.
	Files []string
	// Namespace is the default namespace of objects in Files that name none
	// ("default" when empty); as in kubectl, an object naming another
	// namespace is then an error.
	Namespace string
	// DataDir holds the store (DataDir/store) and logs (DataDir/logs).
	DataDir string
	// HTTPAddr and GRPCAddr are discovery's config API and xDS addresses.
	HTTPAddr, GRPCAddr string
	// IngressAddress is where the istio-ingressgateway binds its ports.
	IngressAddress string
	// NoGateway skips the built-in ingress gateway.
	NoGateway bool
	// DashboardAddr is where the mesh dashboard is served; empty: none.
	DashboardAddr string
	// Executable is the skein binary run for discovery, proxies and
	// built-in programs; default: the running executable.
	Executable string
	// LogLevel is handed to child processes as SKEIN_LOG_LEVEL.
	LogLevel string
	// Out receives apply results and pod status lines; default io.Discard.
	Out io.Writer
	// Logger logs the runner's own events; default slog.Default().
	Logger *slog.Logger
}

func (o *Options) setDefaults() error {
	if o.DataDir == "" {
		return errors.New("local: Options.DataDir is required")
	}
	if o.HTTPAddr == "" {
		o.HTTPAddr = "127.0.0.1:15014"
	}
	if o.GRPCAddr == "" {
		o.GRPCAddr = "127.0.0.1:15012"
	}
	if o.IngressAddress == "" {
		o.IngressAddress = "127.0.0.1"
	}
	if net.ParseIP(o.IngressAddress) == nil {
		return fmt.Errorf("ingress address %q is not an IP address", o.IngressAddress)
	}
	for _, a := range []string{o.HTTPAddr, o.GRPCAddr} {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("address %q: %w", a, err)
		}
	}
	if o.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("finding the skein executable: %w", err)
		}
		o.Executable = exe
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}

// PodInfo describes one pod of a running local mesh.
type PodInfo struct {
	Namespace, Name string
	Deployment      string
	PodIP           netip.Addr
	AppIP           netip.Addr // invalid without a sidecar
	Proxy           string     // "sidecar", "gateway" or "" (no proxy)
	Ready           bool
	Containers      []ContainerInfo
}

// ContainerInfo describes one container of a pod.
type ContainerInfo struct {
	Name         string
	Ready        bool
	Running      bool
	RestartCount int32
	// Problem explains a container that is not running.
	Problem string
}

// Runner is a running local mesh.
type Runner struct {
	opts      Options
	log       *slog.Logger
	api       *apiclient.Client
	discovery *kubelet.Process
	ctrl      *controller
	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
	// dashboardURL is set once the dashboard serves.
	dashboardURL string
}

// Run brings up a local mesh and keeps it running until ctx is done, then
// takes it down.
func Run(ctx context.Context, opts Options) error {
	r, err := Start(ctx, opts)
	if err != nil {
		return err
	}
	<-ctx.Done()
	return r.Close()
}

// Start starts the control plane, applies the built-in and given manifests
// and starts reconciling in the background. It returns once the manifests
// are applied; pods come up afterwards (see WaitReady). The mesh runs until
// ctx is done or Close is called; call Close in either case to wait for
// every process to stop.
func Start(ctx context.Context, opts Options) (*Runner, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	// Load manifests first: a typo should fail before anything starts.
	objs, dirs, err := loadManifests(opts)
	if err != nil {
		return nil, err
	}
	if !opts.NoGateway {
		if err := checkIngressPorts(opts.IngressAddress); err != nil {
			return nil, err
		}
	}
	logDir := filepath.Join(opts.DataDir, "logs")
	r := &Runner{opts: opts, log: opts.Logger, api: apiclient.NewWithCredentialFile(opts.HTTPAddr, filepath.Join(opts.DataDir, "ca", apiwire.CredentialFile)), done: make(chan struct{})}
	if err := r.startDiscovery(ctx, logDir); err != nil {
		return nil, err
	}
	out := &statusPrinter{w: opts.Out}
	r.ctrl = &controller{
		api:   r.api,
		alloc: kubelet.NewIPAllocator(),
		planner: &planner{
			Executable: opts.Executable, DiscoveryAddr: opts.GRPCAddr, IngressAddress: opts.IngressAddress,
			LogLevel: opts.LogLevel, HostEnv: os.Environ(), LookPath: exec.LookPath,
			ConfigMaps: r.configMap, TokenDir: filepath.Join(opts.DataDir, "tokens"),
			DiscoveryRoot: filepath.Join(opts.DataDir, "ca", "root-cert.pem"),
		},
		log: opts.Logger, out: out, logDir: logDir,
		backoff: kubelet.DefaultBackoff, grace: kubelet.DefaultGracePeriod, probe: kubelet.DefaultProbe, resync: resyncInterval,
		dirs: func(ns, name string) string {
			if d, ok := dirs[podKey(ns, name)]; ok {
				return d
			}
			wd, _ := os.Getwd()
			return wd
		},
		pods: map[string]*managedPod{}, deployErrs: map[string]string{},
		changed: make(chan struct{}, 1),
		tokens:  &tokenWriter{api: r.api, adminTokenFile: filepath.Join(opts.DataDir, "ca", "admin-token"), dir: filepath.Join(opts.DataDir, "tokens")},
	}
	out.upHint = r.ingressHint

	applyCtx, cancelApply := context.WithTimeout(ctx, 30*time.Second)
	defer cancelApply()
	err = r.ctrl.deleteStale(applyCtx)
	if err == nil && opts.NoGateway {
		err = r.removeBuiltinGateway(applyCtx)
	}
	if err == nil {
		err = r.apply(applyCtx, append(systemManifests(opts.NoGateway), objs...))
	}
	if err != nil {
		r.discovery.Stop(context.Background())
		return nil, err
	}

	runCtx, cancel := context.WithCancel(ctx)
	r.cancel = cancel
	r.startDashboard(runCtx)
	go func() {
		defer close(r.done)
		r.ctrl.run(runCtx)
	}()
	return r, nil
}

// removeBuiltinGateway deletes the ingress gateway an earlier `skein up`
// installed (the store is durable), so --no-gateway means no gateway runs.
func (r *Runner) removeBuiltinGateway(ctx context.Context) error {
	var keys []config.Key
	for _, k := range append(builtinGatewayKeys, builtinEgressKeys...) {
		o, err := r.api.Get(ctx, k)
		if apiclient.IsNotFound(err) {
			continue
		}
		if err != nil {
			return err
		}
		if o.Meta.Annotations[annotationBuiltin] == "true" {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	results, err := r.api.Delete(ctx, keys)
	if err != nil {
		return fmt.Errorf("removing the built-in ingress gateway: %w", err)
	}
	for _, res := range results {
		fmt.Fprintln(r.opts.Out, res.String())
	}
	return nil
}

// ingressPorts are the built-in gateway Service's target ports.
var ingressPorts = []int{8080, 8443}

// checkIngressPorts fails early, with advice, when the ingress gateway
// could not bind its ports: otherwise it would just crash-loop.
func checkIngressPorts(addr string) error {
	for _, p := range ingressPorts {
		hostPort := net.JoinHostPort(addr, strconv.Itoa(p))
		l, err := net.Listen("tcp", hostPort)
		if err != nil {
			return fmt.Errorf("the ingress gateway needs %s, which is not available (%v); free it, or pass --ingress-address or --no-gateway", hostPort, err)
		}
		l.Close()
	}
	return nil
}

// loadManifests reads every -f argument and remembers, per Deployment, the
// directory it came from: its containers run there, so relative paths in
// commands work as the manifest's author meant.
func loadManifests(opts Options) ([]*config.Object, map[string]string, error) {
	var objs []*config.Object
	dirs := map[string]string{}
	for _, f := range opts.Files {
		loaded, warnings, err := config.LoadFiles([]string{f}, opts.Namespace)
		for _, w := range warnings {
			opts.Logger.Warn(w.String())
		}
		if err != nil {
			return nil, nil, err
		}
		dir := ""
		if f != "-" {
			abs, err := filepath.Abs(f)
			if err != nil {
				return nil, nil, err
			}
			dir = abs
			if info, err := os.Stat(abs); err == nil && !info.IsDir() {
				dir = filepath.Dir(abs)
			}
		}
		for _, o := range loaded {
			if o.GVK.Kind == "Deployment" && dir != "" {
				dirs[podKey(o.Meta.Namespace, o.Meta.Name)] = dir
			}
		}
		objs = append(objs, loaded...)
	}
	return objs, dirs, nil
}

func (r *Runner) apply(ctx context.Context, objs []*config.Object) error {
	results, err := r.api.Apply(ctx, objs)
	if err != nil {
		return fmt.Errorf("applying manifests: %w", err)
	}
	for _, res := range results {
		fmt.Fprintln(r.opts.Out, res.String())
	}
	return nil
}

// startDiscovery runs `skein discovery` and waits until its config API
// answers.
func (r *Runner) startDiscovery(ctx context.Context, logDir string) error {
	pingCtx, cancel := context.WithTimeout(ctx, time.Second)
	err := r.api.Ping(pingCtx)
	cancel()
	if err == nil {
		return fmt.Errorf("a control plane already answers on %s (is another `skein up` running?); stop it or choose another --http-addr", r.opts.HTTPAddr)
	}
	storeDir := filepath.Join(r.opts.DataDir, "store")
	if err := os.MkdirAll(storeDir, 0o755); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	// A damaged store is told on the console, not only in discovery.log:
	// discovery then serves the last good revision (store.json.prev).
	if err := configstore.Check(storeDir); err != nil {
		fmt.Fprintf(r.opts.Out, "WARNING: %v; the control plane serves the last good revision (store.json.prev) if one is kept (see %s)\n", err, filepath.Join(logDir, "discovery.log"))
	}
	env := os.Environ()
	if r.opts.LogLevel != "" {
		env = kubelet.ProcessEnv(env, []kubelet.EnvVar{{Name: "SKEIN_LOG_LEVEL", Value: r.opts.LogLevel}}, nil)
	}
	logPath := filepath.Join(logDir, "discovery.log")
	proc, err := kubelet.StartProcess(kubelet.ProcessSpec{
		Name: "discovery",
		Argv: []string{r.opts.Executable, "discovery",
			"--store-dir", storeDir, "--ca-dir", filepath.Join(r.opts.DataDir, "ca"),
			"--grpc-addr", r.opts.GRPCAddr, "--http-addr", r.opts.HTTPAddr},
		Env:     env,
		LogPath: logPath,
		Backoff: kubelet.DefaultBackoff,
	}, r.log, nil)
	if err != nil {
		return fmt.Errorf("starting discovery: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		pingCtx, cancel := context.WithTimeout(ctx, time.Second)
		err := r.api.Ping(pingCtx)
		cancel()
		if err == nil {
			r.discovery = proc
			r.log.Info("control plane is up", "http", r.opts.HTTPAddr, "grpc", r.opts.GRPCAddr)
			return nil
		}
		st := proc.Status()
		failed := !st.LastExitAt.IsZero()
		if failed || time.Now().After(deadline) || ctx.Err() != nil {
			proc.Stop(context.Background())
			why := "did not answer within 30s"
			if failed {
				why = "exited (" + st.LastExit + ")"
			} else if ctx.Err() != nil {
				why = "was interrupted"
			}
			return fmt.Errorf("discovery %s; its log %s ends with:\n%s", why, logPath, logTail(logPath, 15))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// logTail returns the last n lines of a log file.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// configMap reads a ConfigMap for env resolution.
func (r *Runner) configMap(namespace, name string) (map[string]string, bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	objs, _, err := r.api.List(ctx, "ConfigMap", namespace)
	if err != nil {
		return nil, false, err
	}
	for _, o := range objs {
		if o.Meta.Name != name {
			continue
		}
		cm, ok := o.Spec.(*corev1.ConfigMap)
		if !ok {
			return nil, false, fmt.Errorf("configmap %s/%s has unexpected type %T", namespace, name, o.Spec)
		}
		return cm.Data, true, nil
	}
	return nil, false, nil
}

// startDashboard serves the mesh dashboard until ctx is done. A busy
// address (another mesh's dashboard) costs only the dashboard, not the mesh.
func (r *Runner) startDashboard(ctx context.Context) {
	if r.opts.DashboardAddr == "" {
		return
	}
	l, err := dashboard.Listen(r.opts.DashboardAddr)
	if err != nil {
		r.log.Warn("dashboard not started; pass --dashboard-addr to choose another address", "err", err)
		return
	}
	r.dashboardURL = "http://" + l.Addr().String() + "/"
	d := dashboard.New(dashboard.Options{Server: r.opts.HTTPAddr, Logger: r.log,
		CredentialFile: filepath.Join(r.opts.DataDir, "ca", apiwire.CredentialFile)})
	go func() {
		if err := d.Serve(ctx, l); err != nil {
			r.log.Warn("dashboard stopped", "err", err)
		}
	}()
}

// ingressHint names the ingress gateway's addresses for the "mesh is up"
// line, from its Service as stored (a user may have changed it), and the
// dashboard's URL.
func (r *Runner) ingressHint() string {
	hint := r.ingressURLs()
	if r.dashboardURL != "" {
		hint += " Dashboard: " + r.dashboardURL
	}
	return hint
}

func (r *Runner) ingressURLs() string {
	if r.opts.NoGateway {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	objs, _, err := r.api.List(ctx, "Service", systemNamespace)
	if err != nil {
		return ""
	}
	var urls []string
	for _, o := range objs {
		svc, ok := o.Spec.(*corev1.Service)
		if !ok || o.Meta.Name != ingressName {
			continue
		}
		for _, p := range svc.Spec.Ports {
			target := p.TargetPort.IntValue()
			if target == 0 {
				target = int(p.Port)
			}
			scheme := "http"
			if p.Port == 443 || strings.HasPrefix(p.Name, "https") {
				scheme = "https"
			}
			urls = append(urls, fmt.Sprintf("%s://%s (port %d)", scheme, net.JoinHostPort(r.opts.IngressAddress, fmt.Sprint(target)), p.Port))
		}
	}
	if len(urls) == 0 {
		return ""
	}
	return " Ingress gateway: " + strings.Join(urls, ", ")
}

// Pods lists the pods the runner is running, sorted by namespace and name.
func (r *Runner) Pods() []PodInfo { return r.ctrl.podInfos() }

// WaitReady blocks until every pod is ready and published to the store.
func (r *Runner) WaitReady(ctx context.Context) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		if r.ctrl.settled() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for pods to become ready: %w (%s)", ctx.Err(), r.ctrl.notReadySummary())
		case <-r.done:
			return errors.New("the runner stopped")
		case <-t.C:
		}
	}
}

// Addr is the control plane's config API address.
func (r *Runner) Addr() string { return r.opts.HTTPAddr }

// Done is closed once the mesh has been taken down.
func (r *Runner) Done() <-chan struct{} { return r.done }

// Close takes the mesh down: pods are removed from the store and stopped,
// then the control plane stops. It waits for every process to exit.
func (r *Runner) Close() error {
	r.closeOnce.Do(func() {
		r.cancel()
		<-r.done
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		r.discovery.Stop(ctx)
		r.log.Info("local mesh stopped")
	})
	return r.ctrl.shutdownErr
}
