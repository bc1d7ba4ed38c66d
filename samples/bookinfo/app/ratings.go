package app

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"sort"
	"sync"
)

// ProductRatings is what the ratings service answers: stars per reviewer.
type ProductRatings struct {
	ID      int            `json:"id"`
	Ratings map[string]int `json:"ratings"`
}

// defaultRatings are the stars every product has until someone posts others.
func defaultRatings() map[string]int {
	return map[string]int{"Reviewer1": 5, "Reviewer2": 4}
}

// ratingsStore keeps ratings posted at run time, in memory, like Istio's
// ratings v1 (its v2 uses a database, which this sample does not ship).
type ratingsStore struct {
	mu     sync.Mutex
	posted map[int]map[string]int
}

func (s *ratingsStore) get(id int) ProductRatings {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.posted[id]; ok {
		return ProductRatings{ID: id, Ratings: maps.Clone(r)}
	}
	return ProductRatings{ID: id, Ratings: defaultRatings()}
}

func (s *ratingsStore) put(id int, ratings map[string]int) ProductRatings {
	s.mu.Lock()
	if s.posted == nil {
		s.posted = map[int]map[string]int{}
	}
	s.posted[id] = maps.Clone(ratings)
	s.mu.Unlock()
	return s.get(id)
}

// NewRatings returns the ratings service: GET and POST /ratings/<id>, and
// /health.
func NewRatings(logger *slog.Logger) http.Handler {
	store := &ratingsStore{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "Ratings is healthy"})
	})
	mux.HandleFunc("GET /ratings/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, ok := productID(w, r)
		if !ok {
			return
		}
		writeJSON(w, http.StatusOK, store.get(id))
	})
	mux.HandleFunc("POST /ratings/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, ok := productID(w, r)
		if !ok {
			return
		}
		ratings, err := decodeRatings(r.Body)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, store.put(id, ratings))
	})
	return logRequests(withDefaultLogger(logger).With("service", "ratings"), mux)
}

// decodeRatings reads {"Reviewer1": 5, ...}; every value must be 1 to 5
// stars, since that is what productpage can draw.
func decodeRatings(body io.Reader) (map[string]int, error) {
	var ratings map[string]int
	if err := json.NewDecoder(io.LimitReader(body, 64<<10)).Decode(&ratings); err != nil {
		return nil, fmt.Errorf("please provide valid ratings JSON: an object of reviewer name to stars: %v", err)
	}
	if len(ratings) == 0 {
		return nil, fmt.Errorf("please provide valid ratings JSON: no reviewer given")
	}
	names := make([]string, 0, len(ratings))
	for name := range ratings {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if stars := ratings[name]; stars < 1 || stars > 5 {
			return nil, fmt.Errorf("please provide valid ratings JSON: %q has %d stars, want 1 to 5", name, stars)
		}
	}
	return ratings, nil
}
