package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/skein-mesh/skein/internal/apiclient"
	"github.com/skein-mesh/skein/internal/config"
	"github.com/skein-mesh/skein/internal/proxy/nodemeta"
)

// cpscale measures the control plane at scale: a `skein discovery` process
// holding N Services (each with one ready Pod), M simulated sidecars in this
// process (one ADS stream each, subscribing to CDS and LDS, then to the EDS
// and RDS names those reference, ACKing every response as Envoy does), then
// one VirtualService change: how long until every proxy ACKed the new
// routes, and the discovery process's CPU and RSS from /proc.
func cpscale(args []string) error {
	fs := flag.NewFlagSet("cpscale", flag.ExitOnError)
	skein := fs.String("skein", "bin/skein", "path to the skein binary")
	nsvc := fs.Int("services", 1000, "services (one ready pod each)")
	nproxy := fs.Int("proxies", 2000, "simulated sidecars (ADS streams)")
	timeout := fs.Duration("timeout", 5*time.Minute, "longest wait for the initial sync and for convergence")
	pprofDir := fs.String("pprof", "", "write discovery's profiles here: heap after the initial sync and after convergence (heap-sync.pb.gz, heap-converged.pb.gz), CPU over the sync (cpu-sync.pb.gz) and from the change on (cpu-change.pb.gz), and this process's CPU from the change to convergence (sim-cpu-change.pb.gz)")
	cpuSeconds := fs.Int("pprof-seconds", 10, "length of each CPU profile with -pprof")
	delta := fs.Bool("delta", false, "simulated sidecars use delta (incremental) ADS instead of state of the world")
	scoped := fs.Int("sidecar", 0, "a Sidecar scopes every proxy's egress to the first N services (0: no Sidecar)")
	plaintext := fs.Bool("plaintext-xds", false, "serve and dial xDS without TLS (Istio's 15010) instead of TLS as local proxies reach 15012; streams still carry tokens")
	_ = fs.Parse(args)
	// The simulated proxies allocate a buffer per response; with the
	// default GC target the load generator spends much of its share of the
	// machine in GC assists, on the critical path of every convergence.
	debug.SetGCPercent(400)

	dir, err := os.MkdirTemp("", "skein-cpscale")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	const grpcAddr, httpAddr = "127.0.0.1:26010", "127.0.0.1:26014"
	// A durable store and CA directory as `skein up` runs it: the admin
	// token lands in <ca dir>/admin-token, the mesh root in root-cert.pem.
	caDir := filepath.Join(dir, "ca")
	argv := []string{"discovery", "--store-dir", filepath.Join(dir, "store"), "--ca-dir", caDir,
		"--grpc-addr", grpcAddr, "--http-addr", httpAddr, "--log-level", "warn"}
	if *plaintext {
		argv = append(argv, "--plaintext-xds")
	}
	cp := exec.Command(*skein, argv...)
	logf, _ := os.Create(filepath.Join(dir, "discovery.log"))
	cp.Stdout, cp.Stderr = logf, logf
	cp.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cp.Start(); err != nil {
		return err
	}
	defer func() {
		_ = cp.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cp.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cp.Process.Pid, syscall.SIGKILL)
		}
	}()
	cpPID := cp.Process.Pid
	ctx := context.Background()
	for deadline := time.Now().Add(30 * time.Second); apiclient.NewWithToken(httpAddr, "").Ping(ctx) != nil; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "discovery.log"))
			return fmt.Errorf("skein discovery not answering on %s after 30s:\n%s", httpAddr, b)
		}
	}
	adminToken, err := apiclient.ReadCredential(filepath.Join(caDir, "admin-token"))
	if err != nil {
		return fmt.Errorf("discovery's admin token: %w", err)
	}
	api := apiclient.NewWithToken(httpAddr, adminToken)
	target, err := newXDSTarget(grpcAddr, caDir, *plaintext)
	if err != nil {
		return err
	}

	// The registry: Services and their Pods through the config API, as the
	// local runner stores them.
	t0 := time.Now()
	docs := registryDocs(*nsvc)
	docs = append(docs, scopeDocs(*scoped)...)
	if err := applyDocs(ctx, api, docs); err != nil {
		return err
	}
	applied := time.Since(t0)

	// The proxies' identities, outside every timed figure: a Pod each and
	// its workload token, as the local runner registers a pod and writes
	// its token before starting its proxy.
	t0 = time.Now()
	if err := applyDocs(ctx, api, simProxyPods(*nproxy)); err != nil {
		return err
	}
	tokens, err := issueTokens(ctx, api, adminToken, *nproxy)
	if err != nil {
		return err
	}
	identities := time.Since(t0)

	// The proxies.
	var m markerState
	clients := make([]*adsClient, *nproxy)
	names := &nameCache{}
	t1 := time.Now()
	cpu0, _ := readProc(cpPID)
	prof := &profiler{dir: *pprofDir, base: "http://" + httpAddr, seconds: *cpuSeconds}
	prof.cpu("cpu-sync.pb.gz")
	for i := range clients {
		c, run, err := newSimProxy(*delta, target, tokens[i], i, names, &m)
		if err != nil {
			return err
		}
		defer c.close()
		clients[i] = c
		go run()
	}
	syncDeadline := time.After(*timeout)
	for i, c := range clients {
		select {
		case <-c.ready:
		case err := <-c.failed:
			alive := "running"
			if syscall.Kill(cpPID, 0) != nil {
				alive = "exited"
			}
			return fmt.Errorf("proxy %d: %w (discovery %s; log tail:\n%s)", i, err, alive, tail(filepath.Join(dir, "discovery.log"), 3000))
		case <-syncDeadline:
			return fmt.Errorf("initial sync: proxy %d of %d had not ACKed CDS, LDS, EDS and RDS after %s", i, len(clients), *timeout)
		}
	}
	syncTime := time.Since(t1)
	cpu1, _ := readProc(cpPID)
	prof.wait()
	prof.heap("heap-sync.pb.gz")

	// One VirtualService change; every proxy's RDS "8080" carries the marker.
	time.Sleep(2 * time.Second) // quiet: let debounced pushes from the connects settle
	cpu2, _ := readProc(cpPID)
	self2, _ := readProc(os.Getpid())
	marker := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	vs := map[string]any{"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
		"metadata": map[string]any{"name": "svc-0", "namespace": "scale"},
		"spec": map[string]any{"hosts": []any{"svc-0.scale.svc.cluster.local"},
			"http": []any{map[string]any{
				"headers": map[string]any{"request": map[string]any{"set": map[string]any{"x-bench-marker": marker}}},
				"route":   []any{map[string]any{"destination": map[string]any{"host": "svc-0.scale.svc.cluster.local"}}}}}}}
	prof.cpu("cpu-change.pb.gz")
	stopSelf := prof.self("sim-cpu-change.pb.gz")
	m.arm([]byte(marker))
	if err := applyDocs(ctx, api, []map[string]any{vs}); err != nil {
		return err
	}
	convDeadline := time.After(*timeout)
	for i, c := range clients {
		select {
		case <-c.converged:
		case <-convDeadline:
			return fmt.Errorf("convergence: proxy %d of %d had not ACKed the changed routes after %s", i, len(clients), *timeout)
		}
	}
	cpu3, _ := readProc(cpPID)
	self3, _ := readProc(os.Getpid())
	stopSelf()
	prof.heap("heap-converged.pb.gz")
	prof.wait()
	lat := make([]time.Duration, len(clients))
	for i, c := range clients {
		lat[i] = c.convergedAfter
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(q float64) time.Duration { return lat[int(float64(len(lat)-1)*q/100)] }

	mode := map[bool]string{false: "SotW", true: "delta"}[*delta] + map[bool]string{false: ", TLS", true: ", plaintext"}[*plaintext]
	if *scoped > 0 {
		mode += fmt.Sprintf(", Sidecar egress scoped to %d services", *scoped)
	}
	fmt.Printf("Skein control plane scale: %d services (1 pod each), %d simulated sidecars (ADS, %s, ACKing), 1 VirtualService change\n\n", *nsvc, *nproxy, mode)
	fmt.Printf("store load (%d objects via the config API): %s\n", len(docs), applied.Round(time.Millisecond))
	fmt.Printf("proxy identities (%d Pods registered, %d tokens issued, untimed below): %s\n", *nproxy, len(tokens), identities.Round(time.Millisecond))
	fmt.Printf("initial sync, all proxies ACKed CDS+LDS+EDS+RDS: %s (discovery CPU %.1f s)\n", syncTime.Round(time.Millisecond), cpu1.cpu-cpu0.cpu)
	fmt.Printf("change → ACKed by every proxy: p50 %s  p90 %s  p99 %s  max %s (discovery CPU %.2f s, simulated proxies CPU %.2f s)\n",
		pct(50).Round(time.Millisecond), pct(90).Round(time.Millisecond), pct(99).Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond), cpu3.cpu-cpu2.cpu, self3.cpu-self2.cpu)
	fmt.Printf("discovery process: RSS %.0f MB now, peak RSS %.0f MB, CPU %.1f s total\n", cpu3.rss/1e6, cpu3.hwm/1e6, cpu3.cpu)
	if prof.dir != "" {
		fmt.Printf("profiles in %s (go tool pprof -top %s/heap-converged.pb.gz)\n", prof.dir, prof.dir)
	}
	return nil
}

func applyDocs(ctx context.Context, api *apiclient.Client, docs []map[string]any) error {
	const batch = 500
	for len(docs) > 0 {
		n := min(batch, len(docs))
		objs := make([]*config.Object, 0, n)
		for _, d := range docs[:n] {
			o, err := config.Decode(d)
			if err != nil {
				return fmt.Errorf("decode %v: %w", d["metadata"], err)
			}
			objs = append(objs, o)
		}
		if _, err := api.Apply(ctx, objs); err != nil {
			return fmt.Errorf("apply: %w", err)
		}
		docs = docs[n:]
	}
	return nil
}

// markerState is the change the clients look for in their routes.
type markerState struct {
	marker atomic.Pointer[[]byte]
	at     atomic.Int64 // UnixNano of the change
}

func (m *markerState) arm(b []byte) {
	m.at.Store(time.Now().UnixNano())
	m.marker.Store(&b)
}

// nameCache memoises, per response version, the EDS and RDS names a CDS or
// LDS response references: proxies with the same config share the parse,
// so the load generator spends its CPU on streams, not on decoding.
type nameCache struct {
	mu sync.Mutex
	m  map[string][]string
}

func (c *nameCache) get(key string, compute func() []string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string][]string{}
	}
	if v, ok := c.m[key]; ok {
		return v
	}
	v := compute()
	c.m[key] = v
	return v
}

type adsClient struct {
	conn   *grpc.ClientConn
	stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	node   *corev3.Node
	names  *nameCache
	marker *markerState

	ready, converged chan struct{}
	failed           chan error
	convergedAfter   time.Duration
}

func newADSClient(t xdsTarget, token string, i int, names *nameCache, m *markerState) (*adsClient, error) {
	// Envoy's HTTP/2 windows for its xDS cluster (256 MiB by default): with
	// gRPC-go's 64 KB start a 345 KB RDS response takes several
	// WINDOW_UPDATE round trips per stream, which no real Envoy waits for.
	conn, err := grpc.NewClient(t.addr, t.dial,
		grpc.WithInitialWindowSize(envoyHTTP2Window), grpc.WithInitialConnWindowSize(envoyHTTP2Window),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20), grpc.ForceCodecV2(simCodec{marker: m})))
	if err != nil {
		return nil, err
	}
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(streamContext(token))
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("proxy %d: open ADS stream: %w", i, err)
	}
	pod, ip := simProxyIdentity(i)
	md := nodemeta.Metadata{
		Namespace: simNamespace, ServiceAccount: simServiceAccount, WorkloadName: pod, ClusterID: "Kubernetes",
		InterceptionMode: nodemeta.InterceptionNone, InstanceIPs: []string{ip}, AppIP: ip, Labels: map[string]string{"app": pod},
	}.ToStruct()
	return &adsClient{conn: conn, stream: stream, names: names, marker: m,
		node:  &corev3.Node{Id: fmt.Sprintf("sidecar~%s~%s.%s~%s.svc.cluster.local", ip, pod, simNamespace, simNamespace), Metadata: md},
		ready: make(chan struct{}), converged: make(chan struct{}), failed: make(chan error, 1)}, nil
}

func (c *adsClient) close() { c.conn.Close() }

// envoyHTTP2Window is Envoy's default initial stream and connection window.
const envoyHTTP2Window = 256 << 20

// run is Envoy's SotW ADS dance: wildcard CDS and LDS, then EDS for the
// EDS clusters and RDS for the route names the listeners use; every
// response is ACKed with its version and nonce.
func (c *adsClient) run() {
	send := func(typ, version, nonce string, names []string) error {
		err := c.stream.Send(&discoveryv3.DiscoveryRequest{Node: c.node, TypeUrl: typ, VersionInfo: version,
			ResponseNonce: nonce, ResourceNames: names})
		return sendStatus(err, func() error { return c.stream.RecvMsg(&simResponse{}) })
	}
	fail := func(err error) {
		select {
		case c.failed <- err:
		default:
		}
	}
	if err := send(resourcev3.ClusterType, "", "", nil); err != nil {
		fail(err)
		return
	}
	if err := send(resourcev3.ListenerType, "", "", nil); err != nil {
		fail(err)
		return
	}
	subscribed := map[string][]string{}
	last := map[string][2]string{} // type → version, nonce
	acked := map[string]bool{}
	isReady, isConverged := false, false
	for {
		var sr simResponse
		if err := c.stream.RecvMsg(&sr); err != nil {
			fail(err)
			return
		}
		resp := &sr.DiscoveryResponse
		typ := resp.GetTypeUrl()
		last[typ] = [2]string{resp.GetVersionInfo(), resp.GetNonce()}
		if err := send(typ, resp.GetVersionInfo(), resp.GetNonce(), subscribed[typ]); err != nil {
			fail(err)
			return
		}
		acked[typ] = true
		var follow string
		var want []string
		switch typ {
		case resourcev3.ClusterType:
			follow, want = resourcev3.EndpointType, c.names.get("cds/"+resp.GetVersionInfo(), func() []string { return edsNames(resp) })
		case resourcev3.ListenerType:
			follow, want = resourcev3.RouteType, c.names.get("lds/"+resp.GetVersionInfo(), func() []string { return rdsNames(resp) })
		case resourcev3.RouteType:
			if sr.hasMarker && !isConverged {
				c.convergedAfter = time.Duration(time.Now().UnixNano() - c.marker.at.Load())
				isConverged = true
				close(c.converged)
			}
		}
		if follow != "" && !equalStrings(subscribed[follow], want) {
			subscribed[follow] = want
			if err := send(follow, last[follow][0], last[follow][1], want); err != nil {
				fail(err)
				return
			}
		}
		if !isReady && acked[resourcev3.ClusterType] && acked[resourcev3.ListenerType] &&
			acked[resourcev3.EndpointType] && acked[resourcev3.RouteType] {
			isReady = true
			close(c.ready)
		}
	}
}

func edsNames(resp *discoveryv3.DiscoveryResponse) []string {
	var out []string
	for _, r := range resp.GetResources() {
		var cl clusterv3.Cluster
		if r.UnmarshalTo(&cl) != nil || cl.GetType() != clusterv3.Cluster_EDS {
			continue
		}
		if n := cl.GetEdsClusterConfig().GetServiceName(); n != "" {
			out = append(out, n)
		} else {
			out = append(out, cl.GetName())
		}
	}
	sort.Strings(out)
	return out
}

func rdsNames(resp *discoveryv3.DiscoveryResponse) []string {
	seen := map[string]bool{}
	for _, r := range resp.GetResources() {
		var l listenerv3.Listener
		if r.UnmarshalTo(&l) != nil {
			continue
		}
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				var hcm hcmv3.HttpConnectionManager
				if f.GetTypedConfig() == nil || f.GetTypedConfig().UnmarshalTo(&hcm) != nil {
					continue
				}
				if n := hcm.GetRds().GetRouteConfigName(); n != "" {
					seen[n] = true
				}
			}
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// simCodec is the simulated proxies' gRPC codec: requests are marshalled
// as usual; responses are parsed by hand. Envoy decodes every resource;
// here that would put the load generator, not the control plane, on the
// 2000-proxy critical path of a shared machine, and what the simulation
// checks (versions, nonces, names, the marker) does not need it:
//   - RDS (what a VirtualService change sends to every proxy) is only
//     scanned in gRPC's receive buffers, for its top-level fields and the
//     marker, without copying the message;
//   - CDS and LDS, whose names the client needs, are copied once and their
//     resources alias that copy; they are decoded where names are needed
//     (edsNames, rdsNames), once per version.
type simCodec struct{ marker *markerState }

// simResponse is a DiscoveryResponse as simCodec parses it.
type simResponse struct {
	discoveryv3.DiscoveryResponse
	// hasMarker: an RDS response contains the armed marker (its Resources
	// are left empty).
	hasMarker bool
}

func (simCodec) Name() string { return "proto" }

func (simCodec) Marshal(v any) (mem.BufferSlice, error) {
	b, err := proto.Marshal(v.(proto.Message))
	if err != nil {
		return nil, err
	}
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

func (c simCodec) Unmarshal(data mem.BufferSlice, v any) error {
	sr, ok := v.(*simResponse)
	if !ok {
		return proto.Unmarshal(data.Materialize(), v.(proto.Message))
	}
	chunks := make([][]byte, len(data))
	for i, b := range data {
		chunks[i] = b.ReadOnlyData()
	}
	if err := scanTopLevel(chunks, &sr.DiscoveryResponse); err != nil {
		return err
	}
	if sr.TypeUrl == resourcev3.RouteType {
		if mk := c.marker.marker.Load(); mk != nil {
			sr.hasMarker = containsAcross(chunks, *mk)
		}
		return nil
	}
	return parseResponse(data.Materialize(), &sr.DiscoveryResponse)
}

// scanTopLevel reads a DiscoveryResponse's version, type URL and nonce
// from its encoding spread over chunks, skipping the resources.
func scanTopLevel(chunks [][]byte, resp *discoveryv3.DiscoveryResponse) error {
	cur := chunkCursor{chunks: chunks}
	for !cur.done() {
		tag, err := cur.varint()
		if err != nil {
			return err
		}
		num, typ := protowire.DecodeTag(tag)
		switch typ {
		case protowire.VarintType:
			if _, err := cur.varint(); err != nil {
				return err
			}
		case protowire.Fixed64Type:
			err = cur.skip(8)
		case protowire.Fixed32Type:
			err = cur.skip(4)
		case protowire.BytesType:
			n, err := cur.varint()
			if err != nil {
				return err
			}
			switch num {
			case 1, 4, 5:
				b, err := cur.read(int(n))
				if err != nil {
					return err
				}
				switch num {
				case 1:
					resp.VersionInfo = string(b)
				case 4:
					resp.TypeUrl = typeURLs.intern(b)
				case 5:
					resp.Nonce = string(b)
				}
			default:
				err = cur.skip(int(n))
			}
			if err != nil {
				return err
			}
		default:
			return fmt.Errorf("DiscoveryResponse: unexpected wire type %d", typ)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// chunkCursor reads protobuf wire data split over several buffers.
type chunkCursor struct {
	chunks [][]byte
	i, off int
}

func (c *chunkCursor) done() bool {
	for c.i < len(c.chunks) && c.off == len(c.chunks[c.i]) {
		c.i, c.off = c.i+1, 0
	}
	return c.i == len(c.chunks)
}

func (c *chunkCursor) byte() (byte, error) {
	if c.done() {
		return 0, io.ErrUnexpectedEOF
	}
	b := c.chunks[c.i][c.off]
	c.off++
	return b, nil
}

func (c *chunkCursor) varint() (uint64, error) {
	var v uint64
	for shift := uint(0); shift < 64; shift += 7 {
		b, err := c.byte()
		if err != nil {
			return 0, err
		}
		v |= uint64(b&0x7f) << shift
		if b < 0x80 {
			return v, nil
		}
	}
	return 0, errors.New("varint overflows 64 bits")
}

func (c *chunkCursor) skip(n int) error {
	for n > 0 {
		if c.done() {
			return io.ErrUnexpectedEOF
		}
		k := min(n, len(c.chunks[c.i])-c.off)
		c.off += k
		n -= k
	}
	return nil
}

func (c *chunkCursor) read(n int) ([]byte, error) {
	out := make([]byte, 0, n)
	for len(out) < n {
		if c.done() {
			return nil, io.ErrUnexpectedEOF
		}
		k := min(n-len(out), len(c.chunks[c.i])-c.off)
		out = append(out, c.chunks[c.i][c.off:c.off+k]...)
		c.off += k
	}
	return out, nil
}

// containsAcross reports whether needle occurs in the concatenation of
// chunks, including across chunk boundaries.
func containsAcross(chunks [][]byte, needle []byte) bool {
	if len(needle) == 0 {
		return true
	}
	var carry []byte // the last len(needle)-1 bytes seen
	for _, ch := range chunks {
		if len(carry) > 0 {
			head := ch[:min(len(ch), len(needle)-1)]
			if bytes.Contains(append(append([]byte(nil), carry...), head...), needle) {
				return true
			}
		}
		if bytes.Contains(ch, needle) {
			return true
		}
		carry = append(carry, ch...)
		if k := len(needle) - 1; len(carry) > k {
			carry = carry[len(carry)-k:]
		}
	}
	return false
}

// parseResponse parses a whole DiscoveryResponse with each resource's
// bytes aliasing b (no per-resource copy).
func parseResponse(b []byte, resp *discoveryv3.DiscoveryResponse) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		val, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		switch num {
		case 1:
			resp.VersionInfo = string(val)
		case 2:
			a, err := parseAny(val)
			if err != nil {
				return err
			}
			resp.Resources = append(resp.Resources, a)
		case 4:
			resp.TypeUrl = string(val)
		case 5:
			resp.Nonce = string(val)
		}
	}
	return nil
}

// parseAny reads a google.protobuf.Any, its value aliasing b.
func parseAny(b []byte) (*anypb.Any, error) {
	a := &anypb.Any{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return nil, protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		val, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
		switch num {
		case 1:
			a.TypeUrl = typeURLs.intern(val)
		case 2:
			a.Value = val
		}
	}
	return a, nil
}

// typeURLs interns the few resource type URLs.
var typeURLs internTable

type internTable struct {
	mu sync.Mutex
	m  map[string]string
}

func (t *internTable) intern(b []byte) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s, ok := t.m[string(b)]; ok {
		return s
	}
	if t.m == nil {
		t.m = map[string]string{}
	}
	s := string(b)
	t.m[s] = s
	return s
}
