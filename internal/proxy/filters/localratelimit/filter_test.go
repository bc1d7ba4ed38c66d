package localratelimit

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	udpav1 "github.com/cncf/xds/go/udpa/type/v1"
	lrlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"sigs.k8s.io/yaml"

	"github.com/skein-mesh/skein/internal/proxy/filters"
	"github.com/skein-mesh/skein/internal/proxy/router"
	"github.com/skein-mesh/skein/internal/proxy/stats"
)

// fakeClock is a settable clock.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

// cyclingRand returns 0, 1000, 2000, ... 999000, 0, ...: over any 1000
// consecutive calls it is exactly uniform, so fractions come out exact.
func cyclingRand() func() uint64 {
	var i uint64
	return func() uint64 {
		v := (i % 1000) * 1000
		i++
		return v
	}
}

// tutorialValue is the LocalRateLimit of the tutorial's EnvoyFilter.
const tutorialValue = `
stat_prefix: local_rate_limiter
token_bucket:
  max_tokens: 100
  tokens_per_fill: 100
  fill_interval: 60s
filter_enabled:
  runtime_key: local_rate_limit_enabled
  default_value:
    numerator: 100
    denominator: HUNDRED
filter_enforced:
  runtime_key: local_rate_limit_enforced
  default_value:
    numerator: 100
    denominator: HUNDRED
`

// typedStruct wraps a YAML LocalRateLimit in a udpa TypedStruct, as
// EnvoyFilter patches carry it.
func typedStruct(t *testing.T, value string) *anypb.Any {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal([]byte(value), &m); err != nil {
		t.Fatal(err)
	}
	s, err := structpb.NewStruct(m)
	if err != nil {
		t.Fatal(err)
	}
	a, err := anypb.New(&udpav1.TypedStruct{TypeUrl: "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit", Value: s})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func typed(t *testing.T, value string) *anypb.Any {
	t.Helper()
	j, err := yaml.YAMLToJSON([]byte(value))
	if err != nil {
		t.Fatal(err)
	}
	cfg := &lrlv3.LocalRateLimit{}
	if err := protojson.Unmarshal(j, cfg); err != nil {
		t.Fatal(err)
	}
	a, err := anypb.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

type harness struct {
	t      *testing.T
	clock  *fakeClock
	store  *stats.Store
	reg    *filters.Registry
	filter filters.HTTPFilter
}

func build(t *testing.T, config *anypb.Any, rnd func() uint64) *harness {
	t.Helper()
	h := &harness{t: t, clock: &fakeClock{t: time.Unix(1_700_000_000, 0)}, store: stats.NewStore()}
	reg := filters.NewRegistry()
	Register(reg, Options{Now: h.clock.now, Rand: rnd, Stats: h.store})
	h.reg = reg
	f, err := reg.Build(Name, config)
	if err != nil {
		t.Fatal(err)
	}
	f.(filters.StatsUser).UseStats(h.store, "http.inbound_0.0.0.0_9080.")
	h.filter = f
	return h
}

func (h *harness) request(source string, route *router.Decision) (*filters.Request, *filters.LocalReply) {
	req := &filters.Request{
		HTTP:  httptest.NewRequest(http.MethodGet, "/productpage", nil),
		Conn:  &filters.Conn{Source: netip.MustParseAddrPort(source)},
		Route: route,
	}
	return req, h.filter.OnRequest(req)
}

func (h *harness) counter(name string) uint64 {
	return h.store.Counter("local_rate_limiter.http_local_rate_limit." + name).Value()
}

func TestTutorialConfigLimitsTheHundredAndFirstRequest(t *testing.T) {
	h := build(t, typedStruct(t, tutorialValue+`
response_headers_to_add:
- append_action: APPEND_IF_EXISTS_OR_ADD
  header: {key: x-local-rate-limit, value: "true"}
`), nil)
	for i := 1; i <= 100; i++ {
		// Different connections draw from the one bucket of the filter.
		if _, reply := h.request(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(10000+i)).String(), nil); reply != nil {
			t.Fatalf("request %d limited: %+v", i, reply)
		}
	}
	_, reply := h.request("127.0.0.1:20000", nil)
	if reply == nil || reply.Status != 429 || reply.Body != "local_rate_limited" || reply.Flag != "RL" {
		t.Fatalf("request 101: %+v, want 429 local_rate_limited RL", reply)
	}
	if got := reply.Headers.Get("X-Local-Rate-Limit"); got != "true" {
		t.Errorf("x-local-rate-limit = %q, want true", got)
	}
	for name, want := range map[string]uint64{"enabled": 101, "ok": 100, "rate_limited": 1, "enforced": 1} {
		if got := h.counter(name); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
	h.clock.advance(59 * time.Second)
	if _, reply := h.request("127.0.0.1:20001", nil); reply == nil {
		t.Errorf("refilled before fill_interval")
	}
	h.clock.advance(time.Second)
	for i := 0; i < 100; i++ {
		if _, reply := h.request("127.0.0.1:20001", nil); reply != nil {
			t.Fatalf("after refill, request %d limited", i+1)
		}
	}
	if _, reply := h.request("127.0.0.1:20001", nil); reply == nil {
		t.Errorf("refill exceeded tokens_per_fill")
	}
}

func TestTokenBucket(t *testing.T) {
	start := time.Unix(0, 0)
	type step struct {
		at   time.Duration // since start
		take int
		want int // how many of them succeed
	}
	cases := []struct {
		name         string
		max, perFill uint64
		interval     time.Duration
		steps        []step
	}{
		{"starts full, then empty", 3, 1, time.Second, []step{{0, 5, 3}}},
		{"whole intervals only", 3, 2, time.Second, []step{{0, 3, 3}, {999 * time.Millisecond, 1, 0}, {time.Second, 3, 2}}},
		{"several intervals at once, capped at max", 5, 2, time.Second, []step{{0, 5, 5}, {10 * time.Second, 9, 5}}},
		{"partial interval carries over", 10, 1, time.Second, []step{{0, 10, 10}, {1500 * time.Millisecond, 2, 1}, {2 * time.Second, 2, 1}}},
		{"huge gap does not overflow", 1 << 31, 1 << 31, 50 * time.Millisecond, []step{{0, 1, 1}, {1 << 60, 1, 1}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := newBucket(tc.max, tc.perFill, tc.interval, start)
			for i, s := range tc.steps {
				got := 0
				for range s.take {
					if ok, _, _ := b.take(start.Add(s.at)); ok {
						got++
					}
				}
				if got != s.want {
					t.Errorf("step %d: %d of %d taken, want %d", i, got, s.take, s.want)
				}
			}
		})
	}
}

func TestEnabledAndEnforcedFractions(t *testing.T) {
	// One token and a fill interval longer than the test: every request
	// after the first that the filter considers is over the limit.
	base := `
stat_prefix: local_rate_limiter
token_bucket: {max_tokens: 1, fill_interval: 3600s}
request_headers_to_add_when_not_enforced:
- header: {key: x-would-be-limited, value: "1"}
`
	cases := []struct {
		name                                            string
		fractions                                       string
		enabled, ok, rateLimited, enforced, passedLimit uint64
	}{
		{"unset is 0%: the filter does nothing", ``, 0, 0, 0, 0, 0},
		{"enabled, not enforced: shadow mode", `filter_enabled: {default_value: {numerator: 100}}`, 1000, 1, 999, 0, 999},
		{"25% enabled, all enforced", `
filter_enabled: {default_value: {numerator: 2500, denominator: TEN_THOUSAND}}
filter_enforced: {default_value: {numerator: 100}}`, 250, 1, 249, 249, 0},
		{"all enabled, half enforced", `
filter_enabled: {default_value: {numerator: 100}}
filter_enforced: {default_value: {numerator: 500000, denominator: MILLION}}`, 1000, 1, 999, 500, 499},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := build(t, typed(t, base+tc.fractions), cyclingRand())
			var limited, shadow uint64
			for i := 0; i < 1000; i++ {
				req, reply := h.request("127.0.0.1:1000", nil)
				if reply != nil {
					limited++
				}
				if req.HTTP.Header.Get("X-Would-Be-Limited") == "1" {
					shadow++
				}
			}
			got := [5]uint64{h.counter("enabled"), h.counter("ok"), h.counter("rate_limited"), h.counter("enforced"), shadow}
			want := [5]uint64{tc.enabled, tc.ok, tc.rateLimited, tc.enforced, tc.passedLimit}
			if got != want {
				t.Errorf("enabled/ok/rate_limited/enforced/shadow = %v, want %v", got, want)
			}
			if limited != tc.enforced {
				t.Errorf("%d requests limited, want %d", limited, tc.enforced)
			}
		})
	}
}

func TestPerConnectionBucketsAndHeaders(t *testing.T) {
	h := build(t, typed(t, tutorialValue+`
token_bucket: {max_tokens: 2, tokens_per_fill: 2, fill_interval: 10s}
local_rate_limit_per_downstream_connection: true
enable_x_ratelimit_headers: DRAFT_VERSION_03
enable_retry_after_header: true
status: {code: 503}
`), nil)
	for _, src := range []string{"127.0.0.1:1", "127.0.0.1:2"} {
		for i := 0; i < 2; i++ {
			req, reply := h.request(src, nil)
			if reply != nil {
				t.Fatalf("%s request %d limited", src, i+1)
			}
			hdr := http.Header{}
			h.filter.(filters.ResponseFilter).OnResponse(req, 200, hdr)
			if hdr.Get("X-Ratelimit-Limit") != "2" || hdr.Get("X-Ratelimit-Remaining") != []string{"1", "0"}[i] || hdr.Get("X-Ratelimit-Reset") != "10" {
				t.Errorf("%s request %d: x-ratelimit headers %v", src, i+1, hdr)
			}
		}
	}
	h.clock.advance(3 * time.Second)
	_, reply := h.request("127.0.0.1:1", nil)
	if reply == nil || reply.Status != 503 {
		t.Fatalf("third request on one connection: %+v, want 503", reply)
	}
	if reply.Headers.Get("Retry-After") != "7" || reply.Headers.Get("X-Ratelimit-Remaining") != "0" {
		t.Errorf("limited reply headers %v", reply.Headers)
	}
}

func TestPerRouteConfig(t *testing.T) {
	h := build(t, typed(t, tutorialValue+`token_bucket: {max_tokens: 1, fill_interval: 60s}`), nil)
	perRoute := func(name string, a *anypb.Any) *router.Decision {
		t.Helper()
		v, err := h.reg.PerRoute(name, a)
		if err != nil {
			t.Fatal(err)
		}
		return &router.Decision{FilterConfig: map[string]any{name: v}}
	}
	off := perRoute(Name, typed(t, `stat_prefix: "off"`))
	own := perRoute("custom-name", typedStruct(t, tutorialValue+`
stat_prefix: route
token_bucket: {max_tokens: 3, fill_interval: 60s}`))
	for i := 0; i < 5; i++ {
		if _, reply := h.request("127.0.0.1:1", off); reply != nil {
			t.Fatalf("route with the filter disabled: request %d limited", i+1)
		}
	}
	got := 0
	for i := 0; i < 5; i++ {
		if _, reply := h.request("127.0.0.1:1", own); reply == nil {
			got++
		}
	}
	if got != 3 {
		t.Errorf("route with its own bucket let %d of 5 through, want 3", got)
	}
	if h.store.Counter("route.http_local_rate_limit.rate_limited").Value() != 2 {
		t.Errorf("per-route stats not under the route config's stat_prefix")
	}
	if _, reply := h.request("127.0.0.1:1", nil); reply != nil {
		t.Errorf("the listener bucket was drawn by per-route requests")
	}
	if _, reply := h.request("127.0.0.1:1", nil); reply == nil {
		t.Errorf("listener bucket of 1 let two requests through")
	}
}

func TestInvalidConfigIsRejected(t *testing.T) {
	cases := []struct{ config, want string }{
		{`token_bucket: {max_tokens: 1, fill_interval: 1s}`, "stat_prefix is required"},
		{`{stat_prefix: x, token_bucket: {max_tokens: 1, fill_interval: 0.01s}}`, "fill_interval must be at least 50ms"},
		{`{stat_prefix: x, token_bucket: {max_tokens: 0, fill_interval: 1s}}`, "max_tokens must be greater than 0"},
		{`{stat_prefix: x, filter_enabled: {default_value: {numerator: 1}}}`, "token_bucket is required"},
		{`{stat_prefix: x, token_bucket: {max_tokens: 1, fill_interval: 1s}, descriptors: [{entries: [{key: a, value: b}], token_bucket: {max_tokens: 1, fill_interval: 1s}}]}`, "field descriptors is not supported"},
		{`{stat_prefix: x, response_headers_to_add: [{header: {key: a, raw_value: YQ==}}]}`, "response_headers_to_add[0]: header: field raw_value is not supported"},
	}
	for _, tc := range cases {
		reg := filters.NewRegistry()
		Register(reg, Options{})
		_, err := reg.Build(Name, typed(t, tc.config))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.config, err, tc.want)
		}
		if _, err := reg.PerRoute(Name, typed(t, tc.config)); err == nil {
			t.Errorf("%s: per-route config accepted", tc.config)
		}
	}
}
