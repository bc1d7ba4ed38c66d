package dashboard

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/skein-mesh/skein/internal/xdsserver"
)

// TestProxiesPage: /api/proxies reads the control plane's /debug/syncz
// and adds istioctl's state per type; a control plane that is down is a
// 502 naming it.
func TestProxiesPage(t *testing.T) {
	syncz := []xdsserver.ProxyStatus{{
		ID: "sidecar~127.1.0.2~productpage-v1-x.bookinfo~bookinfo.svc.cluster.local", Name: "productpage-v1-x.bookinfo",
		Types: map[string]*xdsserver.TypeStatus{
			"CDS": {SentNonce: "1", AckedNonce: "1", AckedVersion: "v1"},
			"LDS": {SentNonce: "2", AckedNonce: "1", AckedVersion: "v1", NackError: "bad listener"},
		},
	}}
	cp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/debug/syncz" {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(syncz)
	}))
	defer cp.Close()
	d := New(Options{Server: strings.TrimPrefix(cp.URL, "http://")})
	var rows []ProxyRow
	if code := getJSON(t, d.Handler(), "/api/proxies", &rows); code != http.StatusOK || len(rows) != 1 {
		t.Fatalf("GET /api/proxies: %d %+v", code, rows)
	}
	want := map[string]string{"CDS": "SYNCED", "LDS": "STALE", "EDS": "NOT SENT", "RDS": "NOT SENT"}
	for typ, st := range want {
		if got := rows[0].States[typ]; got != st {
			t.Errorf("%s state %q, want %q", typ, got, st)
		}
	}
	if rows[0].Name != "productpage-v1-x.bookinfo" {
		t.Errorf("name %q", rows[0].Name)
	}

	cp.Close()
	rec := httptest.NewRecorder()
	d.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/proxies", nil))
	if rec.Code != http.StatusBadGateway || !strings.Contains(rec.Body.String(), "cannot reach the Skein control plane") {
		t.Errorf("with the control plane down: %d %s", rec.Code, rec.Body)
	}
}
