package configapi

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/skein-mesh/skein/internal/apiwire"
	"github.com/skein-mesh/skein/internal/config"
	"github.com/skein-mesh/skein/internal/configstore"
)

func newServer(t *testing.T, watchTimeout time.Duration) (*httptest.Server, *configstore.Store) {
	t.Helper()
	store, err := configstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	guard := &Guard{AdminToken: testAdmin, Workload: func(tok string) bool { return tok == testWorkload }}
	srv := httptest.NewServer(guard.Handler(newHandler(store, slog.New(slog.NewTextHandler(io.Discard, nil)), watchTimeout)))
	t.Cleanup(srv.Close)
	return srv, store
}

// Credentials the test servers accept.
const (
	testAdmin    = "admin-secret"
	testWorkload = "workload-secret"
)

// call sends a request as the admin, as the CLI does.
func call(t *testing.T, srv *httptest.Server, method, path, body string) (int, map[string]any) {
	t.Helper()
	return callAs(t, srv, testAdmin, method, path, body, nil)
}

// callAs sends a request with token ("" for none) and extra headers.
func callAs(t *testing.T, srv *httptest.Server, token, method, path, body string, headers map[string]string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range headers {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if resp.Header.Get("Content-Type") == "application/json" {
		if err := json.Unmarshal(data, &out); err != nil {
			t.Fatalf("%s %s: invalid JSON %q", method, path, data)
		}
	}
	return resp.StatusCode, out
}

func tutorialDocs(t *testing.T) string {
	t.Helper()
	objs, _, err := config.LoadFiles([]string{"../config/testdata/tutorial"}, "")
	if err != nil {
		t.Fatal(err)
	}
	var docs []map[string]any
	for _, o := range objs {
		d, err := config.Encode(o)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, d)
	}
	b, _ := json.Marshal(apiwire.ApplyRequest{Objects: docs})
	return string(b)
}

func TestApplyListDelete(t *testing.T) {
	srv, store := newServer(t, time.Second)
	body := tutorialDocs(t)

	code, out := call(t, srv, "POST", "/api/v1/apply", body)
	if code != 200 {
		t.Fatalf("apply: %d %v", code, out)
	}
	results := out["results"].([]any)
	if len(results) != 9 || results[0].(map[string]any)["action"] != "created" ||
		results[0].(map[string]any)["resource"] != "gateway.networking.istio.io" || results[0].(map[string]any)["name"] != "bookinfo-gateway" {
		t.Errorf("results = %v", results)
	}
	code, out = call(t, srv, "POST", "/api/v1/apply", body)
	if code != 200 || out["results"].([]any)[3].(map[string]any)["action"] != "unchanged" || store.Revision() != 1 {
		t.Errorf("re-apply: %d %v (revision %d)", code, out, store.Revision())
	}

	code, out = call(t, srv, "GET", "/api/v1/objects/VirtualService", "")
	if code != 200 || out["revision"].(float64) != 1 || len(out["objects"].([]any)) != 3 {
		t.Fatalf("list: %d %v", code, out)
	}
	first := out["objects"].([]any)[0].(map[string]any)
	if first["kind"] != "VirtualService" || first["metadata"].(map[string]any)["resourceVersion"] != "1" {
		t.Errorf("object = %v", first)
	}
	for _, tt := range []struct {
		path string
		n    int
	}{
		{"/api/v1/objects/vs?namespace=default", 3},
		{"/api/v1/objects/virtualservices.networking.istio.io?namespace=other", 0},
		{"/api/v1/objects/VirtualService?namespace=default&name=reviews", 1},
		{"/api/v1/objects/Namespace", 0},
	} {
		code, out := call(t, srv, "GET", tt.path, "")
		if code != 200 || len(out["objects"].([]any)) != tt.n {
			t.Errorf("GET %s: %d %v, want %d objects", tt.path, code, out, tt.n)
		}
	}

	code, out = call(t, srv, "POST", "/api/v1/delete", `{"keys":[{"kind":"VirtualService","namespace":"default","name":"reviews"}]}`)
	if code != 200 || out["results"].([]any)[0].(map[string]any)["action"] != "deleted" || store.Revision() != 2 {
		t.Errorf("delete: %d %v", code, out)
	}
}

func TestErrors(t *testing.T) {
	srv, store := newServer(t, time.Second)
	call(t, srv, "POST", "/api/v1/apply", tutorialDocs(t))

	badField := `{"objects":[
	  {"apiVersion":"networking.istio.io/v1","kind":"DestinationRule","metadata":{"name":"ok","namespace":"default"},"spec":{"host":"ok"}},
	  {"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"x","namespace":"default"},"spec":{"hosts":["x"],"http":[{"route":[{"destination":{"hots":"x"}}]}]}}]}`
	invalid := `{"objects":[{"apiVersion":"networking.istio.io/v1","kind":"DestinationRule","metadata":{"name":"x","namespace":"default"},"spec":{}}]}`
	tests := []struct {
		name, method, path, body string
		code                     int
		reason, message          string
	}{
		{"unknown field", "POST", "/api/v1/apply", badField, 400, "Invalid",
			`request (document 2): VirtualService/x spec.http[0].route[0].destination.hots: unknown field "hots" (did you mean "host"?)`},
		{"semantic error", "POST", "/api/v1/apply", invalid, 400, "Invalid", "DestinationRule/x spec.host: required field is missing"},
		{"bad JSON", "POST", "/api/v1/apply", `{"objects": [`, 400, "BadRequest", "invalid request body"},
		{"unknown request field", "POST", "/api/v1/apply", `{"object": []}`, 400, "BadRequest", `unknown field "object"`},
		{"delete missing", "POST", "/api/v1/delete", `{"keys":[{"kind":"VirtualService","namespace":"default","name":"nope"}]}`, 404, "NotFound",
			`virtualservices.networking.istio.io "nope" not found`},
		{"delete unknown kind", "POST", "/api/v1/delete", `{"keys":[{"kind":"Frob","name":"x"}]}`, 400, "BadRequest", `unknown kind "Frob"`},
		{"get missing", "GET", "/api/v1/objects/VirtualService?namespace=default&name=nope", "", 404, "NotFound",
			`virtualservices.networking.istio.io "nope" not found`},
		{"unknown kind", "GET", "/api/v1/objects/Frob", "", 404, "NotFound", `the server doesn't have a resource type "Frob"`},
		{"bad since", "GET", "/api/v1/watch?since=abc", "", 400, "BadRequest", `invalid since "abc"`},
		{"unknown endpoint", "GET", "/api/v1/nothing", "", 404, "NotFound", "no such endpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := call(t, srv, tt.method, tt.path, tt.body)
			if code != tt.code || out["reason"] != tt.reason || !strings.Contains(out["error"].(string), tt.message) {
				t.Errorf("got %d %v\nwant %d %s %q", code, out, tt.code, tt.reason, tt.message)
			}
		})
	}
	if store.Revision() != 1 || len(store.Snapshot().List("DestinationRule")) != 2 {
		t.Error("a failed request changed the store")
	}
	if code, _ := call(t, srv, "GET", "/api/v1/apply", ""); code != http.StatusMethodNotAllowed {
		t.Errorf("GET apply: %d", code)
	}
}

func TestDryRun(t *testing.T) {
	srv, store := newServer(t, time.Second)
	code, out := call(t, srv, "POST", "/api/v1/apply?dryRun=true", tutorialDocs(t))
	if code != 200 || len(out["results"].([]any)) != 9 || store.Revision() != 0 {
		t.Errorf("dry run: %d %v, revision %d", code, out, store.Revision())
	}
}

func TestWatch(t *testing.T) {
	srv, _ := newServer(t, 300*time.Millisecond)

	// Nothing newer than 0 yet: the poll ends at the timeout.
	start := time.Now()
	code, out := call(t, srv, "GET", "/api/v1/watch?since=0", "")
	if code != 200 || out["revision"].(float64) != 0 || time.Since(start) < 250*time.Millisecond {
		t.Errorf("timeout poll: %d %v after %v", code, out, time.Since(start))
	}

	// A change while polling answers at once with the new revision.
	done := make(chan map[string]any)
	go func() {
		resp, err := http.Get(srv.URL + "/api/v1/watch?since=0")
		if err != nil {
			done <- nil
			return
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		done <- m
	}()
	time.Sleep(50 * time.Millisecond)
	body, _ := json.Marshal(apiwire.ApplyRequest{Objects: []map[string]any{{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "bookinfo"}}}})
	if code, out := call(t, srv, "POST", "/api/v1/apply", string(body)); code != 200 {
		t.Fatalf("apply: %d %v", code, out)
	}
	select {
	case m := <-done:
		if m == nil || m["revision"].(float64) != 1 {
			t.Errorf("watch answered %v", m)
		}
	case <-time.After(250 * time.Millisecond):
		t.Fatal("watch did not answer promptly after a change")
	}

	// Already behind: immediate answer.
	start = time.Now()
	if _, out := call(t, srv, "GET", "/api/v1/watch?since=0", ""); out["revision"].(float64) != 1 || time.Since(start) > 200*time.Millisecond {
		t.Errorf("behind poll: %v after %v", out, time.Since(start))
	}

}
