package configapi

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skein-mesh/skein/internal/configstore"
)

// FuzzApplyBody drives the config decoder as the config API receives it:
// a JSON body → objects → config.Decode → validation (a dry run). Any body
// must be answered 200 or a 4xx with a JSON error, never a panic or 5xx.
// CI runs it for 60 s (make fuzz).
func FuzzApplyBody(f *testing.F) {
	files, _ := filepath.Glob("../config/testdata/tutorial/*.yaml")
	f.Add(nsDoc)
	f.Add(`{"objects":[{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"r","namespace":"b"},` +
		`"spec":{"hosts":["reviews"],"http":[{"match":[{"uri":{"prefix":"/x"}}],"route":[{"destination":{"host":"reviews","subset":"v1"},"weight":100}]}]}}]}`)
	f.Add(`{"objects":[{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s","namespace":"n"},"data":{"k":"AAA="}}]}`)
	f.Add(`{"objects":[{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},"spec":{"template":{"spec":{"containers":[{"name":"a","image":"b"}]}}}}]}`)
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil && len(b) < 4096 {
			f.Add(`{"objects":[` + strings.TrimSpace(string(b)) + `]}`) // mostly invalid JSON: exercises the framing
		}
	}
	store := configstore.OpenMemory()
	h := (&Guard{AdminToken: testAdmin}).Handler(newHandler(store, slog.New(slog.NewTextHandler(io.Discard, nil)), time.Second))
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest(http.MethodPost, "/api/v1/apply?dryRun=true", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+testAdmin)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK && (rec.Code < 400 || rec.Code >= 500) {
			t.Fatalf("body %q answered %d: %s", body, rec.Code, rec.Body)
		}
		if rec.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("answer is not JSON: %d %s", rec.Code, rec.Body)
		}
		if store.Revision() != 0 {
			t.Fatal("a dry run changed the store")
		}
	})
}
