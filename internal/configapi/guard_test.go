package configapi

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/skein-mesh/skein/internal/apiwire"
	"github.com/skein-mesh/skein/internal/config"
)

const nsDoc = `{"objects":[{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"rogue"}}]}`

// TestGuardRefusesWrites: every refused write leaves the store untouched.
func TestGuardRefusesWrites(t *testing.T) {
	srv, store := newServer(t, time.Second)
	cases := []struct {
		name    string
		token   string
		path    string
		headers map[string]string
		want    int
	}{
		{"no credential", "", "/api/v1/apply", nil, http.StatusUnauthorized},
		{"wrong credential", "guess", "/api/v1/apply", nil, http.StatusUnauthorized},
		{"workload token is not admin", testWorkload, "/api/v1/apply", nil, http.StatusForbidden},
		{"delete without credential", "", "/api/v1/delete", nil, http.StatusUnauthorized},
		{"text/plain", testAdmin, "/api/v1/apply", map[string]string{"Content-Type": "text/plain"}, http.StatusUnsupportedMediaType},
		{"form post", testAdmin, "/api/v1/apply", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, http.StatusUnsupportedMediaType},
		{"foreign Origin", testAdmin, "/api/v1/apply", map[string]string{"Origin": "https://evil.example"}, http.StatusForbidden},
		{"rebinding Host", testAdmin, "/api/v1/apply", map[string]string{"Host": "evil.example"}, http.StatusForbidden},
		{"rebinding Host with port", testAdmin, "/api/v1/apply", map[string]string{"Host": "evil.example:15014"}, http.StatusForbidden},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := nsDoc
			if c.path == "/api/v1/delete" {
				body = `{"keys":[{"kind":"Namespace","name":"rogue"}]}`
			}
			code, out := callAs(t, srv, c.token, "POST", c.path, body, c.headers)
			if code != c.want {
				t.Fatalf("status %d, want %d: %v", code, c.want, out)
			}
			if out["error"] == "" || out["error"] == nil {
				t.Errorf("no error message: %v", out)
			}
			if store.Revision() != 0 {
				t.Fatalf("a refused write changed the store (revision %d)", store.Revision())
			}
		})
	}
	// The owner's request, same body, from an allowed Host and Origin.
	code, out := callAs(t, srv, testAdmin, "POST", "/api/v1/apply", nsDoc,
		map[string]string{"Host": "localhost:15014", "Origin": "http://localhost:15014", "Content-Type": "application/json; charset=utf-8"})
	if code != http.StatusOK || store.Revision() != 1 {
		t.Fatalf("admin apply: %d %v (revision %d)", code, out, store.Revision())
	}
}

func TestHostAllowed(t *testing.T) {
	g := &Guard{Hosts: []string{"cp.example.com"}}
	for host, want := range map[string]bool{
		"127.0.0.1:15014": true, "[::1]:15014": true, "localhost:15014": true, "10.0.0.7": true,
		"istiod.istio-system.svc:15014": true, "istiod.istio-system:15014": true, "istiod": true,
		"istiod.istio-system.svc.cluster.local:15014": true, "cp.example.com:15014": true,
		"evil.example": false, "evil.example:15014": false, "127.0.0.1.nip.io": false, "istiod.evil.example": false,
	} {
		if got := g.hostAllowed(host); got != want {
			t.Errorf("hostAllowed(%q) = %v, want %v", host, got, want)
		}
	}
}

// TestSecretsRedacted: Secrets are listed only for admins, and then only as
// their keys and sizes; other kinds stay readable without a credential.
func TestSecretsRedacted(t *testing.T) {
	srv, _ := newServer(t, time.Second)
	key := base64.StdEncoding.EncodeToString([]byte("-----BEGIN PRIVATE KEY-----\nsecret-material\n"))
	secret := `{"objects":[{"apiVersion":"v1","kind":"Secret","metadata":{"name":"gw-cred","namespace":"istio-system"},` +
		`"type":"kubernetes.io/tls","data":{"tls.key":"` + key + `","tls.crt":"Y2VydA=="}}]}`
	if code, out := call(t, srv, "POST", "/api/v1/apply", secret); code != http.StatusOK {
		t.Fatalf("apply: %d %v", code, out)
	}
	for _, c := range []struct {
		token string
		want  int
	}{{"", http.StatusUnauthorized}, {testWorkload, http.StatusForbidden}, {"wrong", http.StatusUnauthorized}} {
		code, out := callAs(t, srv, c.token, "GET", "/api/v1/objects/Secret?namespace=istio-system", "", nil)
		if code != c.want || strings.Contains(toJSON(out), key) || strings.Contains(toJSON(out), "secret-material") {
			t.Errorf("token %q: %d %v, want %d and no key", c.token, code, out, c.want)
		}
	}
	code, out := call(t, srv, "GET", "/api/v1/objects/Secret?namespace=istio-system&name=gw-cred", "")
	if code != http.StatusOK {
		t.Fatalf("admin get: %d %v", code, out)
	}
	s := toJSON(out)
	if strings.Contains(s, key) {
		t.Fatalf("admin get returned the key: %s", s)
	}
	doc := out["objects"].([]any)[0].(map[string]any)
	ann := doc["metadata"].(map[string]any)["annotations"].(map[string]any)[apiwire.RedactedDataAnnotation]
	if ann != "tls.crt: 4 bytes, tls.key: 44 bytes" {
		t.Errorf("redacted-data annotation = %q", ann)
	}
	// The redacted document still decodes (skein get -o yaml prints it).
	if _, err := config.Decode(doc); err != nil {
		t.Errorf("redacted Secret does not decode: %v", err)
	}
	// Other kinds: readable anonymously (the dashboard's pods and services).
	if code, out := callAs(t, srv, "", "GET", "/api/v1/objects/Namespace", "", nil); code != http.StatusOK {
		t.Errorf("anonymous list of namespaces: %d %v", code, out)
	}
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
