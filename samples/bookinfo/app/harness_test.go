package app

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"sync"
	"testing"
	"time"
)

// quiet drops the services' logs in tests.
var quiet = slog.New(slog.DiscardHandler)

// serve runs h on a fresh loopback listener until the test ends and
// returns its host:port.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	ln := listen(t)
	serveOn(t, ln, h)
	return ln.Addr().String()
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func serveOn(t *testing.T, ln net.Listener, h http.Handler) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, h) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve on %s: %v", ln.Addr(), err)
		}
	})
}

// downAddr is a loopback address where nothing listens: calls to it are
// refused at once.
func downAddr(t *testing.T) string {
	t.Helper()
	ln := listen(t)
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// headerLog records the headers of every request that reaches a service.
type headerLog struct {
	mu   sync.Mutex
	seen []http.Header
}

func (l *headerLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		l.seen = append(l.seen, r.Header.Clone())
		l.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

func (l *headerLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.seen)
}

func (l *headerLog) last(t *testing.T) http.Header {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.seen) == 0 {
		t.Fatal("service got no request")
	}
	return l.seen[len(l.seen)-1]
}

// reviewsVersions are the three reviews deployments of bookinfo.yaml.
var reviewsVersions = map[string]ReviewsConfig{
	"v1": {Version: "v1", PodName: "reviews-v1-pod"},
	"v2": {Version: "v2", RatingsEnabled: true, StarColor: "black", PodName: "reviews-v2-pod"},
	"v3": {Version: "v3", RatingsEnabled: true, StarColor: "red", PodName: "reviews-v3-pod"},
}

// bookinfo is the four services running on loopback.
type bookinfo struct {
	productpage string
	upstreams   Upstreams
	// Headers each backend received.
	details, reviews, ratings headerLog
}

// meshOptions shape a test Bookinfo.
type meshOptions struct {
	reviews ReviewsConfig      // reviews version; v2 when zero
	down    map[string]bool    // services not started at all
	wrap    map[string]wrapper // per-service middleware (faults)
	page    ProductPageConfig  // productpage overrides (timeouts)
}

type wrapper func(http.Handler) http.Handler

func startBookinfo(t *testing.T, opts meshOptions) *bookinfo {
	t.Helper()
	b := &bookinfo{}
	wrap := func(name string, h http.Handler) http.Handler {
		if w := opts.wrap[name]; w != nil {
			return w(h)
		}
		return h
	}
	// The header log sits outermost so it also counts requests a fault
	// wrapper answers itself.
	start := func(name string, log *headerLog, h http.Handler) string {
		if opts.down[name] {
			return downAddr(t)
		}
		return serve(t, log.wrap(wrap(name, h)))
	}
	b.upstreams.Ratings = start("ratings", &b.ratings, NewRatings(quiet))
	rc := opts.reviews
	if rc.Version == "" {
		rc = reviewsVersions["v2"]
	}
	rc.Ratings = b.upstreams.Ratings
	rc.Logger = quiet
	b.upstreams.Reviews = start("reviews", &b.reviews, NewReviews(rc))
	b.upstreams.Details = start("details", &b.details, NewDetails(quiet))
	pc := opts.page
	pc.Upstreams = b.upstreams
	pc.Logger = quiet
	b.productpage = serve(t, NewProductPage(pc))
	return b
}

// client is a browser-like client: a cookie jar and no automatic redirects,
// so tests see each 302.
func client(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{
		Jar:     jar,
		Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// get fetches url and returns status and body.
func get(t *testing.T, c *http.Client, url string, header http.Header) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	return do(t, c, req)
}

func do(t *testing.T, c *http.Client, req *http.Request) (int, string) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// failFirst answers 503 to the first n requests, then lets them through.
func failFirst(n int) wrapper {
	var mu sync.Mutex
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			fail := n > 0
			n--
			mu.Unlock()
			if fail {
				http.Error(w, "injected failure", http.StatusServiceUnavailable)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
}

// abort answers every request with status, like an Istio abort fault.
func abort(status int) wrapper {
	return func(http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "fault filter abort", status)
		})
	}
}

// delay holds every request for d (or until the caller gives up), like an
// Istio delay fault.
func delay(d time.Duration) wrapper {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-time.After(d):
				h.ServeHTTP(w, r)
			case <-r.Context().Done():
			}
		})
	}
}

func mustContain(t *testing.T, body string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("page:\n%s", body)
	}
}

func mustNotContain(t *testing.T, body string, unwanted ...string) {
	t.Helper()
	for _, u := range unwanted {
		if strings.Contains(body, u) {
			t.Errorf("page has %q, want none", u)
		}
	}
}
