package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// MetricsSource yields per-second request rates per edgeKey over a recent
// window: a local scraper, or a Prometheus server.
type MetricsSource interface {
	Rates(ctx context.Context) (map[edgeKey]*counters, time.Duration, error)
}

// scrapeTimeout bounds one round of scrapes.
const scrapeTimeout = 5 * time.Second

// scraper reads every proxy's /stats/prometheus itself, as a tiny
// Prometheus would, and keeps a sliding window of the counters.
type scraper struct {
	pods     func(ctx context.Context) ([]podInfo, error)
	client   *http.Client
	port     string
	interval time.Duration
	win      *window
	log      *slog.Logger

	mu      sync.Mutex
	lastErr error
}

var _ MetricsSource = (*scraper)(nil)

func (s *scraper) Rates(ctx context.Context) (map[edgeKey]*counters, time.Duration, error) {
	r, span := s.win.rates()
	s.mu.Lock()
	err := s.lastErr
	s.mu.Unlock()
	if r == nil && err != nil {
		return nil, 0, err
	}
	return r, span, nil
}

// run scrapes every interval until ctx is done.
func (s *scraper) run(ctx context.Context) {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		s.scrapeOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *scraper) scrapeOnce(ctx context.Context) {
	// Not the interval: on a loaded machine a scrape may take longer, and
	// a late scrape is better than none (the loop never overlaps scrapes).
	ctx, cancel := context.WithTimeout(ctx, scrapeTimeout)
	defer cancel()
	pods, err := s.pods(ctx)
	s.mu.Lock()
	s.lastErr = err
	s.mu.Unlock()
	if err != nil {
		s.log.Debug("dashboard: listing pods", "err", err)
		return
	}
	sc := scrape{At: time.Now(), Targets: map[string]map[edgeKey]*counters{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, p := range pods {
		if !p.Proxy || p.IP == "" {
			continue
		}
		wg.Add(1)
		go func(ip string) {
			defer wg.Done()
			c, err := s.scrapeTarget(ctx, ip)
			if err != nil {
				s.log.Debug("dashboard: scrape failed", "pod_ip", ip, "err", err)
				return
			}
			mu.Lock()
			sc.Targets[ip] = c
			mu.Unlock()
		}(p.IP)
	}
	wg.Wait()
	s.win.add(sc)
}

func (s *scraper) scrapeTarget(ctx context.Context, ip string) (map[edgeKey]*counters, error) {
	u := "http://" + net.JoinHostPort(ip, s.port) + "/stats/prometheus"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	samples, err := parsePromText(resp.Body, wantFamilies)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	return fromSamples(samples), nil
}

// promSource asks a Prometheus server, with the queries Kiali's graph uses
// (rate over a range, grouped by the edge's labels).
type promSource struct {
	base   string // e.g. http://prometheus:9090
	rng    time.Duration
	client *http.Client
}

var _ MetricsSource = (*promSource)(nil)

const edgeLabels = "reporter, source_workload, source_workload_namespace, source_app, source_version, " +
	"destination_workload, destination_workload_namespace, destination_app, destination_version, " +
	"destination_service_name, destination_service_namespace, request_protocol, connection_security_policy"

func (p *promSource) queries() (requests, buckets string) {
	r := promDuration(p.rng)
	requests = fmt.Sprintf(`sum(rate(%s[%s])) by (%s, response_code)`, metricRequests, r, edgeLabels)
	buckets = fmt.Sprintf(`sum(rate(%s[%s])) by (%s, le)`, metricDurationBkt, r, edgeLabels)
	return requests, buckets
}

func promDuration(d time.Duration) string {
	if d%time.Minute == 0 {
		return fmt.Sprintf("%dm", int(d/time.Minute))
	}
	return fmt.Sprintf("%ds", int(d.Seconds()))
}

func (p *promSource) Rates(ctx context.Context) (map[edgeKey]*counters, time.Duration, error) {
	rq, bq := p.queries()
	var all []sample
	for _, q := range []struct{ query, name string }{{rq, metricRequests}, {bq, metricDurationBkt}} {
		samples, err := p.query(ctx, q.query, q.name)
		if err != nil {
			return nil, 0, err
		}
		all = append(all, samples...)
	}
	return fromSamples(all), p.rng, nil
}

// query runs an instant query and returns its vector, each element named
// as the family it was computed from (so fromSamples can fold it).
func (p *promSource) query(ctx context.Context, q, name string) ([]sample, error) {
	u := strings.TrimRight(p.base, "/") + "/api/v1/query?" + url.Values{"query": {q}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("prometheus query: %w", err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("prometheus query %q: %s: %w", q, resp.Status, err)
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("prometheus query %q: %s", q, body.Error)
	}
	if body.Data.ResultType != "vector" {
		return nil, fmt.Errorf("prometheus query %q: result type %q, want vector", q, body.Data.ResultType)
	}
	out := make([]sample, 0, len(body.Data.Result))
	for _, r := range body.Data.Result {
		s, _ := r.Value[1].(string)
		v, err := parseFloat(s)
		if err != nil {
			return nil, fmt.Errorf("prometheus query %q: value %q: %w", q, s, err)
		}
		out = append(out, sample{Name: name, Labels: r.Metric, Value: v})
	}
	return out, nil
}
