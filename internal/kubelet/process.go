package kubelet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// ProcessSpec describes one supervised program.
type ProcessSpec struct {
	Name    string // for logs, e.g. "default/details-v1-…/details"
	Argv    []string
	Env     []string
	Dir     string
	LogPath string // stdout and stderr are appended here
	// GracePeriod is how long Stop waits after SIGTERM before SIGKILL.
	GracePeriod time.Duration
	Backoff     Backoff
	// Restart is the pod's restartPolicy; the zero value is Always.
	Restart restartPolicy
}

// restartPolicy is Kubernetes' pod restartPolicy.
type restartPolicy int

const (
	restartAlways restartPolicy = iota
	restartOnFailure
	restartNever
)

// restarts reports whether a run that ended with err is followed by another.
func (r restartPolicy) restarts(err error) bool {
	switch r {
	case restartNever:
		return false
	case restartOnFailure:
		return err != nil
	}
	return true
}

// backoff is CrashLoopBackOff: the delay before a restart starts at Initial
// and doubles up to Max; a run that lasted ResetAfter starts over.
type Backoff struct {
	Initial, Max, ResetAfter time.Duration
}

var DefaultBackoff = Backoff{Initial: time.Second, Max: 30 * time.Second, ResetAfter: 2 * time.Minute}

const DefaultGracePeriod = 5 * time.Second

func (b Backoff) next(prev, lastRun time.Duration) time.Duration {
	if prev == 0 || (b.ResetAfter > 0 && lastRun >= b.ResetAfter) {
		return b.Initial
	}
	return min(2*prev, b.Max)
}

// ProcessStatus is a snapshot of a supervised program.
type ProcessStatus struct {
	Running      bool
	Pid          int // of the current run, 0 when not running
	RestartCount int32
	StartedAt    time.Time
	LastExit     string    // "exit status 1", "signal: killed", a start error…
	LastExitAt   time.Time // zero until the first exit
	LastExitCode int       // exit code of the last run (-1: killed by a signal or never started)
	Waiting      bool      // in backoff before a restart
	// Terminated: the last run ended and the restart policy starts no other.
	Terminated bool
}

// Process keeps one program running as its restart policy says (Always:
// every exit, even a clean one, is followed by a restart after a backoff).
// Each run is in its own process group, so Stop reaches the program's
// children too, and dies with the runner (Pdeathsig on Linux).
type Process struct {
	spec    ProcessSpec
	log     *slog.Logger
	logFile *os.File
	changed func() // called after every start and exit; may be nil

	mu      sync.Mutex
	status  ProcessStatus
	cmd     *exec.Cmd // the current run, nil between runs
	stopped bool

	stop chan struct{} // closed by Stop
	done chan struct{} // closed when the supervision loop has ended
}

// StartProcess starts the program once and supervises it from then on. An
// error means the program could not be started at all (bad path, no such
// binary, unwritable log): retrying would not help.
func StartProcess(spec ProcessSpec, log *slog.Logger, changed func()) (*Process, error) {
	if len(spec.Argv) == 0 {
		return nil, errors.New("empty command")
	}
	if spec.GracePeriod <= 0 {
		spec.GracePeriod = DefaultGracePeriod
	}
	if spec.Backoff == (Backoff{}) {
		spec.Backoff = DefaultBackoff
	}
	if err := os.MkdirAll(filepath.Dir(spec.LogPath), 0o755); err != nil {
		return nil, fmt.Errorf("log directory: %w", err)
	}
	f, err := os.OpenFile(spec.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	p := &Process{spec: spec, log: log.With("process", spec.Name), logFile: f, changed: changed,
		stop: make(chan struct{}), done: make(chan struct{})}
	cmd, err := p.launch()
	if err != nil {
		f.Close()
		return nil, err
	}
	go p.supervise(cmd)
	return p, nil
}

// errStopped reports a launch attempted after Stop.
var errStopped = errors.New("process stopped")

// launch starts one run of the program. It holds the lock across Start so
// that Stop either sees the new run or prevents it.
func (p *Process) launch() (*exec.Cmd, error) {
	cmd := exec.Command(p.spec.Argv[0], p.spec.Argv[1:]...)
	cmd.Env = p.spec.Env
	cmd.Dir = p.spec.Dir
	cmd.Stdout = p.logFile
	cmd.Stderr = p.logFile
	cmd.SysProcAttr = childProcAttr()
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return nil, errStopped
	}
	fmt.Fprintf(p.logFile, "---- skein: %s start #%d: %s\n", time.Now().Format(time.RFC3339), p.status.RestartCount+1, strings.Join(p.spec.Argv, " "))
	if err := cmd.Start(); err != nil {
		p.mu.Unlock()
		fmt.Fprintf(p.logFile, "---- skein: start failed: %v\n", err)
		return nil, fmt.Errorf("starting %s: %w", p.spec.Argv[0], err)
	}
	p.cmd = cmd
	p.status.Running = true
	p.status.Pid = cmd.Process.Pid
	p.status.Waiting = false
	p.status.StartedAt = time.Now()
	p.mu.Unlock()
	p.notify()
	return cmd, nil
}

func (p *Process) supervise(cmd *exec.Cmd) {
	defer close(p.done)
	defer p.logFile.Close()
	var delay time.Duration
	for {
		var lastRun time.Duration
		if cmd != nil {
			err := cmd.Wait()
			p.mu.Lock()
			lastRun = time.Since(p.status.StartedAt)
			p.status.Running = false
			p.status.Pid = 0
			p.status.LastExit = exitDescription(err)
			p.status.LastExitAt = time.Now()
			p.status.LastExitCode = exitCode(err)
			p.cmd = nil
			if !p.spec.Restart.restarts(err) {
				p.status.Terminated = true
			}
			p.mu.Unlock()
			fmt.Fprintf(p.logFile, "---- skein: %s exited: %s\n", time.Now().Format(time.RFC3339), exitDescription(err))
			if !p.spec.Restart.restarts(err) {
				p.notify()
				return
			}
		}
		select {
		case <-p.stop:
			p.notify()
			return
		default:
		}
		delay = p.spec.Backoff.next(delay, lastRun)
		p.mu.Lock()
		p.status.Waiting = true
		p.mu.Unlock()
		p.notify()
		p.log.Warn("process exited; restarting", "exit", p.Status().LastExit, "after", delay)
		select {
		case <-p.stop:
			return
		case <-time.After(delay):
		}
		p.mu.Lock()
		p.status.RestartCount++
		p.mu.Unlock()
		var err error
		cmd, err = p.launch()
		if errors.Is(err, errStopped) {
			return
		}
		if err != nil {
			p.log.Error("restart failed", "error", err)
			p.mu.Lock()
			p.status.LastExit = err.Error()
			p.status.LastExitAt = time.Now()
			p.mu.Unlock()
			cmd = nil
		}
	}
}

// exitCode is the program's exit status, or -1 when it has none (killed by
// a signal).
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

func exitDescription(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

func (p *Process) notify() {
	if p.changed != nil {
		p.changed()
	}
}

// Status returns a snapshot of the program's state.
func (p *Process) Status() ProcessStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

// Stop ends supervision: SIGTERM to the program's process group, SIGKILL
// after the grace period, and returns once the program has exited or ctx
// is done.
func (p *Process) Stop(ctx context.Context) {
	p.mu.Lock()
	if !p.stopped {
		p.stopped = true
		close(p.stop)
	}
	cmd := p.cmd
	p.mu.Unlock()
	if cmd != nil {
		signalGroup(cmd.Process.Pid, sigTerm)
		select {
		case <-p.done:
			return
		case <-time.After(p.spec.GracePeriod):
			p.log.Warn("process ignored SIGTERM; killing", "grace", p.spec.GracePeriod)
		case <-ctx.Done():
		}
		signalGroup(cmd.Process.Pid, sigKill)
		// SIGKILL cannot be ignored: wait for the exit even though ctx may
		// be done, so callers (a pod's deletion, its IP's release) never
		// see a process outlive Stop. Bounded for a process stuck in the
		// kernel (D state).
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			p.log.Warn("process still running 5s after SIGKILL")
		}
		return
	}
	select {
	case <-p.done:
	case <-ctx.Done():
	}
}
