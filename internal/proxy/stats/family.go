package stats

import (
	"math"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// KindHistogram marks a labelled histogram family.
const KindHistogram Kind = 2

// Histogram counts observations into fixed cumulative buckets, lock-free.
type Histogram struct {
	bounds  []float64
	buckets []atomic.Uint64 // per bucket (not cumulative); last is +Inf
	count   atomic.Uint64
	sum     atomic.Uint64 // float64 bits
}

// NewHistogram returns a histogram with the given ascending upper bounds.
func NewHistogram(bounds []float64) *Histogram {
	return &Histogram{bounds: bounds, buckets: make([]atomic.Uint64, len(bounds)+1)}
}

// Observe records one value.
func (h *Histogram) Observe(v float64) {
	// Few buckets (Istio has ≤ 20): a linear scan beats sort.Search here.
	i := 0
	for i < len(h.bounds) && v > h.bounds[i] {
		i++
	}
	h.buckets[i].Add(1)
	h.count.Add(1)
	for {
		old := h.sum.Load()
		if h.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

// HistogramValue is a histogram read at one time.
type HistogramValue struct {
	Bounds     []float64
	Cumulative []uint64 // per bound, then +Inf (= Count)
	Count      uint64
	Sum        float64
}

// Value reads the histogram. Buckets are read before the count so that a
// concurrent Observe never makes a bucket exceed +Inf.
func (h *Histogram) Value() HistogramValue {
	v := HistogramValue{Bounds: h.bounds, Cumulative: make([]uint64, len(h.buckets))}
	var run uint64
	for i := range h.buckets {
		run += h.buckets[i].Load()
		v.Cumulative[i] = run
	}
	v.Count = run
	v.Sum = math.Float64frombits(h.sum.Load())
	return v
}

// Family is a labelled metric (Prometheus style): one series per distinct
// tuple of label values. Istio's request metrics are families.
type Family struct {
	Name    string
	Kind    Kind // KindCounter or KindHistogram
	Labels  []string
	Buckets []float64 // histograms only

	series sync.Map // key (label values joined by \xff) → *Series
}

// Series is one label tuple's metric.
type Series struct {
	Values    []string
	Counter   Counter    // counters
	Histogram *Histogram // histograms
}

// Key joins label values into a series key. Callers on hot paths build the
// key once per request and reuse it.
func Key(values []string) string { return strings.Join(values, "\xff") }

// With returns the series for the label values (len(values) must equal
// len(f.Labels)), creating it on first use. key must be Key(values).
func (f *Family) With(key string, values []string) *Series {
	if s, ok := f.series.Load(key); ok {
		return s.(*Series)
	}
	s := &Series{Values: append([]string(nil), values...)}
	if f.Kind == KindHistogram {
		s.Histogram = NewHistogram(f.Buckets)
	}
	got, _ := f.series.LoadOrStore(key, s)
	return got.(*Series)
}

// Series returns every series sorted by label values.
func (f *Family) Series() []*Series {
	var out []*Series
	f.series.Range(func(_, v any) bool {
		out = append(out, v.(*Series))
		return true
	})
	sort.Slice(out, func(i, j int) bool { return Key(out[i].Values) < Key(out[j].Values) })
	return out
}

// Family returns the family called name with these labels, creating it on
// first use. Families are keyed by name and label names: Telemetry
// overrides can give a metric other labels on one side (client or server)
// of a proxy, and both shapes are exported under the one metric name, as
// Envoy does with differently tagged stats.
func (s *Store) Family(name string, kind Kind, labels []string, buckets []float64) *Family {
	key := name + "\x00" + strings.Join(labels, ",")
	if f, ok := s.families.Load(key); ok {
		return f.(*Family)
	}
	f, _ := s.families.LoadOrStore(key, &Family{Name: name, Kind: kind, Labels: labels, Buckets: buckets})
	return f.(*Family)
}

// Families returns every labelled family sorted by name.
func (s *Store) Families() []*Family {
	var out []*Family
	s.families.Range(func(_, v any) bool {
		out = append(out, v.(*Family))
		return true
	})
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return strings.Join(out[i].Labels, ",") < strings.Join(out[j].Labels, ",")
	})
	return out
}

// Matcher decides which Envoy-style stats are exported to Prometheus, like
// Envoy's stats_matcher as Istio's proxyStatsMatcher configures it: a stat
// is included when it matches an inclusion pattern (or there are none) and
// no exclusion regexp. Labelled families (istio_*) are always exported.
type Matcher struct {
	InclusionPrefixes []string
	InclusionSuffixes []string
	InclusionRegexps  []*regexp.Regexp
	ExclusionRegexps  []*regexp.Regexp
}

// Match reports whether the dotted stat name is included.
func (m *Matcher) Match(name string) bool {
	if m == nil {
		return true
	}
	for _, re := range m.ExclusionRegexps {
		if re.MatchString(name) {
			return false
		}
	}
	if len(m.InclusionPrefixes)+len(m.InclusionSuffixes)+len(m.InclusionRegexps) == 0 {
		return true
	}
	for _, p := range m.InclusionPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	for _, p := range m.InclusionSuffixes {
		if strings.HasSuffix(name, p) {
			return true
		}
	}
	for _, re := range m.InclusionRegexps {
		if re.MatchString(name) {
			return true
		}
	}
	return false
}

// SetMatcher replaces the stats matcher (nil exports everything).
func (s *Store) SetMatcher(m *Matcher) { s.matcher.Store(m) }

// Matcher returns the stats matcher in force (nil: everything).
func (s *Store) Matcher() *Matcher { return s.matcher.Load() }
