package kubelet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
)

// Pods get their addresses from two /16 blocks of the loopback network, so a
// pod IP and its app IP share the last two octets (127.1.0.7 ↔ 127.2.0.7),
// which keeps logs readable. 127.0.0.0/16 is left alone: 127.0.0.1 is where
// the control plane and the ingress gateway listen. A node agent (`skein
// node`) takes the next two blocks, so it and a `skein up` on the same
// machine never hand out the same address even when they probe at once.
const (
	podIPBlock     = 1
	appIPBlock     = 2
	nodePodIPBlock = 3
	nodeAppIPBlock = 4
	ipsPerBlock    = 256 * 254 // x.1 … x.254 for every x
	errNoLoopHint  = "on macOS every loopback address must be added first, e.g. `sudo ifconfig lo0 alias %s up`"
)

// ProxyAdminPort is the proxy's admin port, where its /ready answers.
const ProxyAdminPort = 15000

// ProxyPorts are the ports a sidecar or gateway binds on its pod IP (admin,
// outbound, merged metrics, health, Prometheus stats).
var ProxyPorts = []int{ProxyAdminPort, 15001, 15020, 15021, 15090}

// IPAllocator hands out pod and app IPs, skipping addresses already handed
// out and addresses on which another process (a stray app, another runner)
// already holds one of the ports the pod needs.
type IPAllocator struct {
	mu    sync.Mutex
	taken map[int]bool // indexes handed out and not yet released
	next  int          // round-robin cursor, so a released address is not reused at once
	// podBlock and appBlock are the second octets of pod and app IPs.
	podBlock, appBlock int
	// probe reports nil when every port is free on addr; tests replace it.
	probe func(addr netip.Addr, ports []int) error
}

func NewIPAllocator() *IPAllocator {
	return &IPAllocator{taken: map[int]bool{}, probe: probePorts, podBlock: podIPBlock, appBlock: appIPBlock}
}

// newNodeIPAllocator is the allocator of a node agent: 127.3.0.0/16 pod
// IPs, 127.4.0.0/16 app IPs.
func newNodeIPAllocator() *IPAllocator {
	return &IPAllocator{taken: map[int]bool{}, probe: probePorts, podBlock: nodePodIPBlock, appBlock: nodeAppIPBlock}
}

// errAddrBusy marks a probe failure that means "try the next address".
var errAddrBusy = errors.New("address in use")

// Allocate reserves a pod IP and, when withApp is set, the matching app IP.
// ports are the ports the pod will bind on those addresses.
func (a *IPAllocator) Allocate(withApp bool, ports []int) (podIP, appIP netip.Addr, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for n := 0; n < ipsPerBlock; n++ {
		i := (a.next + n) % ipsPerBlock
		if a.taken[i] {
			continue
		}
		pod := indexToAddr(a.podBlock, i)
		if err := a.probe(pod, ports); err != nil {
			if errors.Is(err, errAddrBusy) {
				continue
			}
			return netip.Addr{}, netip.Addr{}, err
		}
		if withApp {
			app := indexToAddr(a.appBlock, i)
			if err := a.probe(app, ports); err != nil {
				if errors.Is(err, errAddrBusy) {
					continue
				}
				return netip.Addr{}, netip.Addr{}, err
			}
			appIP = app
		}
		a.taken[i] = true
		a.next = i + 1
		return pod, appIP, nil
	}
	return netip.Addr{}, netip.Addr{}, fmt.Errorf("no free loopback address left in 127.%d.0.0/16", a.podBlock)
}

// Release returns a pod's addresses (the app IP follows the pod IP).
func (a *IPAllocator) Release(podIP netip.Addr) {
	if i, ok := addrToIndex(a.podBlock, podIP); ok {
		a.mu.Lock()
		delete(a.taken, i)
		a.mu.Unlock()
	}
}

func indexToAddr(block, i int) netip.Addr {
	return netip.AddrFrom4([4]byte{127, byte(block), byte(i / 254), byte(i%254 + 1)})
}

func addrToIndex(block int, a netip.Addr) (int, bool) {
	if !a.Is4() {
		return 0, false
	}
	b := a.As4()
	if b[0] != 127 || int(b[1]) != block || b[3] == 0 || b[3] == 255 {
		return 0, false
	}
	return int(b[2])*254 + int(b[3]) - 1, true
}

// probePorts tries to bind every port on addr. A port held by someone else
// makes the address busy; an address the system does not route to loopback
// (macOS without aliases) is an error the user must fix.
func probePorts(addr netip.Addr, ports []int) error {
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	seen := map[int]bool{}
	for _, p := range ports {
		// A port named twice (a declared containerPort that is also a proxy
		// port, as Istio's template declares 15090) is probed once: binding
		// it again would fail against our own listener.
		if seen[p] {
			continue
		}
		seen[p] = true
		l, err := net.Listen("tcp", net.JoinHostPort(addr.String(), strconv.Itoa(p)))
		if err != nil {
			if errors.Is(err, syscall.EADDRNOTAVAIL) {
				return fmt.Errorf("loopback address %s is not usable: %w ("+errNoLoopHint+")", addr, err, addr)
			}
			return fmt.Errorf("%w: %s:%d: %v", errAddrBusy, addr, p, err)
		}
		held = append(held, l)
	}
	return nil
}
