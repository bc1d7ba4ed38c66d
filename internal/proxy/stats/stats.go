// Package stats is the proxy's small metrics registry: named atomic counters
// and gauges, looked up once and then updated without locks, printed in
// Envoy's admin formats by the admin package.
package stats

import (
	"sort"
	"sync"
	"sync/atomic"
)

// Counter only goes up.
type Counter struct{ v atomic.Uint64 }

// Inc adds one.
func (c *Counter) Inc() { c.v.Add(1) }

// Add adds n.
func (c *Counter) Add(n uint64) { c.v.Add(n) }

// Value reads the counter.
func (c *Counter) Value() uint64 { return c.v.Load() }

// Gauge goes up and down.
type Gauge struct{ v atomic.Int64 }

// Inc adds one.
func (g *Gauge) Inc() { g.v.Add(1) }

// Dec subtracts one.
func (g *Gauge) Dec() { g.v.Add(-1) }

// Add adds n (negative to subtract).
func (g *Gauge) Add(n int64) { g.v.Add(n) }

// Set replaces the value.
func (g *Gauge) Set(v int64) { g.v.Store(v) }

// Value reads the gauge.
func (g *Gauge) Value() int64 { return g.v.Load() }

// Kind tells counters from gauges (Prometheus needs the difference).
type Kind int

// Metric kinds.
const (
	KindCounter Kind = iota
	KindGauge
)

// Stat is one metric's name and value at the time of a Store.Snapshot.
type Stat struct {
	Name  string
	Kind  Kind
	Value int64
}

// Store holds every metric of one proxy by its Envoy-style dotted name.
// Metrics are never removed: a cluster that comes back keeps its history, as
// in Envoy.
type Store struct {
	counters sync.Map // name → *Counter
	gauges   sync.Map // name → *Gauge
	families sync.Map // name → *Family (labelled metrics, family.go)
	matcher  atomic.Pointer[Matcher]
}

// NewStore returns an empty registry.
func NewStore() *Store { return &Store{} }

// Counter returns the counter called name, creating it on first use.
func (s *Store) Counter(name string) *Counter {
	if c, ok := s.counters.Load(name); ok {
		return c.(*Counter)
	}
	c, _ := s.counters.LoadOrStore(name, &Counter{})
	return c.(*Counter)
}

// Gauge returns the gauge called name, creating it on first use.
func (s *Store) Gauge(name string) *Gauge {
	if g, ok := s.gauges.Load(name); ok {
		return g.(*Gauge)
	}
	g, _ := s.gauges.LoadOrStore(name, &Gauge{})
	return g.(*Gauge)
}

// Snapshot returns every metric sorted by name.
func (s *Store) Snapshot() []Stat {
	var out []Stat
	s.counters.Range(func(k, v any) bool {
		out = append(out, Stat{Name: k.(string), Kind: KindCounter, Value: int64(v.(*Counter).Value())})
		return true
	})
	s.gauges.Range(func(k, v any) bool {
		out = append(out, Stat{Name: k.(string), Kind: KindGauge, Value: v.(*Gauge).Value()})
		return true
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
