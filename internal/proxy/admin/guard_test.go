package admin

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/skein-mesh/skein/internal/proxy/stats"
)

// TestQuitNeedsThePod: /quitquitquit stops the proxy only for the pod's
// own address (in its network namespace) or its workload token.
func TestQuitNeedsThePod(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte("pod-token\n"), 0o600)
	for _, c := range []struct {
		name, podIP, remote, auth string
		want                      int
	}{
		{"local mode, no credential", "127.0.3.4", "127.0.3.4:5555", "", http.StatusForbidden},
		{"local mode, another user's guess", "127.0.3.4", "127.0.0.1:5555", "Bearer guess", http.StatusForbidden},
		{"local mode, the pod's token", "127.0.3.4", "127.0.0.1:5555", "Bearer pod-token", http.StatusOK},
		{"pod network, from its loopback", "10.1.2.3", "127.0.0.1:5555", "", http.StatusOK},
		{"pod network, from its pod IP", "10.1.2.3", "10.1.2.3:5555", "", http.StatusOK},
		{"pod network, from another pod", "10.1.2.3", "10.1.2.9:5555", "", http.StatusForbidden},
		{"pod network, another pod with the token", "10.1.2.3", "10.1.2.9:5555", "Bearer pod-token", http.StatusOK},
	} {
		t.Run(c.name, func(t *testing.T) {
			var quits atomic.Int32
			h := Handler(Options{Stats: stats.NewStore(), Quit: func() { quits.Add(1) },
				Mutations: MutationPolicy{TokenFile: tokenFile, TrustedSource: PodLocal(c.podIP)}})
			req := httptest.NewRequest("POST", "/quitquitquit", nil)
			req.RemoteAddr = c.remote
			if c.auth != "" {
				req.Header.Set("Authorization", c.auth)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != c.want {
				t.Fatalf("POST /quitquitquit = %d %s, want %d", rec.Code, rec.Body, c.want)
			}
			// Read-only endpoints stay open to everyone.
			rec = httptest.NewRecorder()
			req = httptest.NewRequest("GET", "/stats", nil)
			req.RemoteAddr = "10.9.9.9:1"
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				t.Errorf("GET /stats = %d", rec.Code)
			}
		})
	}
}

func TestRedactPrivateKeys(t *testing.T) {
	in := []byte(`{"configs":[{"transport_socket":{"typed_config":{"common_tls_context":{"tls_certificates":[` +
		`{"certificate_chain":{"inline_bytes":"Y2VydA=="},"private_key":{"inline_bytes":"c2VjcmV0"}}]}}}}]}`)
	out := string(redactPrivateKeys(in))
	if strings.Contains(out, "c2VjcmV0") || !strings.Contains(out, "[redacted]") || !strings.Contains(out, "Y2VydA==") {
		t.Errorf("redacted dump: %s", out)
	}
}
