package kubelet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// ContainerState is what the runner knows about one container of a pod.
type ContainerState struct {
	Name         string
	IsProxy      bool
	Running      bool
	Ready        bool
	RestartCount int32
	StartedAt    time.Time
	LastExit     string
	LastExitAt   time.Time
	LastExitCode int
	// Terminated: the container exited and its pod's restart policy does
	// not restart it (LastExit* describe how).
	Terminated bool
	// Reason and Message explain a container that is not running, in
	// Kubernetes' words (CreateContainerConfigError, CrashLoopBackOff).
	Reason, Message string
}

// Kubernetes' reasons for a container that is not running.
const (
	ReasonConfigError = "CreateContainerConfigError" // never started: bad spec
	ReasonStartError  = "StartError"                 // never started: exec failed
	ReasonCrashLoop   = "CrashLoopBackOff"           // exited, waiting to restart
	ReasonImage       = "ErrImagePull"               // never started: no program for the image
)

// imageError is a container whose image the runner has no program for.
type imageError struct{ msg string }

func (e *imageError) Error() string { return e.msg }

// configReason is the waiting reason of a container that cannot be created.
func configReason(err error) string {
	var ie *imageError
	if errors.As(err, &ie) {
		return ReasonImage
	}
	return ReasonConfigError
}

// PodState is a pod's current observed state.
type PodState struct {
	Containers []ContainerState
	Ready      bool
}

// ReadyCount returns how many containers are ready, kubectl's "1/2".
func (s PodState) ReadyCount() (ready, total int) {
	for _, c := range s.Containers {
		if c.Ready {
			ready++
		}
	}
	return ready, len(s.Containers)
}

// equal reports whether the states differ in anything worth publishing;
// timestamps alone are not.
func (s PodState) equal(o PodState) bool {
	if s.Ready != o.Ready || len(s.Containers) != len(o.Containers) {
		return false
	}
	for i, c := range s.Containers {
		d := o.Containers[i]
		if c.Running != d.Running || c.Ready != d.Ready || c.RestartCount != d.RestartCount || c.Reason != d.Reason || c.Terminated != d.Terminated {
			return false
		}
	}
	return true
}

// ProbeConfig tunes readiness checking; tests shorten it.
type ProbeConfig struct {
	Interval time.Duration
	Timeout  time.Duration
}

var DefaultProbe = ProbeConfig{Interval: 500 * time.Millisecond, Timeout: 400 * time.Millisecond}

// Pod is one running pod: its processes and a readiness prober.
type Pod struct {
	plan     *Plan
	procs    []*Process // parallel to plan.Containers; nil when not started
	log      *slog.Logger
	changed  func()
	probe    ProbeConfig
	client   *http.Client
	probeNow chan struct{}

	mu      sync.Mutex
	state   PodState
	version int64 // bumped whenever state changes in a way worth publishing

	cancel    context.CancelFunc
	probeDone chan struct{}
}

// StartPod starts every runnable container of plan, the proxy first, and
// then watches readiness. changed is called (from any goroutine) whenever
// the pod's state changes.
func StartPod(plan *Plan, logDir string, bo Backoff, grace time.Duration, probe ProbeConfig, log *slog.Logger, changed func()) *Pod {
	p := &Pod{
		plan: plan, procs: make([]*Process, len(plan.Containers)),
		log: log.With("pod", plan.Namespace+"/"+plan.Name), changed: changed, probe: probe,
		client:   &http.Client{Timeout: probe.Timeout, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}},
		probeNow: make(chan struct{}, 1),
	}
	startErrs := make([]error, len(plan.Containers))
	order := make([]int, 0, len(plan.Containers))
	for i, c := range plan.Containers {
		if c.IsProxy {
			order = append([]int{i}, order...)
		} else {
			order = append(order, i)
		}
	}
	for _, i := range order {
		c := plan.Containers[i]
		if c.Err != nil {
			p.log.Error("container cannot run", "container", c.Name, "error", c.Err)
			continue
		}
		spec := ProcessSpec{
			Name:        plan.Namespace + "/" + plan.Name + "/" + c.Name,
			Argv:        c.Argv,
			Env:         c.Env,
			Dir:         c.Dir,
			LogPath:     filepath.Join(logDir, plan.Namespace, plan.Name, c.Name+".log"),
			GracePeriod: grace,
			Backoff:     bo,
			Restart:     plan.Restart,
		}
		proc, err := StartProcess(spec, p.log, p.kick)
		if err != nil {
			p.log.Error("container failed to start", "container", c.Name, "error", err)
			startErrs[i] = err
			continue
		}
		p.procs[i] = proc
	}
	p.state = p.observe(startErrs, nil)
	p.version = 1
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.probeDone = make(chan struct{})
	go p.probeLoop(ctx, startErrs)
	return p
}

// kick asks the prober for an immediate check (a process started or exited).
func (p *Pod) kick() {
	select {
	case p.probeNow <- struct{}{}:
	default:
	}
}

func (p *Pod) probeLoop(ctx context.Context, startErrs []error) {
	defer close(p.probeDone)
	t := time.NewTicker(p.probe.Interval)
	defer t.Stop()
	for {
		ready := make([]bool, len(p.plan.Containers))
		for i, c := range p.plan.Containers {
			if p.procs[i] != nil && p.procs[i].Status().Running {
				ready[i] = p.check(ctx, c)
			}
		}
		p.update(p.observe(startErrs, ready))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-p.probeNow:
		}
	}
}

// check probes one running container: the proxy's admin /ready, an app's
// declared TCP ports.
func (p *Pod) check(ctx context.Context, c ContainerPlan) bool {
	if c.IsProxy || c.HTTPProbe != nil {
		url := "http://" + net.JoinHostPort(c.ProbeIP.String(), strconv.Itoa(ProxyAdminPort)) + "/ready"
		if c.HTTPProbe != nil {
			url = "http://" + net.JoinHostPort(c.ProbeIP.String(), strconv.Itoa(c.HTTPProbe.Port)) + c.HTTPProbe.Path
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false
		}
		resp, err := p.client.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		if c.HTTPProbe != nil {
			// Kubernetes' httpGet probe: any 2xx or 3xx succeeds.
			return resp.StatusCode >= 200 && resp.StatusCode < 400
		}
		return resp.StatusCode == http.StatusOK
	}
	for _, port := range c.Ports {
		if !tcpOpen(ctx, c.ProbeIP, port, p.probe.Timeout) {
			return false
		}
	}
	return true
}

func tcpOpen(ctx context.Context, ip netip.Addr, port int, timeout time.Duration) bool {
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ip.String(), strconv.Itoa(port)))
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// observe combines process status and probe results into a PodState.
func (p *Pod) observe(startErrs []error, ready []bool) PodState {
	st := PodState{Ready: true}
	for i, c := range p.plan.Containers {
		cs := ContainerState{Name: c.Name, IsProxy: c.IsProxy}
		switch {
		case c.Err != nil:
			cs.Reason, cs.Message = configReason(c.Err), c.Err.Error()
		case p.procs[i] == nil:
			cs.Reason, cs.Message = ReasonStartError, fmt.Sprint(startErrs[i])
		default:
			ps := p.procs[i].Status()
			cs.Running, cs.RestartCount, cs.StartedAt = ps.Running, ps.RestartCount, ps.StartedAt
			cs.LastExit, cs.LastExitAt, cs.LastExitCode = ps.LastExit, ps.LastExitAt, ps.LastExitCode
			cs.Terminated = ps.Terminated
			if !ps.Running && !ps.Terminated {
				cs.Reason, cs.Message = ReasonCrashLoop, "last exit: "+ps.LastExit
			}
			cs.Ready = ps.Running && ready != nil && ready[i]
		}
		st.Ready = st.Ready && cs.Ready
		st.Containers = append(st.Containers, cs)
	}
	return st
}

func (p *Pod) update(st PodState) {
	p.mu.Lock()
	changed := !st.equal(p.state)
	p.state = st
	if changed {
		p.version++
	}
	p.mu.Unlock()
	if changed && p.changed != nil {
		p.changed()
	}
}

// Plan is what the pod was started from.
func (p *Pod) Plan() *Plan { return p.plan }

// State returns the pod's latest state and its version.
func (p *Pod) State() (PodState, int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state, p.version
}

// Stop terminates the pod: the app containers first, then the proxy, so
// that the app can still reach the mesh while it shuts down (what Istio's
// EXIT_ON_ZERO_ACTIVE_CONNECTIONS aims at).
func (p *Pod) Stop(ctx context.Context) {
	p.cancel()
	<-p.probeDone
	var wg sync.WaitGroup
	for i, c := range p.plan.Containers {
		if p.procs[i] != nil && !c.IsProxy {
			wg.Add(1)
			go func() { defer wg.Done(); p.procs[i].Stop(ctx) }()
		}
	}
	wg.Wait()
	for i, c := range p.plan.Containers {
		if p.procs[i] != nil && c.IsProxy {
			p.procs[i].Stop(ctx)
		}
	}
}
