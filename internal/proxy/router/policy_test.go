package router

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/skein-mesh/skein/internal/proxy/internal/hashing"
)

func TestRequestHash(t *testing.T) {
	header := &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: "x-user"}}}
	cookie := &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_Cookie_{Cookie: &routev3.RouteAction_HashPolicy_Cookie{Name: "sticky", Path: "/", Ttl: durationpb.New(time.Minute)}}}
	source := &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_ConnectionProperties_{ConnectionProperties: &routev3.RouteAction_HashPolicy_ConnectionProperties{SourceIp: true}}}
	query := &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_QueryParameter_{QueryParameter: &routev3.RouteAction_HashPolicy_QueryParameter{Name: "u"}}}
	req := func(target string, h ...string) *http.Request {
		r := httptest.NewRequest("GET", target, nil)
		r.RemoteAddr = "127.0.0.9:5555"
		for i := 0; i+1 < len(h); i += 2 {
			r.Header.Set(h[i], h[i+1])
		}
		return r
	}
	cases := []struct {
		name       string
		policies   []*routev3.RouteAction_HashPolicy
		r          *http.Request
		want       uint64
		ok         bool
		cookiePart string
	}{
		{"header", []*routev3.RouteAction_HashPolicy{header}, req("/", "X-User", "jason"), hashing.String("jason"), true, ""},
		{"header absent", []*routev3.RouteAction_HashPolicy{header}, req("/"), 0, false, ""},
		{"cookie present", []*routev3.RouteAction_HashPolicy{cookie}, req("/", "Cookie", "sticky=abc"), hashing.String("abc"), true, ""},
		{"cookie generated", []*routev3.RouteAction_HashPolicy{cookie}, req("/"), 0, true, "; Max-Age=60; Path=/; HttpOnly"},
		{"source ip", []*routev3.RouteAction_HashPolicy{source}, req("/"), hashing.String("127.0.0.9"), true, ""},
		{"query", []*routev3.RouteAction_HashPolicy{query}, req("/?u=7"), hashing.String("7"), true, ""},
		{"combined", []*routev3.RouteAction_HashPolicy{header, query}, req("/?u=7", "X-User", "jason"), (hashing.String("jason")<<1 | hashing.String("jason")>>63) ^ hashing.String("7"), true, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hp, err := compileHashPolicy(tc.policies)
			if err != nil {
				t.Fatal(err)
			}
			h, ok, setCookie := hp.Hash(tc.r)
			if ok != tc.ok || (tc.cookiePart == "" && h != tc.want) {
				t.Errorf("RequestHash = %x, %v; want %x, %v", h, ok, tc.want, tc.ok)
			}
			if tc.cookiePart != "" {
				value := strings.TrimPrefix(strings.SplitN(setCookie, `"`, 3)[1], "")
				if !strings.HasPrefix(setCookie, `sticky="`) || !strings.HasSuffix(setCookie, tc.cookiePart) || h != hashing.String(value) {
					t.Errorf("generated cookie %q, hash %x", setCookie, h)
				}
			} else if setCookie != "" {
				t.Errorf("unexpected Set-Cookie %q", setCookie)
			}
		})
	}
	bad := []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_FilterState_{FilterState: &routev3.RouteAction_HashPolicy_FilterState{Key: "k"}}}}
	if _, err := compileHashPolicy(bad); err == nil || !strings.Contains(err.Error(), "filter_state is not supported") {
		t.Errorf("filter_state hash policy: %v", err)
	}
}

func TestRetryPolicy(t *testing.T) {
	rp, err := compileRetryPolicy(&routev3.RetryPolicy{RetryOn: "connect-failure, retriable-status-codes,unavailable",
		NumRetries: wrapperspb.UInt32(3), RetriableStatusCodes: []uint32{418},
		RetryHostPredicate: []*routev3.RetryPolicy_RetryHostPredicate{{Name: previousHosts}}})
	if err != nil {
		t.Fatal(err)
	}
	resp := func(code int, grpc string) *http.Response {
		r := &http.Response{StatusCode: code, Header: http.Header{}}
		if grpc != "" {
			r.Header.Set("Grpc-Status", grpc)
		}
		return r
	}
	if rp.Retries() != 3 || rp.HostAttempts != 1 || !rp.On("connect-failure") || rp.On("reset") ||
		!rp.RetriableResponse(resp(418, "")) || rp.RetriableResponse(resp(503, "")) ||
		!rp.RetriableResponse(resp(200, "14")) || rp.RetriableResponse(resp(200, "13")) {
		t.Errorf("compiled policy %+v behaves wrongly", rp)
	}
	if rp.BackOffBase != defaultRetryBase || rp.BackOffMax != 10*defaultRetryBase {
		t.Errorf("back-off %v..%v, want Envoy's defaults", rp.BackOffBase, rp.BackOffMax)
	}
	var none *RetryPolicy
	if none.Retries() != 0 || none.On("reset") || none.RetriableResponse(resp(503, "")) {
		t.Error("nil policy retries")
	}
	if rp, err := compileRetryPolicy(&routev3.RetryPolicy{NumRetries: wrapperspb.UInt32(2)}); rp != nil || err != nil {
		t.Errorf("policy without retry_on: %v, %v; want none", rp, err)
	}
	for _, bad := range []struct {
		p    *routev3.RetryPolicy
		want string
	}{
		{&routev3.RetryPolicy{RetryOn: "5xx,sometimes"}, `retry_on condition "sometimes"`},
		{&routev3.RetryPolicy{RetryOn: "5xx", RetryHostPredicate: []*routev3.RetryPolicy_RetryHostPredicate{{Name: "x"}}}, `retry_host_predicate "x"`},
		{&routev3.RetryPolicy{RetryOn: "5xx", RetryPriority: &routev3.RetryPolicy_RetryPriority{Name: "p"}}, "retry_priority is not supported"},
	} {
		if _, err := compileRetryPolicy(bad.p); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%v: error %v, want %q", bad.p, err, bad.want)
		}
	}
}
