package local

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/skein-mesh/skein/internal/apiclient"
	"github.com/skein-mesh/skein/internal/config"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// The integration tests run the real skein binary: discovery, proxies and
// the Bookinfo details service, all as processes on loopback.

var (
	buildOnce     sync.Once
	builtSkein    string
	builtSkeinDir string
	buildErr      error
)

// skeinBinary builds ./cmd/skein once per test run.
func skeinBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the skein binary")
	}
	buildOnce.Do(func() {
		builtSkeinDir, buildErr = os.MkdirTemp("", "skein-local-test")
		if buildErr != nil {
			return
		}
		builtSkein = filepath.Join(builtSkeinDir, "skein")
		cmd := exec.Command("go", "build", "-o", builtSkein, "github.com/skein-mesh/skein/cmd/skein")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = &buildError{err: err, out: string(out)}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtSkein
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return "go build ./cmd/skein: " + e.err.Error() + "\n" + e.out }

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// A namespace with injection on and the Bookinfo details service, run as
// the skein binary's built-in `bookinfo` program.
const detailsManifest = `
apiVersion: v1
kind: Namespace
metadata:
  name: itest
  labels:
    istio-injection: enabled
---
apiVersion: v1
kind: Service
metadata:
  name: details
  namespace: itest
spec:
  selector:
    app: details
  ports:
  - name: http
    port: 9080
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: details-v1
  namespace: itest
spec:
  selector:
    matchLabels:
      app: details
  template:
    metadata:
      labels:
        app: details
        version: v1
    spec:
      containers:
      - name: details
        image: skein/bookinfo
        command: ["bookinfo", "details"]
        ports:
        - containerPort: 9080
`

func writeManifest(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "details.yaml")
	if err := os.WriteFile(path, []byte(detailsManifest), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// httpGet fetches url without any proxy from the environment.
func httpGet(url string) (int, string, error) {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil}}
	resp, err := client.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// upProcess is a running `skein up`.
type upProcess struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	lines  chan string
	exited chan error
	out    []string
}

func startUp(t *testing.T, args ...string) *upProcess {
	t.Helper()
	p := &upProcess{cmd: exec.Command(skeinBinary(t), append([]string{"up"}, args...)...),
		stderr: &syncBuffer{}, lines: make(chan string, 100), exited: make(chan error, 1)}
	p.cmd.Stderr = p.stderr
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		p.exited <- p.cmd.Wait()
	}()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
		}
	})
	return p
}

// waitLine reads output until a line starts with prefix.
func (p *upProcess) waitLine(t *testing.T, prefix string) string {
	t.Helper()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				t.Fatalf("skein up exited early:\n%s\nstderr:\n%s", strings.Join(p.out, "\n"), p.stderr)
			}
			p.out = append(p.out, l)
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-timeout:
			t.Fatalf("no %q after 60s:\n%s\nstderr:\n%s", prefix, strings.Join(p.out, "\n"), p.stderr)
		}
	}
}

// interrupt sends Ctrl-C and waits for a clean exit.
func (p *upProcess) interrupt(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGINT)
	for range p.lines {
	}
	select {
	case err := <-p.exited:
		if err != nil {
			t.Errorf("skein up exited with %v\n%s", err, p.stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("skein up did not stop within 30s of SIGINT")
	}
}

func TestSkeinUpBinary(t *testing.T) {
	dataDir := t.TempDir()
	httpAddr, grpcAddr := freeAddr(t), freeAddr(t)
	up := startUp(t, "-f", writeManifest(t), "--data-dir", dataDir,
		"--http-addr", httpAddr, "--grpc-addr", grpcAddr, "--ingress-address", "127.0.8.1")
	last := up.waitLine(t, "Mesh is up: 3 pods ready.") // details, ingress and egress gateways
	for _, want := range []string{"namespace/itest created", "deployment.apps/details-v1 created", "deployment.apps/istio-ingressgateway created", "deployment.apps/istio-egressgateway created"} {
		if !slices.Contains(up.out, want) {
			t.Errorf("output lacks %q:\n%s", want, strings.Join(up.out, "\n"))
		}
	}
	if !strings.Contains(last, "http://127.0.8.1:8080 (port 80)") {
		t.Errorf("mesh-up line does not name the gateway: %q", last)
	}

	// The pod is in the store, ready, with its sidecar.
	ctx := context.Background()
	objs, _, err := apiclient.New(httpAddr).List(ctx, "Pod", "itest")
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 {
		t.Fatalf("store has %d Pods in itest, want 1", len(objs))
	}
	pod := objs[0].Spec.(*corev1.Pod)
	if !podReady(pod) || !strings.HasPrefix(pod.Name, "details-v1-") || !strings.HasPrefix(pod.Status.PodIP, "127.1.") {
		t.Errorf("pod %s ready=%v ip=%s", pod.Name, podReady(pod), pod.Status.PodIP)
	}
	if names := containerNames(pod.Spec.Containers); !slices.Equal(names, []string{"details", "istio-proxy"}) {
		t.Errorf("containers = %v", names)
	}
	if pod.Labels[labelTLSMode] != "istio" {
		t.Errorf("injected pod lacks %s: %v", labelTLSMode, pod.Labels)
	}
	// Traffic to the pod IP goes through the sidecar's inbound listener to
	// the app. As in Istio, a ready sidecar may get its inbound listener in
	// a push just after its first one, so the first request may come early.
	var (
		code int
		body string
	)
	waitFor(t, 10*time.Second, "details through the sidecar", func() bool {
		code, body, err = httpGet("http://" + net.JoinHostPort(pod.Status.PodIP, "9080") + "/details/0")
		return err == nil && code == http.StatusOK && strings.Contains(body, "ISBN-10")
	})
	logPath := filepath.Join(dataDir, "logs", "itest", pod.Name, "details.log")
	if b, err := os.ReadFile(logPath); err != nil || !strings.Contains(string(b), "start #1") {
		t.Errorf("container log %s: %v %.300s", logPath, err, b)
	}

	// Ctrl-C takes everything down and cleans the store up.
	up.interrupt(t)
	if tcpOpen(ctx, mustAddr(t, pod.Status.PodIP), 15000, 200*time.Millisecond) {
		t.Errorf("the sidecar still serves after skein up exited")
	}
	store, _ := os.ReadFile(filepath.Join(dataDir, "store", "store.json"))
	if strings.Contains(string(store), pod.Name) {
		t.Errorf("pod %s left in the store after shutdown", pod.Name)
	}

	// The store is durable: without -f the next run brings the Deployment
	// back, and --no-gateway removes the gateway the first run installed.
	again := startUp(t, "--data-dir", dataDir, "--http-addr", httpAddr, "--grpc-addr", grpcAddr, "--no-gateway")
	again.waitLine(t, "Mesh is up: 1 pod ready.")
	if !slices.Contains(again.out, "deployment.apps/istio-ingressgateway deleted") {
		t.Errorf("--no-gateway did not remove the built-in gateway:\n%s", strings.Join(again.out, "\n"))
	}
	again.interrupt(t)
}

func TestRunnerLibrary(t *testing.T) {
	skein := skeinBinary(t)
	httpAddr := freeAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out := &syncBuffer{}
	dataDir := t.TempDir()
	r, err := Start(ctx, Options{
		Files: []string{writeManifest(t)}, DataDir: dataDir,
		HTTPAddr: httpAddr, GRPCAddr: freeAddr(t), NoGateway: true,
		Executable: skein, Out: out, Logger: discardLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	pods := r.Pods()
	if len(pods) != 1 || pods[0].Proxy != "sidecar" || !pods[0].Ready || !pods[0].AppIP.IsValid() || pods[0].Deployment != "details-v1" {
		t.Fatalf("pods = %+v", pods)
	}
	first := pods[0]

	// A second runner on the same address refuses to start.
	if _, err := Start(ctx, Options{DataDir: t.TempDir(), HTTPAddr: httpAddr, NoGateway: true, Executable: skein, Logger: discardLogger()}); err == nil ||
		!strings.Contains(err.Error(), "already answers") {
		t.Errorf("second runner: err = %v", err)
	}

	// Discovery is restarted when it dies; the store is durable, so the
	// mesh carries on.
	api := apiclient.NewWithCredentialFile(r.Addr(), filepath.Join(dataDir, "ca", "admin-token"))
	if err := syscall.Kill(r.discovery.Status().Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "discovery to come back", func() bool {
		return r.discovery.Status().RestartCount == 1 && api.Ping(ctx) == nil
	})

	// A changed template rolls the pod over.
	obj, err := api.Get(ctx, config.Key{Kind: "Deployment", Namespace: "itest", Name: "details-v1"})
	if err != nil {
		t.Fatal(err)
	}
	d := obj.Spec.(*appsv1.Deployment)
	d.Spec.Template.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "ROLL", Value: "1"}}
	if _, err := api.Apply(ctx, []*config.Object{obj}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the rolled-over pod", func() bool {
		p := r.Pods()
		return len(p) == 1 && p[0].Name != first.Name && p[0].Ready
	})

	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if tcpOpen(ctx, first.AppIP, 9080, 200*time.Millisecond) {
		t.Errorf("an app still listens after Close")
	}
}
