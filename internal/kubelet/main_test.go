package kubelet

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// helperEnv switches the test binary into a small program the process
// tests supervise, so they run real processes without depending on
// anything installed on the machine.
const helperEnv = "SKEIN_KUBELET_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		runHelper(mode)
		return
	}
	os.Exit(m.Run())
}

func runHelper(mode string) {
	switch mode {
	case "crash":
		fmt.Println("helper: crashing")
		os.Exit(3)
	case "term":
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM)
		fmt.Println("helper: ready")
		<-c
		fmt.Println("helper: got SIGTERM")
		os.Exit(0)
	case "ignore-term":
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("helper: ready")
		time.Sleep(time.Hour)
	case "listen":
		// A minimal app: serves HTTP on $SKEIN_APP_IP:$PORT like Bookinfo.
		ln, err := net.Listen("tcp", net.JoinHostPort(os.Getenv("SKEIN_APP_IP"), os.Getenv("PORT")))
		if err != nil {
			fmt.Println("helper:", err)
			os.Exit(1)
		}
		fmt.Println("helper: listening on", ln.Addr(), "as", os.Getenv("POD_NAME"), "version", os.Getenv("VERSION"))
		_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintln(w, os.Getenv("POD_NAME"))
		}))
	case "sleep":
		fmt.Println("helper: ready")
		time.Sleep(time.Hour)
	case "grandchild":
		// Starts a child in its own (inherited) process group and reports it.
		child := exec.Command(os.Args[0])
		child.Env = append(os.Environ(), helperEnv+"=sleep")
		if err := child.Start(); err != nil {
			fmt.Println("helper:", err)
			os.Exit(1)
		}
		fmt.Printf("child-pid %d\n", child.Process.Pid)
		time.Sleep(time.Hour)
	case "supervisor":
		// Plays the runner: supervises a sleeping child, reports its pid
		// on stdout and waits to be killed.
		p, err := StartProcess(ProcessSpec{
			Name: "child", Argv: []string{os.Args[0]},
			Env:     append(os.Environ(), helperEnv+"=sleep"),
			LogPath: filepath.Join(os.Getenv("HELPER_DIR"), "child.log"),
		}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
		if err != nil {
			fmt.Println("helper:", err)
			os.Exit(1)
		}
		fmt.Printf("child-pid %d\n", p.Status().Pid)
		time.Sleep(time.Hour)
	default:
		fmt.Fprintln(os.Stderr, "unknown helper mode", mode)
		os.Exit(2)
	}
}

// helperArgv returns argv and env running the test binary as helper mode.
func helperSpec(t *testing.T, mode string) ProcessSpec {
	t.Helper()
	return ProcessSpec{
		Name:    mode,
		Argv:    []string{os.Args[0]},
		Env:     append(os.Environ(), helperEnv+"="+mode),
		LogPath: filepath.Join(t.TempDir(), "logs", mode+".log"),
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// processGone reports whether pid no longer runs (gone or a zombie).
func processGone(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false // no /proc: kill(0) succeeded, so it runs
	}
	// "pid (comm) state ...": comm may contain spaces, so split after ")".
	_, rest, _ := strings.Cut(string(stat), ") ")
	return strings.HasPrefix(rest, "Z") || strings.HasPrefix(rest, "X")
}
