package kubelet

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestBackoffNext(t *testing.T) {
	b := Backoff{Initial: time.Second, Max: 30 * time.Second, ResetAfter: time.Minute}
	var got []time.Duration
	var d time.Duration
	for range 7 {
		d = b.next(d, time.Second)
		got = append(got, d)
	}
	want := []time.Duration{1, 2, 4, 8, 16, 30, 30}
	for i := range want {
		if got[i] != want[i]*time.Second {
			t.Fatalf("delays = %v, want %v seconds", got, want)
		}
	}
	if d := b.next(30*time.Second, 2*time.Minute); d != time.Second {
		t.Errorf("after a long healthy run the backoff starts over, got %s", d)
	}
}

func readLog(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestProcessRestartsCrashesWithBackoff(t *testing.T) {
	spec := helperSpec(t, "crash")
	spec.Backoff = Backoff{Initial: 50 * time.Millisecond, Max: 200 * time.Millisecond}
	var changes atomic.Int32
	start := time.Now()
	p, err := StartProcess(spec, discardLogger(), func() { changes.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "3 restarts", func() bool { return p.Status().RestartCount >= 3 })
	// Three restarts waited at least 50 + 100 + 200 ms.
	if elapsed := time.Since(start); elapsed < 350*time.Millisecond {
		t.Errorf("3 restarts took %s; backoff should make it at least 350ms", elapsed)
	}
	p.Stop(context.Background())
	after := p.Status()
	time.Sleep(300 * time.Millisecond)
	if p.Status().RestartCount != after.RestartCount {
		t.Errorf("process restarted after Stop")
	}
	if after.Running || after.LastExitAt.IsZero() {
		t.Errorf("status after Stop = %+v", after)
	}
	if changes.Load() < 6 {
		t.Errorf("change callback called %d times for >= 4 starts and exits", changes.Load())
	}
	log := readLog(t, spec.LogPath)
	// The fourth run may have been stopped before it printed anything.
	if n := strings.Count(log, "helper: crashing"); n < 3 {
		t.Errorf("log has %d runs' output, want >= 3:\n%s", n, log)
	}
	for _, want := range []string{"start #1:", "start #4:", "exited: exit status 3"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

func TestProcessStopSendsSIGTERM(t *testing.T) {
	spec := helperSpec(t, "term")
	p, err := StartProcess(spec, discardLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "helper ready", func() bool { return strings.Contains(readLog(t, spec.LogPath), "helper: ready") })
	pid := p.Status().Pid
	start := time.Now()
	p.Stop(context.Background())
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Stop of a program that exits on SIGTERM took %s", d)
	}
	if !strings.Contains(readLog(t, spec.LogPath), "helper: got SIGTERM") {
		t.Errorf("program did not see SIGTERM:\n%s", readLog(t, spec.LogPath))
	}
	if st := p.Status(); st.Running || st.RestartCount != 0 || !processGone(pid) {
		t.Errorf("after Stop: %+v (pid %d gone: %v)", st, pid, processGone(pid))
	}
}

func TestProcessStopKillsAfterGracePeriod(t *testing.T) {
	spec := helperSpec(t, "ignore-term")
	spec.GracePeriod = 300 * time.Millisecond
	p, err := StartProcess(spec, discardLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "helper ready", func() bool { return strings.Contains(readLog(t, spec.LogPath), "helper: ready") })
	pid := p.Status().Pid
	start := time.Now()
	p.Stop(context.Background())
	d := time.Since(start)
	if d < 300*time.Millisecond || d > 3*time.Second {
		t.Errorf("Stop took %s, want the 300ms grace period then SIGKILL", d)
	}
	if !processGone(pid) {
		t.Errorf("pid %d survived SIGKILL", pid)
	}
	if !strings.Contains(readLog(t, spec.LogPath), "signal: killed") {
		t.Errorf("log does not record the kill:\n%s", readLog(t, spec.LogPath))
	}
}

// A caller's deadline cuts the grace period short, but Stop still returns
// only once the killed process is gone.
func TestProcessStopWithExpiringContextWaitsForTheKill(t *testing.T) {
	spec := helperSpec(t, "ignore-term")
	spec.GracePeriod = 30 * time.Second
	p, err := StartProcess(spec, discardLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "helper ready", func() bool { return strings.Contains(readLog(t, spec.LogPath), "helper: ready") })
	pid := p.Status().Pid
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	p.Stop(ctx)
	if !processGone(pid) {
		t.Errorf("pid %d still exists when Stop returned", pid)
	}
}

var childPidRE = regexp.MustCompile(`child-pid (\d+)`)

func TestProcessStopReachesTheWholeProcessGroup(t *testing.T) {
	spec := helperSpec(t, "grandchild")
	p, err := StartProcess(spec, discardLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var child int
	waitFor(t, 5*time.Second, "grandchild pid", func() bool {
		m := childPidRE.FindStringSubmatch(readLog(t, spec.LogPath))
		if m != nil {
			child, _ = strconv.Atoi(m[1])
		}
		return m != nil
	})
	p.Stop(context.Background())
	waitFor(t, 3*time.Second, fmt.Sprintf("grandchild %d to die with its group", child), func() bool { return processGone(child) })
}

func TestStartProcessReportsUnstartablePrograms(t *testing.T) {
	spec := helperSpec(t, "sleep")
	spec.Argv = []string{"/nonexistent/program"}
	_, err := StartProcess(spec, discardLogger(), nil)
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/program") {
		t.Errorf("err = %v, want it to name the program", err)
	}
	if _, err := StartProcess(ProcessSpec{LogPath: spec.LogPath}, discardLogger(), nil); err == nil {
		t.Errorf("an empty command must be an error")
	}
}

// The runner may die without cleaning up (SIGKILL, a crash): its children
// must not outlive it.
func TestChildrenDieWithTheRunner(t *testing.T) {
	if _, err := os.Stat("/proc/self"); err != nil {
		t.Skip("Pdeathsig is Linux-only")
	}
	runner := exec.Command(os.Args[0])
	runner.Env = append(os.Environ(), helperEnv+"=supervisor", "HELPER_DIR="+t.TempDir())
	out, err := runner.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := runner.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		runner.Process.Kill()
		t.Fatalf("reading the supervised child's pid: %v (%q)", err, line)
	}
	m := childPidRE.FindStringSubmatch(line)
	if m == nil {
		runner.Process.Kill()
		t.Fatalf("unexpected helper output %q", line)
	}
	child, _ := strconv.Atoi(m[1])
	if processGone(child) {
		t.Fatalf("child %d not running before the runner dies", child)
	}
	runner.Process.Kill()
	runner.Wait()
	waitFor(t, 3*time.Second, fmt.Sprintf("child %d to die with the runner", child), func() bool { return processGone(child) })
}
