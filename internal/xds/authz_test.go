package xds_test

import (
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	rbacfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"github.com/skein-mesh/skein/internal/proxy/filters"
	"github.com/skein-mesh/skein/internal/proxy/filters/rbac"
	"github.com/skein-mesh/skein/internal/xds"
)

// inboundChain translates policies for productpage and compiles the RBAC
// filters of its plaintext inbound HCM with the proxy's implementation.
func inboundChain(t *testing.T, policies string) filters.Chain {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p.yaml"), []byte(policies), 0o644); err != nil {
		t.Fatal(err)
	}
	mesh, _ := filepath.Abs(filepath.Join("testdata", "bookinfo-mesh.yaml"))
	pc := pushContext(t, relTo(t, mesh), relTo(t, filepath.Join(dir, "p.yaml")))
	res := xds.Generate(pc, productpage)
	for _, l := range res.Listeners {
		if l.GetName() != xds.VirtualInboundListener {
			continue
		}
		for _, fc := range l.GetFilterChains() {
			if fc.GetFilterChainMatch().GetDestinationPort().GetValue() != 9080 || fc.GetTransportSocket() != nil {
				continue
			}
			var hcm hcmv3.HttpConnectionManager
			if err := fc.GetFilters()[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
				t.Fatal(err)
			}
			var chain filters.Chain
			for _, hf := range hcm.GetHttpFilters() {
				if hf.GetName() != xds.RBACFilter {
					continue
				}
				var cfg rbacfilterv3.RBAC
				if err := hf.GetTypedConfig().UnmarshalTo(&cfg); err != nil {
					t.Fatal(err)
				}
				f, err := rbac.NewHTTPFilter(&cfg, rbac.Options{})
				if err != nil {
					t.Fatalf("proxy rejects translated RBAC: %v", err)
				}
				chain = append(chain, f)
			}
			if len(res.Warnings) > 0 {
				t.Logf("warnings: %q", res.Warnings)
			}
			return chain
		}
	}
	t.Fatal("no plaintext inbound chain for 9080")
	return nil
}

// pushContext resolves files relative to testdata.
func relTo(t *testing.T, abs string) string {
	t.Helper()
	td, _ := filepath.Abs("testdata")
	rel, err := filepath.Rel(td, abs)
	if err != nil {
		t.Fatal(err)
	}
	return rel
}

type authzReq struct {
	method, path, host string
	headers            map[string]string
	principal          string
	src                string
	port               uint16
	claims             map[string]any
}

func (r authzReq) build() *filters.Request {
	if r.method == "" {
		r.method = "GET"
	}
	if r.path == "" {
		r.path = "/productpage"
	}
	hr := httptest.NewRequest(r.method, "http://x"+r.path, nil)
	hr.Host = "productpage:9080"
	if r.host != "" {
		hr.Host = r.host
	}
	for k, v := range r.headers {
		hr.Header.Set(k, v)
	}
	if r.src == "" {
		r.src = "127.1.0.100"
	}
	if r.port == 0 {
		r.port = 9080
	}
	req := &filters.Request{HTTP: hr, Conn: &filters.Conn{
		Source:        netip.AddrPortFrom(netip.MustParseAddr(r.src), 40000),
		Destination:   netip.AddrPortFrom(netip.MustParseAddr("127.1.0.6"), r.port),
		PeerPrincipal: r.principal,
		TLS:           r.principal != "",
	}}
	if r.claims != nil {
		req.SetMetadata(xds.JWTAuthnFilter, xds.JWTPayloadKey, r.claims)
	}
	return req
}

const ingressSA = "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
const productpageSA = "cluster.local/ns/bookinfo/sa/bookinfo-productpage"

func TestAuthorizationPolicyEnforcement(t *testing.T) {
	const viewer = `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: productpage-viewer, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: productpage}}
  action: ALLOW
  rules:
  - from: [{source: {principals: ["cluster.local/ns/bookinfo/sa/bookinfo-productpage"]}}]
    to: [{operation: {methods: ["GET"]}}]
`
	cases := []struct {
		name     string
		policies string
		req      authzReq
		allowed  bool
	}{
		{"no policy allows", "", authzReq{}, true},
		{"viewer: no principal denied", viewer, authzReq{}, false},
		{"viewer: ingress principal denied", viewer, authzReq{principal: ingressSA}, false},
		{"viewer: productpage principal GET allowed", viewer, authzReq{principal: productpageSA}, true},
		{"viewer: productpage principal POST denied", viewer, authzReq{principal: productpageSA, method: "POST"}, false},
		{"allow-nothing denies", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing, namespace: bookinfo}
spec: {}
`, authzReq{principal: productpageSA}, false},
		{"deny-all", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-all, namespace: bookinfo}
spec: {action: DENY, rules: [{}]}
`, authzReq{}, false},
		{"allow-all", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-all, namespace: istio-system}
spec: {rules: [{}]}
`, authzReq{}, true},
		{"deny wins over allow", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-all, namespace: bookinfo}
spec: {rules: [{}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-reviews, namespace: bookinfo}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: ["/api/v1/products/0/reviews"]}}]}]
`, authzReq{path: "/api/v1/products/0/reviews"}, false},
		{"deny does not match other path", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-reviews, namespace: bookinfo}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: ["/api/v1/products/0/reviews"]}}]}]
`, authzReq{path: "/productpage"}, true},
		{"CUSTOM without its provider fails closed", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext-authz, namespace: bookinfo}
spec:
  action: CUSTOM
  provider: {name: missing}
  rules: [{to: [{operation: {paths: ["/admin"]}}]}]
`, authzReq{path: "/admin"}, false},
		{"CUSTOM without its provider: unmatched requests pass", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext-authz, namespace: bookinfo}
spec:
  action: CUSTOM
  provider: {name: missing}
  rules: [{to: [{operation: {paths: ["/admin"]}}]}]
`, authzReq{path: "/productpage"}, true},
		{"audit never denies", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit, namespace: bookinfo}
spec: {action: AUDIT, rules: [{}]}
`, authzReq{}, true},
		{"selector for another workload ignored", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews, namespace: bookinfo}
spec: {selector: {matchLabels: {app: reviews}}}
`, authzReq{}, true},
		{"other namespace ignored", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: other, namespace: default}
spec: {}
`, authzReq{}, true},
	}
	// Every field, as an ALLOW rule: match and its not* counterpart.
	field := func(rule string) string {
		return `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: f, namespace: bookinfo}
spec:
  rules:
  - ` + rule + "\n"
	}
	fieldCases := []struct {
		rule string
		yes  authzReq
		no   authzReq
	}{
		{`from: [{source: {principals: ["*/sa/bookinfo-productpage"]}}]`, authzReq{principal: productpageSA}, authzReq{principal: ingressSA}},
		{`from: [{source: {principals: ["cluster.local/ns/bookinfo/*"]}}]`, authzReq{principal: productpageSA}, authzReq{principal: ingressSA}},
		{`from: [{source: {principals: ["*"]}}]`, authzReq{principal: ingressSA}, authzReq{}},
		{`from: [{source: {notPrincipals: ["*"]}}]`, authzReq{}, authzReq{principal: ingressSA}},
		{`from: [{source: {namespaces: ["istio-system"]}}]`, authzReq{principal: ingressSA}, authzReq{principal: productpageSA}},
		{`from: [{source: {notNamespaces: ["istio-*"]}}]`, authzReq{principal: productpageSA}, authzReq{principal: ingressSA}},
		{`from: [{source: {serviceAccounts: ["bookinfo/bookinfo-productpage"]}}]`, authzReq{principal: productpageSA}, authzReq{principal: ingressSA}},
		{`from: [{source: {ipBlocks: ["127.1.0.0/24"]}}]`, authzReq{src: "127.1.0.100"}, authzReq{src: "127.2.0.1"}},
		{`from: [{source: {notIpBlocks: ["127.1.0.100"]}}]`, authzReq{src: "127.1.0.5"}, authzReq{src: "127.1.0.100"}},
		{`from: [{source: {remoteIpBlocks: ["10.0.0.0/8"]}}]`, authzReq{headers: map[string]string{"X-Forwarded-For": "1.1.1.1, 10.1.2.3"}}, authzReq{headers: map[string]string{"X-Forwarded-For": "10.1.2.3, 1.1.1.1"}}},
		{`from: [{source: {notRemoteIpBlocks: ["127.0.0.0/8"]}}]`, authzReq{headers: map[string]string{"X-Forwarded-For": "8.8.8.8"}}, authzReq{}},
		{`from: [{source: {requestPrincipals: ["iss.example/alice"]}}]`, authzReq{claims: map[string]any{"iss": "iss.example", "sub": "alice"}}, authzReq{claims: map[string]any{"iss": "iss.example", "sub": "bob"}}},
		{`from: [{source: {requestPrincipals: ["https://iss.example/*"]}}]`, authzReq{claims: map[string]any{"iss": "https://iss.example", "sub": "x"}}, authzReq{claims: map[string]any{"iss": "https://other", "sub": "x"}}},
		{`from: [{source: {requestPrincipals: ["*"]}}]`, authzReq{claims: map[string]any{"iss": "a", "sub": "b"}}, authzReq{}},
		{`from: [{source: {requestPrincipals: ["*/alice"]}}]`, authzReq{claims: map[string]any{"iss": "https://any.example", "sub": "alice"}}, authzReq{claims: map[string]any{"iss": "https://any.example", "sub": "bob"}}},
		{`from: [{source: {requestPrincipals: ["https://iss.example/*"]}}]`, authzReq{claims: map[string]any{"iss": "https://iss.example", "sub": "x"}}, authzReq{claims: map[string]any{"iss": "https://iss.example"}}},
		{`from: [{source: {notRequestPrincipals: ["*"]}}]`, authzReq{}, authzReq{claims: map[string]any{"iss": "a", "sub": "b"}}},
		{`to: [{operation: {hosts: ["Productpage:9080"]}}]`, authzReq{}, authzReq{host: "other"}},
		{`to: [{operation: {notHosts: ["*.evil.com"]}}]`, authzReq{}, authzReq{host: "a.evil.com"}},
		{`to: [{operation: {ports: ["9080"]}}]`, authzReq{}, authzReq{port: 9081}},
		{`to: [{operation: {notPorts: ["9080"]}}]`, authzReq{port: 9081}, authzReq{}},
		{`to: [{operation: {methods: ["GET", "HEAD"]}}]`, authzReq{method: "HEAD"}, authzReq{method: "POST"}},
		{`to: [{operation: {notMethods: ["POST"]}}]`, authzReq{}, authzReq{method: "POST"}},
		{`to: [{operation: {paths: ["/api/*"]}}]`, authzReq{path: "/api/v1/x?q=1"}, authzReq{path: "/productpage"}},
		{`to: [{operation: {paths: ["*.css"]}}]`, authzReq{path: "/static/a.css"}, authzReq{path: "/productpage"}},
		{`to: [{operation: {notPaths: ["/admin"]}}]`, authzReq{}, authzReq{path: "/admin"}},
		{`when: [{key: "request.headers[x-user]", values: ["jason"]}]`, authzReq{headers: map[string]string{"x-user": "jason"}}, authzReq{}},
		{`when: [{key: "request.headers[x-user]", notValues: ["jason"]}]`, authzReq{headers: map[string]string{"x-user": "bob"}}, authzReq{headers: map[string]string{"x-user": "jason"}}},
		{`when: [{key: source.ip, values: ["127.1.0.100"]}]`, authzReq{}, authzReq{src: "127.1.0.7"}},
		{`when: [{key: remote.ip, values: ["9.9.9.9"]}]`, authzReq{headers: map[string]string{"X-Forwarded-For": "9.9.9.9"}}, authzReq{}},
		{`when: [{key: source.namespace, values: ["bookinfo"]}]`, authzReq{principal: productpageSA}, authzReq{principal: ingressSA}},
		{`when: [{key: source.principal, notValues: ["` + ingressSA + `"]}]`, authzReq{principal: productpageSA}, authzReq{principal: ingressSA}},
		{`when: [{key: request.auth.principal, values: ["i/s"]}]`, authzReq{claims: map[string]any{"iss": "i", "sub": "s"}}, authzReq{claims: map[string]any{"iss": "i", "sub": "t"}}},
		{`when: [{key: request.auth.audiences, values: ["bookinfo"]}]`, authzReq{claims: map[string]any{"aud": []any{"x", "bookinfo"}}}, authzReq{claims: map[string]any{"aud": "x"}}},
		{`when: [{key: request.auth.presenter, values: ["app"]}]`, authzReq{claims: map[string]any{"azp": "app"}}, authzReq{claims: map[string]any{"azp": "web"}}},
		{`when: [{key: "request.auth.claims[groups]", values: ["admin"]}]`, authzReq{claims: map[string]any{"groups": []any{"dev", "admin"}}}, authzReq{claims: map[string]any{"groups": []any{"dev"}}}},
		{`when: [{key: "request.auth.claims[org][team]", values: ["core"]}]`, authzReq{claims: map[string]any{"org": map[string]any{"team": "core"}}}, authzReq{claims: map[string]any{"org": "core"}}},
		{`when: [{key: "request.auth.claims[org][team]", notValues: ["core"]}]`, authzReq{claims: map[string]any{}}, authzReq{claims: map[string]any{"org": map[string]any{"team": "core"}}}},
		{`when: [{key: destination.ip, values: ["127.1.0.0/16"]}]`, authzReq{}, authzReq{}},
		{`when: [{key: destination.port, values: ["9081"]}]`, authzReq{port: 9081}, authzReq{}},
		{`when: [{key: connection.sni, values: ["*"]}]`, authzReq{}, authzReq{}},
	}
	for _, fc := range fieldCases {
		cases = append(cases, struct {
			name     string
			policies string
			req      authzReq
			allowed  bool
		}{fc.rule + " matches", field(fc.rule), fc.yes, true})
		// destination.ip always matches here, connection.sni never (no TLS).
		if fc.rule != `when: [{key: destination.ip, values: ["127.1.0.0/16"]}]` {
			cases = append(cases, struct {
				name     string
				policies string
				req      authzReq
				allowed  bool
			}{fc.rule + " does not match", field(fc.rule), fc.no, false})
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			chain := inboundChain(t, tc.policies)
			if tc.name == `when: [{key: connection.sni, values: ["*"]}] matches` {
				return // no TLS without the mTLS chain: covered by "does not match"
			}
			reply := chain.OnRequest(tc.req.build())
			if got := reply == nil; got != tc.allowed {
				t.Fatalf("allowed = %v, want %v (reply %+v)", got, tc.allowed, reply)
			}
			if reply != nil && (reply.Status != 403 || reply.Body != rbac.DeniedBody) {
				t.Errorf("reply = %d %q, want 403 %q", reply.Status, reply.Body, rbac.DeniedBody)
			}
		})
	}
}
