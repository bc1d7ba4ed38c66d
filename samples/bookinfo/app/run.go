// Package app is Skein's Go version of Istio's Bookinfo sample: four small
// HTTP services (productpage, details, reviews, ratings) that behave like
// Istio's, so its routing, fault-injection and header-based tasks work
// unchanged. Each service is an http.Handler built from a config; Run
// builds one from the environment and serves it until its context ends.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// Services are the names Run accepts.
var Services = []string{"productpage", "details", "reviews", "ratings"}

// Run serves one Bookinfo service until ctx is cancelled. args are its
// flags (only --port, default $PORT or 9080). It listens on
// $SKEIN_APP_IP:<port> (all interfaces when SKEIN_APP_IP is empty) and
// takes its peers and version behaviour from the environment, as Istio's
// images do.
func Run(ctx context.Context, service string, args []string) error {
	fs := flag.NewFlagSet("bookinfo "+service, flag.ContinueOnError)
	defaultPort := os.Getenv("PORT")
	if defaultPort == "" {
		defaultPort = DefaultPort
	}
	port := fs.String("port", defaultPort, "port to listen on (env PORT)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bookinfo %s: unexpected arguments %q", service, fs.Args())
	}
	if n, err := strconv.Atoi(*port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("bookinfo %s: invalid port %q: want a number from 1 to 65535", service, *port)
	}
	handler, err := newService(service, os.Getenv, slog.Default())
	if err != nil {
		return err
	}
	addr := net.JoinHostPort(os.Getenv("SKEIN_APP_IP"), *port)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("bookinfo %s: %w", service, err)
	}
	slog.Info("listening", "service", service, "addr", ln.Addr().String())
	err = Serve(ctx, ln, handler)
	slog.Info("stopped", "service", service, "err", err)
	return err
}

// newService builds the named service from the environment.
func newService(service string, getenv func(string) string, logger *slog.Logger) (http.Handler, error) {
	switch service {
	case "details":
		return NewDetails(logger), nil
	case "ratings":
		return NewRatings(logger), nil
	case "reviews":
		cfg := ReviewsConfigFromEnv(getenv)
		cfg.Logger = logger
		return NewReviews(cfg), nil
	case "productpage":
		return NewProductPage(ProductPageConfig{Upstreams: UpstreamsFromEnv(getenv), Logger: logger}), nil
	default:
		return nil, fmt.Errorf("unknown bookinfo service %q: want one of %s", service, strings.Join(Services, ", "))
	}
}

// Serve serves h on ln until ctx is cancelled, then shuts down gracefully
// (in-flight requests get a few seconds). It returns nil after a clean
// shutdown.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	if serveErr := <-errc; serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return err
}

func withDefaultLogger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.Default()
	}
	return l
}

// statusRecorder remembers the status a handler wrote, for the access log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// logRequests writes one access-log line per request; health checks go to
// debug so probes do not drown the log.
func logRequests(logger *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		level := slog.LevelInfo
		if r.URL.Path == "/health" {
			level = slog.LevelDebug
		}
		logger.Log(r.Context(), level, "request",
			"method", r.Method,
			"path", r.URL.Path,
			"status", rec.status,
			"duration", time.Since(start),
			"request_id", r.Header.Get("x-request-id"))
	})
}
