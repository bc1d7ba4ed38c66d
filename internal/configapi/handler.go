// Package configapi serves the config store over HTTP (the "Config API" of
// docs/architecture.md): apply, delete, list objects and a long-poll watch.
// Objects travel as Kubernetes-style JSON documents (config.Encode/Decode).
package configapi

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/skein-mesh/skein/internal/apiwire"
	"github.com/skein-mesh/skein/internal/config"
	"github.com/skein-mesh/skein/internal/configstore"
)

// The wire types are apiwire's; these names keep the handler readable.
const (
	ReasonBadRequest = apiwire.ReasonBadRequest
	ReasonInvalid    = apiwire.ReasonInvalid
	ReasonNotFound   = apiwire.ReasonNotFound
	ReasonInternal   = apiwire.ReasonInternal
)

// maxBody bounds request bodies; a bookinfo-sized apply is a few KiB.
const maxBody = 32 << 20

type handler struct {
	store        *configstore.Store
	log          *slog.Logger
	watchTimeout time.Duration
}

// NewHandler returns the config API over store. Callers' roles come from
// a Guard in front of it (without one every caller is anonymous): apply
// and delete need the admin role, Secrets are shown only to admins and
// only as their keys and sizes.
func NewHandler(store *configstore.Store, logger *slog.Logger) http.Handler {
	return newHandler(store, logger, 30*time.Second)
}

func newHandler(store *configstore.Store, logger *slog.Logger, watchTimeout time.Duration) http.Handler {
	if logger == nil {
		logger = slog.Default()
	}
	h := &handler{store: store, log: logger, watchTimeout: watchTimeout}
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/apply", only(http.MethodPost, adminOnly(h.apply)))
	mux.HandleFunc("/api/v1/delete", only(http.MethodPost, adminOnly(h.delete)))
	mux.HandleFunc("/api/v1/objects/{kind}", only(http.MethodGet, h.objects))
	mux.HandleFunc("/api/v1/watch", only(http.MethodGet, h.watch))
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, ReasonNotFound, fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return mux
}

// adminOnly lets only the admin role through.
func adminOnly(fn http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if requireAdmin(w, r) {
			fn(w, r)
		}
	}
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
	var req apiwire.ApplyRequest
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
	writeJSON(w, http.StatusOK, apiwire.ResultsResponse{Results: results})
}

func (h *handler) delete(w http.ResponseWriter, r *http.Request) {
	var req apiwire.DeleteRequest
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
	writeJSON(w, http.StatusOK, apiwire.ResultsResponse{Results: results})
}

func (h *handler) objects(w http.ResponseWriter, r *http.Request) {
	kind := r.PathValue("kind")
	schema, ok := config.SchemaForKind(kind)
	if !ok {
		writeError(w, http.StatusNotFound, ReasonNotFound, fmt.Sprintf("the server doesn't have a resource type %q", kind))
		return
	}
	secret := schema.Kind == "Secret"
	if secret && !requireAdmin(w, r) {
		return
	}
	namespace, name := r.URL.Query().Get("namespace"), r.URL.Query().Get("name")
	if !schema.Namespaced {
		namespace = ""
	}
	snap := h.store.Snapshot()
	resp := apiwire.ObjectsResponse{Revision: snap.Revision(), Objects: []map[string]any{}}
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
		if secret {
			redactSecret(doc)
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
			writeJSON(w, http.StatusOK, apiwire.WatchResponse{Revision: rev})
			return
		}
		select {
		case <-changed:
		case <-timeout.C:
			writeJSON(w, http.StatusOK, apiwire.WatchResponse{Revision: h.store.Revision()})
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
	writeJSON(w, status, apiwire.ErrorResponse{Error: msg, Reason: reason})
}

// redactSecret empties a Secret document's data and stringData and lists
// each key with its size in an annotation, as `kubectl describe secret`
// shows them: the key material never leaves the control plane.
func redactSecret(doc map[string]any) {
	sizes := map[string]int{}
	for _, field := range []string{"data", "stringData"} {
		m, _ := doc[field].(map[string]any)
		for k, v := range m {
			s, _ := v.(string)
			n := len(s)
			if field == "data" {
				if b, err := base64.StdEncoding.DecodeString(s); err == nil {
					n = len(b)
				}
			}
			sizes[k] = n
			m[k] = ""
		}
	}
	delete(doc, "stringData")
	keys := make([]string, 0, len(sizes))
	for k := range sizes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s: %d bytes", k, sizes[k]))
	}
	meta, _ := doc["metadata"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
		doc["metadata"] = meta
	}
	ann, _ := meta["annotations"].(map[string]any)
	if ann == nil {
		ann = map[string]any{}
		meta["annotations"] = ann
	}
	ann[apiwire.RedactedDataAnnotation] = strings.Join(parts, ", ")
}
