package app

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestProductPageStarsPerReviewsVersion(t *testing.T) {
	tests := []struct {
		version              string
		full, empty          string
		wantFull, wantEmpty  int
		wantServedBy         string
		wantNoStarsAtAll     bool
		wantRatingsRequested bool
	}{
		{version: "v1", wantNoStarsAtAll: true, wantServedBy: "reviews-v1-pod (v1)"},
		{
			version: "v2", wantRatingsRequested: true, wantServedBy: "reviews-v2-pod (v2)",
			full: `<span class="glyphicon glyphicon-star star-black">`, wantFull: 9,
			empty: `<span class="glyphicon glyphicon-star-empty star-black">`, wantEmpty: 1,
		},
		{
			version: "v3", wantRatingsRequested: true, wantServedBy: "reviews-v3-pod (v3)",
			full: `<span class="glyphicon glyphicon-star star-red">`, wantFull: 9,
			empty: `<span class="glyphicon glyphicon-star-empty star-red">`, wantEmpty: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.version, func(t *testing.T) {
			t.Parallel()
			b := startBookinfo(t, meshOptions{reviews: reviewsVersions[tt.version]})
			status, page := get(t, client(t), "http://"+b.productpage+"/productpage", nil)
			if status != http.StatusOK {
				t.Fatalf("GET /productpage: status %d", status)
			}
			mustContain(t, page,
				"The Comedy of Errors",
				"<td>William Shakespeare</td>", "<td>paperback</td>", "<td>200</td>",
				"<td>PublisherA</td>", "<td>English</td>", "<td>1234567890</td>", "<td>123-1234567890</td>",
				"An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!",
				"Absolutely fun and entertaining. The play lacks thematic depth when compared to other plays by Shakespeare.",
				"<small>Reviewer1</small>", "<small>Reviewer2</small>",
				"Reviews served by: <u>"+tt.wantServedBy+"</u>",
			)
			mustNotContain(t, page, "details-error", "reviews-error", "ratings-error")
			if tt.wantNoStarsAtAll {
				mustNotContain(t, page, "glyphicon")
			} else {
				if got := strings.Count(page, tt.full); got != tt.wantFull {
					t.Errorf("%d of %s, want %d", got, tt.full, tt.wantFull)
				}
				if got := strings.Count(page, tt.empty); got != tt.wantEmpty {
					t.Errorf("%d of %s, want %d", got, tt.empty, tt.wantEmpty)
				}
			}
			if got := b.ratings.count() > 0; got != tt.wantRatingsRequested {
				t.Errorf("ratings called: %v, want %v", got, tt.wantRatingsRequested)
			}
		})
	}
}

func TestProductPageFailures(t *testing.T) {
	tests := []struct {
		name    string
		opts    meshOptions
		want    []string
		notWant []string
	}{
		{
			name: "ratings down",
			opts: meshOptions{down: map[string]bool{"ratings": true}},
			want: []string{
				`<p class="ratings-error"><i>Ratings service is currently unavailable</i></p>`,
				"<td>PublisherA</td>", "<small>Reviewer1</small>",
			},
			notWant: []string{"glyphicon", "reviews-error", "details-error"},
		},
		{
			name:    "ratings aborts with 500",
			opts:    meshOptions{wrap: map[string]wrapper{"ratings": abort(http.StatusInternalServerError)}},
			want:    []string{`class="ratings-error"`, "Ratings service is currently unavailable"},
			notWant: []string{"glyphicon"},
		},
		{
			name: "ratings slower than reviews' timeout",
			opts: meshOptions{
				reviews: ReviewsConfig{Version: "v3", RatingsEnabled: true, StarColor: "red", RatingsTimeout: 100 * time.Millisecond},
				wrap:    map[string]wrapper{"ratings": delay(5 * time.Second)},
			},
			want: []string{`class="ratings-error"`},
		},
		{
			name: "reviews down",
			opts: meshOptions{down: map[string]bool{"reviews": true}},
			want: []string{
				`<div class="reviews-error">`,
				"Sorry, product reviews are currently unavailable for this book.",
				"<td>PublisherA</td>",
			},
			notWant: []string{"Reviewer1", "details-error", "Reviews served by"},
		},
		{
			name: "reviews fails twice",
			opts: meshOptions{wrap: map[string]wrapper{"reviews": failFirst(2)}},
			want: []string{`<div class="reviews-error">`},
		},
		{
			name:    "reviews fails once then the retry succeeds",
			opts:    meshOptions{wrap: map[string]wrapper{"reviews": failFirst(1)}},
			want:    []string{"<small>Reviewer1</small>", "glyphicon-star star-black"},
			notWant: []string{"reviews-error"},
		},
		{
			name: "details down",
			opts: meshOptions{down: map[string]bool{"details": true}},
			want: []string{
				`<div class="details-error">`,
				"Sorry, product details are currently unavailable for this book.",
				"<small>Reviewer1</small>",
			},
			notWant: []string{"PublisherA", "reviews-error"},
		},
		{
			name: "details slower than productpage's timeout",
			opts: meshOptions{
				wrap: map[string]wrapper{"details": delay(5 * time.Second)},
				page: ProductPageConfig{Timeout: 300 * time.Millisecond},
			},
			want: []string{`<div class="details-error">`, "<small>Reviewer1</small>"},
		},
		{
			name:    "everything down",
			opts:    meshOptions{down: map[string]bool{"details": true, "reviews": true, "ratings": true}},
			want:    []string{`class="details-error"`, `class="reviews-error"`, "The Comedy of Errors"},
			notWant: []string{"Reviewer1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := startBookinfo(t, tt.opts)
			start := time.Now()
			status, page := get(t, client(t), "http://"+b.productpage+"/productpage", nil)
			if status != http.StatusOK {
				t.Fatalf("GET /productpage: status %d, want 200 even when peers fail", status)
			}
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("page took %v; faults must not hold it beyond the configured timeouts", took)
			}
			mustContain(t, page, tt.want...)
			mustNotContain(t, page, tt.notWant...)
		})
	}
}

func TestReviewsRetriedExactlyOnce(t *testing.T) {
	b := startBookinfo(t, meshOptions{wrap: map[string]wrapper{"reviews": abort(http.StatusServiceUnavailable)}})
	get(t, client(t), "http://"+b.productpage+"/productpage", nil)
	if got := b.reviews.count(); got != 2 {
		t.Errorf("reviews called %d times, want 2 (one retry)", got)
	}
	if got := b.details.count(); got != 1 {
		t.Errorf("details called %d times, want 1 (no retry)", got)
	}
}

func TestHeaderPropagation(t *testing.T) {
	b := startBookinfo(t, meshOptions{})
	in := http.Header{}
	propagated := map[string]string{
		"x-request-id":      "7d9e1e6c-0b1c-4c6e-9d55-3f1a5b0c2a11",
		"x-b3-traceid":      "463ac35c9f6413ad48485a3953bb6124",
		"x-b3-spanid":       "a2fb4a1d1a96d312",
		"x-b3-parentspanid": "0020000000000001",
		"x-b3-sampled":      "1",
		"x-b3-flags":        "1",
		"b3":                "463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-1",
		"x-ot-span-context": "463ac35c9f6413ad;a2fb4a1d1a96d312;0;cs",
		"traceparent":       "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		"tracestate":        "congo=t61rcWkgMzE",
		"user-agent":        "bookinfo-test/1.0",
		"end-user":          "tester",
	}
	for k, v := range propagated {
		in.Set(k, v)
	}
	in.Set("x-not-propagated", "secret")
	in.Set("cookie", "other=1")

	status, _ := get(t, client(t), "http://"+b.productpage+"/productpage", in)
	if status != http.StatusOK {
		t.Fatalf("status %d", status)
	}
	for peer, log := range map[string]*headerLog{"details": &b.details, "reviews": &b.reviews, "ratings (via reviews)": &b.ratings} {
		got := log.last(t)
		for k, v := range propagated {
			if got.Get(k) != v {
				t.Errorf("%s got %s=%q, want %q", peer, k, got.Get(k), v)
			}
		}
		for _, k := range []string{"x-not-propagated", "cookie"} {
			if got.Get(k) != "" {
				t.Errorf("%s got %s=%q, want it not propagated", peer, k, got.Get(k))
			}
		}
	}
}

func TestLoginLogoutAndEndUser(t *testing.T) {
	b := startBookinfo(t, meshOptions{})
	c := client(t)
	base := "http://" + b.productpage

	// Signed out: a login form, and no end-user upstream.
	_, page := get(t, c, base+"/productpage", nil)
	mustContain(t, page, `action="/login"`, `name="username"`, `name="passwd"`)
	if got := b.reviews.last(t).Get("end-user"); got != "" {
		t.Errorf("signed out: reviews got end-user %q", got)
	}

	resp, err := c.PostForm(base+"/login", url.Values{"username": {"jason"}, "passwd": {"anything"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/productpage" {
		t.Fatalf("POST /login: %d to %q, want 302 to /productpage", resp.StatusCode, resp.Header.Get("Location"))
	}
	if ck := findCookie(resp.Cookies(), "session"); ck == nil || ck.Value != "jason" {
		t.Fatalf("POST /login set cookies %v, want session=jason", resp.Cookies())
	}

	_, page = get(t, c, base+"/productpage", nil)
	mustContain(t, page, `<span class="user">jason</span>`, `href="/logout"`)
	mustNotContain(t, page, `action="/login"`)
	for peer, log := range map[string]*headerLog{"details": &b.details, "reviews": &b.reviews, "ratings": &b.ratings} {
		h := log.last(t)
		if got := h.Get("end-user"); got != "jason" {
			t.Errorf("signed in: %s got end-user %q, want jason", peer, got)
		}
		if got := h.Get("cookie"); got != "" {
			t.Errorf("%s got cookie %q, want none", peer, got)
		}
	}

	status, _ := get(t, c, base+"/logout", nil)
	if status != http.StatusFound {
		t.Fatalf("GET /logout: status %d, want 302", status)
	}
	_, page = get(t, c, base+"/productpage", nil)
	mustContain(t, page, `action="/login"`)
	mustNotContain(t, page, "jason")
	if got := b.reviews.last(t).Get("end-user"); got != "" {
		t.Errorf("after logout reviews got end-user %q", got)
	}
}

func TestLoginRejectsBadNames(t *testing.T) {
	b := startBookinfo(t, meshOptions{})
	for _, name := range []string{"", "a\nb", strings.Repeat("x", maxUserName+1)} {
		resp, err := http.PostForm("http://"+b.productpage+"/login", url.Values{"username": {name}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("login as %q: status %d, want 400", name, resp.StatusCode)
		}
		if len(resp.Cookies()) != 0 {
			t.Errorf("login as %q set cookies %v", name, resp.Cookies())
		}
	}
}

func findCookie(cookies []*http.Cookie, name string) *http.Cookie {
	for _, c := range cookies {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func TestProductPageAPI(t *testing.T) {
	b := startBookinfo(t, meshOptions{})
	c := client(t)
	base := "http://" + b.productpage

	var list []map[string]any
	getJSON(t, c, base+"/api/v1/products", http.StatusOK, &list)
	if len(list) != 1 || list[0]["title"] != "The Comedy of Errors" || list[0]["id"] != 0.0 || list[0]["descriptionHtml"] == "" {
		t.Errorf("products = %v", list)
	}

	var details BookDetails
	getJSON(t, c, base+"/api/v1/products/0", http.StatusOK, &details)
	if details != bookDetails(0) {
		t.Errorf("details = %+v", details)
	}

	var reviews ProductReviews
	getJSON(t, c, base+"/api/v1/products/0/reviews", http.StatusOK, &reviews)
	if len(reviews.Reviews) != 2 || reviews.Reviews[0].Rating == nil || reviews.Reviews[0].Rating.Stars != 5 {
		t.Errorf("reviews = %+v", reviews)
	}

	var ratings ProductRatings
	getJSON(t, c, base+"/api/v1/products/0/ratings", http.StatusOK, &ratings)
	if ratings.Ratings["Reviewer1"] != 5 || ratings.Ratings["Reviewer2"] != 4 {
		t.Errorf("ratings = %+v", ratings)
	}

	var bad map[string]string
	getJSON(t, c, base+"/api/v1/products/abc", http.StatusBadRequest, &bad)
	if bad["error"] == "" {
		t.Errorf("bad id answered %v, want an error", bad)
	}
}

func TestProductPageAPIFailures(t *testing.T) {
	b := startBookinfo(t, meshOptions{
		down: map[string]bool{"details": true},
		wrap: map[string]wrapper{"ratings": abort(http.StatusInternalServerError)},
	})
	c := client(t)
	tests := []struct {
		path       string
		wantStatus int
		wantError  string
	}{
		{"/api/v1/products/0", http.StatusServiceUnavailable, detailsUnavailable},
		{"/api/v1/products/0/ratings", http.StatusInternalServerError, ratingsUnavailableAPI},
	}
	for _, tt := range tests {
		var body map[string]string
		getJSON(t, c, "http://"+b.productpage+tt.path, tt.wantStatus, &body)
		if body["error"] != tt.wantError {
			t.Errorf("%s: error %q, want %q", tt.path, body["error"], tt.wantError)
		}
	}
}

func getJSON(t *testing.T, c *http.Client, url string, wantStatus int, v any) {
	t.Helper()
	status, body := get(t, c, url, nil)
	if status != wantStatus {
		t.Fatalf("GET %s: status %d, want %d; body %s", url, status, wantStatus, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("GET %s: %v in %s", url, err, body)
	}
}

func TestIndexStaticAndHealth(t *testing.T) {
	b := startBookinfo(t, meshOptions{})
	c := client(t)
	tests := []struct {
		path, want, contentType string
	}{
		{"/", `href="/productpage"`, "text/html"},
		{"/static/bookinfo.css", ".star-red", "text/css"},
		{"/health", "healthy", "text/plain"},
	}
	for _, tt := range tests {
		resp, err := c.Get("http://" + b.productpage + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), tt.want) {
			t.Errorf("GET %s: %d, body lacks %q", tt.path, resp.StatusCode, tt.want)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, tt.contentType) {
			t.Errorf("GET %s: Content-Type %q, want %s", tt.path, ct, tt.contentType)
		}
	}
	for _, path := range []string{"/nothing", "/static/missing.css"} {
		if status, _ := get(t, c, "http://"+b.productpage+path, nil); status != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, status)
		}
	}
}
