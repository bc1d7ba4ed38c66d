package dashboard

import (
	"math"
	"sort"
	"sync"
	"time"
)

// Istio's standard metric families the dashboard reads.
const (
	metricRequests    = "istio_requests_total"
	metricDurationBkt = "istio_request_duration_milliseconds_bucket"
)

var wantFamilies = map[string]bool{metricRequests: true, metricDurationBkt: true}

// edgeKey identifies one series group: a source workload calling a
// service served by a destination workload, as one reporter saw it.
type edgeKey struct {
	Reporter              string
	SrcWorkload, SrcNS    string
	SrcApp, SrcVersion    string
	DstWorkload, DstNS    string
	DstApp, DstVersion    string
	DstService, DstSvcNS  string
	RequestProtocol       string
	ConnectionSecurityPol string
}

func keyOf(l map[string]string) edgeKey {
	return edgeKey{
		Reporter:    l["reporter"],
		SrcWorkload: l["source_workload"], SrcNS: l["source_workload_namespace"],
		SrcApp: l["source_app"], SrcVersion: l["source_version"],
		DstWorkload: l["destination_workload"], DstNS: l["destination_workload_namespace"],
		DstApp: l["destination_app"], DstVersion: l["destination_version"],
		DstService: l["destination_service_name"], DstSvcNS: l["destination_service_namespace"],
		RequestProtocol: l["request_protocol"], ConnectionSecurityPol: l["connection_security_policy"],
	}
}

// counters are the request counts of one edgeKey: cumulative values in a
// scrape, per-second rates once two scrapes are subtracted.
type counters struct {
	Requests float64
	Codes    map[string]float64  // by response_code
	Buckets  map[float64]float64 // cumulative count by upper bound (le)
}

func newCounters() *counters {
	return &counters{Codes: map[string]float64{}, Buckets: map[float64]float64{}}
}

// Errors counts 5xx responses and requests that got no response code
// (code 0: reset or timed out before any response), as Kiali does.
func (c *counters) Errors() float64 {
	var n float64
	for code, v := range c.Codes {
		if len(code) == 3 && code[0] == '5' || code == "0" {
			n += v
		}
	}
	return n
}

func (c *counters) add(o *counters, scale float64) {
	c.Requests += o.Requests * scale
	for k, v := range o.Codes {
		c.Codes[k] += v * scale
	}
	for k, v := range o.Buckets {
		c.Buckets[k] += v * scale
	}
}

// fromSamples folds parsed samples into counters per edgeKey.
func fromSamples(samples []sample) map[edgeKey]*counters {
	out := map[edgeKey]*counters{}
	get := func(k edgeKey) *counters {
		c := out[k]
		if c == nil {
			c = newCounters()
			out[k] = c
		}
		return c
	}
	for _, s := range samples {
		switch s.Name {
		case metricRequests:
			c := get(keyOf(s.Labels))
			c.Requests += s.Value
			c.Codes[s.Labels["response_code"]] += s.Value
		case metricDurationBkt:
			le, err := parseFloat(s.Labels["le"])
			if err != nil {
				continue
			}
			get(keyOf(s.Labels)).Buckets[le] += s.Value
		}
	}
	return out
}

// delta returns (newer-older)/seconds per key. A counter that went down
// belongs to a restarted proxy: its newer value is all that happened since.
func delta(older, newer map[edgeKey]*counters, seconds float64) map[edgeKey]*counters {
	out := map[edgeKey]*counters{}
	for k, n := range newer {
		o := older[k]
		if o == nil || n.Requests < o.Requests {
			o = newCounters()
		}
		d := newCounters()
		d.Requests = (n.Requests - o.Requests) / seconds
		for code, v := range n.Codes {
			d.Codes[code] = math.Max(0, v-o.Codes[code]) / seconds
		}
		for le, v := range n.Buckets {
			d.Buckets[le] = math.Max(0, v-o.Buckets[le]) / seconds
		}
		out[k] = d
	}
	return out
}

// quantile estimates the q-quantile from cumulative histogram buckets the
// way PromQL's histogram_quantile does: find the bucket holding the rank
// and interpolate linearly inside it. NaN when there are no observations.
func quantile(q float64, buckets map[float64]float64) float64 {
	if len(buckets) == 0 {
		return math.NaN()
	}
	les := make([]float64, 0, len(buckets))
	for le := range buckets {
		les = append(les, le)
	}
	sort.Float64s(les)
	total := buckets[les[len(les)-1]]
	if !math.IsInf(les[len(les)-1], 1) || total <= 0 {
		return math.NaN()
	}
	rank := q * total
	lower, prevCount := 0.0, 0.0
	for i, le := range les {
		count := buckets[le]
		if count >= rank {
			if math.IsInf(le, 1) {
				// In the open-ended bucket: the best answer is the highest
				// finite bound, as histogram_quantile returns.
				if i == 0 {
					return math.NaN()
				}
				return les[i-1]
			}
			if count == prevCount {
				return le
			}
			return lower + (le-lower)*(rank-prevCount)/(count-prevCount)
		}
		lower, prevCount = le, count
	}
	return les[len(les)-1]
}

// scrape is the cumulative counters of every target at one moment.
type scrape struct {
	At      time.Time
	Targets map[string]map[edgeKey]*counters // by target (pod IP)
}

// window keeps the scrapes of the last span and turns them into rates.
type window struct {
	mu      sync.Mutex
	span    time.Duration
	scrapes []scrape
}

func (w *window) add(s scrape) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.scrapes = append(w.scrapes, s)
	// Keep one scrape at or before the window's start, so the rate covers
	// the whole span.
	cut := s.At.Add(-w.span)
	for len(w.scrapes) > 2 && !w.scrapes[1].At.After(cut) {
		w.scrapes = w.scrapes[1:]
	}
}

// rates sums, over targets, the per-second rate across the window. Like
// PromQL's rate(), it adds the increase between consecutive scrapes, so a
// proxy restart (counters falling to zero) inside the window loses only
// what happened between the last scrape before it and the restart. nil
// until two scrapes exist.
func (w *window) rates() (map[edgeKey]*counters, time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.scrapes) < 2 {
		return nil, 0
	}
	newest := w.scrapes[len(w.scrapes)-1]
	out := map[edgeKey]*counters{}
	var span time.Duration
	for target := range newest.Targets {
		increase := map[edgeKey]*counters{}
		var first, prev *scrape
		for i := range w.scrapes {
			cur := &w.scrapes[i]
			if _, ok := cur.Targets[target]; !ok {
				continue
			}
			if prev != nil {
				for k, c := range delta(prev.Targets[target], cur.Targets[target], 1) {
					acc := increase[k]
					if acc == nil {
						acc = newCounters()
						increase[k] = acc
					}
					acc.add(c, 1)
				}
			} else {
				first = cur
			}
			prev = cur
		}
		// A proxy that appeared inside the window counts from its first scrape.
		d := newest.At.Sub(first.At)
		if d <= 0 {
			continue
		}
		span = max(span, d)
		for k, c := range increase {
			acc := out[k]
			if acc == nil {
				acc = newCounters()
				out[k] = acc
			}
			acc.add(c, 1/d.Seconds())
		}
	}
	return out, span
}

// Health thresholds on the share of failed requests (5xx or no response)
// on an edge over the window (documented in the package comment).
const (
	degradedPct = 0.0 // above this: orange
	failurePct  = 5.0 // at or above this: red
)

// health names the CSS class of an error percentage.
func health(rps, errPct float64) string {
	switch {
	case rps <= 0:
		return "idle"
	case errPct >= failurePct:
		return "red"
	case errPct > degradedPct:
		return "orange"
	default:
		return "green"
	}
}

// Edge is the traffic from one workload to one service's workload over the
// window, as the graph and service pages show it.
type Edge struct {
	Source               string             `json:"source"` // node id "ns/workload"
	Destination          string             `json:"destination"`
	SourceWorkload       string             `json:"sourceWorkload"`
	SourceNamespace      string             `json:"sourceNamespace"`
	DestinationWorkload  string             `json:"destinationWorkload"`
	DestinationNamespace string             `json:"destinationNamespace"`
	Service              string             `json:"service"`
	ServiceNamespace     string             `json:"serviceNamespace"`
	Reporter             string             `json:"reporter"`
	Protocol             string             `json:"protocol,omitempty"`
	MTLS                 bool               `json:"mtls"`
	RPS                  float64            `json:"rps"`
	ErrorPct             float64            `json:"errorPct"`
	P99Ms                *float64           `json:"p99Ms"` // nil without histogram data
	Codes                map[string]float64 `json:"codes"` // rps by response code
	Health               string             `json:"health"`
}

func nodeID(ns, workload string) string { return ns + "/" + workload }

// serviceNodePrefix marks a graph node standing for a service whose
// requests reached no workload: "service:ratings".
const serviceNodePrefix = "service:"

// serviceWorkloads answers which workload(s) serve a service.
type serviceWorkloads func(namespace, service string) []string

// edgesFromRates merges series into edges. Each request may be reported
// twice (by the source and the destination proxy); the source's view wins
// because it also sees failures that never reached the destination (an
// injected abort, a refused connection). The destination's view is used
// only when no source proxy reported the edge (traffic from outside the
// mesh or from a workload without a sidecar).
//
// A request the source proxy failed locally (an injected abort, no healthy
// upstream) names no destination workload ("unknown"), only the service.
// When one workload serves that service the request was bound for it, so
// it joins that edge; otherwise it goes to a node for the service itself,
// as in Kiali's graph. Edges without traffic in the window are dropped.
func edgesFromRates(rates map[edgeKey]*counters, workloads serviceWorkloads) []Edge {
	type pairKey struct{ src, dst, svc string }
	type agg struct {
		byReporter map[string]*counters
		key        edgeKey
		mtls       bool
	}
	pairs := map[pairKey]*agg{}
	for k, c := range rates {
		if c.Requests <= 0 {
			continue
		}
		if k.DstWorkload == "unknown" && k.DstService != "unknown" && k.DstService != "" {
			var ws []string
			if workloads != nil {
				ws = workloads(k.DstSvcNS, k.DstService)
			}
			if len(ws) == 1 {
				k.DstWorkload, k.DstNS = ws[0], k.DstSvcNS
			} else {
				k.DstWorkload, k.DstNS = serviceNodePrefix+k.DstService, k.DstSvcNS
			}
			// The proxy names the service by host; keep the app labels
			// of the series that did reach the workload.
			k.DstApp, k.DstVersion = "", ""
		}
		pk := pairKey{nodeID(k.SrcNS, k.SrcWorkload), nodeID(k.DstNS, k.DstWorkload), k.DstSvcNS + "/" + k.DstService}
		a := pairs[pk]
		if a == nil {
			a = &agg{byReporter: map[string]*counters{}, key: k}
			pairs[pk] = a
		} else if a.key.DstApp == "" {
			a.key = k
		}
		r := a.byReporter[k.Reporter]
		if r == nil {
			r = newCounters()
			a.byReporter[k.Reporter] = r
		}
		r.add(c, 1)
		if k.ConnectionSecurityPol == "mutual_tls" && c.Requests > 0 {
			a.mtls = true
		}
	}
	edges := make([]Edge, 0, len(pairs))
	for pk, a := range pairs {
		reporter := "source"
		c := a.byReporter[reporter]
		if c == nil || c.Requests <= 0 {
			if d := a.byReporter["destination"]; d != nil {
				reporter, c = "destination", d
			}
		}
		if c == nil {
			continue
		}
		e := Edge{
			Source: pk.src, Destination: pk.dst,
			SourceWorkload: a.key.SrcWorkload, SourceNamespace: a.key.SrcNS,
			DestinationWorkload: a.key.DstWorkload, DestinationNamespace: a.key.DstNS,
			Service: a.key.DstService, ServiceNamespace: a.key.DstSvcNS,
			Reporter: reporter, Protocol: a.key.RequestProtocol, MTLS: a.mtls,
			RPS: round(c.Requests, 3), Codes: map[string]float64{},
		}
		if c.Requests > 0 {
			e.ErrorPct = round(100*c.Errors()/c.Requests, 1)
		}
		if p := quantile(0.99, c.Buckets); !math.IsNaN(p) {
			p = round(p, 1)
			e.P99Ms = &p
		}
		for code, v := range c.Codes {
			if v > 0 {
				e.Codes[code] = round(v, 3)
			}
		}
		e.Health = health(e.RPS, e.ErrorPct)
		edges = append(edges, e)
	}
	sort.Slice(edges, func(i, j int) bool {
		if edges[i].Source != edges[j].Source {
			return edges[i].Source < edges[j].Source
		}
		if edges[i].Destination != edges[j].Destination {
			return edges[i].Destination < edges[j].Destination
		}
		return edges[i].Service+edges[i].ServiceNamespace < edges[j].Service+edges[j].ServiceNamespace
	})
	return edges
}

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}
