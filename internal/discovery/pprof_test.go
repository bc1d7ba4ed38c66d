package discovery

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestPprofEndpoints: the HTTP port serves Go's profiler, as istiod's does,
// to the admin only.
func TestPprofEndpoints(t *testing.T) {
	srv, err := New(Options{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.grpcLis.Close(); srv.httpLis.Close() })
	hs := httptest.NewServer(srv.httpHandler())
	defer hs.Close()
	for _, c := range []struct{ path, want string }{
		{"/debug/pprof/", "heap"},
		{"/debug/pprof/heap?debug=1", "heap profile"},
		{"/debug/pprof/goroutine?debug=1", "goroutine profile"},
	} {
		resp, err := http.Get(hs.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s without a credential: %d, want 401", c.path, resp.StatusCode)
		}
		req, _ := http.NewRequest("GET", hs.URL+c.path, nil)
		req.Header.Set("Authorization", "Bearer "+srv.AdminToken())
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), c.want) {
			t.Errorf("GET %s: %d, body without %q", c.path, resp.StatusCode, c.want)
		}
	}
}
