// Package tracestore is the control plane's built-in trace collector for
// local mode: a bounded in-memory store that ingests spans as Zipkin v2
// JSON (POST /api/v2/spans) and OTLP over HTTP (POST /v1/traces, protobuf
// or JSON) and answers Zipkin's v2 query API, so a mesh has working
// distributed tracing without running Zipkin or Jaeger.
package tracestore

import (
	"container/list"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Endpoint is Zipkin's endpoint.
type Endpoint struct {
	ServiceName string `json:"serviceName,omitempty"`
	IPv4        string `json:"ipv4,omitempty"`
	IPv6        string `json:"ipv6,omitempty"`
	Port        int    `json:"port,omitempty"`
}

// Annotation is a timestamped event on a span.
type Annotation struct {
	Timestamp int64  `json:"timestamp"`
	Value     string `json:"value"`
}

// Span is a span in Zipkin's v2 model, the shape both ingested and served.
// Timestamps and durations are microseconds.
type Span struct {
	TraceID        string            `json:"traceId"`
	ID             string            `json:"id"`
	ParentID       string            `json:"parentId,omitempty"`
	Name           string            `json:"name,omitempty"`
	Kind           string            `json:"kind,omitempty"`
	Timestamp      int64             `json:"timestamp,omitempty"`
	Duration       int64             `json:"duration,omitempty"`
	Debug          bool              `json:"debug,omitempty"`
	Shared         bool              `json:"shared,omitempty"`
	LocalEndpoint  *Endpoint         `json:"localEndpoint,omitempty"`
	RemoteEndpoint *Endpoint         `json:"remoteEndpoint,omitempty"`
	Annotations    []Annotation      `json:"annotations,omitempty"`
	Tags           map[string]string `json:"tags,omitempty"`
}

// DefaultMaxSpans bounds the store when no size is given.
const DefaultMaxSpans = 10000

// Store keeps the most recently updated traces, up to a number of spans:
// when full, whole traces are evicted, least recently updated first.
type Store struct {
	mu       sync.Mutex
	max      int
	n        int
	traces   map[string]*list.Element // trace id → element of lru (*trace)
	lru      *list.List               // front: most recently updated
	received uint64
	now      func() time.Time
}

type trace struct {
	id      string
	spans   []Span
	updated time.Time
}

// New returns a store holding at most maxSpans spans (DefaultMaxSpans if
// maxSpans <= 0).
func New(maxSpans int) *Store {
	if maxSpans <= 0 {
		maxSpans = DefaultMaxSpans
	}
	return &Store{max: maxSpans, traces: map[string]*list.Element{}, lru: list.New(), now: time.Now}
}

// Add stores spans, normalized as Zipkin does (lowercase hex ids, 64-bit
// trace ids padded to 128, lowercase service and span names). Spans
// without trace or span id are skipped; the count added is returned.
func (s *Store) Add(spans []Span) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	added := 0
	now := s.now()
	for _, sp := range spans {
		sp.TraceID = strings.ToLower(sp.TraceID)
		if len(sp.TraceID) == 16 {
			sp.TraceID = strings.Repeat("0", 16) + sp.TraceID
		}
		sp.ID, sp.ParentID = strings.ToLower(sp.ID), strings.ToLower(sp.ParentID)
		if sp.TraceID == "" || sp.ID == "" {
			continue
		}
		sp.Name = strings.ToLower(sp.Name)
		if sp.LocalEndpoint != nil {
			sp.LocalEndpoint.ServiceName = strings.ToLower(sp.LocalEndpoint.ServiceName)
		}
		if sp.RemoteEndpoint != nil {
			sp.RemoteEndpoint.ServiceName = strings.ToLower(sp.RemoteEndpoint.ServiceName)
		}
		el, ok := s.traces[sp.TraceID]
		if !ok {
			el = s.lru.PushFront(&trace{id: sp.TraceID})
			s.traces[sp.TraceID] = el
		}
		t := el.Value.(*trace)
		t.spans = append(t.spans, sp)
		t.updated = now
		s.lru.MoveToFront(el)
		s.n++
		added++
	}
	s.received += uint64(added)
	for s.n > s.max && s.lru.Len() > 1 {
		old := s.lru.Back()
		t := old.Value.(*trace)
		s.n -= len(t.spans)
		delete(s.traces, t.id)
		s.lru.Remove(old)
	}
	return added
}

// Trace returns the spans of one trace (nil if unknown).
func (s *Store) Trace(id string) []Span {
	id = strings.ToLower(id)
	if len(id) == 16 {
		id = strings.Repeat("0", 16) + id
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	el, ok := s.traces[id]
	if !ok {
		return nil
	}
	return sortedCopy(el.Value.(*trace).spans)
}

// Services lists the local service names seen, sorted.
func (s *Store) Services() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	for el := s.lru.Front(); el != nil; el = el.Next() {
		for _, sp := range el.Value.(*trace).spans {
			if sp.LocalEndpoint != nil && sp.LocalEndpoint.ServiceName != "" {
				seen[sp.LocalEndpoint.ServiceName] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(seen))
}

// SpanNames lists the span names reported by a service, sorted.
func (s *Store) SpanNames(service string) []string {
	service = strings.ToLower(service)
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	for el := s.lru.Front(); el != nil; el = el.Next() {
		for _, sp := range el.Value.(*trace).spans {
			if sp.LocalEndpoint != nil && sp.LocalEndpoint.ServiceName == service && sp.Name != "" {
				seen[sp.Name] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(seen))
}

// Query selects traces as Zipkin's GET /api/v2/traces does.
type Query struct {
	ServiceName string
	SpanName    string
	// EndTs and Lookback bound the trace's start (microseconds and a
	// duration); zero EndTs means now, zero Lookback means all.
	EndTs       time.Time
	Lookback    time.Duration
	MinDuration int64 // microseconds, 0: any
	Limit       int   // default 10
}

// Traces answers a query: the newest matching traces first, each with its
// spans sorted by timestamp.
func (s *Store) Traces(q Query) [][]Span {
	if q.Limit <= 0 {
		q.Limit = 10
	}
	if q.EndTs.IsZero() {
		q.EndTs = s.now()
	}
	q.ServiceName, q.SpanName = strings.ToLower(q.ServiceName), strings.ToLower(q.SpanName)
	end := q.EndTs.UnixMicro()
	var begin int64
	if q.Lookback > 0 {
		begin = end - q.Lookback.Microseconds()
	}
	type hit struct {
		start int64
		spans []Span
	}
	var hits []hit
	s.mu.Lock()
	for el := s.lru.Front(); el != nil; el = el.Next() {
		t := el.Value.(*trace)
		start, match := int64(0), false
		for _, sp := range t.spans {
			if sp.Timestamp != 0 && (start == 0 || sp.Timestamp < start) {
				start = sp.Timestamp
			}
			if matches(sp, q) {
				match = true
			}
		}
		if !match || start > end || start < begin {
			continue
		}
		hits = append(hits, hit{start, sortedCopy(t.spans)})
	}
	s.mu.Unlock()
	sort.SliceStable(hits, func(i, j int) bool { return hits[i].start > hits[j].start })
	if len(hits) > q.Limit {
		hits = hits[:q.Limit]
	}
	out := make([][]Span, len(hits))
	for i, h := range hits {
		out[i] = h.spans
	}
	return out
}

func matches(sp Span, q Query) bool {
	if q.ServiceName != "" && (sp.LocalEndpoint == nil || sp.LocalEndpoint.ServiceName != q.ServiceName) {
		return false
	}
	if q.SpanName != "" && q.SpanName != "all" && sp.Name != q.SpanName {
		return false
	}
	return q.MinDuration == 0 || sp.Duration >= q.MinDuration
}

func sortedCopy(spans []Span) []Span {
	out := append([]Span(nil), spans...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Timestamp < out[j].Timestamp })
	return out
}

// Len reports the number of spans held.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}
