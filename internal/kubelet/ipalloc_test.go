package kubelet

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
)

func TestIPAllocatorHandsOutPairedAddresses(t *testing.T) {
	a := NewIPAllocator()
	a.probe = func(netip.Addr, []int) error { return nil }
	want := []struct{ pod, app string }{
		{"127.1.0.1", "127.2.0.1"},
		{"127.1.0.2", ""},
		{"127.1.0.3", "127.2.0.3"},
	}
	for i, w := range want {
		pod, app, err := a.Allocate(w.app != "", nil)
		if err != nil {
			t.Fatal(err)
		}
		if pod.String() != w.pod || addrString(app) != w.app {
			t.Errorf("allocation %d = %s/%s, want %s/%s", i, pod, addrString(app), w.pod, w.app)
		}
	}
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func TestIPAllocatorSkipsAddressesInUse(t *testing.T) {
	// Someone else holds 127.1.0.1:15000 and 127.2.0.2:9080.
	for _, addr := range []string{"127.1.0.1:15000", "127.2.0.2:9080"} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Skipf("cannot bind %s (loopback aliases missing?): %v", addr, err)
		}
		defer l.Close()
	}
	a := NewIPAllocator()
	pod, app, err := a.Allocate(true, []int{15000, 9080})
	if err != nil {
		t.Fatal(err)
	}
	if pod.String() != "127.1.0.3" || app.String() != "127.2.0.3" {
		t.Errorf("got %s/%s, want 127.1.0.3/127.2.0.3 (127.1.0.1 and 127.2.0.2 are busy)", pod, app)
	}
	// A pod without a sidecar does not need the app IP, so .2 is fine then.
	b := NewIPAllocator()
	pod, _, err = b.Allocate(false, []int{15000, 9080})
	if err != nil {
		t.Fatal(err)
	}
	if pod.String() != "127.1.0.2" {
		t.Errorf("without app IP got %s, want 127.1.0.2", pod)
	}
}

func TestIPAllocatorReleaseDoesNotReuseAtOnce(t *testing.T) {
	a := NewIPAllocator()
	a.probe = func(netip.Addr, []int) error { return nil }
	first, _, _ := a.Allocate(false, nil)
	a.Release(first)
	second, _, _ := a.Allocate(false, nil)
	if second == first {
		t.Errorf("released %s was handed out again immediately", first)
	}
	if a.taken[0] {
		t.Errorf("released index still marked taken")
	}
}

func TestIPAllocatorErrors(t *testing.T) {
	a := NewIPAllocator()
	a.probe = func(addr netip.Addr, _ []int) error { return errAddrBusy }
	if _, _, err := a.Allocate(false, nil); err == nil || !strings.Contains(err.Error(), "no free loopback address") {
		t.Errorf("all busy: err = %v", err)
	}
	b := NewIPAllocator()
	fatal := errors.New("not usable")
	b.probe = func(netip.Addr, []int) error { return fatal }
	if _, _, err := b.Allocate(false, nil); !errors.Is(err, fatal) {
		t.Errorf("unusable address: err = %v, want %v", err, fatal)
	}
}

func TestIndexToAddrAvoidsNetworkAndBroadcastOctets(t *testing.T) {
	tests := []struct {
		i    int
		want string
	}{
		{0, "127.1.0.1"}, {253, "127.1.0.254"}, {254, "127.1.1.1"}, {ipsPerBlock - 1, "127.1.255.254"},
	}
	for _, tt := range tests {
		got := indexToAddr(podIPBlock, tt.i)
		if got.String() != tt.want {
			t.Errorf("indexToAddr(%d) = %s, want %s", tt.i, got, tt.want)
		}
		if back, ok := addrToIndex(podIPBlock, got); !ok || back != tt.i {
			t.Errorf("addrToIndex(%s) = %d, %v; want %d", got, back, ok, tt.i)
		}
	}
	for _, s := range []string{"127.0.0.1", "127.2.0.1", "10.1.0.1", "127.1.0.0"} {
		if _, ok := addrToIndex(podIPBlock, netip.MustParseAddr(s)); ok {
			t.Errorf("addrToIndex(%s) accepted an address outside the pod block", s)
		}
	}
}

func TestNodeIPAllocatorUsesItsOwnBlocks(t *testing.T) {
	// `skein up` and `skein node` on one machine must never share addresses.
	local, node := NewIPAllocator(), newNodeIPAllocator()
	for _, a := range []*IPAllocator{local, node} {
		a.probe = func(netip.Addr, []int) error { return nil }
	}
	lp, la, err := local.Allocate(true, nil)
	if err != nil {
		t.Fatal(err)
	}
	np, na, err := node.Allocate(true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if lp.String() != "127.1.0.1" || la.String() != "127.2.0.1" || np.String() != "127.3.0.1" || na.String() != "127.4.0.1" {
		t.Errorf("local %s/%s node %s/%s; want 127.1.0.1/127.2.0.1 and 127.3.0.1/127.4.0.1", lp, la, np, na)
	}
	node.Release(np)
	node.next = 0
	if again, _, _ := node.Allocate(false, nil); again != np {
		t.Errorf("released node address not reusable: got %s, want %s", again, np)
	}
}

// A port listed twice (a containerPort that is also a proxy port) must not
// make every address look busy.
func TestProbePortsDuplicatePort(t *testing.T) {
	addr := netip.MustParseAddr("127.0.0.1")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	if err := probePorts(addr, []int{port, port}); err != nil {
		t.Fatalf("free port listed twice: %v", err)
	}
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if err := probePorts(addr, []int{held.Addr().(*net.TCPAddr).Port}); !errors.Is(err, errAddrBusy) {
		t.Fatalf("held port: %v, want errAddrBusy", err)
	}
}
