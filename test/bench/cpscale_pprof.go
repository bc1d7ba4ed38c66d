package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sync"
)

// profiler fetches discovery's Go profiles from its /debug/pprof endpoints
// into dir; with no dir it does nothing. Failures are reported, not fatal:
// the figures matter more than the profiles.
type profiler struct {
	dir, base string
	seconds   int
	wg        sync.WaitGroup
}

func (p *profiler) fetch(path, file string) {
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "pprof:", err)
		return
	}
	resp, err := http.Get(p.base + path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pprof:", err)
		return
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s: %s", path, resp.Status)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(p.dir, file), b, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pprof:", err)
	}
}

// cpu starts a CPU profile of p.seconds in the background.
func (p *profiler) cpu(file string) {
	if p.dir == "" {
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.fetch(fmt.Sprintf("/debug/pprof/profile?seconds=%d", p.seconds), file)
	}()
}

// heap writes the live heap (after a GC, so inuse figures are current).
func (p *profiler) heap(file string) {
	if p.dir != "" {
		p.fetch("/debug/pprof/heap?gc=1", file)
	}
}

// self profiles this process (the simulated proxies) until the returned
// function is called.
func (p *profiler) self(file string) (stop func()) {
	if p.dir == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(p.dir, file))
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pprof:", err)
		return func() {}
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}

// wait waits for the CPU profile in progress.
func (p *profiler) wait() { p.wg.Wait() }
