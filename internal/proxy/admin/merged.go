package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/skein-mesh/skein/internal/proxy/stats"
)

// AppScrape is where the app's own Prometheus metrics are, from the
// prometheus.io/* annotations the injector moved into the sidecar's
// ISTIO_PROMETHEUS_ANNOTATIONS (so that Prometheus, following the pod's
// rewritten annotations, scrapes the merged endpoint instead).
type AppScrape struct {
	Port string `json:"port"`
	Path string `json:"path"`
	// Scrape is "true" when the app asked to be scraped; anything else
	// leaves the app out, as Istio's agent does.
	Scrape string `json:"scrape"`
}

// ParseAppScrape reads ISTIO_PROMETHEUS_ANNOTATIONS (JSON, Istio's agent
// format). An empty value means no app metrics.
func ParseAppScrape(v string) (*AppScrape, error) {
	if v == "" {
		return nil, nil
	}
	var a AppScrape
	if err := json.Unmarshal([]byte(v), &a); err != nil {
		return nil, fmt.Errorf("ISTIO_PROMETHEUS_ANNOTATIONS: %w", err)
	}
	if a.Scrape != "true" {
		return nil, nil
	}
	if a.Path == "" {
		a.Path = "/metrics"
	}
	if a.Port == "" {
		a.Port = "80"
	}
	return &a, nil
}

// appScrapeTimeout bounds the app's part of a merged scrape; the proxy's
// own metrics are served even when the app is slow or down.
const appScrapeTimeout = 5 * time.Second

// MergedPrometheusHandler serves Istio's merged metrics endpoint (the
// agent's :15020/stats/prometheus, where injected pods' prometheus.io
// annotations point): the proxy's stats followed by the app's, fetched from
// appHost at app's port and path when app is set. A failed app scrape is
// counted (scrape.app_errors) and leaves the proxy's part intact.
func MergedPrometheusHandler(st *stats.Store, app *AppScrape, appHost string) http.Handler {
	a := &admin{opts: Options{Stats: st}}
	client := &http.Client{Timeout: appScrapeTimeout}
	var appURL string
	if app != nil {
		appURL = "http://" + net.JoinHostPort(appHost, app.Port) + app.Path
	}
	failures := st.Counter("agent.scrape.app_errors")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats/prometheus", func(w http.ResponseWriter, r *http.Request) {
		// The app is asked first so that its failure is in this scrape's
		// own counter value.
		var appBody []byte
		if appURL != "" {
			b, err := fetchApp(r.Context(), client, appURL)
			if err != nil {
				failures.Inc()
			} else {
				appBody = b
			}
		}
		a.prometheus(w, r)
		if len(appBody) > 0 {
			w.Write(appBody)
			if !bytes.HasSuffix(appBody, []byte("\n")) {
				io.WriteString(w, "\n")
			}
		}
	})
	return mux
}

func fetchApp(ctx context.Context, client *http.Client, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	// Text format: the proxy's part is text, and one body has one format.
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("app metrics %s: %s", url, resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 16<<20))
}
