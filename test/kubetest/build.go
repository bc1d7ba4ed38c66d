// Package kubetest runs a real Kubernetes control plane on loopback for
// end-to-end tests of Kubernetes mode: etcd, kube-apiserver,
// kube-controller-manager and kube-scheduler as local processes, plus
// kubectl. There are no nodes and no container runtime; Skein's node agent
// plays the kubelet.
//
// The binaries are built from the Go module proxy by the tool modules in
// test/tools/kube and test/tools/etcd (separate modules, so Skein's own
// module never depends on Kubernetes' server code), once per version into a
// cache shared by every test binary on the machine.
package kubetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// The versions the tool modules pin; TestVersionsMatchToolModules keeps
// these in step with test/tools/*/go.mod, since they key the binary cache.
const (
	KubeVersion = "v1.37.2"
	EtcdVersion = "v3.7.3"
)

// Binaries are the executables Build puts in its directory.
var Binaries = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"}

var kubePackages = []string{
	"k8s.io/kubernetes/cmd/kube-apiserver",
	"k8s.io/kubernetes/cmd/kube-controller-manager",
	"k8s.io/kubernetes/cmd/kube-scheduler",
	"k8s.io/kubernetes/cmd/kubectl",
}

// etcd's main package is the root of its server module.
const etcdPackage = "go.etcd.io/etcd/server/v3"

// stampFile marks a complete cache directory; it is written last, so a build
// interrupted half-way is redone (quickly, from Go's build cache).
const stampFile = ".complete"

// CacheDir is where Build keeps the binaries:
// $SKEIN_TEST_CACHE/kube-<v>-etcd-<v>/bin, with SKEIN_TEST_CACHE defaulting
// to $HOME/.cache/skein-test.
func CacheDir() (string, error) {
	root := os.Getenv("SKEIN_TEST_CACHE")
	if root == "" {
		home, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("kubetest: no cache directory (set SKEIN_TEST_CACHE): %w", err)
		}
		root = filepath.Join(home, "skein-test")
	}
	return filepath.Join(root, "kube-"+KubeVersion+"-etcd-"+EtcdVersion, "bin"), nil
}

// toolsDir is test/tools, found from this source file so that Build works
// from any test's working directory.
func toolsDir() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("kubetest: cannot locate its source directory")
	}
	dir := filepath.Join(filepath.Dir(file), "..", "tools")
	if _, err := os.Stat(filepath.Join(dir, "kube", "go.mod")); err != nil {
		return "", fmt.Errorf("kubetest: tool modules not found: %w", err)
	}
	return dir, nil
}

// Build builds etcd, kube-apiserver, kube-controller-manager, kube-scheduler
// and kubectl into CacheDir unless a complete build is already there, and
// returns that directory. Concurrent callers, in this process or others,
// wait for one build under a file lock. Cold, on two cores, this takes many
// minutes; progress goes to slog.
func Build(ctx context.Context) (string, error) {
	binDir, err := CacheDir()
	if err != nil {
		return "", err
	}
	if complete(binDir) {
		return binDir, nil
	}
	tools, err := toolsDir()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return "", fmt.Errorf("kubetest: %w", err)
	}
	unlock, err := lock(ctx, filepath.Join(filepath.Dir(binDir), "build.lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if complete(binDir) { // another process built it while we waited
		return binDir, nil
	}

	start := time.Now()
	slog.Info("kubetest: building the Kubernetes test binaries (cold: many minutes; cached afterwards)",
		"kube", KubeVersion, "etcd", EtcdVersion, "dir", binDir)
	steps := []struct {
		name, dir string
		args      []string
	}{
		{"etcd", filepath.Join(tools, "etcd"), []string{"-ldflags", "-s -w", "-o", filepath.Join(binDir, "etcd"), etcdPackage}},
		{"kubernetes", filepath.Join(tools, "kube"), append([]string{"-ldflags", versionLDFlags(), "-o", binDir + string(filepath.Separator)}, kubePackages...)},
	}
	for _, s := range steps {
		if err := goBuild(ctx, s.name, s.dir, s.args); err != nil {
			return "", err
		}
	}
	for _, b := range Binaries {
		if _, err := os.Stat(filepath.Join(binDir, b)); err != nil {
			return "", fmt.Errorf("kubetest: build finished without %s: %w", b, err)
		}
	}
	stamp := fmt.Sprintf("kube %s etcd %s %s\n", KubeVersion, EtcdVersion, runtime.Version())
	if err := os.WriteFile(filepath.Join(binDir, stampFile), []byte(stamp), 0o644); err != nil {
		return "", fmt.Errorf("kubetest: %w", err)
	}
	slog.Info("kubetest: built the Kubernetes test binaries", "took", time.Since(start).Round(time.Second))
	return binDir, nil
}

// versionLDFlags stamps the release into the binaries as Kubernetes' own
// build does, so `kubectl version` and the API server's /version tell the
// truth instead of v0.0.0-master.
func versionLDFlags() string {
	v := strings.TrimPrefix(KubeVersion, "v")
	major, rest, _ := strings.Cut(v, ".")
	minor, _, _ := strings.Cut(rest, ".")
	flags := []string{"-s", "-w"} // no DWARF, as Kubernetes' release build: a faster link
	for _, pkg := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		flags = append(flags,
			"-X", pkg+".gitVersion="+KubeVersion,
			"-X", pkg+".gitMajor="+major,
			"-X", pkg+".gitMinor="+minor,
			"-X", pkg+".gitTreeState=clean")
	}
	return strings.Join(flags, " ")
}

func complete(binDir string) bool {
	if _, err := os.Stat(filepath.Join(binDir, stampFile)); err != nil {
		return false
	}
	for _, b := range Binaries {
		if _, err := os.Stat(filepath.Join(binDir, b)); err != nil {
			return false
		}
	}
	return true
}

// goBuild runs `go build args...` in a tool module, isolated from the
// caller's GOFLAGS (e.g. -mod=vendor or -buildvcs) and any go.work.
func goBuild(ctx context.Context, name, dir string, args []string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("kubetest: building %s needs the go command: %w", name, err)
	}
	cmd := exec.CommandContext(ctx, goBin, append([]string{"build"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("kubetest: go build %s: %w", name, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("kubetest: go build %s in %s: %w\n%s", name, dir, err, tail(out.Bytes(), 4000))
			}
			slog.Info("kubetest: built", "what", name, "took", time.Since(start).Round(time.Second))
			return nil
		case <-tick.C:
			slog.Info("kubetest: still building", "what", name, "for", time.Since(start).Round(time.Second))
		}
	}
}

// lock takes an exclusive flock on path, polling so ctx can end the wait.
func lock(ctx context.Context, path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("kubetest: build lock: %w", err)
	}
	logged := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("kubetest: build lock %s: %w", path, err)
		}
		if !logged {
			slog.Info("kubetest: waiting for another process building the Kubernetes test binaries", "lock", path)
			logged = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("kubetest: waiting for build lock %s: %w", path, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// tail is the last n bytes of b, starting at a line.
func tail(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	b = b[len(b)-n:]
	if i := bytes.IndexByte(b, '\n'); i >= 0 && i < len(b)-1 {
		b = b[i+1:]
	}
	return "..." + "\n" + string(b)
}
