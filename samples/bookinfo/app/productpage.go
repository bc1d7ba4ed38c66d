package app

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Messages productpage shows when a peer fails, as Istio's does.
const (
	detailsUnavailable    = "Sorry, product details are currently unavailable for this book."
	reviewsUnavailable    = "Sorry, product reviews are currently unavailable for this book."
	ratingsUnavailableAPI = "Sorry, product ratings are currently unavailable for this book."
)

// Product is one book in the catalogue.
type Product struct {
	ID              int           `json:"id"`
	Title           string        `json:"title"`
	DescriptionHTML template.HTML `json:"descriptionHtml"`
}

// products is the whole catalogue: Bookinfo sells one book.
var products = []Product{{
	ID:    0,
	Title: "The Comedy of Errors",
	DescriptionHTML: `<a href="https://en.wikipedia.org/wiki/The_Comedy_of_Errors">Wikipedia Summary</a>: ` +
		`<b>William Shakespeare's</b> shortest comedy: two pairs of identical twins, separated at birth, ` +
		`turn up in the same town on the same day, and a string of mistaken identities, slapstick and puns follows.`,
}}

// ProductPageConfig configures the productpage service.
type ProductPageConfig struct {
	// Upstreams are the host:port names of details, reviews and ratings.
	Upstreams Upstreams
	// Timeout bounds each call to a peer; zero means Istio's 3 s.
	Timeout time.Duration
	// ReviewsAttempts is how often reviews is tried; zero means Istio's 2
	// (one retry).
	ReviewsAttempts int
	// Transport carries the calls to peers; nil means NewTransport().
	Transport http.RoundTripper
	Logger    *slog.Logger
}

//go:embed static templates
var assets embed.FS

var pageTemplates = template.Must(template.ParseFS(assets, "templates/*.html"))

type productPage struct {
	cfg    ProductPageConfig
	calls  caller
	logger *slog.Logger
}

// NewProductPage returns the productpage service: the HTML front end
// (/, /productpage, /static/, /login, /logout), the JSON API under
// /api/v1/products and /health.
func NewProductPage(cfg ProductPageConfig) http.Handler {
	if cfg.Timeout == 0 {
		cfg.Timeout = 3 * time.Second
	}
	if cfg.ReviewsAttempts < 1 {
		cfg.ReviewsAttempts = 2
	}
	defaults := UpstreamsFromEnv(func(string) string { return "" })
	if cfg.Upstreams.Details == "" {
		cfg.Upstreams.Details = defaults.Details
	}
	if cfg.Upstreams.Reviews == "" {
		cfg.Upstreams.Reviews = defaults.Reviews
	}
	if cfg.Upstreams.Ratings == "" {
		cfg.Upstreams.Ratings = defaults.Ratings
	}
	p := &productPage{
		cfg:    cfg,
		calls:  newCaller(cfg.Transport),
		logger: withDefaultLogger(cfg.Logger).With("service", "productpage"),
	}
	static, err := fs.Sub(assets, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "Product page is healthy")
	})
	mux.HandleFunc("GET /{$}", p.serveIndex)
	mux.HandleFunc("GET /productpage", p.serveProductPage)
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("POST /login", p.serveLogin)
	mux.HandleFunc("GET /logout", p.serveLogout)
	mux.HandleFunc("GET /api/v1/products", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, products)
	})
	mux.HandleFunc("GET /api/v1/products/{id}", p.serveAPIDetails)
	mux.HandleFunc("GET /api/v1/products/{id}/reviews", p.serveAPIReviews)
	mux.HandleFunc("GET /api/v1/products/{id}/ratings", p.serveAPIRatings)
	return logRequests(p.logger, mux)
}

// outboundHeaders are the headers productpage's calls carry: the
// propagated ones, with end-user taken from the session when signed in.
func outboundHeaders(r *http.Request) http.Header {
	h := forwardHeaders(r.Header)
	if user := sessionUser(r); user != "" {
		h.Set("end-user", user)
	}
	return h
}

// fetchDetails calls details once, as Istio's productpage does.
func (p *productPage) fetchDetails(ctx context.Context, id int, h http.Header) (callResult, error) {
	res, err := p.calls.do(ctx, http.MethodGet, p.cfg.Upstreams.Details, "/details/"+strconv.Itoa(id), h, nil, p.cfg.Timeout)
	return checkOK("details", res, err)
}

// fetchReviews calls reviews, retrying on any failure up to
// ReviewsAttempts times in all.
func (p *productPage) fetchReviews(ctx context.Context, id int, h http.Header) (callResult, error) {
	var (
		res callResult
		err error
	)
	for attempt := 1; attempt <= p.cfg.ReviewsAttempts; attempt++ {
		res, err = p.calls.do(ctx, http.MethodGet, p.cfg.Upstreams.Reviews, "/reviews/"+strconv.Itoa(id), h, nil, p.cfg.Timeout)
		res, err = checkOK("reviews", res, err)
		if err == nil || ctx.Err() != nil {
			break
		}
		p.logger.Info("reviews call failed", "attempt", attempt, "err", err)
	}
	return res, err
}

// fetchRatings calls ratings once (only the JSON API does).
func (p *productPage) fetchRatings(ctx context.Context, id int, h http.Header) (callResult, error) {
	res, err := p.calls.do(ctx, http.MethodGet, p.cfg.Upstreams.Ratings, "/ratings/"+strconv.Itoa(id), h, nil, p.cfg.Timeout)
	return checkOK("ratings", res, err)
}

// checkOK turns a non-200 answer into an error, keeping the result so the
// API can pass the peer's status on.
func checkOK(peer string, res callResult, err error) (callResult, error) {
	if err != nil {
		return res, fmt.Errorf("calling %s: %w", peer, err)
	}
	if res.Status != http.StatusOK {
		return res, fmt.Errorf("%s answered HTTP %d", peer, res.Status)
	}
	return res, nil
}

// pageData is what templates/productpage.html renders.
type pageData struct {
	User         string
	Product      Product
	Details      BookDetails
	DetailsError string
	Reviews      []reviewView
	ReviewsError string
	ServedBy     string // reviews pod, version and cluster
}

// reviewView is one review ready to draw.
type reviewView struct {
	Reviewer    string
	Text        string
	Color       string
	Full        []struct{} // one per filled star
	Empty       []struct{} // one per empty star, up to five in all
	RatingError string
}

func (p *productPage) serveProductPage(w http.ResponseWriter, r *http.Request) {
	product := products[0]
	h := outboundHeaders(r)
	data := pageData{User: sessionUser(r), Product: product}

	var (
		wg                     sync.WaitGroup
		details, reviews       callResult
		detailsErr, reviewsErr error
	)
	wg.Go(func() { details, detailsErr = p.fetchDetails(r.Context(), product.ID, h) })
	wg.Go(func() { reviews, reviewsErr = p.fetchReviews(r.Context(), product.ID, h) })
	wg.Wait()

	if detailsErr == nil {
		detailsErr = json.Unmarshal(details.Body, &data.Details)
	}
	if detailsErr != nil {
		p.logger.Warn("product details unavailable", "err", detailsErr)
		data.DetailsError = detailsUnavailable
	}

	var rv ProductReviews
	if reviewsErr == nil {
		reviewsErr = json.Unmarshal(reviews.Body, &rv)
	}
	if reviewsErr != nil {
		p.logger.Warn("product reviews unavailable", "err", reviewsErr)
		data.ReviewsError = reviewsUnavailable
	} else {
		data.Reviews = reviewViews(rv.Reviews)
		data.ServedBy = servedBy(rv)
	}

	var buf bytes.Buffer
	if err := pageTemplates.ExecuteTemplate(&buf, "productpage.html", data); err != nil {
		p.logger.Error("rendering productpage", "err", err)
		http.Error(w, "rendering productpage failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(buf.Bytes())
}

// reviewViews turns reviews into what the page draws: filled and empty
// stars in the review's colour, or the rating's error.
func reviewViews(reviews []Review) []reviewView {
	out := make([]reviewView, 0, len(reviews))
	for _, rv := range reviews {
		v := reviewView{Reviewer: rv.Reviewer, Text: rv.Text}
		if rt := rv.Rating; rt != nil {
			switch {
			case rt.Error != "":
				v.RatingError = rt.Error
			case rt.Stars > 0:
				stars := min(rt.Stars, 5)
				v.Color = cssName(rt.Color, "black")
				v.Full = make([]struct{}, stars)
				v.Empty = make([]struct{}, 5-stars)
			}
		}
		out = append(out, v)
	}
	return out
}

// servedBy names the reviews instance that answered, as Istio's page does.
func servedBy(rv ProductReviews) string {
	if rv.PodName == "" {
		return ""
	}
	s := rv.PodName
	if rv.Version != "" {
		s += " (" + rv.Version + ")"
	}
	if rv.ClusterName != "" && rv.ClusterName != "null" {
		s += " on cluster " + rv.ClusterName
	}
	return s
}

// cssName keeps a colour usable as part of a class name.
func cssName(s, def string) string {
	if s == "" || len(s) > 32 {
		return def
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return def
		}
	}
	return s
}

func (p *productPage) serveIndex(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := pageTemplates.ExecuteTemplate(w, "index.html", products[0]); err != nil {
		p.logger.Error("rendering index", "err", err)
	}
}

// serveAPIDetails, serveAPIReviews and serveAPIRatings pass the peer's JSON
// through; on failure they answer the peer's status (503 when there was no
// answer at all) with an error message.
func (p *productPage) serveAPIDetails(w http.ResponseWriter, r *http.Request) {
	p.serveAPI(w, r, p.fetchDetails, detailsUnavailable)
}

func (p *productPage) serveAPIReviews(w http.ResponseWriter, r *http.Request) {
	p.serveAPI(w, r, p.fetchReviews, reviewsUnavailable)
}

func (p *productPage) serveAPIRatings(w http.ResponseWriter, r *http.Request) {
	p.serveAPI(w, r, p.fetchRatings, ratingsUnavailableAPI)
}

type fetchFunc func(ctx context.Context, id int, h http.Header) (callResult, error)

func (p *productPage) serveAPI(w http.ResponseWriter, r *http.Request, fetch fetchFunc, unavailable string) {
	id, ok := productID(w, r)
	if !ok {
		return
	}
	res, err := fetch(r.Context(), id, outboundHeaders(r))
	if err != nil {
		p.logger.Warn("api call failed", "path", r.URL.Path, "err", err)
		status := res.Status
		if status == 0 {
			status = http.StatusServiceUnavailable
		}
		writeJSON(w, status, map[string]string{"error": unavailable})
		return
	}
	writeRawJSON(w, http.StatusOK, res.Body)
}
