// Package configapi serves the config store over HTTP (the "Config API" of
// docs/architecture.md): apply, delete, list objects and a long-poll watch.
// Objects travel as Kubernetes-style JSON documents (config.Encode/Decode).
package configapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/skein-mesh/skein/internal/config"
	"github.com/skein-mesh/skein/internal/configstore"
)

// Reasons in error answers, as in Kubernetes' Status.reason.
const (
	ReasonBadRequest = "BadRequest"
	ReasonInvalid    = "Invalid"
	ReasonNotFound   = "NotFound"
	ReasonInternal   = "InternalError"
)

// ApplyRequest is the body of POST /api/v1/apply.
type ApplyRequest struct {
	Objects []map[string]any `json:"objects"`
}

// DeleteRequest is the body of POST /api/v1/delete.
type DeleteRequest struct {
	Keys []config.Key `json:"keys"`
}

// ResultsResponse answers apply and delete.
type ResultsResponse struct {
	Results []config.ApplyResult `json:"results"`
}

// ObjectsResponse answers GET /api/v1/objects/<Kind>.
type ObjectsResponse struct {
	Revision int64            `json:"revision"`
	Objects  []map[string]any `json:"objects"`
}

// WatchResponse answers GET /api/v1/watch.
type WatchResponse struct {
	Revision int64 `json:"revision"`
}

// ErrorResponse is the body of every 4xx/5xx answer.
type ErrorResponse struct {
	Error  string `json:"error"`
	Reason string `json:"reason,omitempty"`
}

// maxBody bounds request bodies; a bookinfo-sized apply is a few KiB.
const maxBody = 32 << 20

type handler struct {
	store        *configstore.Store
	log          *slog.Logger
	watchTimeout time.Duration
}

// NewHandler returns the config API over store.
func NewHandler(store *configstore.Store, logger *slog.Logger) http.Handler {
	return newHandler(store, logger, 30*time.Second)
}

func newHandler(store *configstore.Store, logger *slog.Logger, watchTimeout time.Duration) http.Handler {
	if logger == nil {
		logger = slog.Default()
	}
	h := &handler{store: store, log: logger, watchTimeout: watchTimeout}
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/apply", only(http.MethodPost, h.apply))
	mux.HandleFunc("/api/v1/delete", only(http.MethodPost, h.delete))
	mux.HandleFunc("/api/v1/objects/{kind}", only(http.MethodGet, h.objects))
	mux.HandleFunc("/api/v1/watch", only(http.MethodGet, h.watch))
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, ReasonNotFound, fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return mux
}

// only answers 405 (in JSON, like every other error) to other methods.
func only(method string, fn http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method && !(method == http.MethodGet && r.Method == http.MethodHead) {
			w.Header().Set("Allow", method)
			writeError(w, http.StatusMethodNotAllowed, ReasonBadRequest, fmt.Sprintf("%s %s: use %s", r.Method, r.URL.Path, method))
			return
		}
		fn(w, r)
	}
}

// apply decodes every object, then applies them as one change. With
// ?dryRun=true it only reports what would happen.
func (h *handler) apply(w http.ResponseWriter, r *http.Request) {
	var req ApplyRequest
	if !readJSON(w, r, &req) {
		return
	}
	objs := make([]*config.Object, 0, len(req.Objects))
	var errs []error
	for i, doc := range req.Objects {
		obj, err := config.Decode(doc)
		if err != nil {
			locate(err, i+1)
			errs = append(errs, err)
			continue
		}
		objs = append(objs, obj)
	}
	if len(errs) > 0 {
		writeError(w, http.StatusBadRequest, ReasonInvalid, errors.Join(errs...).Error())
		return
	}
	dryRun := r.URL.Query().Get("dryRun") == "true"
	apply := h.store.Apply
	if dryRun {
		apply = h.store.DryRun
	}
	results, err := apply(objs)
	if err != nil {
		h.storeError(w, "apply", err)
		return
	}
	if results == nil {
		results = []config.ApplyResult{}
	}
	if !dryRun {
		h.logResults("applied", results)
	}
	writeJSON(w, http.StatusOK, ResultsResponse{Results: results})
}

func (h *handler) delete(w http.ResponseWriter, r *http.Request) {
	var req DeleteRequest
	if !readJSON(w, r, &req) {
		return
	}
	results, err := h.store.Delete(req.Keys)
	if err != nil {
		h.storeError(w, "delete", err)
		return
	}
	if results == nil {
		results = []config.ApplyResult{}
	}
	h.logResults("deleted", results)
	writeJSON(w, http.StatusOK, ResultsResponse{Results: results})
}

func (h *handler) objects(w http.ResponseWriter, r *http.Request) {
	kind := r.PathValue("kind")
	schema, ok := config.SchemaForKind(kind)
	if !ok {
		writeError(w, http.StatusNotFound, ReasonNotFound, fmt.Sprintf("the server doesn't have a resource type %q", kind))
		return
	}
	namespace, name := r.URL.Query().Get("namespace"), r.URL.Query().Get("name")
	if !schema.Namespaced {
		namespace = ""
	}
	snap := h.store.Snapshot()
	resp := ObjectsResponse{Revision: snap.Revision(), Objects: []map[string]any{}}
	for _, o := range snap.List(schema.KeyKind()) {
		if (namespace != "" && o.Meta.Namespace != namespace) || (name != "" && o.Meta.Name != name) {
			continue
		}
		doc, err := config.Encode(o)
		if err != nil {
			h.log.Error("encoding stored object", "key", o.Key().String(), "err", err)
			writeError(w, http.StatusInternalServerError, ReasonInternal, err.Error())
			return
		}
		resp.Objects = append(resp.Objects, doc)
	}
	if name != "" && len(resp.Objects) == 0 {
		nf := &configstore.NotFoundError{Resource: schema.Plural + "." + schema.Group,
			Key: config.Key{Kind: schema.Kind, Namespace: namespace, Name: name}}
		writeError(w, http.StatusNotFound, ReasonNotFound, nf.Error())
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// watch answers as soon as the store's revision exceeds since, or with the
// current revision after the watch timeout.
func (h *handler) watch(w http.ResponseWriter, r *http.Request) {
	since := int64(0)
	if s := r.URL.Query().Get("since"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, ReasonBadRequest, fmt.Sprintf("invalid since %q: want a revision number", s))
			return
		}
		since = n
	}
	changed, cancel := h.store.Subscribe() // before reading the revision, so no change is missed
	defer cancel()
	timeout := time.NewTimer(h.watchTimeout)
	defer timeout.Stop()
	for {
		if rev := h.store.Revision(); rev > since {
			writeJSON(w, http.StatusOK, WatchResponse{Revision: rev})
			return
		}
		select {
		case <-changed:
		case <-timeout.C:
			writeJSON(w, http.StatusOK, WatchResponse{Revision: h.store.Revision()})
			return
		case <-r.Context().Done():
			return
		}
	}
}

func (h *handler) storeError(w http.ResponseWriter, op string, err error) {
	var (
		invalid  *configstore.InvalidError
		notFound *configstore.NotFoundError
	)
	switch {
	case errors.As(err, &invalid):
		writeError(w, http.StatusBadRequest, ReasonInvalid, err.Error())
	case errors.As(err, &notFound):
		writeError(w, http.StatusNotFound, ReasonNotFound, err.Error())
	case errors.Is(err, configstore.ErrUnknownKind):
		writeError(w, http.StatusBadRequest, ReasonBadRequest, err.Error())
	default:
		h.log.Error("config store "+op+" failed", "err", err)
		writeError(w, http.StatusInternalServerError, ReasonInternal, err.Error())
	}
}

func (h *handler) logResults(msg string, results []config.ApplyResult) {
	counts := map[string]int{}
	for _, r := range results {
		counts[r.Action]++
	}
	attrs := []any{"revision", h.store.Revision(), "objects", len(results)}
	for _, a := range []string{configstore.ActionCreated, configstore.ActionConfigured, configstore.ActionUnchanged, configstore.ActionDeleted} {
		if counts[a] > 0 {
			attrs = append(attrs, a, counts[a])
		}
	}
	h.log.Info("config "+msg, attrs...)
}

// locate numbers the document of every FieldError in err (1-based index
// in the request's list).
func locate(err error, document int) {
	var fe *config.FieldError
	if errors.As(err, &fe) {
		fe.Document = document
		fe.File = "request"
	}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range joined.Unwrap() {
			locate(e, document)
		}
	}
}

func readJSON(w http.ResponseWriter, r *http.Request, into any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		status := http.StatusBadRequest
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			status = http.StatusRequestEntityTooLarge
		}
		writeError(w, status, ReasonBadRequest, "invalid request body: "+err.Error())
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, reason, msg string) {
	writeJSON(w, status, ErrorResponse{Error: msg, Reason: reason})
}
