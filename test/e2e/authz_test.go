package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// TestAuthorization applies the security tutorial's policies to a running
// mesh: AuthorizationPolicy ALLOW/DENY enforced by productpage's sidecar,
// and RequestAuthentication + a request-principal requirement.
func TestAuthorization(t *testing.T) {
	// Its own ingress address, so it can run beside the other e2e tests.
	m := startMesh(t, "samples/bookinfo")
	expect := func(what, path string, headers map[string]string, status int, body string) {
		t.Helper()
		eventually(t, 20*time.Second, what, func() error {
			code, b, err := get(m.ingress+path, headers)
			if err != nil {
				return err
			}
			if code != status || !strings.Contains(b, body) {
				return fmt.Errorf("GET %s: %d %.120q, want %d %q", path, code, b, status, body)
			}
			return nil
		})
	}

	// The tutorial's policy verbatim: only productpage's own identity may
	// GET, so requests from the ingress gateway are denied.
	m.apply(t, `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: productpage-viewer
  namespace: bookinfo
spec:
  selector:
    matchLabels:
      app: productpage
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/bookinfo/sa/bookinfo-productpage"]
    to:
    - operation:
        methods: ["GET"]
`)
	start := time.Now()
	expect("productpage-viewer denies the ingress", "/productpage", nil, http.StatusForbidden, "RBAC: access denied")
	t.Logf("ALLOW policy enforced %v after apply", time.Since(start).Round(time.Millisecond))

	// Allowing GET from anyone opens the page again; a DENY policy closes
	// one API path.
	m.apply(t, `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: productpage-viewer
  namespace: bookinfo
spec:
  selector:
    matchLabels:
      app: productpage
  action: ALLOW
  rules:
  - to:
    - operation:
        methods: ["GET"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-reviews-api
  namespace: bookinfo
spec:
  selector:
    matchLabels:
      app: productpage
  action: DENY
  rules:
  - to:
    - operation:
        paths: ["/api/v1/products/0/reviews"]
`)
	expect("GET allowed", "/productpage", nil, http.StatusOK, "Book Details")
	expect("DENY on the reviews API", "/api/v1/products/0/reviews", nil, http.StatusForbidden, "RBAC: access denied")
	expect("other API paths allowed", "/api/v1/products/0", nil, http.StatusOK, "")

	// JWT: RequestAuthentication with an inline key set, and a policy
	// requiring a request principal.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "e2e", Algorithm: "ES256", Use: "sig"}}})
	m.skein(t, "delete", "AuthorizationPolicy/deny-reviews-api", "-n", "bookinfo")
	m.apply(t, fmt.Sprintf(`
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: jwt-example
  namespace: bookinfo
spec:
  selector:
    matchLabels:
      app: productpage
  jwtRules:
  - issuer: testing@secure.istio.io
    jwks: '%s'
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: productpage-viewer
  namespace: bookinfo
spec:
  selector:
    matchLabels:
      app: productpage
  action: ALLOW
  rules:
  - from:
    - source:
        requestPrincipals: ["testing@secure.istio.io/testing@secure.istio.io"]
`, set))
	sign := func(k *ecdsa.PrivateKey, claims map[string]any) string {
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: k, KeyID: "e2e"}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		payload, _ := json.Marshal(claims)
		obj, err := s.Sign(payload)
		if err != nil {
			t.Fatal(err)
		}
		tok, _ := obj.CompactSerialize()
		return tok
	}
	claims := map[string]any{"iss": "testing@secure.istio.io", "sub": "testing@secure.istio.io", "exp": time.Now().Add(time.Hour).Unix()}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	expect("no token: no request principal", "/productpage", nil, http.StatusForbidden, "RBAC: access denied")
	expect("forged token", "/productpage", map[string]string{"Authorization": "Bearer " + sign(other, claims)}, http.StatusUnauthorized, "Jwt verification fails")
	expect("valid token", "/productpage", map[string]string{"Authorization": "Bearer " + sign(key, claims)}, http.StatusOK, "Book Details")
	claims["exp"] = time.Now().Add(-time.Hour).Unix()
	expect("expired token", "/productpage", map[string]string{"Authorization": "Bearer " + sign(key, claims)}, http.StatusUnauthorized, "Jwt is expired")
}
