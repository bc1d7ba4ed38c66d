package kubetest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// DefaultServiceCIDR is the Service ClusterIP range. It is on loopback, out
// of internal/local's pod and app ranges (127.1-127.4.0.0/16): nothing here
// may send traffic off loopback, and a ClusterIP on 127/8 that something
// dials by mistake is refused locally instead of leaving the machine. The
// API server accepts it (only Endpoints addresses may not be loopback).
const DefaultServiceCIDR = "127.96.0.0/16"

// Options tune Start; the zero value is a complete cluster.
type Options struct {
	// BinDir holds the binaries of Binaries; empty means Build's cache.
	BinDir string
	// ServiceCIDR is --service-cluster-ip-range; empty means DefaultServiceCIDR.
	ServiceCIDR string
	// Extra flags appended to each component's command line (a repeated
	// flag overrides the default).
	EtcdArgs, APIServerArgs, ControllerManagerArgs, SchedulerArgs []string
	// ReadyTimeout bounds each component's wait to become ready; default 2 min.
	ReadyTimeout time.Duration
}

// Cluster is a running control plane. Its files, logs included, are in Dir.
type Cluster struct {
	Dir         string
	BinDir      string
	Kubeconfig  string // admin (system:masters) kubeconfig
	Server      string // https://127.0.0.1:<port>
	CAFile      string // the CA of the serving and client certificates
	ServiceCIDR string
	EtcdURL     string // http://127.0.0.1:<port>

	opts     Options
	pki      *pki
	client   *http.Client // admin, for readiness checks
	mu       sync.Mutex
	procs    []*process // in start order
	stopOnce sync.Once
}

// Start runs etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler with their data, credentials and logs under dir, and
// returns once the API server is ready, both controllers are healthy and
// the default ServiceAccount exists. The binaries come from Build unless
// opts.BinDir is set. On error everything started is stopped and the error
// carries the tail of the failing component's log.
func Start(ctx context.Context, dir string, opts Options) (*Cluster, error) {
	if opts.ServiceCIDR == "" {
		opts.ServiceCIDR = DefaultServiceCIDR
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 2 * time.Minute
	}
	serviceIP, err := firstServiceIP(opts.ServiceCIDR)
	if err != nil {
		return nil, err
	}
	if opts.BinDir == "" {
		if opts.BinDir, err = Build(ctx); err != nil {
			return nil, err
		}
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("kubetest: %w", err)
	}
	c := &Cluster{Dir: dir, BinDir: opts.BinDir, ServiceCIDR: opts.ServiceCIDR, opts: opts}
	ok := false
	defer func() {
		if !ok {
			c.Stop()
		}
	}()

	began := time.Now()
	c.pki, err = newPKI(filepath.Join(dir, "pki"),
		[]net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback, serviceIP.AsSlice()},
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		adminIdentity, controllerManager, scheduler)
	if err != nil {
		return nil, fmt.Errorf("kubetest: credentials: %w", err)
	}
	c.CAFile = c.pki.path(caCertFile)
	if c.client, err = c.pki.httpClient(adminIdentity); err != nil {
		return nil, fmt.Errorf("kubetest: %w", err)
	}

	if err := c.startEtcd(ctx); err != nil {
		return nil, err
	}
	if err := c.startAPIServer(ctx); err != nil {
		return nil, err
	}
	if c.Kubeconfig, err = c.writeKubeconfig("kubeconfig", adminIdentity); err != nil {
		return nil, err
	}
	if err := c.startControllers(ctx); err != nil {
		return nil, err
	}
	// The service-account controller creates it: proof that the controller
	// manager works, and what every Pod in "default" needs for admission.
	if err := c.waitForDefaultServiceAccount(ctx); err != nil {
		return nil, err
	}
	slog.Info("kubetest: cluster ready", "server", c.Server, "dir", dir, "took", time.Since(began).Round(time.Millisecond))
	ok = true
	return c, nil
}

// StartT starts a cluster in t.TempDir() and stops it when the test ends,
// logging the tail of every component's log if the test failed. It fails
// the test (never skips it) when the cluster cannot start.
func StartT(t testing.TB) *Cluster {
	t.Helper()
	ctx := context.Background()
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if deadline, ok := d.Deadline(); ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, deadline.Add(-30*time.Second))
			defer cancel()
		}
	}
	c, err := Start(ctx, t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range c.processes() {
				t.Logf("---- %s (last lines) ----\n%s", p.logPath, p.logTail(4000))
			}
		}
		c.Stop()
	})
	return c
}

// Kubectl runs kubectl with the admin kubeconfig and returns its stdout; the
// error carries stderr.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) ([]byte, error) {
	return c.KubectlStdin(ctx, nil, args...)
}

// KubectlStdin is Kubectl with stdin, e.g. for `apply -f -`.
func (c *Cluster) KubectlStdin(ctx context.Context, stdin io.Reader, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.BinDir, "kubectl"), append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.Bytes(), nil
}

// Stop ends every component, last started first. It is safe to call more
// than once and from a test cleanup.
func (c *Cluster) Stop() {
	c.stopOnce.Do(func() {
		procs := c.processes()
		for i := len(procs) - 1; i >= 0; i-- {
			procs[i].stop(5 * time.Second)
		}
	})
}

func (c *Cluster) processes() []*process {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*process(nil), c.procs...)
}

func (c *Cluster) add(p *process) {
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
}

// startWithRetry starts a component on fresh ports until it becomes ready,
// retrying when it lost a port to another process between freePorts and
// its bind.
func (c *Cluster) startWithRetry(ctx context.Context, name string, nports int, args func(ports []int) []string, ready func(ctx context.Context, ports []int) error) error {
	const attempts = 3
	for attempt := 1; ; attempt++ {
		ports, err := freePorts(nports)
		if err != nil {
			return fmt.Errorf("kubetest: %s: %w", name, err)
		}
		p, err := startProcess(c.Dir, name, filepath.Join(c.BinDir, name), args(ports)...)
		if err != nil {
			return fmt.Errorf("kubetest: %w", err)
		}
		c.add(p)
		began := time.Now()
		err = c.waitFor(ctx, p, func(ctx context.Context) error { return ready(ctx, ports) })
		if err == nil {
			slog.Info("kubetest: component ready", "component", name, "took", time.Since(began).Round(time.Millisecond))
			return nil
		}
		if attempt < attempts && strings.Contains(p.logTail(2000), "address already in use") {
			p.stop(5 * time.Second)
			slog.Info("kubetest: port taken, retrying", "component", name, "ports", ports)
			continue
		}
		return p.failure(err)
	}
}

// waitFor polls check until it succeeds, the process exits, ReadyTimeout
// passes or ctx ends.
func (c *Cluster) waitFor(ctx context.Context, p *process, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.ReadyTimeout)
	defer cancel()
	var last error
	for {
		if done, _ := p.exited(); done {
			return errExited
		}
		if last = check(ctx); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready after %v: %w", c.opts.ReadyTimeout, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *Cluster) startEtcd(ctx context.Context) error {
	dataDir := filepath.Join(c.Dir, "etcd-data")
	return c.startWithRetry(ctx, "etcd", 2, func(ports []int) []string {
		c.EtcdURL = "http://127.0.0.1:" + strconv.Itoa(ports[0])
		peer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
		// A retry must not find the half-initialised member of the last try.
		os.RemoveAll(dataDir)
		return append([]string{
			"--name=kubetest",
			"--data-dir=" + dataDir,
			"--listen-client-urls=" + c.EtcdURL,
			"--advertise-client-urls=" + c.EtcdURL,
			"--listen-peer-urls=" + peer,
			"--initial-advertise-peer-urls=" + peer,
			"--initial-cluster=kubetest=" + peer,
			// Throwaway data: no fsync (the slowest part of etcd on a
			// shared disk), and a small backend quota.
			"--unsafe-no-fsync=true",
			"--quota-backend-bytes=" + strconv.Itoa(256<<20),
			"--log-level=warn",
		}, c.opts.EtcdArgs...)
	}, func(ctx context.Context, _ []int) error {
		return c.get(ctx, http.DefaultClient, c.EtcdURL+"/health", `"health":"true"`)
	})
}

func (c *Cluster) startAPIServer(ctx context.Context) error {
	p := c.pki.path
	return c.startWithRetry(ctx, "kube-apiserver", 1, func(ports []int) []string {
		c.Server = "https://127.0.0.1:" + strconv.Itoa(ports[0])
		return append([]string{
			"--etcd-servers=" + c.EtcdURL,
			"--bind-address=127.0.0.1",
			"--advertise-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(ports[0]),
			"--tls-cert-file=" + p(servingCertFile),
			"--tls-private-key-file=" + p(servingKeyFile),
			"--client-ca-file=" + p(caCertFile),
			"--authorization-mode=Node,RBAC",
			// Service-account tokens: TokenRequest signs with the private
			// key, TokenReview verifies with the public one.
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-account-key-file=" + p(saPublicFile),
			"--service-account-signing-key-file=" + p(saPrivateFile),
			"--service-cluster-ip-range=" + c.ServiceCIDR,
			"--enable-admission-plugins=NamespaceLifecycle,ServiceAccount,MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
			// Webhooks given as a Service are called at its endpoints,
			// not at a ClusterIP that nothing here routes.
			"--enable-aggregator-routing=true",
			// The reconciler would publish the advertise address in the
			// "kubernetes" Endpoints, and Endpoints may not hold loopback
			// addresses: it would fail every 10 s forever.
			"--endpoint-reconciler-type=none",
			"--allow-privileged=true",
			"--profiling=false",
		}, c.opts.APIServerArgs...)
	}, func(ctx context.Context, _ []int) error {
		return c.get(ctx, c.client, c.Server+"/readyz", "ok")
	})
}

// startControllers starts the controller manager and the scheduler, then
// waits for both: their start-ups overlap.
func (c *Cluster) startControllers(ctx context.Context) error {
	kcmConfig, err := c.writeKubeconfig("controller-manager.kubeconfig", controllerManager)
	if err != nil {
		return err
	}
	schedConfig, err := c.writeKubeconfig("scheduler.kubeconfig", scheduler)
	if err != nil {
		return err
	}
	p := c.pki.path
	errs := make(chan error, 2)
	go func() {
		errs <- c.startWithRetry(ctx, "kube-controller-manager", 1, func(ports []int) []string {
			return append([]string{
				"--kubeconfig=" + kcmConfig,
				// Each controller acts as its own service account with the
				// bootstrap RBAC roles, as in kubeadm clusters.
				"--use-service-account-credentials=true",
				"--service-account-private-key-file=" + p(saPrivateFile),
				"--root-ca-file=" + p(caCertFile),
				"--cluster-signing-cert-file=" + p(caCertFile),
				"--cluster-signing-key-file=" + p(caKeyFile),
				"--leader-elect=false",
				"--bind-address=127.0.0.1",
				"--secure-port=" + strconv.Itoa(ports[0]),
				"--cert-dir=" + filepath.Join(c.Dir, "kube-controller-manager-certs"),
			}, c.opts.ControllerManagerArgs...)
		}, c.healthz)
	}()
	go func() {
		errs <- c.startWithRetry(ctx, "kube-scheduler", 1, func(ports []int) []string {
			return append([]string{
				"--kubeconfig=" + schedConfig,
				"--leader-elect=false",
				"--bind-address=127.0.0.1",
				"--secure-port=" + strconv.Itoa(ports[0]),
				"--cert-dir=" + filepath.Join(c.Dir, "kube-scheduler-certs"),
			}, c.opts.SchedulerArgs...)
		}, c.healthz)
	}()
	return errors.Join(<-errs, <-errs)
}

// insecureHealth reads the controllers' /healthz. They serve it with a
// self-signed certificate of their own; there is nothing to verify on
// loopback, and it is always allowed without credentials.
var insecureHealth = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}

func (c *Cluster) healthz(ctx context.Context, ports []int) error {
	return c.get(ctx, insecureHealth, "https://127.0.0.1:"+strconv.Itoa(ports[0])+"/healthz", "ok")
}

func (c *Cluster) waitForDefaultServiceAccount(ctx context.Context) error {
	procs := c.processes()
	var kcm *process
	for _, p := range procs {
		if p.name == "kube-controller-manager" {
			kcm = p
		}
	}
	err := c.waitFor(ctx, kcm, func(ctx context.Context) error {
		return c.get(ctx, c.client, c.Server+"/api/v1/namespaces/default/serviceaccounts/default", `"name":"default"`)
	})
	if err != nil {
		return kcm.failure(fmt.Errorf("ServiceAccount default/default: %w", err))
	}
	return nil
}

// get succeeds when url answers 200 with a body containing want.
func (c *Cluster) get(ctx context.Context, client *http.Client, url, want string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(want)) {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, tail(bytes.TrimSpace(body), 500))
	}
	return nil
}

func (c *Cluster) writeKubeconfig(name string, id identity) (string, error) {
	b, err := c.pki.kubeconfig(c.Server, id)
	if err != nil {
		return "", fmt.Errorf("kubetest: kubeconfig %s: %w", name, err)
	}
	path := filepath.Join(c.Dir, name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return "", fmt.Errorf("kubetest: %w", err)
	}
	return path, nil
}

// httpClient authenticates as id and trusts only the cluster's CA.
func (p *pki) httpClient(id identity) (*http.Client, error) {
	pair, err := tls.LoadX509KeyPair(p.path(id.file+".crt"), p.path(id.file+".key"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(p.caCert)
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs:      pool,
		Certificates: []tls.Certificate{pair},
	}}}, nil
}

// firstServiceIP is the ClusterIP of the "kubernetes" Service: the first
// address after the range's network address, which the serving certificate
// must name.
func firstServiceIP(cidr string) (netip.Addr, error) {
	prefix, err := netip.ParsePrefix(cidr)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("kubetest: Options.ServiceCIDR %q: %w", cidr, err)
	}
	if prefix != prefix.Masked() {
		return netip.Addr{}, fmt.Errorf("kubetest: Options.ServiceCIDR %q: host bits set (want %s)", cidr, prefix.Masked())
	}
	ip := prefix.Addr().Next()
	if !ip.IsValid() || !prefix.Contains(ip) {
		return netip.Addr{}, fmt.Errorf("kubetest: Options.ServiceCIDR %q: no room for a ClusterIP", cidr)
	}
	return ip, nil
}
