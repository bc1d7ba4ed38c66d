package kubetest

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
)

// The cache is keyed by the constants, so a tool module bumped without them
// would silently keep serving the old binaries.
func TestVersionsMatchToolModules(t *testing.T) {
	tools, err := toolsDir()
	if err != nil {
		t.Fatal(err)
	}
	kubeMod := readFile(t, filepath.Join(tools, "kube", "go.mod"))
	etcdMod := readFile(t, filepath.Join(tools, "etcd", "go.mod"))
	staging := "v0." + strings.TrimPrefix(KubeVersion, "v1.")
	tests := []struct {
		name, mod, pattern, want string
	}{
		{"kubernetes", kubeMod, `(?m)^\s*k8s\.io/kubernetes (\S+)`, KubeVersion},
		{"etcd server", etcdMod, `(?m)^\s*go\.etcd\.io/etcd/server/v3 (\S+)`, EtcdVersion},
		{"client-go replace", kubeMod, `(?m)^\s*k8s\.io/client-go => k8s\.io/client-go (\S+)`, staging},
		{"apiserver replace", kubeMod, `(?m)^\s*k8s\.io/apiserver => k8s\.io/apiserver (\S+)`, staging},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := regexp.MustCompile(tt.pattern).FindStringSubmatch(tt.mod)
			if m == nil {
				t.Fatalf("no match for %s in go.mod", tt.pattern)
			}
			if m[1] != tt.want {
				t.Errorf("go.mod has %s, kubetest expects %s", m[1], tt.want)
			}
		})
	}
	// Every staging replace points at the same published version.
	for _, m := range regexp.MustCompile(`(?m)^\s*(k8s\.io/\S+) => (\S+) (\S+)`).FindAllStringSubmatch(kubeMod, -1) {
		if m[1] != m[2] || m[3] != staging {
			t.Errorf("replace %s => %s %s, want => %s %s", m[1], m[2], m[3], m[1], staging)
		}
	}
	for _, tool := range kubePackages {
		if !strings.Contains(kubeMod, "\t"+tool+"\n") {
			t.Errorf("test/tools/kube/go.mod has no tool directive for %s", tool)
		}
	}
	if !regexp.MustCompile(`(?m)^tool ` + regexp.QuoteMeta(etcdPackage) + `$`).MatchString(etcdMod) {
		t.Errorf("test/tools/etcd/go.mod has no tool directive for %s", etcdPackage)
	}
}

func TestCacheDir(t *testing.T) {
	key := "kube-" + KubeVersion + "-etcd-" + EtcdVersion
	tests := []struct {
		name, cache, xdg, home, want string
	}{
		{"explicit", "/c", "", "/h", "/c/" + key + "/bin"},
		{"home", "", "", "/h", "/h/.cache/skein-test/" + key + "/bin"},
		{"xdg", "", "/x", "/h", "/x/skein-test/" + key + "/bin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("SKEIN_TEST_CACHE", tt.cache)
			t.Setenv("XDG_CACHE_HOME", tt.xdg)
			t.Setenv("HOME", tt.home)
			got, err := CacheDir()
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("CacheDir() = %s, want %s", got, tt.want)
			}
		})
	}
}

// A complete cache is reused without running go; a partial one is not
// complete.
func TestBuildReusesCompleteCache(t *testing.T) {
	t.Setenv("SKEIN_TEST_CACHE", t.TempDir())
	t.Setenv("PATH", "") // any attempt to run go build fails
	dir, err := CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, b := range Binaries[1:] {
		writeFile(t, filepath.Join(dir, b), "")
	}
	writeFile(t, filepath.Join(dir, stampFile), "")
	if complete(dir) {
		t.Fatal("complete() with etcd missing")
	}
	if _, err := Build(context.Background()); err == nil || !strings.Contains(err.Error(), "go command") {
		t.Fatalf("Build of a partial cache without go: err = %v, want one naming the go command", err)
	}
	writeFile(t, filepath.Join(dir, "etcd"), "")
	got, err := Build(context.Background())
	if err != nil || got != dir {
		t.Fatalf("Build() = %q, %v; want %q reused", got, err, dir)
	}
}

func TestLockExcludes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	unlock, err := lock(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	if _, err := lock(ctx, path); err == nil {
		t.Fatal("second lock taken while the first is held")
	}
	unlock()
	unlock2, err := lock(context.Background(), path)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	unlock2()
}

func TestFirstServiceIP(t *testing.T) {
	tests := []struct {
		cidr, want, err string
	}{
		{DefaultServiceCIDR, "127.96.0.1", ""},
		{"10.96.0.0/12", "10.96.0.1", ""},
		{"fd00::/108", "fd00::1", ""},
		{"127.96.0.1/16", "", "host bits set"},
		{"127.96.0.0/32", "", "no room"},
		{"nonsense", "", `Options.ServiceCIDR "nonsense"`},
	}
	for _, tt := range tests {
		t.Run(tt.cidr, func(t *testing.T) {
			got, err := firstServiceIP(tt.cidr)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil || got.String() != tt.want {
				t.Fatalf("= %v, %v; want %s", got, err, tt.want)
			}
		})
	}
}

func TestPKI(t *testing.T) {
	dir := t.TempDir()
	ip, _ := firstServiceIP(DefaultServiceCIDR)
	p, err := newPKI(dir, []net.IP{net.IPv4(127, 0, 0, 1), ip.AsSlice()}, []string{"localhost", "kubernetes.default.svc"}, adminIdentity, scheduler)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(p.caCert)

	serving := parseCert(t, filepath.Join(dir, servingCertFile))
	for _, host := range []string{"127.0.0.1", "127.96.0.1", "localhost", "kubernetes.default.svc"} {
		if _, err := serving.Verify(x509.VerifyOptions{Roots: roots, DNSName: host}); err != nil {
			t.Errorf("serving certificate for %s: %v", host, err)
		}
	}
	clients := []struct {
		id     identity
		groups []string
	}{
		{adminIdentity, []string{"system:masters"}},
		{scheduler, nil},
	}
	for _, tt := range clients {
		cert := parseCert(t, filepath.Join(dir, tt.id.file+".crt"))
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("%s: %v", tt.id.user, err)
		}
		if cert.Subject.CommonName != tt.id.user || !slices.Equal(cert.Subject.Organization, tt.groups) {
			t.Errorf("%s: subject %v, want CN=%s O=%v", tt.id.file, cert.Subject, tt.id.user, tt.groups)
		}
	}
	if _, err := x509.ParsePKIXPublicKey(pemBlock(t, filepath.Join(dir, saPublicFile)).Bytes); err != nil {
		t.Errorf("service-account public key: %v", err)
	}

	// client-go must load the kubeconfig and its embedded credentials.
	b, err := p.kubeconfig("https://127.0.0.1:6443", adminIdentity)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(b)
	if err != nil {
		t.Fatalf("kubeconfig does not load: %v\n%s", err, b)
	}
	if cfg.Host != "https://127.0.0.1:6443" || len(cfg.CAData) == 0 || len(cfg.CertData) == 0 || len(cfg.KeyData) == 0 {
		t.Errorf("kubeconfig gives host %q, CA %d bytes, cert %d, key %d", cfg.Host, len(cfg.CAData), len(cfg.CertData), len(cfg.KeyData))
	}
}

// A component that dies, or never becomes ready, fails Start with its log
// in the error, and nothing is left running.
func TestStartReportsComponentFailure(t *testing.T) {
	tests := []struct {
		name, script string
		want         []string
	}{
		{"exits", "echo 'etcdmain: boom on purpose' >&2; exit 3", []string{"etcd exited", "exited before it was ready", "boom on purpose", "etcd.log"}},
		{"hangs", "echo 'listening nowhere'; exec sleep 30", []string{"etcd running", "not ready after", "listening nowhere"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bin := t.TempDir()
			writeFile(t, filepath.Join(bin, "etcd"), "#!/bin/sh\n"+tt.script+"\n")
			if err := os.Chmod(filepath.Join(bin, "etcd"), 0o755); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_, err := Start(context.Background(), t.TempDir(), Options{BinDir: bin, ReadyTimeout: time.Second})
			if err == nil {
				t.Fatal("Start succeeded with a broken etcd")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if d := time.Since(start); d > 15*time.Second {
				t.Errorf("Start took %v to give up", d)
			}
		})
	}
}

func TestTail(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"line one\nline two\nline three", 14, "...\nline three"},
		{"abcdefghij", 4, "...\nghij"},
	}
	for _, tt := range tests {
		if got := tail([]byte(tt.in), tt.n); got != tt.want {
			t.Errorf("tail(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func pemBlock(t *testing.T, path string) *pem.Block {
	t.Helper()
	b, _ := pem.Decode([]byte(readFile(t, path)))
	if b == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	return b
}

func parseCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(pemBlock(t, path).Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}
