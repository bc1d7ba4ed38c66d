package discovery

import (
	"context"
	"fmt"
	"net/http"

	"github.com/skein-mesh/skein/internal/apiwire"
	"github.com/skein-mesh/skein/internal/config"
	"github.com/skein-mesh/skein/internal/configapi"
	"github.com/skein-mesh/skein/internal/kube"
)

// Kubernetes mode: the cluster is the source of truth. The mirror feeds the
// in-memory store; the config API only reads.

// newMirror is called from New in Kubernetes mode.
func (s *Server) newMirror() {
	s.mirror = kube.NewMirror(s.opts.Kube, s.store, kube.MirrorOptions{
		RootNamespace: s.opts.RootNamespace,
		Log:           s.log,
		OnResults:     s.metrics.countResults,
		OnInvalid:     func(config.Key, error) { s.metrics.rejectedConfigs.Inc() },
	})
}

// runMirror starts mirroring (Kubernetes mode only).
func (s *Server) runMirror(ctx context.Context) {
	if s.opts.Kube == nil {
		return
	}
	if s.mirror == nil {
		s.newMirror()
	}
	go func() {
		if err := s.mirror.Run(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("kubernetes mirror stopped", "error", err)
		}
	}()
}

// ready answers 200 once the control plane serves real config: in
// Kubernetes mode, after the initial list is mirrored.
func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	if s.opts.Kube != nil {
		select {
		case <-s.mirrorReady():
		default:
			http.Error(w, "waiting for the initial list from Kubernetes", http.StatusServiceUnavailable)
			return
		}
	}
	fmt.Fprintln(w, "ok")
}

func (s *Server) mirrorReady() <-chan struct{} {
	if s.mirror == nil {
		return nil // not started yet: never ready
	}
	return s.mirror.Ready()
}

// configAPI is the store's HTTP API; in Kubernetes mode writes are refused.
func (s *Server) configAPI() http.Handler {
	h := configapi.NewHandler(s.store, s.log)
	if s.opts.Kube == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v1/apply" || r.URL.Path == "/api/v1/delete" {
			w.Header().Set("Allow", "GET")
			writeJSONStatus(w, http.StatusMethodNotAllowed, apiwire.ErrorResponse{Reason: "MethodNotAllowed",
				Error: "config is in Kubernetes (discovery --kubeconfig): use kubectl apply -f ... / kubectl delete -f ..."})
			return
		}
		h.ServeHTTP(w, r)
	})
}

func writeJSONStatus(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	writeJSON(w, v)
}
