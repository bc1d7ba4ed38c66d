package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
)

// zipkinSpan is a span in Zipkin's v2 JSON.
type zipkinSpan struct {
	TraceID        string            `json:"traceId"`
	ID             string            `json:"id"`
	ParentID       string            `json:"parentId,omitempty"`
	Name           string            `json:"name"`
	Kind           string            `json:"kind,omitempty"`
	Timestamp      int64             `json:"timestamp"` // µs since the epoch
	Duration       int64             `json:"duration"`  // µs
	LocalEndpoint  *zipkinEndpoint   `json:"localEndpoint,omitempty"`
	RemoteEndpoint *zipkinEndpoint   `json:"remoteEndpoint,omitempty"`
	Tags           map[string]string `json:"tags,omitempty"`
}

type zipkinEndpoint struct {
	ServiceName string `json:"serviceName,omitempty"`
}

func (s zipkinSpan) service() string {
	if s.LocalEndpoint != nil {
		return s.LocalEndpoint.ServiceName
	}
	return ""
}

// failed follows Zipkin's convention (an "error" tag) and treats a 5xx
// status as one too.
func (s zipkinSpan) failed() bool {
	if _, ok := s.Tags["error"]; ok {
		return true
	}
	code, err := strconv.Atoi(s.Tags["http.status_code"])
	return err == nil && code >= 500
}

// TraceSummary is one row of the traces list.
type TraceSummary struct {
	TraceID     string  `json:"traceId"`
	RootName    string  `json:"rootName"`
	RootService string  `json:"rootService"`
	Start       int64   `json:"start"` // µs since the epoch
	DurationMs  float64 `json:"durationMs"`
	Spans       int     `json:"spans"`
	Services    int     `json:"services"`
	Error       bool    `json:"error"`
}

// WaterfallSpan is one bar of the trace view.
type WaterfallSpan struct {
	ID         string            `json:"id"`
	ParentID   string            `json:"parentId,omitempty"`
	Name       string            `json:"name"`
	Service    string            `json:"service"`
	Kind       string            `json:"kind,omitempty"`
	Depth      int               `json:"depth"`
	OffsetMs   float64           `json:"offsetMs"`
	DurationMs float64           `json:"durationMs"`
	Error      bool              `json:"error"`
	Tags       map[string]string `json:"tags,omitempty"`
}

// Waterfall is one trace laid out for the waterfall view.
type Waterfall struct {
	TraceID    string          `json:"traceId"`
	DurationMs float64         `json:"durationMs"`
	Spans      []WaterfallSpan `json:"spans"`
}

// root is the span without a parent in the trace (the earliest such span
// when a trace is incomplete).
func root(spans []zipkinSpan) zipkinSpan {
	ids := map[string]bool{}
	for _, s := range spans {
		ids[s.ID] = true
	}
	var best *zipkinSpan
	for i := range spans {
		s := &spans[i]
		if s.ParentID != "" && ids[s.ParentID] {
			continue
		}
		if best == nil || s.Timestamp < best.Timestamp {
			best = s
		}
	}
	if best == nil {
		return spans[0]
	}
	return *best
}

func bounds(spans []zipkinSpan) (start, end int64) {
	for i, s := range spans {
		if i == 0 || s.Timestamp < start {
			start = s.Timestamp
		}
		if e := s.Timestamp + s.Duration; e > end {
			end = e
		}
	}
	return start, end
}

func summarize(spans []zipkinSpan) TraceSummary {
	r := root(spans)
	start, end := bounds(spans)
	sum := TraceSummary{TraceID: r.TraceID, RootName: r.Name, RootService: r.service(), Start: start,
		DurationMs: float64(end-start) / 1000, Spans: len(spans)}
	services := map[string]bool{}
	for _, s := range spans {
		services[s.service()] = true
		if s.failed() {
			sum.Error = true
		}
	}
	sum.Services = len(services)
	return sum
}

// waterfall orders spans depth-first from the root, children by start
// time, with offsets from the trace's start.
func waterfall(spans []zipkinSpan) Waterfall {
	start, end := bounds(spans)
	w := Waterfall{TraceID: spans[0].TraceID, DurationMs: float64(end-start) / 1000, Spans: []WaterfallSpan{}}
	children := map[string][]zipkinSpan{}
	ids := map[string]bool{}
	for _, s := range spans {
		ids[s.ID] = true
	}
	var roots []zipkinSpan
	for _, s := range spans {
		if s.ParentID == "" || !ids[s.ParentID] {
			roots = append(roots, s)
		} else {
			children[s.ParentID] = append(children[s.ParentID], s)
		}
	}
	byStart := func(ss []zipkinSpan) {
		sort.SliceStable(ss, func(i, j int) bool { return ss[i].Timestamp < ss[j].Timestamp })
	}
	seen := map[string]bool{}
	var walk func(s zipkinSpan, depth int)
	walk = func(s zipkinSpan, depth int) {
		// Zipkin shares a span ID between a client and a server span; key
		// by id+kind so both show and a loop cannot recurse forever.
		key := s.ID + "/" + s.Kind
		if seen[key] {
			return
		}
		seen[key] = true
		w.Spans = append(w.Spans, WaterfallSpan{ID: s.ID, ParentID: s.ParentID, Name: s.Name, Service: s.service(), Kind: s.Kind,
			Depth: depth, OffsetMs: float64(s.Timestamp-start) / 1000, DurationMs: float64(s.Duration) / 1000, Error: s.failed(), Tags: s.Tags})
		kids := children[s.ID]
		byStart(kids)
		for _, c := range kids {
			walk(c, depth+1)
		}
	}
	byStart(roots)
	for _, r := range roots {
		walk(r, 0)
	}
	return w
}

// traceClient reads the control plane's Zipkin query API.
type traceClient struct {
	base   string // http://host:port
	client *http.Client
}

func (c *traceClient) get(ctx context.Context, path string, q url.Values, into any) error {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return errNoTraces
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(into)
}

var errNoTraces = fmt.Errorf("the control plane serves no Zipkin API (or no such trace)")

func (c *traceClient) services(ctx context.Context) ([]string, error) {
	var out []string
	err := c.get(ctx, "/api/v2/services", nil, &out)
	return out, err
}

func (c *traceClient) traces(ctx context.Context, service string, limit int) ([]TraceSummary, error) {
	q := url.Values{"limit": {strconv.Itoa(limit)}}
	if service != "" {
		q.Set("serviceName", service)
	}
	var traces [][]zipkinSpan
	if err := c.get(ctx, "/api/v2/traces", q, &traces); err != nil {
		return nil, err
	}
	out := []TraceSummary{}
	for _, t := range traces {
		if len(t) > 0 {
			out = append(out, summarize(t))
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Start > out[j].Start })
	return out, nil
}

func (c *traceClient) trace(ctx context.Context, id string) (Waterfall, error) {
	var spans []zipkinSpan
	if err := c.get(ctx, "/api/v2/trace/"+url.PathEscape(id), nil, &spans); err != nil {
		return Waterfall{}, err
	}
	if len(spans) == 0 {
		return Waterfall{}, errNoTraces
	}
	return waterfall(spans), nil
}
