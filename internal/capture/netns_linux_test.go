//go:build linux

package capture_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skein-mesh/skein/internal/proxy/origdst"
)

// The test binary re-executes itself inside the test's network namespaces
// (through nsenter, which also sets the uid/gid) as a listener or a dialer.
const helperEnv = "SKEIN_CAPTURE_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "serve":
		os.Exit(serve(os.Args[1:]))
	case "dial":
		os.Exit(dial(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// serve listens on each "name=proto:addr" and answers every connection
// (or datagram) with "<name> orig=<original destination>".
func serve(specs []string) int {
	for _, s := range specs {
		name, addr, _ := strings.Cut(s, "=")
		proto, addr, _ := strings.Cut(addr, ":")
		if proto == "udp" {
			pc, err := net.ListenPacket("udp", addr)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			go func() {
				buf := make([]byte, 512)
				for {
					_, from, err := pc.ReadFrom(buf)
					if err != nil {
						return
					}
					_, _ = pc.WriteTo([]byte(name+"\n"), from)
				}
			}()
			continue
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				orig, err := origdst.Of(c)
				reply := name + " orig=" + orig.String()
				if err != nil {
					reply = name + " orig-error=" + err.Error()
				}
				_, _ = io.WriteString(c, reply+"\n")
				c.Close()
			}
		}()
	}
	fmt.Println("ready")
	select {}
}

// dial connects to proto:addr (from source, when given) and prints the
// first line it gets back.
func dial(args []string) int {
	proto, target, source := args[0], args[1], ""
	if len(args) > 2 {
		source = args[2]
	}
	d := net.Dialer{Timeout: 3 * time.Second}
	if source != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(source)}
	}
	c, err := d.Dial(proto, target)
	if err != nil {
		fmt.Println("dial-error:", err)
		return 0
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if proto == "udp" {
		_, _ = c.Write([]byte("query"))
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		fmt.Println("read-error:", err)
		return 0
	}
	fmt.Print(line)
	return 0
}

// skipOrFail skips a developer's run that lacks a capability; under CI it
// fails, so CI cannot pass without exercising the real thing.
func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

var iptablesOnce sync.Once
var iptablesErr error

// ensureIptables installs Debian's iptables when iptables-restore is missing.
func ensureIptables() error {
	iptablesOnce.Do(func() {
		if _, err := exec.LookPath("iptables-restore"); err == nil {
			return
		}
		for _, args := range [][]string{{"update", "-qq"}, {"install", "-y", "-qq", "iptables"}} {
			cmd := exec.Command("apt-get", append([]string{"-o", "DPkg::Lock::Timeout=600"}, args...)...)
			cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
			if out, err := cmd.CombinedOutput(); err != nil {
				iptablesErr = fmt.Errorf("apt-get %s: %v\n%s", strings.Join(args, " "), err, out)
				return
			}
		}
		_, iptablesErr = exec.LookPath("iptables-restore")
	})
	return iptablesErr
}

// netns is a network namespace the test created.
type netns struct{ name string }

func (n netns) path() string { return "/run/netns/" + n.name }

// cmd runs bin inside the namespace as uid:gid.
func (n netns) cmd(uid, gid int, bin string, args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"--net=" + n.path(), "-S", fmt.Sprint(uid), "-G", fmt.Sprint(gid), bin}, args...)...)
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// The capture path end to end, in namespaces of the test's own: a "pod"
// (10.99.0.2, fd00:99::2) and a "peer" (10.99.0.1, fd00:99::1) joined by a
// veth pair. `skein iptables` with istio-init's flags installs the rules in
// the pod; listeners there stand in for the sidecar's 15001/15006 and read
// the original destination with origdst.
func TestCaptureInNetworkNamespace(t *testing.T) {
	if testing.Short() {
		t.Skip("builds skein and creates network namespaces")
	}
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root (network namespaces, iptables)")
	}
	for _, tool := range []string{"ip", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			skipOrFail(t, "needs %s: %v", tool, err)
		}
	}
	if err := ensureIptables(); err != nil {
		skipOrFail(t, "needs iptables: %v", err)
	}

	dir, err := os.MkdirTemp("", "skein-capture-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// Processes running as uid 1337 must be able to execute the helper.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	skein := filepath.Join(dir, "skein")
	if out, err := exec.Command("go", "build", "-o", skein, "github.com/skein-mesh/skein/cmd/skein").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/skein: %v\n%s", err, out)
	}
	helper := filepath.Join(dir, "helper.test")
	copyExecutable(t, helper)

	pod := netns{fmt.Sprintf("skein-cap-%d-pod", os.Getpid())}
	peer := netns{fmt.Sprintf("skein-cap-%d-peer", os.Getpid())}
	for _, n := range []netns{pod, peer} {
		run(t, "ip", "netns", "add", n.name)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", n.name).Run() })
	}
	run(t, "ip", "-n", pod.name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", peer.name)
	for _, s := range []struct {
		ns     netns
		v4, v6 string
	}{{pod, "10.99.0.2/24", "fd00:99::2/64"}, {peer, "10.99.0.1/24", "fd00:99::1/64"}} {
		run(t, "ip", "-n", s.ns.name, "link", "set", "lo", "up")
		run(t, "ip", "-n", s.ns.name, "addr", "add", s.v4, "dev", "eth0")
		run(t, "ip", "-n", s.ns.name, "-6", "addr", "add", s.v6, "dev", "eth0", "nodad")
		run(t, "ip", "-n", s.ns.name, "link", "set", "eth0", "up")
	}

	startServer(t, peer, 0, helper, "peer=tcp::9080", "peer-dns=udp::53")
	startServer(t, pod, 0, helper, "outbound=tcp::15001", "inbound=tcp::15006", "app=tcp::9080",
		"health=tcp::15021", "stats=tcp::15090", "merged=tcp::15020")
	// The agent's DNS proxy runs as the proxy's user on localhost, as in a
	// pod: the REDIRECT sends to 127.0.0.1, and a reply from another source
	// would not match the NAT entry.
	startServer(t, pod, 1337, helper, "agent-dns=udp:127.0.0.1:15053", "agent-dns-tcp=tcp:127.0.0.1:15053")

	istioInit := []string{"iptables", "-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT",
		"-i", "*", "-x", "", "-b", "*", "-d", "15090,15021,15020"}
	apply := func(extra ...string) {
		t.Helper()
		if out, err := pod.cmd(0, 0, skein, append(istioInit, extra...)...).CombinedOutput(); err != nil {
			t.Fatalf("skein %s: %v\n%s", strings.Join(append(istioInit, extra...), " "), err, out)
		}
	}
	type dialCase struct {
		name     string
		from     netns
		uid, gid int
		proto    string
		target   string
		source   string
		want     string
	}
	check := func(cases []dialCase) {
		t.Helper()
		for _, c := range cases {
			args := []string{c.proto, c.target}
			if c.source != "" {
				args = append(args, c.source)
			}
			cmd := c.from.cmd(c.uid, c.gid, helper, args...)
			cmd.Env = append(os.Environ(), helperEnv+"=dial")
			out, err := cmd.CombinedOutput()
			if got := strings.TrimSpace(string(out)); err != nil || got != c.want {
				t.Errorf("%s: uid %d gid %d %s %s: got %q (%v), want %q", c.name, c.uid, c.gid, c.proto, c.target, got, err, c.want)
			}
		}
	}

	apply()
	captured := []dialCase{
		{"app's outbound goes to 15001", pod, 0, 0, "tcp", "10.99.0.1:9080", "", "outbound orig=10.99.0.1:9080"},
		{"app's IPv6 outbound goes to 15001", pod, 0, 0, "tcp", "[fd00:99::1]:9080", "", "outbound orig=[fd00:99::1]:9080"},
		{"proxy uid is not captured", pod, 1337, 1337, "tcp", "10.99.0.1:9080", "", "peer orig=10.99.0.1:9080"},
		{"proxy gid is not captured", pod, 1000, 1337, "tcp", "10.99.0.1:9080", "", "peer orig=10.99.0.1:9080"},
		{"inbound goes to 15006", peer, 0, 0, "tcp", "10.99.0.2:9080", "", "inbound orig=10.99.0.2:9080"},
		{"IPv6 inbound goes to 15006", peer, 0, 0, "tcp", "[fd00:99::2]:9080", "", "inbound orig=[fd00:99::2]:9080"},
		{"15021 is excluded", peer, 0, 0, "tcp", "10.99.0.2:15021", "", "health orig=10.99.0.2:15021"},
		{"15090 is excluded", peer, 0, 0, "tcp", "10.99.0.2:15090", "", "stats orig=10.99.0.2:15090"},
		{"15020 is excluded", peer, 0, 0, "tcp", "10.99.0.2:15020", "", "merged orig=10.99.0.2:15020"},
		{"inbound passthrough from 127.0.0.6 reaches the app", pod, 1337, 1337, "tcp", "10.99.0.2:9080", "127.0.0.6", "app orig=10.99.0.2:9080"},
		{"IPv6 inbound passthrough from ::6 reaches the app", pod, 1337, 1337, "tcp", "[fd00:99::2]:9080", "::6", "app orig=[fd00:99::2]:9080"},
		{"proxy calling its own pod IP comes back inbound", pod, 1337, 1337, "tcp", "10.99.0.2:9080", "", "inbound orig=10.99.0.2:9080"},
		{"app calling its own pod IP is not captured", pod, 0, 0, "tcp", "10.99.0.2:9080", "", "app orig=10.99.0.2:9080"},
		{"localhost is not captured", pod, 0, 0, "tcp", "127.0.0.1:9080", "", "app orig=127.0.0.1:9080"},
		{"DNS is not captured by default", pod, 0, 0, "udp", "10.99.0.1:53", "", "peer-dns"},
	}
	check(captured)

	// Re-run with DNS capture: the chains are replaced, not duplicated.
	apply("--redirect-dns", "--capture-all-dns")
	check([]dialCase{
		{"app's outbound still goes to 15001", pod, 0, 0, "tcp", "10.99.0.1:9080", "", "outbound orig=10.99.0.1:9080"},
		{"app's UDP DNS goes to 15053", pod, 0, 0, "udp", "10.99.0.1:53", "", "agent-dns"},
		{"app's TCP DNS goes to 15053", pod, 0, 0, "tcp", "10.99.0.1:53", "", "agent-dns-tcp orig=10.99.0.1:53"},
		{"proxy's DNS is not captured", pod, 1337, 1337, "udp", "10.99.0.1:53", "", "peer-dns"},
	})
	apply() // and back: DNS off again, as idempotent as the first run
	check(captured)
	saved := pod.save(t, "iptables-save")
	for _, jump := range []string{"-A OUTPUT -j ISTIO_OUTPUT", "-A PREROUTING -p tcp -j ISTIO_INBOUND"} {
		if n := strings.Count(saved, jump+"\n"); n != 1 {
			t.Errorf("after three runs %q appears %d times, want once:\n%s", jump, n, saved)
		}
	}
	if strings.Contains(saved, "ISTIO_OUTPUT_DNS") {
		t.Errorf("DNS capture turned off but ISTIO_OUTPUT_DNS remains:\n%s", saved)
	}

	if out, err := pod.cmd(0, 0, skein, "iptables", "--cleanup-only").CombinedOutput(); err != nil {
		t.Fatalf("skein iptables --cleanup-only: %v\n%s", err, out)
	}
	for _, save := range []string{"iptables-save", "ip6tables-save"} {
		if s := pod.save(t, save); strings.Contains(s, "ISTIO_") {
			t.Errorf("after cleanup %s still shows Istio rules:\n%s", save, s)
		}
	}
	check([]dialCase{
		{"after cleanup the app dials directly", pod, 0, 0, "tcp", "10.99.0.1:9080", "", "peer orig=10.99.0.1:9080"},
		{"after cleanup inbound reaches the app", peer, 0, 0, "tcp", "10.99.0.2:9080", "", "app orig=10.99.0.2:9080"},
	})
}

func (n netns) save(t *testing.T, tool string) string {
	t.Helper()
	out, err := n.cmd(0, 0, tool).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", tool, err, out)
	}
	return string(out)
}

// startServer runs a serve helper in ns as uid (gid = uid) until the test ends.
func startServer(t *testing.T, ns netns, uid int, helper string, specs ...string) {
	t.Helper()
	cmd := ns.cmd(uid, uid, helper, specs...)
	cmd.Env = append(os.Environ(), helperEnv+"=serve")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err == nil && strings.TrimSpace(line) != "ready" {
			err = errors.New("unexpected " + line)
		}
		ready <- err
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("server %v: %v\n%s", specs, err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("server %v not ready after 30s\n%s", specs, stderr.String())
	}
}

// copyExecutable copies the running test binary to dst (mode 0755): the
// build directory is private to root.
func copyExecutable(t *testing.T, dst string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
