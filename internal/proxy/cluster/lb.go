package cluster

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"sync/atomic"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"

	"github.com/skein-mesh/skein/internal/proxy/internal/hashing"
	"github.com/skein-mesh/skein/internal/proxy/internal/protocheck"
)

// Envoy's defaults and limits for the hashing load balancers.
const (
	defaultMinRingSize   = 1024
	defaultMaxRingSize   = 8 << 20
	defaultMaglevSize    = 65537
	defaultLeastRqChoice = 2
)

var (
	ringHashFields     = protocheck.Fields(&clusterv3.Cluster_RingHashLbConfig{}, "minimum_ring_size", "maximum_ring_size", "hash_function")
	maglevFields       = protocheck.Fields(&clusterv3.Cluster_MaglevLbConfig{}, "table_size")
	leastRequestFields = protocheck.Fields(&clusterv3.Cluster_LeastRequestLbConfig{}, "choice_count")
)

// balancer picks one of the candidate endpoints. hash is the request's
// hash from the route's hash_policy; hasHash is false when no policy
// produced one (the hashing balancers then pick at random, as Envoy does).
type balancer interface {
	pick(eps []*Endpoint, hash uint64, hasHash bool) *Endpoint
}

var (
	_ balancer = (*roundRobin)(nil)
	_ balancer = random{}
	_ balancer = leastRequest{}
	_ balancer = (*ringHash)(nil)
	_ balancer = (*maglev)(nil)
)

func balancerFor(pc *clusterv3.Cluster) (balancer, error) {
	lb := pc.GetLbPolicy()
	switch cfg := pc.GetLbConfig().(type) {
	case nil:
	case *clusterv3.Cluster_RingHashLbConfig_:
		if lb != clusterv3.Cluster_RING_HASH {
			return nil, fmt.Errorf("ring_hash_lb_config needs lb_policy RING_HASH, not %s", lb)
		}
	case *clusterv3.Cluster_MaglevLbConfig_:
		if lb != clusterv3.Cluster_MAGLEV {
			return nil, fmt.Errorf("maglev_lb_config needs lb_policy MAGLEV, not %s", lb)
		}
	case *clusterv3.Cluster_LeastRequestLbConfig_:
		if lb != clusterv3.Cluster_LEAST_REQUEST {
			return nil, fmt.Errorf("least_request_lb_config needs lb_policy LEAST_REQUEST, not %s", lb)
		}
	default:
		return nil, fmt.Errorf("lb_config %T is not supported yet", cfg)
	}
	switch lb {
	case clusterv3.Cluster_ROUND_ROBIN:
		return &roundRobin{}, nil
	case clusterv3.Cluster_LEAST_REQUEST:
		cfg := pc.GetLeastRequestLbConfig()
		if err := leastRequestFields.Check(cfg); err != nil {
			return nil, fmt.Errorf("least_request_lb_config: %v", err)
		}
		n := defaultLeastRqChoice
		if v := cfg.GetChoiceCount(); v != nil {
			if v.GetValue() < 2 {
				return nil, fmt.Errorf("least_request_lb_config.choice_count must be at least 2")
			}
			n = int(v.GetValue())
		}
		return leastRequest{choices: n}, nil
	case clusterv3.Cluster_RANDOM:
		return random{}, nil
	case clusterv3.Cluster_RING_HASH:
		cfg := pc.GetRingHashLbConfig()
		if err := ringHashFields.Check(cfg); err != nil {
			return nil, fmt.Errorf("ring_hash_lb_config: %v", err)
		}
		if cfg.GetHashFunction() != clusterv3.Cluster_RingHashLbConfig_XX_HASH {
			return nil, fmt.Errorf("ring_hash_lb_config.hash_function %s is not supported (XX_HASH is)", cfg.GetHashFunction())
		}
		minSize, maxSize := uint64(defaultMinRingSize), uint64(defaultMaxRingSize)
		if v := cfg.GetMinimumRingSize(); v != nil {
			minSize = v.GetValue()
		}
		if v := cfg.GetMaximumRingSize(); v != nil {
			maxSize = v.GetValue()
		}
		if minSize == 0 || minSize > maxSize || maxSize > defaultMaxRingSize {
			return nil, fmt.Errorf("ring_hash_lb_config: need 0 < minimum_ring_size (%d) <= maximum_ring_size (%d) <= %d", minSize, maxSize, defaultMaxRingSize)
		}
		return &ringHash{minSize: minSize, maxSize: maxSize}, nil
	case clusterv3.Cluster_MAGLEV:
		cfg := pc.GetMaglevLbConfig()
		if err := maglevFields.Check(cfg); err != nil {
			return nil, fmt.Errorf("maglev_lb_config: %v", err)
		}
		size := uint64(defaultMaglevSize)
		if v := cfg.GetTableSize(); v != nil {
			size = v.GetValue()
		}
		if !isPrime(size) || size > 5000011 {
			return nil, fmt.Errorf("maglev_lb_config.table_size %d must be a prime no larger than 5000011", size)
		}
		return &maglev{size: size}, nil
	case clusterv3.Cluster_CLUSTER_PROVIDED:
		if pc.GetType() != clusterv3.Cluster_ORIGINAL_DST {
			return nil, fmt.Errorf("lb_policy CLUSTER_PROVIDED is only supported on ORIGINAL_DST clusters")
		}
		return &roundRobin{}, nil
	default:
		return nil, fmt.Errorf("lb_policy %s is not supported yet (ROUND_ROBIN, LEAST_REQUEST, RANDOM, RING_HASH and MAGLEV are)", lb)
	}
}

// roundRobin cycles through the hosts with one atomic counter.
type roundRobin struct{ next atomic.Uint64 }

func (rr *roundRobin) pick(eps []*Endpoint, _ uint64, _ bool) *Endpoint {
	return eps[(rr.next.Add(1)-1)%uint64(len(eps))]
}

// random picks uniformly.
type random struct{}

func (random) pick(eps []*Endpoint, _ uint64, _ bool) *Endpoint { return eps[rand.IntN(len(eps))] }

// leastRequest is Envoy's power of choices: of choices random hosts
// (default two) take the one with the fewest requests in flight.
type leastRequest struct{ choices int }

func (lr leastRequest) pick(eps []*Endpoint, _ uint64, _ bool) *Endpoint {
	if len(eps) == 1 {
		return eps[0]
	}
	first := rand.IntN(len(eps))
	best := eps[first]
	for range max(lr.choices, defaultLeastRqChoice) - 1 {
		// Each further choice differs from the first, so two hosts are
		// always compared.
		i := rand.IntN(len(eps) - 1)
		if i >= first {
			i++
		}
		if e := eps[i]; e.active.Load() < best.active.Load() {
			best = e
		}
	}
	return best
}

// hashTable caches a table built for one list of hosts; the hashing
// balancers rebuild it when the candidate hosts change (EDS update,
// ejection), as Envoy rebuilds its ring on every host set change.
type hashTable[T any] struct {
	hosts []*Endpoint
	table T
}

func cached[T any](p *atomic.Pointer[hashTable[T]], eps []*Endpoint, build func([]*Endpoint) T) T {
	if cur := p.Load(); cur != nil && slices.Equal(cur.hosts, eps) {
		return cur.table
	}
	next := &hashTable[T]{hosts: slices.Clone(eps), table: build(eps)}
	p.Store(next)
	return next.table
}

// ringHash is Ketama-style consistent hashing: every host owns many points
// on a 64-bit ring; a request goes to the first point at or after its hash.
// Removing a host only moves the requests that hashed to its points.
type ringHash struct {
	minSize, maxSize uint64
	ring             atomic.Pointer[hashTable[[]ringPoint]]
}

type ringPoint struct {
	hash uint64
	host *Endpoint
}

func (rh *ringHash) pick(eps []*Endpoint, hash uint64, hasHash bool) *Endpoint {
	if !hasHash {
		return eps[rand.IntN(len(eps))]
	}
	ring := cached(&rh.ring, eps, rh.build)
	i := sort.Search(len(ring), func(i int) bool { return ring[i].hash >= hash })
	if i == len(ring) {
		i = 0
	}
	return ring[i].host
}

func (rh *ringHash) build(eps []*Endpoint) []ringPoint {
	size := max(rh.minSize, uint64(len(eps)))
	size = min(size, rh.maxSize)
	perHost := (size + uint64(len(eps)) - 1) / uint64(len(eps))
	ring := make([]ringPoint, 0, perHost*uint64(len(eps)))
	for _, e := range eps {
		key := []byte(e.Address + "_")
		for i := range perHost {
			ring = append(ring, ringPoint{hash: HashBytes(strconv.AppendUint(key, i, 10)), host: e})
		}
	}
	sort.Slice(ring, func(i, j int) bool {
		if ring[i].hash != ring[j].hash {
			return ring[i].hash < ring[j].hash
		}
		return ring[i].host.Address < ring[j].host.Address
	})
	return ring
}

// maglev is Google's Maglev hashing: a lookup table of prime size filled
// from each host's permutation in turn, so hosts get equal shares and a
// host change moves few entries.
type maglev struct {
	size  uint64
	table atomic.Pointer[hashTable[[]*Endpoint]]
}

func (m *maglev) pick(eps []*Endpoint, hash uint64, hasHash bool) *Endpoint {
	if !hasHash {
		return eps[rand.IntN(len(eps))]
	}
	return cached(&m.table, eps, m.build)[hash%m.size]
}

func (m *maglev) build(eps []*Endpoint) []*Endpoint {
	n := len(eps)
	// Hosts are placed in address order so every proxy builds the same table.
	sorted := slices.Clone(eps)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Address < sorted[j].Address })
	offset, skip, next := make([]uint64, n), make([]uint64, n), make([]uint64, n)
	for i, e := range sorted {
		offset[i] = HashString(e.Address) % m.size
		skip[i] = HashString(e.Address+"#skip")%(m.size-1) + 1
	}
	table := make([]*Endpoint, m.size)
	for filled := uint64(0); ; {
		for i := range sorted {
			c := (offset[i] + next[i]*skip[i]) % m.size
			for table[c] != nil {
				next[i]++
				c = (offset[i] + next[i]*skip[i]) % m.size
			}
			table[c] = sorted[i]
			next[i]++
			if filled++; filled == m.size {
				return table
			}
		}
	}
}

func isPrime(n uint64) bool {
	if n < 2 {
		return false
	}
	for d := uint64(2); d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}

// HashString is the proxy's stable 64-bit hash, the same in every proxy so
// that all of a service's clients send one key to the same host.
func HashString(s string) uint64 { return hashing.String(s) }

// HashBytes is HashString for a byte slice.
func HashBytes(b []byte) uint64 { return hashing.Bytes(b) }
