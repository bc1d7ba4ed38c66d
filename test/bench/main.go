// Command bench measures what Skein's data plane adds to a request: it runs
// a local mesh with a client and a server workload, drives the same
// fixed-rate (open loop) load directly, through the server's sidecar, and
// through client sidecar + server sidecar, and prints latency percentiles
// and each proxy's CPU and memory. It prints figures; it never fails on them.
//
// Usage: go run ./test/bench -skein bin/skein [-rate 1000 -duration 30s]
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "serve" {
		serve(os.Args[2:])
		return
	}
	skein := flag.String("skein", "bin/skein", "path to the skein binary")
	rate := flag.Int("rate", 1000, "requests per second (open loop)")
	conns := flag.Int("connections", 16, "connections")
	duration := flag.Duration("duration", 30*time.Second, "measured duration per path")
	warmup := flag.Duration("warmup", 5*time.Second, "warm-up per path")
	size := flag.Int("size", 1024, "response body bytes")
	flag.Parse()
	if err := run(*skein, *rate, *conns, *duration, *warmup, *size); err != nil {
		log.Fatal(err)
	}
}

// serve is the upstream application: a fixed-size response body.
func serve(args []string) {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:8080", "listen address")
	size := fs.Int("size", 1024, "response bytes")
	_ = fs.Parse(args)
	body := bytes.Repeat([]byte("x"), *size)
	srv := &http.Server{Addr: *addr, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
	})}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() { <-ctx.Done(); srv.Close() }()
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
}

const manifest = `apiVersion: v1
kind: Namespace
metadata:
  name: bench
  labels: {istio-injection: enabled}
---
apiVersion: v1
kind: Service
metadata: {name: server, namespace: bench}
spec:
  selector: {app: server}
  ports: [{name: http, port: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: server, namespace: bench}
spec:
  selector: {matchLabels: {app: server}}
  template:
    metadata: {labels: {app: server, version: v1}}
    spec:
      containers:
      - name: server
        command: [%q, serve, --addr, "$(SKEIN_APP_IP):8080", --size, "%d"]
        ports: [{containerPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: client, namespace: bench}
spec:
  selector: {matchLabels: {app: client}}
  template:
    metadata: {labels: {app: client, version: v1}}
    spec:
      containers:
      - name: client
        command: [%q, serve, --addr, "$(SKEIN_APP_IP):8081", --size, "1"]
        ports: [{containerPort: 8081}]
`

type pod struct {
	Name, IP string
	Ready    bool
}

func run(skein string, rate, conns int, duration, warmup time.Duration, size int) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "skein-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	mf := filepath.Join(dir, "bench.yaml")
	if err := os.WriteFile(mf, []byte(fmt.Sprintf(manifest, self, size, self)), 0o644); err != nil {
		return err
	}
	server := "127.0.0.1:25014"
	up := exec.Command(skein, "up", "--data-dir", filepath.Join(dir, "data"), "--http-addr", server,
		"--grpc-addr", "127.0.0.1:25010", "--ingress-address", "127.0.9.9", "-f", mf)
	logf, _ := os.Create(filepath.Join(dir, "up.log"))
	up.Stdout, up.Stderr = logf, logf
	up.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := up.Start(); err != nil {
		return err
	}
	defer func() {
		_ = up.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { up.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-up.Process.Pid, syscall.SIGKILL)
		}
	}()

	// Direct baseline: the same server program, outside the mesh.
	direct := exec.Command(self, "serve", "--addr", "127.0.9.10:8080", "--size", strconv.Itoa(size))
	if err := direct.Start(); err != nil {
		return err
	}
	defer direct.Process.Kill()

	var serverPod, clientPod pod
	deadline := time.Now().Add(90 * time.Second)
	for {
		pods, err := listPods(skein, server)
		if err == nil {
			for _, p := range pods {
				if strings.HasPrefix(p.Name, "server-") && p.Ready {
					serverPod = p
				}
				if strings.HasPrefix(p.Name, "client-") && p.Ready {
					clientPod = p
				}
			}
		}
		if serverPod.Ready && clientPod.Ready {
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "up.log"))
			return fmt.Errorf("bench pods not ready after 90s (%v); skein up log:\n%s", err, b)
		}
		time.Sleep(500 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // let the client sidecar receive the server's endpoints

	paths := []struct {
		name   string
		target string
		proxy  string
	}{
		{"direct", "http://127.0.9.10:8080/", ""},
		{"server sidecar (1 proxy)", "http://" + serverPod.IP + ":8080/", ""},
		{"client + server sidecars (2 proxies)", "http://server.bench:8080/", "http://" + clientPod.IP + ":15001"},
	}
	fmt.Printf("Skein data plane benchmark: %d rps open loop, %d connections, %d-byte responses, %s per path after %s warm-up, HTTP/1.1 keep-alive, GOMAXPROCS of the proxies unchanged\n\n",
		rate, conns, size, duration, warmup)
	tw := tabwriter.NewWriter(os.Stdout, 0, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "path\trequests\terrors\tp50\tp90\tp99\tmax\tadded p50\tadded p99\t")
	var base result
	proxyUsage := map[string]usage{}
	for i, p := range paths {
		_ = load(p.target, p.proxy, rate, conns, warmup)
		before := sampleProxies()
		t0 := time.Now()
		r := load(p.target, p.proxy, rate, conns, duration)
		elapsed := time.Since(t0)
		after := sampleProxies()
		if i == 0 {
			base = r
		}
		if i == len(paths)-1 {
			for name, a := range after {
				b := before[name]
				proxyUsage[name] = usage{cpu: a.cpu - b.cpu, rss: a.rss, hwm: a.hwm, seconds: elapsed.Seconds(), requests: r.n}
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t\n", p.name, r.n, r.errors,
			ms(r.p(50)), ms(r.p(90)), ms(r.p(99)), ms(r.max()), ms(r.p(50)-base.p(50)), ms(r.p(99)-base.p(99)))
	}
	tw.Flush()
	fmt.Println("\nProxy cost during the two-proxy run:")
	tw = tabwriter.NewWriter(os.Stdout, 0, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "proxy\tCPU (vCPU)\tCPU s / 1000 req\tRSS MB\tpeak RSS MB\t")
	names := make([]string, 0, len(proxyUsage))
	for n := range proxyUsage {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		u := proxyUsage[n]
		if !strings.Contains(n, "client-") && !strings.Contains(n, "server-") {
			continue
		}
		fmt.Fprintf(tw, "%s\t%.3f\t%.4f\t%.1f\t%.1f\t\n", n, u.cpu/u.seconds, u.cpu/float64(u.requests)*1000, u.rss/1e6, u.hwm/1e6)
	}
	tw.Flush()
	return nil
}

func listPods(skein, server string) ([]pod, error) {
	out, err := exec.Command(skein, "get", "pods", "-n", "bench", "-o", "json", "--server", server).Output()
	if err != nil {
		return nil, err
	}
	var list struct {
		Items []struct {
			Metadata struct{ Name string }
			Status   struct {
				PodIP      string
				Conditions []struct{ Type, Status string }
			}
		}
	}
	if err := json.Unmarshal(out, &list); err != nil {
		// A single object (not a List) when there is exactly one pod.
		return nil, err
	}
	var pods []pod
	for _, it := range list.Items {
		p := pod{Name: it.Metadata.Name, IP: it.Status.PodIP}
		for _, c := range it.Status.Conditions {
			if c.Type == "Ready" && c.Status == "True" {
				p.Ready = true
			}
		}
		pods = append(pods, p)
	}
	return pods, nil
}

type result struct {
	lat    []time.Duration
	n      int
	errors int
}

func (r result) p(q float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := int(float64(len(r.lat)-1) * q / 100)
	return r.lat[i]
}

func (r result) max() time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	return r.lat[len(r.lat)-1]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3fms", float64(d)/1e6) }

// load sends requests at a fixed rate for d. Latency is measured from each
// request's scheduled start, so a stalled proxy cannot hide queueing
// (no coordinated omission).
func load(target, proxy string, rate, conns int, d time.Duration) result {
	tr := &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, DisableCompression: true,
		DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext}
	if proxy != "" {
		pu, _ := url.Parse(proxy)
		tr.Proxy = http.ProxyURL(pu)
	}
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	defer tr.CloseIdleConnections()
	total := int(d.Seconds() * float64(rate))
	interval := time.Second / time.Duration(rate)
	jobs := make(chan time.Time, total)
	var mu sync.Mutex
	res := result{lat: make([]time.Duration, 0, total)}
	var wg sync.WaitGroup
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for scheduled := range jobs {
				if w := time.Until(scheduled); w > 0 {
					time.Sleep(w)
				}
				resp, err := client.Get(target)
				ok := err == nil && resp.StatusCode == 200
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				lat := time.Since(scheduled)
				mu.Lock()
				res.n++
				if ok {
					res.lat = append(res.lat, lat)
				} else {
					res.errors++
				}
				mu.Unlock()
			}
		}()
	}
	start := time.Now().Add(10 * time.Millisecond)
	for i := 0; i < total; i++ {
		jobs <- start.Add(time.Duration(i) * interval)
	}
	close(jobs)
	wg.Wait()
	sort.Slice(res.lat, func(i, j int) bool { return res.lat[i] < res.lat[j] })
	return res
}

type usage struct {
	cpu, rss, hwm, seconds float64
	requests               int
}

// sampleProxies reads CPU seconds and memory of every skein proxy process.
func sampleProxies() map[string]usage {
	out := map[string]usage{}
	entries, _ := os.ReadDir("/proc")
	ticks := 100.0 // USER_HZ on Linux
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
		name := ""
		for i, a := range args {
			if a == "--pod-name" && i+1 < len(args) {
				name = args[i+1]
			}
		}
		stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(fields) < 13 {
			continue
		}
		utime, _ := strconv.ParseFloat(fields[11], 64)
		stime, _ := strconv.ParseFloat(fields[12], 64)
		u := usage{cpu: (utime + stime) / ticks}
		status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		for _, line := range strings.Split(string(status), "\n") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, _ := strconv.ParseFloat(f[1], 64)
				switch f[0] {
				case "VmRSS:":
					u.rss = kb * 1024
				case "VmHWM:":
					u.hwm = kb * 1024
				}
			}
		}
		out[name] = u
	}
	return out
}
