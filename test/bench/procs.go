package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// procUsage is what /proc says about one process (or a process tree).
type procUsage struct {
	cpu float64 // user+system CPU seconds
	rss float64 // bytes, now
	hwm float64 // bytes, peak resident set (VmHWM)
	// RSS now, split: anonymous (heap, stacks: private to the process)
	// and file-backed (the executable's code and read-only data, shared
	// through the page cache with every process running the same binary).
	anon, file float64
	// pss is the proportional set size: shared pages divided among the
	// processes mapping them (smaps_rollup).
	pss float64
}

func (a procUsage) add(b procUsage) procUsage {
	return procUsage{cpu: a.cpu + b.cpu, rss: a.rss + b.rss, hwm: a.hwm + b.hwm,
		anon: a.anon + b.anon, file: a.file + b.file, pss: a.pss + b.pss}
}

// readProc reads CPU seconds and memory of one process from /proc.
func readProc(pid int) (procUsage, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procUsage{}, err
	}
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(fields) < 13 {
		return procUsage{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields))
	}
	const ticks = 100.0 // USER_HZ on Linux
	utime, _ := strconv.ParseFloat(fields[11], 64)
	stime, _ := strconv.ParseFloat(fields[12], 64)
	u := procUsage{cpu: (utime + stime) / ticks}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procUsage{}, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			u.rss = kb * 1024
		case "VmHWM:":
			u.hwm = kb * 1024
		case "RssAnon:":
			u.anon = kb * 1024
		case "RssFile:":
			u.file = kb * 1024
		}
	}
	if rollup, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid)); err == nil {
		for _, line := range strings.Split(string(rollup), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "Pss:" {
				kb, _ := strconv.ParseFloat(f[1], 64)
				u.pss = kb * 1024
			}
		}
	}
	return u, nil
}

// readTree sums readProc over pids and all their descendants, so an nginx
// master and its worker count as one proxy.
func readTree(pids []int) procUsage {
	var total procUsage
	for _, pid := range withDescendants(pids) {
		if u, err := readProc(pid); err == nil {
			total = total.add(u)
		}
	}
	return total
}

// withDescendants returns pids and every process whose ancestor is one of them.
func withDescendants(pids []int) []int {
	parent := map[int]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(f) > 1 {
			parent[pid], _ = strconv.Atoi(f[1])
		}
	}
	in := map[int]bool{}
	for _, p := range pids {
		in[p] = true
	}
	for changed := true; changed; {
		changed = false
		for pid, pp := range parent {
			if !in[pid] && in[pp] {
				in[pid] = true
				changed = true
			}
		}
	}
	out := make([]int, 0, len(in))
	for p := range in {
		out = append(out, p)
	}
	return out
}

// skeinProxyPID finds the `skein proxy` process whose --pod-name starts
// with prefix (the runner starts sidecars; we only see their command line).
func skeinProxyPID(prefix string) (int, error) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if len(args) < 2 || args[1] != "proxy" {
			continue
		}
		for i, a := range args {
			if (a == "--pod-name" && i+1 < len(args) && strings.HasPrefix(args[i+1], prefix)) ||
				strings.HasPrefix(a, "--pod-name="+prefix) {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("no skein proxy process with --pod-name %s*", prefix)
}

// pin binds every thread of pid to cpu (taskset -a -p); new threads inherit it.
func pin(pid, cpu int) error {
	if cpu < 0 {
		return nil
	}
	out, err := exec.Command("taskset", "-a", "-p", "-c", strconv.Itoa(cpu), strconv.Itoa(pid)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("taskset pid %d: %v: %s", pid, err, out)
	}
	return nil
}

// pinned prefixes argv with taskset so the process and its children start on cpu.
func pinned(cpu int, argv ...string) []string {
	if cpu < 0 {
		return argv
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		return argv
	}
	return append([]string{"taskset", "-c", strconv.Itoa(cpu)}, argv...)
}
