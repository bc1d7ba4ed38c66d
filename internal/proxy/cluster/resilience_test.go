package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/skein-mesh/skein/internal/proxy/stats"
)

func update(t *testing.T, m *Manager, pc *clusterv3.Cluster) *Cluster {
	t.Helper()
	if err := m.Update(map[string]*clusterv3.Cluster{pc.Name: pc}, nil); err != nil {
		t.Fatal(err)
	}
	c, _ := m.Get(pc.Name)
	return c
}

// The tutorial's circuit breaker: one connection, one pending request. Of
// three concurrent requests to a slow upstream, one runs, one waits and
// one overflows at once.
func TestCircuitBreakerPendingOverflow(t *testing.T) {
	release := make(chan struct{})
	var served sync.WaitGroup
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		io.WriteString(w, "ok")
		served.Done()
	}))
	defer srv.Close()
	st := stats.NewStore()
	m := NewManager(Options{Stats: st})
	pc := staticCluster("cb", srv.Listener.Addr().String())
	pc.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
		MaxConnections: wrapperspb.UInt32(1), MaxPendingRequests: wrapperspb.UInt32(1), TrackRemaining: true}}}
	c := update(t, m, pc)

	results := make(chan error, 3)
	served.Add(2)
	for range 3 {
		go func() {
			rel, err := c.Admit(context.Background(), false)
			if err != nil {
				results <- err
				return
			}
			defer rel()
			ep, _ := c.Pick(context.Background(), "")
			resp, err := c.RoundTripper(false).RoundTrip(httptest.NewRequest("GET", "http://"+ep.Address+"/", nil).WithContext(context.Background()))
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			results <- err
		}()
	}
	// The overflow answers without waiting for the upstream.
	select {
	case err := <-results:
		if !errors.Is(err, ErrOverflow) {
			t.Fatalf("first result = %v, want ErrOverflow", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no request overflowed")
	}
	waitFor(t, func() bool { return st.Gauge("cluster.cb.upstream_rq_pending_active").Value() == 1 })
	if v := st.Gauge("cluster.cb.circuit_breakers.default.rq_pending_open").Value(); v != 1 {
		t.Errorf("rq_pending_open = %d, want 1", v)
	}
	if v := st.Gauge("cluster.cb.circuit_breakers.default.remaining_cx").Value(); v != 0 {
		t.Errorf("remaining_cx = %d, want 0", v)
	}
	close(release)
	for range 2 {
		if err := <-results; err != nil {
			t.Errorf("admitted request failed: %v", err)
		}
	}
	served.Wait()
	for name, want := range map[string]uint64{"upstream_rq_pending_overflow": 1, "upstream_rq_pending_total": 1, "upstream_cx_overflow": 2} {
		if v := st.Counter("cluster.cb." + name).Value(); v != want {
			t.Errorf("%s = %d, want %d", name, v, want)
		}
	}
	if v := st.Gauge("cluster.cb.upstream_rq_pending_active").Value(); v != 0 {
		t.Errorf("upstream_rq_pending_active = %d after the queue drained", v)
	}
	if v := st.Gauge("cluster.cb.circuit_breakers.default.remaining_cx").Value(); v != 1 {
		t.Errorf("remaining_cx = %d after all requests ended, want 1", v)
	}
}

func TestPendingRequestGivesUpWithItsContext(t *testing.T) {
	m := NewManager(Options{})
	pc := staticCluster("cb", "127.0.0.1:1")
	pc.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{MaxConnections: wrapperspb.UInt32(1)}}}
	c := update(t, m, pc)
	rel, err := c.Admit(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := c.Admit(ctx, false); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("pending Admit = %v, want deadline exceeded", err)
	}
	rel()
	// The slot is free again: the abandoned waiter did not keep it.
	rel2, err := c.Admit(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	rel2()
}

func TestMaxRequestsAndRetries(t *testing.T) {
	st := stats.NewStore()
	m := NewManager(Options{Stats: st})
	pc := staticCluster("h2", "127.0.0.1:1")
	pc.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
		MaxRequests: wrapperspb.UInt32(2), MaxRetries: wrapperspb.UInt32(1)}}}
	pc.TypedExtensionProtocolOptions = http2Options(t)
	c := update(t, m, pc)
	// HTTP/2 multiplexes: no connection limit, but max_requests holds.
	r1, err1 := c.Admit(context.Background(), false)
	r2, err2 := c.Admit(context.Background(), false)
	_, err3 := c.Admit(context.Background(), false)
	if err1 != nil || err2 != nil || !errors.Is(err3, ErrOverflow) {
		t.Fatalf("Admit x3 = %v, %v, %v; want nil, nil, ErrOverflow", err1, err2, err3)
	}
	r1()
	r2()
	done, ok := c.BeginRetry()
	if _, ok2 := c.BeginRetry(); !ok || ok2 {
		t.Fatalf("BeginRetry x2 = %v, %v; want true, false", ok, ok2)
	}
	done()
	if _, ok := c.BeginRetry(); !ok {
		t.Error("a finished retry did not return its slot")
	}
	if v := st.Counter("cluster.h2.upstream_rq_retry_overflow").Value(); v != 1 {
		t.Errorf("upstream_rq_retry_overflow = %d, want 1", v)
	}
	if v := st.Counter("cluster.h2.upstream_rq_pending_overflow").Value(); v != 1 {
		t.Errorf("upstream_rq_pending_overflow = %d, want 1", v)
	}
}

// max_requests_per_connection 2: four sequential requests use two
// connections.
func TestMaxRequestsPerConnection(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	var conns sync.Map
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Store(c.RemoteAddr().String(), true)
		}
	}
	srv.Start()
	defer srv.Close()
	st := stats.NewStore()
	m := NewManager(Options{Stats: st})
	pc := staticCluster("per", srv.Listener.Addr().String())
	pc.TypedExtensionProtocolOptions = protocolOptions(t, 2)
	c := update(t, m, pc)
	for i := range 4 {
		resp, err := c.RoundTripper(false).RoundTrip(httptest.NewRequest("GET", "http://"+srv.Listener.Addr().String()+"/", nil).WithContext(context.Background()))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	n := 0
	conns.Range(func(_, _ any) bool { n++; return true })
	if n != 2 {
		t.Errorf("4 requests used %d connections, want 2", n)
	}
}

func hostsCluster(t *testing.T, m *Manager, pc *clusterv3.Cluster, n int) (*Cluster, []string) {
	t.Helper()
	var addrs []string
	for i := range n {
		addrs = append(addrs, fmt.Sprintf("127.0.0.%d:80", i+1))
	}
	pc.LoadAssignment = assignment(pc.Name, addrs...)
	return update(t, m, pc), addrs
}

func TestHashBalancersAreStickyEvenAndStable(t *testing.T) {
	for _, tc := range []struct {
		name     string
		set      func(*clusterv3.Cluster)
		maxMoved int // share of kept hosts' keys allowed to move, in percent
	}{
		// The ring keeps its size, so the kept hosts get more points
		// each and take some keys from one another.
		{"ring hash", func(c *clusterv3.Cluster) { c.LbPolicy = clusterv3.Cluster_RING_HASH }, 15},
		{"maglev", func(c *clusterv3.Cluster) { c.LbPolicy = clusterv3.Cluster_MAGLEV }, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewManager(Options{})
			pc := staticCluster("h", "127.0.0.1:80")
			tc.set(pc)
			c, addrs := hostsCluster(t, m, pc, 5)
			const keys = 5000
			before := make([]string, keys)
			share := map[string]int{}
			for k := range keys {
				h := HashString(fmt.Sprintf("user-%d", k))
				ep, err := c.PickHash(context.Background(), "", h, true)
				if err != nil {
					t.Fatal(err)
				}
				again, _ := c.PickHash(context.Background(), "", h, true)
				if again != ep {
					t.Fatalf("key %d went to %s then %s", k, ep.Address, again.Address)
				}
				before[k] = ep.Address
				share[ep.Address]++
			}
			for _, a := range addrs {
				if share[a] < keys/5*6/10 || share[a] > keys/5*14/10 {
					t.Errorf("host %s got %d of %d keys, want about %d", a, share[a], keys, keys/5)
				}
			}
			// Remove one host: only its keys move.
			pc2 := staticCluster("h", addrs[:4]...)
			tc.set(pc2)
			c2 := update(t, m, pc2)
			moved := 0
			for k := range keys {
				ep, _ := c2.PickHash(context.Background(), "", HashString(fmt.Sprintf("user-%d", k)), true)
				if before[k] != addrs[4] && ep.Address != before[k] {
					moved++
				}
			}
			if moved*100 > keys*tc.maxMoved {
				t.Errorf("%d of %d keys of kept hosts moved, want under %d%%", moved, keys, tc.maxMoved)
			}
		})
	}
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (f *fakeClock) Now() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.now }
func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

func TestOutlierEjectionAndReturn(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1000, 0)}
	st := stats.NewStore()
	m := NewManager(Options{Stats: st, Now: clock.Now})
	pc := staticCluster("od", "127.0.0.1:80")
	pc.OutlierDetection = &clusterv3.OutlierDetection{
		Consecutive_5Xx: wrapperspb.UInt32(2), EnforcingSuccessRate: wrapperspb.UInt32(0),
		Interval: durationpb.New(time.Hour), BaseEjectionTime: durationpb.New(30 * time.Second),
		MaxEjectionPercent: wrapperspb.UInt32(100),
	}
	pc.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{HealthyPanicThreshold: &typev3.Percent{Value: 0}}
	c, _ := hostsCluster(t, m, pc, 3)
	bad := c.Endpoints()[0]
	stat := func(name string) int64 {
		if name == "ejections_active" {
			return st.Gauge("cluster.od.outlier_detection." + name).Value()
		}
		return int64(st.Counter("cluster.od.outlier_detection." + name).Value())
	}

	c.Report(bad, ResultResponse, 503)
	c.Report(bad, ResultResponse, 200) // a success resets the count
	c.Report(bad, ResultResponse, 503)
	if bad.Ejected() {
		t.Fatal("ejected after non-consecutive errors")
	}
	c.Report(bad, ResultResponse, 500)
	if !bad.Ejected() || stat("ejections_active") != 1 || stat("ejections_enforced_total") != 1 || stat("ejections_enforced_consecutive_5xx") != 1 {
		t.Fatalf("not ejected after 2 consecutive 5xx: active %d, enforced %d", stat("ejections_active"), stat("ejections_enforced_total"))
	}
	for range 50 {
		if ep, _ := c.Pick(context.Background(), ""); ep == bad {
			t.Fatal("an ejected host was picked")
		}
	}
	sweep := func() { c.outlier.sweep() }
	clock.Advance(29 * time.Second)
	sweep()
	if !bad.Ejected() {
		t.Fatal("returned before base_ejection_time")
	}
	clock.Advance(2 * time.Second)
	sweep()
	if bad.Ejected() || stat("ejections_active") != 0 {
		t.Fatal("not returned after base_ejection_time")
	}
	// A second ejection lasts twice as long.
	c.Report(bad, ResultConnectFailed, 0)
	c.Report(bad, ResultTimeout, 0)
	if !bad.Ejected() {
		t.Fatal("local-origin failures did not count as 5xx")
	}
	clock.Advance(45 * time.Second)
	sweep()
	if !bad.Ejected() {
		t.Fatal("second ejection did not grow to 2x base_ejection_time")
	}
	clock.Advance(20 * time.Second)
	sweep()
	if bad.Ejected() {
		t.Fatal("second ejection outlasted 2x base_ejection_time")
	}

	// An endpoint update keeps the state of kept hosts.
	c.Report(bad, ResultResponse, 502)
	c.Report(bad, ResultResponse, 502)
	if err := m.UpdateEndpoints(nil); err != nil {
		t.Fatal(err)
	}
	if !bad.Ejected() {
		t.Fatal("lost ejection")
	}
}

func TestOutlierMaxEjectionPercentAndPanic(t *testing.T) {
	for _, tc := range []struct {
		name      string
		panicPct  float64
		wantPanic bool
	}{{"panic off", 0, false}, {"panic at 50%", 50, true}} {
		t.Run(tc.name, func(t *testing.T) {
			st := stats.NewStore()
			m := NewManager(Options{Stats: st})
			pc := staticCluster("od", "127.0.0.1:80")
			pc.OutlierDetection = &clusterv3.OutlierDetection{
				ConsecutiveGatewayFailure: wrapperspb.UInt32(1), EnforcingConsecutiveGatewayFailure: wrapperspb.UInt32(100),
				EnforcingConsecutive_5Xx: wrapperspb.UInt32(0), EnforcingSuccessRate: wrapperspb.UInt32(0),
				MaxEjectionPercent: wrapperspb.UInt32(100),
			}
			pc.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{HealthyPanicThreshold: &typev3.Percent{Value: tc.panicPct}}
			c, _ := hostsCluster(t, m, pc, 2)
			eps := c.Endpoints()
			c.Report(eps[0], ResultResponse, 500) // 500 is not a gateway error
			if eps[0].Ejected() {
				t.Fatal("500 counted as a gateway error")
			}
			c.Report(eps[0], ResultResponse, 503)
			c.Report(eps[1], ResultResponse, 504)
			if !eps[0].Ejected() || !eps[1].Ejected() {
				t.Fatal("gateway errors did not eject both hosts")
			}
			ep, err := c.Pick(context.Background(), "")
			if tc.wantPanic {
				if err != nil || ep == nil || st.Counter("cluster.od.upstream_rq_lb_healthy_panic").Value() != 1 {
					t.Fatalf("panic mode: Pick = %v, %v", ep, err)
				}
			} else if !errors.Is(err, ErrNoHealthyUpstream) {
				t.Fatalf("all hosts ejected: Pick = %v, %v; want no healthy upstream", ep, err)
			}
		})
	}
	// max_ejection_percent 10 of 3 hosts: one ejection is always allowed,
	// a second overflows.
	st := stats.NewStore()
	m := NewManager(Options{Stats: st})
	pc := staticCluster("od", "127.0.0.1:80")
	pc.OutlierDetection = &clusterv3.OutlierDetection{Consecutive_5Xx: wrapperspb.UInt32(1), EnforcingSuccessRate: wrapperspb.UInt32(0)}
	c, _ := hostsCluster(t, m, pc, 3)
	eps := c.Endpoints()
	c.Report(eps[0], ResultResponse, 500)
	c.Report(eps[1], ResultResponse, 500)
	if !eps[0].Ejected() || eps[1].Ejected() || st.Counter("cluster.od.outlier_detection.ejections_overflow").Value() != 1 {
		t.Error("max_ejection_percent not enforced")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func protocolOptions(t *testing.T, perConn uint32) map[string]*anypb.Any {
	t.Helper()
	a, err := anypb.New(&upstreamhttpv3.HttpProtocolOptions{
		CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{MaxRequestsPerConnection: wrapperspb.UInt32(perConn)},
		UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{HttpProtocolOptions: &corev3.Http1ProtocolOptions{}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return map[string]*anypb.Any{httpProtocolOptionsKey: a}
}
