package jwtauthn

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	jose "github.com/go-jose/go-jose/v4"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/skein-mesh/skein/internal/proxy/filters"
)

type key struct {
	priv *ecdsa.PrivateKey
	kid  string
}

func newKey(t *testing.T, kid string) key {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key{k, kid}
}

func jwks(t *testing.T, keys ...key) string {
	t.Helper()
	set := jose.JSONWebKeySet{}
	for _, k := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Algorithm: "ES256", Use: "sig"})
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func sign(t *testing.T, k key, claims map[string]any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: k.priv, KeyID: k.kid}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	obj, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

var now = time.Unix(1_700_000_000, 0)

func istioConfig(p *jwtv3.JwtProvider) *jwtv3.JwtAuthentication {
	return &jwtv3.JwtAuthentication{
		Providers: map[string]*jwtv3.JwtProvider{"p": p},
		Rules: []*jwtv3.RequirementRule{{
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			RequirementType: &jwtv3.RequirementRule_Requires{Requires: &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_RequiresAny{
				RequiresAny: &jwtv3.JwtRequirementOrList{Requirements: []*jwtv3.JwtRequirement{
					{RequiresType: &jwtv3.JwtRequirement_ProviderName{ProviderName: "p"}},
					{RequiresType: &jwtv3.JwtRequirement_AllowMissing{AllowMissing: &emptypb.Empty{}}},
				}}}}},
		}},
	}
}

func TestVerification(t *testing.T) {
	k1, other := newKey(t, "k1"), newKey(t, "k1")
	good := map[string]any{"iss": "iss", "sub": "alice", "aud": "bookinfo", "exp": float64(now.Add(time.Hour).Unix()), "groups": []any{"a", "b"}, "org": map[string]any{"team": "core"}}
	with := func(k string, v any) map[string]any {
		c := map[string]any{}
		for kk, vv := range good {
			c[kk] = vv
		}
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	provider := func() *jwtv3.JwtProvider {
		return &jwtv3.JwtProvider{Issuer: "iss", Audiences: []string{"bookinfo"}, PayloadInMetadata: "payload",
			JwksSourceSpecifier: &jwtv3.JwtProvider_LocalJwks{LocalJwks: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: jwks(t, k1)}}}}
	}
	cases := []struct {
		name     string
		provider func(*jwtv3.JwtProvider)
		req      func(*http.Request)
		status   int
		body     string
		check    func(*testing.T, *filters.Request)
	}{
		{name: "missing token passes", req: func(*http.Request) {}},
		{name: "valid bearer token", req: bearer(sign(t, k1, good)), check: func(t *testing.T, r *filters.Request) {
			p := r.Metadata[Name]["payload"].(map[string]any)
			if p["sub"] != "alice" {
				t.Errorf("payload metadata = %v", p)
			}
			if r.HTTP.Header.Get("Authorization") != "" {
				t.Error("token forwarded though forward is false")
			}
		}},
		{name: "expired", req: bearer(sign(t, k1, with("exp", float64(now.Add(-2*time.Minute).Unix())))), status: 401, body: "Jwt is expired"},
		{name: "within clock skew", req: bearer(sign(t, k1, with("exp", float64(now.Add(-30*time.Second).Unix()))))},
		{name: "not yet valid", req: bearer(sign(t, k1, with("nbf", float64(now.Add(2*time.Minute).Unix())))), status: 401, body: "Jwt not yet valid"},
		{name: "wrong issuer", req: bearer(sign(t, k1, with("iss", "other"))), status: 401, body: "Jwt issuer is not configured"},
		{name: "wrong audience", req: bearer(sign(t, k1, with("aud", []any{"x", "y"}))), status: 401, body: "Audiences in Jwt are not allowed"},
		{name: "audience in list", req: bearer(sign(t, k1, with("aud", []any{"x", "bookinfo"})))},
		{name: "bad signature", req: bearer(sign(t, other, good)), status: 401, body: "Jwt verification fails"},
		{name: "unknown kid", req: bearer(sign(t, key{other.priv, "k9"}, good)), status: 401, body: "Jwks doesn't have key to match kid or alg from Jwt"},
		{name: "garbage", req: bearer("abc"), status: 401, body: "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"},
		{name: "default query param", req: func(r *http.Request) { r.URL.RawQuery = "access_token=" + sign(t, k1, good) }},
		{name: "bad token in query param", req: func(r *http.Request) { r.URL.RawQuery = "access_token=" + sign(t, other, good) }, status: 401, body: "Jwt verification fails"},
		{name: "custom param", provider: func(p *jwtv3.JwtProvider) { p.FromParams = []string{"tok"} },
			req: func(r *http.Request) { r.URL.RawQuery = "tok=" + sign(t, other, good) }, status: 401, body: "Jwt verification fails"},
		{name: "custom header prefix", provider: func(p *jwtv3.JwtProvider) {
			p.FromHeaders = []*jwtv3.JwtHeader{{Name: "x-jwt", ValuePrefix: "Token "}}
		}, req: func(r *http.Request) { r.Header.Set("X-Jwt", "Token "+sign(t, other, good)) }, status: 401, body: "Jwt verification fails"},
		{name: "custom header ignores default location", provider: func(p *jwtv3.JwtProvider) {
			p.FromHeaders = []*jwtv3.JwtHeader{{Name: "x-jwt", ValuePrefix: "Token "}}
		}, req: bearer(sign(t, other, good))},
		{name: "forward original token", provider: func(p *jwtv3.JwtProvider) { p.Forward = true }, req: bearer(sign(t, k1, good)),
			check: func(t *testing.T, r *filters.Request) {
				if r.HTTP.Header.Get("Authorization") == "" {
					t.Error("token stripped though forward is true")
				}
			}},
		{name: "payload and claim headers", provider: func(p *jwtv3.JwtProvider) {
			p.ForwardPayloadHeader = "x-jwt-payload"
			p.ClaimToHeaders = []*jwtv3.JwtClaimToHeader{{HeaderName: "x-sub", ClaimName: "sub"}, {HeaderName: "x-team", ClaimName: "org.team"}, {HeaderName: "x-groups", ClaimName: "groups"}}
		}, req: bearer(sign(t, k1, good)), check: func(t *testing.T, r *filters.Request) {
			h := r.HTTP.Header
			if h.Get("x-sub") != "alice" || h.Get("x-team") != "core" || h.Get("x-groups") != "a,b" {
				t.Errorf("claim headers = %v", h)
			}
			if !strings.HasPrefix(h.Get("x-jwt-payload"), "eyJ") {
				t.Errorf("x-jwt-payload = %q", h.Get("x-jwt-payload"))
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := provider()
			if tc.provider != nil {
				tc.provider(p)
			}
			f, err := New(istioConfig(p), Options{Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			hr := httptest.NewRequest("GET", "http://productpage:9080/productpage", nil)
			tc.req(hr)
			req := &filters.Request{HTTP: hr}
			reply := f.OnRequest(req)
			status := 0
			if reply != nil {
				status = reply.Status
			}
			if status != tc.status || tc.body != "" && reply.Body != tc.body {
				t.Fatalf("reply = %+v, want %d %q", reply, tc.status, tc.body)
			}
			if reply != nil {
				want := `Bearer realm="http://productpage:9080/productpage", error="invalid_token"`
				if got := reply.Headers.Get("WWW-Authenticate"); got != want {
					t.Errorf("www-authenticate = %q, want %q", got, want)
				}
			}
			if tc.check != nil {
				tc.check(t, req)
			}
		})
	}
}

func bearer(tok string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
}

// TestRemoteJWKSRotation serves the key set over HTTP: the set is fetched
// once and cached, and a token with an unknown kid (rotation) triggers a
// refetch that finds the new key.
func TestRemoteJWKSRotation(t *testing.T) {
	k1, k2 := newKey(t, "k1"), newKey(t, "k2")
	var current atomic.Value
	current.Store(jwks(t, k1))
	var fetches atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		w.Write([]byte(current.Load().(string)))
	}))
	defer srv.Close()
	clock := now
	p := &jwtv3.JwtProvider{Issuer: "iss", JwksSourceSpecifier: &jwtv3.JwtProvider_RemoteJwks{RemoteJwks: &jwtv3.RemoteJwks{
		HttpUri: &corev3.HttpUri{Uri: srv.URL + "/jwks", HttpUpstreamType: &corev3.HttpUri_Cluster{Cluster: "c"}}}}}
	f, err := New(istioConfig(p), Options{Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	do := func(k key) *filters.LocalReply {
		hr := httptest.NewRequest("GET", "http://x/", nil)
		bearer(sign(t, k, map[string]any{"iss": "iss", "sub": "s"}))(hr)
		return f.OnRequest(&filters.Request{HTTP: hr})
	}
	for range 3 {
		if r := do(k1); r != nil {
			t.Fatalf("k1 rejected: %+v", r)
		}
	}
	if n := fetches.Load(); n != 1 {
		t.Fatalf("fetches = %d, want 1 (cached)", n)
	}
	current.Store(jwks(t, k2))
	clock = clock.Add(10 * time.Second) // past the refetch rate limit
	if r := do(k2); r != nil {
		t.Fatalf("rotated key k2 rejected: %+v", r)
	}
	if n := fetches.Load(); n != 2 {
		t.Fatalf("fetches = %d, want 2 (unknown kid refetch)", n)
	}
	// An unknown kid right after a refetch does not fetch again.
	if r := do(newKey(t, "k3")); r == nil || r.Body != errNoKey {
		t.Fatalf("unknown kid: %+v", r)
	}
	if n := fetches.Load(); n != 2 {
		t.Fatalf("fetches = %d, want 2 (rate-limited)", n)
	}
}

func TestConfigErrors(t *testing.T) {
	bad := []*jwtv3.JwtProvider{
		{Issuer: "i"}, // no key source
		{Issuer: "i", JwksSourceSpecifier: &jwtv3.JwtProvider_LocalJwks{LocalJwks: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "{"}}}},
		{Issuer: "i", RequireExpiration: true},
	}
	for i, p := range bad {
		if _, err := New(istioConfig(p), Options{}); err == nil {
			t.Errorf("[%d] accepted %v", i, p)
		}
	}
}
