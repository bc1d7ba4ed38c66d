package cluster

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// dnsHosts resolves the hosts of a STRICT_DNS or LOGICAL_DNS cluster lazily:
// the first pick resolves synchronously, later picks use the cached answer
// and refresh it in the background once it is older than the refresh rate.
// No goroutine outlives a refresh, so a removed cluster needs no cleanup.
type dnsHosts struct {
	hosts    []hostPort
	logical  bool   // LOGICAL_DNS: one host, first address only
	network  string // "ip", "ip4" or "ip6"
	refresh  time.Duration
	resolver *net.Resolver
	timeout  time.Duration

	mu         sync.Mutex
	set        *endpointSet
	resolvedAt time.Time
	refreshing atomic.Bool
}

func (d *dnsHosts) current(ctx context.Context) (*endpointSet, error) {
	d.mu.Lock()
	set, at := d.set, d.resolvedAt
	d.mu.Unlock()
	if set == nil {
		return d.resolve(ctx)
	}
	if time.Since(at) > d.refresh && d.refreshing.CompareAndSwap(false, true) {
		go func() {
			defer d.refreshing.Store(false)
			ctx, cancel := context.WithTimeout(context.Background(), d.timeout)
			defer cancel()
			d.resolve(ctx) // on failure the old answer stays
		}()
	}
	return set, nil
}

func (d *dnsHosts) resolve(ctx context.Context) (*endpointSet, error) {
	var eps []*Endpoint
	var lastErr error
	for _, h := range d.hosts {
		addrs, err := d.lookup(ctx, h.host)
		if err != nil {
			lastErr = err
			continue
		}
		if d.logical && len(addrs) > 1 {
			addrs = addrs[:1]
		}
		for _, a := range addrs {
			eps = append(eps, &Endpoint{
				Address:  net.JoinHostPort(a.String(), strconv.Itoa(int(h.port))),
				Healthy:  h.healthy,
				Priority: h.priority,
			})
		}
	}
	if len(eps) == 0 && lastErr != nil {
		return nil, lastErr
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.set = newEndpointSet(reuse(eps, d.set))
	d.resolvedAt = time.Now()
	return d.set, nil
}

func (d *dnsHosts) lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip}, nil
	}
	addrs, err := d.resolver.LookupNetIP(ctx, d.network, host)
	if err != nil {
		return nil, err
	}
	for i, a := range addrs {
		addrs[i] = a.Unmap()
	}
	return addrs, nil
}

// snapshot returns the last answer without resolving (for admin output).
func (d *dnsHosts) snapshot() *endpointSet {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.set
}
