// Command bench measures what Skein adds to a request and what its control
// plane costs. It prints figures; it never fails on them (`make bench`, not CI).
//
// Data plane (default): a local mesh (`skein up`) with a client and a server
// workload, STRICT mTLS in the bench namespace and default telemetry. The same
// fixed-rate, open-loop load (latency measured from each request's scheduled
// start) goes directly to the app, through one Skein proxy (the client
// sidecar, passthrough to the app), through client sidecar + server sidecar
// (mTLS between them), and through the same two-hop chain built from nginx
// and from HAProxy (mutual TLS between the hops). It prints latency added
// over direct, CPU seconds per 1000 requests and peak RSS per proxy process
// (from /proc), then a closed-loop saturation run per proxied path. Every
// proxy is pinned to one core (-proxy-cpu) and Skein proxies run with
// GOMAXPROCS=1 (-gomaxprocs).
//
// Control plane (`bench cpscale`): see cpscale.go.
//
// Usage: go run ./test/bench -skein bin/skein [-rate 1000 -duration 60s]
//
//	go run ./test/bench cpscale -skein bin/skein [-services 1000 -proxies 2000]
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
	"runtime"
	"slices"
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
	if len(os.Args) > 1 && os.Args[1] == "cpscale" {
		if err := cpscale(os.Args[2:]); err != nil {
			log.Fatal(err)
		}
		return
	}
	var o options
	flag.StringVar(&o.skein, "skein", "bin/skein", "path to the skein binary")
	flag.IntVar(&o.rate, "rate", 1000, "requests per second (open loop)")
	flag.IntVar(&o.conns, "connections", 16, "connections (open loop)")
	flag.DurationVar(&o.duration, "duration", 60*time.Second, "measured duration per path")
	flag.DurationVar(&o.warmup, "warmup", 5*time.Second, "warm-up per path (not measured)")
	flag.IntVar(&o.size, "size", 1024, "response body bytes")
	flag.IntVar(&o.cpu, "proxy-cpu", runtime.NumCPU()-1, "CPU every proxy process is pinned to (-1: no pinning)")
	flag.IntVar(&o.gomaxprocs, "gomaxprocs", 1, "GOMAXPROCS of the Skein proxies (0: Go's default)")
	flag.DurationVar(&o.satDuration, "saturation", 20*time.Second, "closed-loop saturation run per proxied path (0: skip)")
	flag.IntVar(&o.satConns, "saturation-connections", 16, "connections of the saturation run")
	flag.StringVar(&o.only, "paths", "", "comma-separated subset of paths: direct,skein1,skein2,nginx,haproxy (default all)")
	flag.Parse()
	if err := run(o); err != nil {
		log.Fatal(err)
	}
}

type options struct {
	skein             string
	rate, conns, size int
	duration, warmup  time.Duration
	cpu, gomaxprocs   int
	satDuration       time.Duration
	satConns          int
	only              string
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
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: bench}
spec: {mtls: {mode: STRICT}}
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

// proxyRef names one proxy process (an nginx master counts with its worker).
type proxyRef struct {
	name string
	pids []int
}

type benchPath struct {
	key, name     string
	target, proxy string // URL, and the HTTP proxy the client sends it to
	proxies       []proxyRef
}

func run(o options) error {
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
	if err := os.WriteFile(mf, []byte(fmt.Sprintf(manifest, self, o.size, self)), 0o644); err != nil {
		return err
	}
	server := "127.0.0.1:25014"
	up := exec.Command(o.skein, "up", "--no-gateway", "--data-dir", filepath.Join(dir, "data"), "--http-addr", server,
		"--grpc-addr", "127.0.0.1:25010", "-f", mf)
	// The runner hands its environment to the processes it starts, proxies
	// included: that is how GOMAXPROCS reaches the sidecars (and the apps).
	up.Env = os.Environ()
	if o.gomaxprocs > 0 {
		up.Env = append(up.Env, fmt.Sprintf("GOMAXPROCS=%d", o.gomaxprocs))
	}
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

	// Direct baseline, and the app behind the nginx and HAProxy chains: the
	// same server program, outside the mesh, with the same GOMAXPROCS as the
	// in-mesh app.
	const directAddr = "127.0.9.10:8080"
	direct := exec.Command(self, "serve", "--addr", directAddr, "--size", strconv.Itoa(o.size))
	direct.Env = up.Env
	if err := direct.Start(); err != nil {
		return err
	}
	defer direct.Process.Kill()

	var serverPod, clientPod pod
	deadline := time.Now().Add(120 * time.Second)
	for {
		pods, err := listPods(o.skein, server)
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
			return fmt.Errorf("bench pods not ready after 120s (%v); skein up log:\n%s", err, b)
		}
		time.Sleep(500 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // let the client sidecar receive the server's endpoints

	clientPID, err := skeinProxyPID("client-")
	if err != nil {
		return err
	}
	serverPID, err := skeinProxyPID("server-")
	if err != nil {
		return err
	}
	for _, pid := range []int{clientPID, serverPID} {
		if err := pin(pid, o.cpu); err != nil {
			fmt.Fprintln(os.Stderr, "warning:", err)
		}
	}
	// STRICT must refuse plaintext at the server sidecar, or the two-proxy
	// figures would not include mTLS.
	mtls := "STRICT mTLS verified (plaintext to the server sidecar is refused)"
	if resp, err := (&http.Client{Timeout: 3 * time.Second}).Get("http://" + serverPod.IP + ":8080/"); err == nil {
		resp.Body.Close()
		mtls = fmt.Sprintf("WARNING: plaintext to the server sidecar answered %d: mTLS is NOT enforced", resp.StatusCode)
	}

	certDir := filepath.Join(dir, "chains")
	if err := os.MkdirAll(certDir, 0o755); err != nil {
		return err
	}
	if err := writeCerts(certDir); err != nil {
		return err
	}
	want := func(key string) bool {
		return o.only == "" || slices.Contains(strings.Split(o.only, ","), key)
	}
	// The direct path's app is the reference cost: a bare Go net/http server
	// answering the same requests, with nothing proxied.
	paths := []benchPath{{key: "direct", name: "direct", target: "http://" + directAddr + "/",
		proxies: []proxyRef{{"app alone (Go net/http, reference)", []int{direct.Process.Pid}}}}}
	if want("skein1") {
		paths = append(paths, benchPath{key: "skein1", name: "skein: 1 proxy (client sidecar)",
			target: "http://" + directAddr + "/", proxy: "http://" + clientPod.IP + ":15001",
			proxies: []proxyRef{{"client sidecar", []int{clientPID}}}})
	}
	if want("skein2") {
		paths = append(paths, benchPath{key: "skein2", name: "skein: 2 sidecars, mTLS",
			target: "http://server.bench:8080/", proxy: "http://" + clientPod.IP + ":15001",
			proxies: []proxyRef{{"client sidecar", []int{clientPID}}, {"server sidecar", []int{serverPID}}}})
	}
	for _, c := range []struct{ kind, front string }{{"nginx", nginxFront}, {"haproxy", haproxyFront}} {
		if !want(c.kind) {
			continue
		}
		procs, err := startChain(c.kind, certDir, directAddr, o.cpu)
		for _, p := range procs {
			defer p.stop()
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "warning: skipping the %s chain: %v\n", c.kind, err)
			continue
		}
		paths = append(paths, benchPath{key: c.kind, name: c.kind + ": 2 hops, mTLS", target: "http://" + c.front + "/",
			proxies: []proxyRef{{c.kind + " front", []int{procs[1].cmd.Process.Pid}}, {c.kind + " back", []int{procs[0].cmd.Process.Pid}}}})
	}

	pinning := fmt.Sprintf("every proxy pinned to CPU %d", o.cpu)
	if o.cpu < 0 {
		pinning = "proxies not pinned"
	}
	fmt.Printf("Skein data plane benchmark on %d CPUs: %d rps open loop, %d connections, %d-byte responses, HTTP/1.1 keep-alive,\n"+
		"%s measured per path after %s warm-up; %s; Skein proxies GOMAXPROCS=%d; %s.\n\n",
		runtime.NumCPU(), o.rate, o.conns, o.size, o.duration, o.warmup, pinning, o.gomaxprocs, mtls)

	type costRow struct {
		path, proxy string
		vcpu, per1k float64
		use         procUsage
	}
	var costs []costRow
	tw := tabwriter.NewWriter(os.Stdout, 0, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "path\tok\terrors\tp50\tp90\tp99\tmax\t+p50\t+p90\t+p99\t+max\t")
	var base result
	for i, p := range paths {
		_ = load(p.target, p.proxy, o.rate, o.conns, o.warmup)
		before := make([]procUsage, len(p.proxies))
		for j, pr := range p.proxies {
			before[j] = readTree(pr.pids)
		}
		t0 := time.Now()
		r := load(p.target, p.proxy, o.rate, o.conns, o.duration)
		elapsed := time.Since(t0).Seconds()
		for j, pr := range p.proxies {
			a := readTree(pr.pids)
			cpu := a.cpu - before[j].cpu
			per1k := 0.0
			if r.n > 0 {
				per1k = cpu / float64(r.n) * 1000
			}
			costs = append(costs, costRow{p.name, pr.name, cpu / elapsed, per1k, a})
		}
		if i == 0 {
			base = r
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", p.name, len(r.lat), r.errors,
			ms(r.p(50)), ms(r.p(90)), ms(r.p(99)), ms(r.max()),
			ms(r.p(50)-base.p(50)), ms(r.p(90)-base.p(90)), ms(r.p(99)-base.p(99)), ms(r.max()-base.max()))
	}
	tw.Flush()
	fmt.Printf("\nProxy cost at %d rps (CPU from /proc utime+stime; peak RSS = VmHWM; at the end of the run: RSS split into\n"+
		"private anonymous memory and file-backed pages of the executable (shared via the page cache by every process of the\n"+
		"same binary), and PSS, which divides shared pages among their users; nginx counts master+worker):\n", o.rate)
	tw = tabwriter.NewWriter(os.Stdout, 0, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "path\tprocess\tvCPU\tCPU s / 1000 req\tpeak RSS MB\tanon MB\tfile MB\tPSS MB\t")
	for _, c := range costs {
		fmt.Fprintf(tw, "%s\t%s\t%.3f\t%.4f\t%.1f\t%.1f\t%.1f\t%.1f\t\n", c.path, c.proxy, c.vcpu, c.per1k,
			c.use.hwm/1e6, c.use.anon/1e6, c.use.file/1e6, c.use.pss/1e6)
	}
	tw.Flush()

	if o.satDuration <= 0 {
		return nil
	}
	fmt.Printf("\nSaturation (closed loop, %d connections back-to-back, %s per path; load generator unpinned, sharing the machine):\n",
		o.satConns, o.satDuration)
	tw = tabwriter.NewWriter(os.Stdout, 0, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "path\trps\terrors\tp50\tp99\tvCPU (each process)\t")
	for _, p := range paths {
		before := make([]procUsage, len(p.proxies))
		for j, pr := range p.proxies {
			before[j] = readTree(pr.pids)
		}
		t0 := time.Now()
		r := saturate(p.target, p.proxy, o.satConns, o.satDuration)
		elapsed := time.Since(t0).Seconds()
		var vcpus []string
		for j, pr := range p.proxies {
			vcpus = append(vcpus, fmt.Sprintf("%.2f", (readTree(pr.pids).cpu-before[j].cpu)/elapsed))
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%d\t%s\t%s\t%s\t\n", p.name, float64(len(r.lat))/elapsed, r.errors,
			ms(r.p(50)), ms(r.p(99)), strings.Join(vcpus, " / "))
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

// saturate drives conns connections back to back for d (closed loop) and
// returns every request's latency.
func saturate(target, proxy string, conns int, d time.Duration) result {
	tr := &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, DisableCompression: true,
		DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext}
	if proxy != "" {
		pu, _ := url.Parse(proxy)
		tr.Proxy = http.ProxyURL(pu)
	}
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	defer tr.CloseIdleConnections()
	end := time.Now().Add(d)
	var mu sync.Mutex
	var res result
	var wg sync.WaitGroup
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 1<<14)
			errs := 0
			for time.Now().Before(end) {
				t0 := time.Now()
				resp, err := client.Get(target)
				ok := err == nil && resp.StatusCode == 200
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if ok {
					lat = append(lat, time.Since(t0))
				} else {
					errs++
				}
			}
			mu.Lock()
			res.lat = append(res.lat, lat...)
			res.errors += errs
			res.n += len(lat) + errs
			mu.Unlock()
		}()
	}
	wg.Wait()
	sort.Slice(res.lat, func(i, j int) bool { return res.lat[i] < res.lat[j] })
	return res
}
