package app

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestBackendAnswers(t *testing.T) {
	details := serve(t, NewDetails(quiet))
	ratings := serve(t, NewRatings(quiet))
	v1 := ReviewsConfig{Version: "v1", PodName: "reviews-v1-pod", Ratings: ratings, Logger: quiet}
	reviewsV1 := serve(t, NewReviews(v1))
	v3 := ReviewsConfig{Version: "v3", RatingsEnabled: true, StarColor: "red", PodName: "p3", ClusterName: "east", Ratings: ratings, Logger: quiet}
	reviewsV3 := serve(t, NewReviews(v3))
	v2Orphan := ReviewsConfig{Version: "v2", RatingsEnabled: true, PodName: "p2", Ratings: downAddr(t), Logger: quiet}
	reviewsNoRatings := serve(t, NewReviews(v2Orphan))

	const (
		text1 = `"text":"An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!"`
		text2 = `"text":"Absolutely fun and entertaining. The play lacks thematic depth when compared to other plays by Shakespeare."`
	)
	tests := []struct {
		name, addr, path string
		wantStatus       int
		wantBody         string
	}{
		{"details", details, "/details/0", 200,
			`{"id":0,"author":"William Shakespeare","year":1595,"type":"paperback","pages":200,"publisher":"PublisherA","language":"English","ISBN-10":"1234567890","ISBN-13":"123-1234567890"}`},
		{"details other id", details, "/details/7", 200,
			`{"id":7,"author":"William Shakespeare","year":1595,"type":"paperback","pages":200,"publisher":"PublisherA","language":"English","ISBN-10":"1234567890","ISBN-13":"123-1234567890"}`},
		{"details bad id", details, "/details/x", 400, `{"error":"please provide numeric product ID"}`},
		{"ratings", ratings, "/ratings/0", 200, `{"id":0,"ratings":{"Reviewer1":5,"Reviewer2":4}}`},
		{"ratings bad id", ratings, "/ratings/zero", 400, `{"error":"please provide numeric product ID"}`},
		{"reviews v1", reviewsV1, "/reviews/0", 200,
			`{"id":"0","podname":"reviews-v1-pod","clustername":"null","version":"v1","reviews":[{"reviewer":"Reviewer1",` + text1 + `},{"reviewer":"Reviewer2",` + text2 + `}]}`},
		{"reviews v3", reviewsV3, "/reviews/0", 200,
			`{"id":"0","podname":"p3","clustername":"east","version":"v3","reviews":[{"reviewer":"Reviewer1",` + text1 + `,"rating":{"stars":5,"color":"red"}},{"reviewer":"Reviewer2",` + text2 + `,"rating":{"stars":4,"color":"red"}}]}`},
		{"reviews without ratings", reviewsNoRatings, "/reviews/0", 200,
			`{"id":"0","podname":"p2","clustername":"null","version":"v2","reviews":[{"reviewer":"Reviewer1",` + text1 + `,"rating":{"error":"Ratings service is currently unavailable"}},{"reviewer":"Reviewer2",` + text2 + `,"rating":{"error":"Ratings service is currently unavailable"}}]}`},
		{"details health", details, "/health", 200, `{"status":"Details is healthy"}`},
		{"ratings health", ratings, "/health", 200, `{"status":"Ratings is healthy"}`},
		{"reviews health", reviewsV1, "/health", 200, `{"status":"Reviews is healthy"}`},
	}
	c := client(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := get(t, c, "http://"+tt.addr+tt.path, nil)
			if status != tt.wantStatus || strings.TrimSpace(body) != tt.wantBody {
				t.Errorf("GET %s:\n got %d %s\nwant %d %s", tt.path, status, body, tt.wantStatus, tt.wantBody)
			}
		})
	}
}

func TestRatingsPost(t *testing.T) {
	addr := serve(t, NewRatings(quiet))
	c := client(t)
	post := func(id, body string) (int, string) {
		req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/ratings/"+id, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		return do(t, c, req)
	}
	tests := []struct {
		name, id, body string
		wantStatus     int
		wantInBody     string
	}{
		{"valid", "3", `{"Reviewer1":2,"Reviewer2":1}`, 200, `{"id":3,"ratings":{"Reviewer1":2,"Reviewer2":1}}`},
		{"not JSON", "3", `stars`, 400, "please provide valid ratings JSON"},
		{"empty", "3", `{}`, 400, "no reviewer given"},
		{"too many stars", "3", `{"Reviewer1":6}`, 400, `\"Reviewer1\" has 6 stars, want 1 to 5`},
		{"bad id", "x", `{"Reviewer1":2}`, 400, "numeric product ID"},
	}
	for _, tt := range tests {
		status, body := post(tt.id, tt.body)
		if status != tt.wantStatus || !strings.Contains(body, tt.wantInBody) {
			t.Errorf("%s: POST got %d %s, want %d containing %s", tt.name, status, body, tt.wantStatus, tt.wantInBody)
		}
	}
	// The valid post sticks for its product only.
	if _, body := get(t, c, "http://"+addr+"/ratings/3", nil); strings.TrimSpace(body) != `{"id":3,"ratings":{"Reviewer1":2,"Reviewer2":1}}` {
		t.Errorf("GET after POST: %s", body)
	}
	if _, body := get(t, c, "http://"+addr+"/ratings/4", nil); strings.TrimSpace(body) != `{"id":4,"ratings":{"Reviewer1":5,"Reviewer2":4}}` {
		t.Errorf("GET other product: %s", body)
	}
}

// forwardProxy stands in for the sidecar's port 15001: it takes
// absolute-form requests for mesh names (reviews:9080) and sends them to
// where those services really run.
type forwardProxy struct {
	routes map[string]string // host:port as the app wrote it → real address
	mu     sync.Mutex
	seen   []string // Host of every request, in order
}

func (p *forwardProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.seen = append(p.seen, r.URL.Host)
	p.mu.Unlock()
	target, ok := p.routes[r.URL.Host]
	if !r.URL.IsAbs() || !ok {
		http.Error(w, "no route to "+r.URL.Host, http.StatusNotFound)
		return
	}
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.Out.URL.Scheme = "http"
		pr.Out.URL.Host = target
	}}
	rp.ServeHTTP(w, r)
}

func (p *forwardProxy) hosts() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.seen)
}

// TestCallsGoThroughTheProxyByName checks the mesh contract: peers are
// addressed by service name and port, never resolved by the app, and every
// call goes to the HTTP proxy.
func TestCallsGoThroughTheProxyByName(t *testing.T) {
	proxy := &forwardProxy{routes: map[string]string{}}
	proxyAddr := serve(t, proxy)
	proxyURL := &url.URL{Scheme: "http", Host: proxyAddr}
	transport := &http.Transport{Proxy: http.ProxyURL(proxyURL)}
	t.Cleanup(transport.CloseIdleConnections)

	names := UpstreamsFromEnv(func(string) string { return "" })
	proxy.routes[names.Details] = serve(t, NewDetails(quiet))
	proxy.routes[names.Ratings] = serve(t, NewRatings(quiet))
	rc := reviewsVersions["v2"]
	rc.Ratings, rc.Transport, rc.Logger = names.Ratings, transport, quiet
	proxy.routes[names.Reviews] = serve(t, NewReviews(rc))
	page := serve(t, NewProductPage(ProductPageConfig{Upstreams: names, Transport: transport, Logger: quiet}))

	status, body := get(t, client(t), "http://"+page+"/productpage", nil)
	if status != http.StatusOK {
		t.Fatalf("status %d", status)
	}
	mustContain(t, body, "<td>PublisherA</td>", `glyphicon-star star-black`)
	mustNotContain(t, body, "error")
	got := proxy.hosts()
	slices.Sort(got)
	want := []string{"details:9080", "ratings:9080", "reviews:9080"}
	if !slices.Equal(got, want) {
		t.Errorf("proxy saw %v, want %v", got, want)
	}
}

func TestUpstreamsFromEnv(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want Upstreams
	}{
		{"defaults", nil, Upstreams{"details:9080", "reviews:9080", "ratings:9080"}},
		{"services domain", map[string]string{"SERVICES_DOMAIN": "bookinfo.svc.cluster.local"},
			Upstreams{"details.bookinfo.svc.cluster.local:9080", "reviews.bookinfo.svc.cluster.local:9080", "ratings.bookinfo.svc.cluster.local:9080"}},
		{"hostnames", map[string]string{"DETAILS_HOSTNAME": "d", "REVIEWS_HOSTNAME": "r", "RATINGS_HOSTNAME": "ra"},
			Upstreams{"d:9080", "r:9080", "ra:9080"}},
		{"hostname with port", map[string]string{"DETAILS_HOSTNAME": "127.0.0.1:1234", "RATINGS_HOSTNAME": "::1"},
			Upstreams{"127.0.0.1:1234", "reviews:9080", "[::1]:9080"}},
	}
	for _, tt := range tests {
		got := UpstreamsFromEnv(func(k string) string { return tt.env[k] })
		if got != tt.want {
			t.Errorf("%s: got %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestReviewsConfigFromEnv(t *testing.T) {
	env := map[string]string{"ENABLE_RATINGS": "TRUE", "STAR_COLOR": "red", "SERVICE_VERSION": "v3", "POD_NAME": "reviews-v3-x", "RATINGS_HOSTNAME": "r"}
	got := ReviewsConfigFromEnv(func(k string) string { return env[k] })
	want := ReviewsConfig{Version: "v3", RatingsEnabled: true, StarColor: "red", PodName: "reviews-v3-x", Ratings: "r:9080"}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	env["ENABLE_RATINGS"] = "yes" // Java's Boolean.valueOf reads only "true"
	if ReviewsConfigFromEnv(func(k string) string { return env[k] }).RatingsEnabled {
		t.Error(`ENABLE_RATINGS=yes enabled ratings`)
	}
}

// freePort finds a loopback port for Run, which picks its own listener.
func freePort(t *testing.T) string {
	t.Helper()
	_, port, err := net.SplitHostPort(downAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// TestRunWiresEnvironment runs all four services through Run, wired only
// by environment variables, and stops them by cancelling the context.
func TestRunWiresEnvironment(t *testing.T) {
	ports := map[string]string{}
	for _, s := range Services {
		ports[s] = freePort(t)
	}
	t.Setenv("SKEIN_APP_IP", "127.0.0.1")
	t.Setenv("PORT", ports["details"]) // details takes its port from PORT
	t.Setenv("DETAILS_HOSTNAME", "127.0.0.1:"+ports["details"])
	t.Setenv("REVIEWS_HOSTNAME", "127.0.0.1:"+ports["reviews"])
	t.Setenv("RATINGS_HOSTNAME", "127.0.0.1:"+ports["ratings"])
	t.Setenv("ENABLE_RATINGS", "true")
	t.Setenv("STAR_COLOR", "red")
	t.Setenv("SERVICE_VERSION", "v3")
	t.Setenv("POD_NAME", "reviews-v3-run")

	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, len(Services))
	for _, s := range Services {
		args := []string{"--port", ports[s]}
		if s == "details" {
			args = nil
		}
		go func() { errs <- Run(ctx, s, args) }()
	}
	c := client(t)
	for _, s := range Services {
		waitHealthy(t, c, "127.0.0.1:"+ports[s])
	}
	_, page := get(t, c, "http://127.0.0.1:"+ports["productpage"]+"/productpage", nil)
	mustContain(t, page, "<td>PublisherA</td>", "glyphicon-star star-red", "reviews-v3-run (v3)")

	cancel()
	for range Services {
		select {
		case err := <-errs:
			if err != nil {
				t.Errorf("Run returned %v after cancel, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after cancel")
		}
	}
}

func waitHealthy(t *testing.T, c *http.Client, addr string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := c.Get("http://" + addr + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not healthy: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRunRejectsBadInput(t *testing.T) {
	t.Setenv("SKEIN_APP_IP", "127.0.0.1")
	t.Setenv("PORT", "")
	tests := []struct {
		service string
		args    []string
		want    string
	}{
		{"frontpage", []string{"--port", "1"}, `unknown bookinfo service "frontpage"`},
		{"details", []string{"--port", "http"}, `invalid port "http"`},
		{"details", []string{"--port", "70000"}, `invalid port "70000"`},
		{"details", []string{"--port", "1", "extra"}, `unexpected arguments ["extra"]`},
		{"details", []string{"--listen", "x"}, "flag provided but not defined: -listen"},
	}
	for _, tt := range tests {
		err := Run(context.Background(), tt.service, tt.args)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Run(%s, %q) = %v, want error containing %q", tt.service, tt.args, err, tt.want)
		}
	}
	// A port already in use is reported, not ignored.
	busy := listen(t)
	defer busy.Close()
	_, port, _ := net.SplitHostPort(busy.Addr().String())
	err := Run(context.Background(), "ratings", []string{"--port", port})
	var opErr *net.OpError
	if !errors.As(err, &opErr) {
		t.Errorf("Run on a busy port = %v, want a listen error", err)
	}
}
