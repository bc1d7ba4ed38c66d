package app

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// ratingsUnavailable is what a review carries instead of stars when the
// ratings service could not be reached.
const ratingsUnavailable = "Ratings service is currently unavailable"

// ReviewsConfig selects the behaviour of one reviews version, as the
// environment does for Istio's Java reviews service.
type ReviewsConfig struct {
	// Version is reported in answers as "version" (SERVICE_VERSION).
	Version string
	// RatingsEnabled makes reviews call ratings and attach stars
	// (ENABLE_RATINGS): false is v1.
	RatingsEnabled bool
	// StarColor is the colour of the stars (STAR_COLOR): black is v2, red v3.
	StarColor string
	// PodName and ClusterName are reported as "podname" and "clustername".
	PodName     string
	ClusterName string
	// Ratings is the host:port of the ratings service.
	Ratings string
	// RatingsTimeout bounds the call to ratings. Zero means Istio's values:
	// 10 s with black stars (v2) and 2.5 s otherwise (v3).
	RatingsTimeout time.Duration
	// Transport carries the call to ratings; nil means NewTransport().
	Transport http.RoundTripper
	Logger    *slog.Logger
}

// ReviewsConfigFromEnv reads ENABLE_RATINGS, STAR_COLOR, SERVICE_VERSION,
// CLUSTER_NAME, the pod name (POD_NAME, else HOSTNAME, else the host name)
// and the ratings address (see UpstreamsFromEnv).
func ReviewsConfigFromEnv(getenv func(string) string) ReviewsConfig {
	pod := getenv("POD_NAME")
	if pod == "" {
		pod = getenv("HOSTNAME")
	}
	if pod == "" {
		pod, _ = os.Hostname()
	}
	// Like Java's Boolean.valueOf: only "true", in any case, enables ratings.
	enabled := strings.EqualFold(strings.TrimSpace(getenv("ENABLE_RATINGS")), "true")
	return ReviewsConfig{
		Version:        getenv("SERVICE_VERSION"),
		RatingsEnabled: enabled,
		StarColor:      getenv("STAR_COLOR"),
		PodName:        pod,
		ClusterName:    getenv("CLUSTER_NAME"),
		Ratings:        UpstreamsFromEnv(getenv).Ratings,
	}
}

// Rating is the stars attached to a review, or why there are none.
type Rating struct {
	Stars int    `json:"stars,omitempty"`
	Color string `json:"color,omitempty"`
	Error string `json:"error,omitempty"`
}

// Review is one reviewer's text and, from v2 on, their rating.
type Review struct {
	Reviewer string  `json:"reviewer"`
	Text     string  `json:"text"`
	Rating   *Rating `json:"rating,omitempty"`
}

// ProductReviews is what the reviews service answers for a product.
type ProductReviews struct {
	ID          string   `json:"id"`
	PodName     string   `json:"podname"`
	ClusterName string   `json:"clustername"`
	Version     string   `json:"version,omitempty"`
	Reviews     []Review `json:"reviews"`
}

// reviewTexts are the two reviews every product has, in order.
var reviewTexts = []Review{
	{Reviewer: "Reviewer1", Text: "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!"},
	{Reviewer: "Reviewer2", Text: "Absolutely fun and entertaining. The play lacks thematic depth when compared to other plays by Shakespeare."},
}

type reviewsService struct {
	cfg    ReviewsConfig
	calls  caller
	logger *slog.Logger
}

// NewReviews returns the reviews service: GET /reviews/<id> and /health.
func NewReviews(cfg ReviewsConfig) http.Handler {
	if cfg.StarColor == "" {
		cfg.StarColor = "black"
	}
	if cfg.ClusterName == "" {
		// Istio's Java service prints an unset cluster name as "null", and
		// productpage relies on that to hide it.
		cfg.ClusterName = "null"
	}
	if cfg.RatingsTimeout == 0 {
		cfg.RatingsTimeout = 2500 * time.Millisecond
		if cfg.StarColor == "black" {
			cfg.RatingsTimeout = 10 * time.Second
		}
	}
	if cfg.Ratings == "" {
		cfg.Ratings = upstreamAddr("ratings", "")
	}
	s := &reviewsService{
		cfg:    cfg,
		calls:  newCaller(cfg.Transport),
		logger: withDefaultLogger(cfg.Logger).With("service", "reviews", "version", cfg.Version),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "Reviews is healthy"})
	})
	mux.HandleFunc("GET /reviews/{id}", s.serveReviews)
	return logRequests(s.logger, mux)
}

func (s *reviewsService) serveReviews(w http.ResponseWriter, r *http.Request) {
	id, ok := productID(w, r)
	if !ok {
		return
	}
	answer := ProductReviews{
		ID:          strconv.Itoa(id),
		PodName:     s.cfg.PodName,
		ClusterName: s.cfg.ClusterName,
		Version:     s.cfg.Version,
		Reviews:     make([]Review, len(reviewTexts)),
	}
	copy(answer.Reviews, reviewTexts)
	if s.cfg.RatingsEnabled {
		stars, err := s.fetchRatings(r.Context(), id, forwardHeaders(r.Header))
		if err != nil {
			s.logger.Warn("ratings unavailable", "product", id, "ratings", s.cfg.Ratings, "err", err)
		}
		for i := range answer.Reviews {
			n, ok := stars[answer.Reviews[i].Reviewer]
			if ok {
				answer.Reviews[i].Rating = &Rating{Stars: n, Color: s.cfg.StarColor}
			} else {
				answer.Reviews[i].Rating = &Rating{Error: ratingsUnavailable}
			}
		}
	}
	writeJSON(w, http.StatusOK, answer)
}

// fetchRatings asks ratings for the product's stars per reviewer.
func (s *reviewsService) fetchRatings(ctx context.Context, id int, headers http.Header) (map[string]int, error) {
	res, err := s.calls.do(ctx, http.MethodGet, s.cfg.Ratings, "/ratings/"+strconv.Itoa(id), headers, nil, s.cfg.RatingsTimeout)
	if err != nil {
		return nil, err
	}
	if res.Status != http.StatusOK {
		return nil, fmt.Errorf("ratings answered HTTP %d", res.Status)
	}
	var body ProductRatings
	if err := json.Unmarshal(res.Body, &body); err != nil {
		return nil, fmt.Errorf("ratings answered invalid JSON: %w", err)
	}
	return body.Ratings, nil
}
