// Package localratelimit implements Envoy's local rate limit HTTP filter
// (envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit): a
// token bucket per filter instance (or per downstream connection), applied
// to a configured fraction of requests and enforced on a fraction of
// those; a limited request gets a local 429 "local_rate_limited" with
// response flag RL. A route may replace the config with its own through
// typed_per_filter_config.
package localratelimit

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	lrlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/skein-mesh/skein/internal/proxy/filters"
	"github.com/skein-mesh/skein/internal/proxy/internal/confparse"
	"github.com/skein-mesh/skein/internal/proxy/internal/protocheck"
	"github.com/skein-mesh/skein/internal/proxy/stats"
)

// Name is the canonical HTTP filter name.
const Name = "envoy.filters.http.local_ratelimit"

// Body is Envoy's local reply body for a rate-limited request.
const Body = "local_rate_limited"

var (
	configFields = protocheck.Fields(&lrlv3.LocalRateLimit{},
		"stat_prefix", "status", "token_bucket", "filter_enabled", "filter_enforced",
		"request_headers_to_add_when_not_enforced", "response_headers_to_add",
		"local_rate_limit_per_downstream_connection", "enable_x_ratelimit_headers",
		"enable_retry_after_header")
	bucketFields    = protocheck.Fields(&typev3.TokenBucket{}, "max_tokens", "tokens_per_fill", "fill_interval")
	fractionFields  = protocheck.Fields(&corev3.RuntimeFractionalPercent{}, "default_value", "runtime_key")
	headerOptFields = protocheck.Fields(&corev3.HeaderValueOption{}, "header", "append_action", "keep_empty_value")
	headerFields    = protocheck.Fields(&corev3.HeaderValue{}, "key", "value")
)

// Options carries what a filter needs from its environment; zero values
// mean the real clock and random source.
type Options struct {
	Now func() time.Time
	// Rand returns a uniform random number; it decides which requests fall
	// in the filter_enabled/filter_enforced fractions.
	Rand func() uint64
	// Stats receives the counters of per-route limiters, which are
	// compiled with their route config before any connection manager
	// exists (nil: a private store).
	Stats *stats.Store
}

func (o Options) withDefaults() Options {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Uint64
	}
	return o
}

// Register adds the local rate limit filter to reg and its config type as
// the per-route config, validated when routes arrive.
func Register(reg *filters.Registry, opts Options) {
	opts = opts.withDefaults()
	reg.Register(Name, &lrlv3.LocalRateLimit{}, func(config *anypb.Any) (filters.HTTPFilter, error) {
		l, err := decode(config, opts)
		if err != nil {
			return nil, err
		}
		return &filter{limiter: l, now: opts.Now}, nil
	})
	// A route's config is a limiter of its own, with its own bucket, built
	// once with the route config (Envoy's per-route local rate limit).
	reg.RegisterPerRoute(&lrlv3.LocalRateLimit{}, func(config *anypb.Any) (any, error) {
		l, err := decode(config, opts)
		if err != nil {
			return nil, err
		}
		l.useStats(opts.Stats)
		return l, nil
	})
}

func decode(config *anypb.Any, opts Options) (*limiter, error) {
	cfg := &lrlv3.LocalRateLimit{}
	if err := confparse.Unmarshal(config, cfg); err != nil {
		return nil, err
	}
	return compile(cfg, opts)
}

// limiter is one compiled LocalRateLimit config with its token bucket(s).
type limiter struct {
	opts       Options
	statPrefix string
	status     int
	// enabled and enforced are fractions of a million requests.
	enabled, enforced       uint64
	requestHeadersNotForced []*corev3.HeaderValueOption
	responseHeaders         []*corev3.HeaderValueOption
	xRateLimitHeaders       bool
	retryAfter              bool

	// The bucket settings are zero (and shared nil) for a config without a
	// token_bucket, which compile allows only with filtering disabled: a
	// route's way to turn the limit off.
	maxTokens, tokensPerFill uint64
	fillInterval             time.Duration
	shared                   *bucket
	perConnection            bool
	connMu                   sync.Mutex
	connBuckets              map[netip.AddrPort]*bucket

	stats counters
}

type counters struct {
	enabled, enforced, rateLimited, ok *stats.Counter
}

func compile(cfg *lrlv3.LocalRateLimit, opts Options) (*limiter, error) {
	if err := configFields.Check(cfg); err != nil {
		return nil, err
	}
	if cfg.GetStatPrefix() == "" {
		return nil, fmt.Errorf("stat_prefix is required")
	}
	l := &limiter{
		opts:                    opts,
		statPrefix:              cfg.GetStatPrefix(),
		status:                  http.StatusTooManyRequests,
		requestHeadersNotForced: cfg.GetRequestHeadersToAddWhenNotEnforced(),
		responseHeaders:         cfg.GetResponseHeadersToAdd(),
		perConnection:           cfg.GetLocalRateLimitPerDownstreamConnection(),
		retryAfter:              cfg.GetEnableRetryAfterHeader(),
	}
	// Envoy answers 429 for a configured status below 400.
	if code := int(cfg.GetStatus().GetCode()); code >= 400 {
		l.status = code
	}
	switch cfg.GetEnableXRatelimitHeaders() {
	case ratelimitv3.XRateLimitHeadersRFCVersion_OFF:
	case ratelimitv3.XRateLimitHeadersRFCVersion_DRAFT_VERSION_03:
		l.xRateLimitHeaders = true
	default:
		return nil, fmt.Errorf("enable_x_ratelimit_headers %s is not supported", cfg.GetEnableXRatelimitHeaders())
	}
	var err error
	if l.enabled, err = fraction("filter_enabled", cfg.GetFilterEnabled()); err != nil {
		return nil, err
	}
	if l.enforced, err = fraction("filter_enforced", cfg.GetFilterEnforced()); err != nil {
		return nil, err
	}
	for i, h := range cfg.GetRequestHeadersToAddWhenNotEnforced() {
		if err := checkHeader(h); err != nil {
			return nil, fmt.Errorf("request_headers_to_add_when_not_enforced[%d]: %v", i, err)
		}
	}
	for i, h := range cfg.GetResponseHeadersToAdd() {
		if err := checkHeader(h); err != nil {
			return nil, fmt.Errorf("response_headers_to_add[%d]: %v", i, err)
		}
	}
	if tb := cfg.GetTokenBucket(); tb != nil {
		if err := bucketFields.Check(tb); err != nil {
			return nil, fmt.Errorf("token_bucket: %v", err)
		}
		if tb.GetMaxTokens() == 0 {
			return nil, fmt.Errorf("token_bucket.max_tokens must be greater than 0")
		}
		l.maxTokens, l.tokensPerFill = uint64(tb.GetMaxTokens()), 1
		if tpf := tb.GetTokensPerFill(); tpf != nil {
			if tpf.GetValue() == 0 {
				return nil, fmt.Errorf("token_bucket.tokens_per_fill must be greater than 0")
			}
			l.tokensPerFill = uint64(tpf.GetValue())
		}
		l.fillInterval = tb.GetFillInterval().AsDuration()
		// Envoy refuses fill intervals under 50ms.
		if tb.GetFillInterval() == nil || l.fillInterval < 50*time.Millisecond {
			return nil, fmt.Errorf("token_bucket.fill_interval must be at least 50ms")
		}
		l.shared = newBucket(l.maxTokens, l.tokensPerFill, l.fillInterval, opts.Now())
		l.connBuckets = map[netip.AddrPort]*bucket{}
	} else if l.enabled > 0 {
		return nil, fmt.Errorf("token_bucket is required when filter_enabled is set")
	}
	l.useStats(nil)
	return l, nil
}

// fraction converts a RuntimeFractionalPercent to parts per million. There
// is no runtime here, so runtime_key is ignored and default_value rules;
// unset, Envoy's default is 0%.
func fraction(field string, f *corev3.RuntimeFractionalPercent) (uint64, error) {
	if f == nil {
		return 0, nil
	}
	if err := fractionFields.Check(f); err != nil {
		return 0, fmt.Errorf("%s: %v", field, err)
	}
	v := f.GetDefaultValue()
	n := uint64(v.GetNumerator())
	switch v.GetDenominator() {
	case typev3.FractionalPercent_HUNDRED:
		n *= 10000
	case typev3.FractionalPercent_TEN_THOUSAND:
		n *= 100
	case typev3.FractionalPercent_MILLION:
	default:
		return 0, fmt.Errorf("%s.default_value.denominator %s is not supported", field, v.GetDenominator())
	}
	return min(n, 1_000_000), nil
}

func checkHeader(h *corev3.HeaderValueOption) error {
	if err := headerOptFields.Check(h); err != nil {
		return err
	}
	if err := headerFields.Check(h.GetHeader()); err != nil {
		return fmt.Errorf("header: %v", err)
	}
	if h.GetHeader().GetKey() == "" {
		return fmt.Errorf("header.key is required")
	}
	return nil
}

// useStats binds the limiter's counters to store (a private one when nil,
// so a filter works before the connection manager hands it a store).
func (l *limiter) useStats(store *stats.Store) {
	if store == nil {
		store = stats.NewStore()
	}
	p := l.statPrefix + ".http_local_rate_limit."
	l.stats = counters{
		enabled:     store.Counter(p + "enabled"),
		enforced:    store.Counter(p + "enforced"),
		rateLimited: store.Counter(p + "rate_limited"),
		ok:          store.Counter(p + "ok"),
	}
}

// sampled reports whether a request falls in a fraction of a million.
func (l *limiter) sampled(perMillion uint64) bool {
	return perMillion >= 1_000_000 || perMillion > 0 && l.opts.Rand()%1_000_000 < perMillion
}

// bucketFor returns the bucket a request draws from: the filter's, or its
// downstream connection's.
func (l *limiter) bucketFor(req *filters.Request, now time.Time) *bucket {
	if !l.perConnection || req.Conn == nil {
		return l.shared
	}
	l.connMu.Lock()
	defer l.connMu.Unlock()
	b := l.connBuckets[req.Conn.Source]
	if b == nil {
		// Forget refilled buckets of gone connections before growing: a
		// full bucket behaves exactly like a new one.
		if len(l.connBuckets) >= 1024 {
			for k, old := range l.connBuckets {
				if old.full(now) {
					delete(l.connBuckets, k)
				}
			}
		}
		b = newBucket(l.maxTokens, l.tokensPerFill, l.fillInterval, now)
		l.connBuckets[req.Conn.Source] = b
	}
	return b
}

// filter is one configured instance: its bucket is shared by every
// connection the owning connection manager serves, as Envoy shares one
// per filter config (per worker).
type filter struct {
	limiter *limiter
	now     func() time.Time
}

var (
	_ filters.HTTPFilter     = (*filter)(nil)
	_ filters.ResponseFilter = (*filter)(nil)
	_ filters.StatsUser      = (*filter)(nil)
)

// UseStats implements filters.StatsUser. Envoy scopes this filter's stats
// by its own stat_prefix only, so the connection manager's prefix is unused.
func (f *filter) UseStats(store *stats.Store, _ string) {
	f.limiter.useStats(store)
}

// headerState is what OnResponse needs to write x-ratelimit headers.
type headerState struct {
	limit, remaining uint64
	reset            time.Duration
}

const metaKey = "x-ratelimit"

func (f *filter) OnRequest(req *filters.Request) *filters.LocalReply {
	l := f.limiterFor(req)
	if l == nil || !l.sampled(l.enabled) {
		return nil
	}
	l.stats.enabled.Inc()
	now := f.now()
	ok, remaining, reset := l.bucketFor(req, now).take(now)
	if l.xRateLimitHeaders {
		req.SetMetadata(Name, metaKey, headerState{limit: l.maxTokens, remaining: remaining, reset: reset})
	}
	if ok {
		l.stats.ok.Inc()
		return nil
	}
	l.stats.rateLimited.Inc()
	if !l.sampled(l.enforced) {
		applyHeaders(req.HTTP.Header, l.requestHeadersNotForced)
		return nil
	}
	l.stats.enforced.Inc()
	reply := &filters.LocalReply{Status: l.status, Body: Body, Flag: "RL", Headers: http.Header{}}
	applyHeaders(reply.Headers, l.responseHeaders)
	if l.xRateLimitHeaders {
		writeXRateLimit(reply.Headers, headerState{limit: l.maxTokens, remaining: remaining, reset: reset})
		delete(req.Metadata[Name], metaKey) // already written
	}
	if l.retryAfter {
		reply.Headers.Set("Retry-After", strconv.FormatInt(int64(ceilSeconds(reset)), 10))
	}
	return reply
}

// OnResponse adds the x-ratelimit headers to responses of requests that
// were let through.
func (f *filter) OnResponse(req *filters.Request, _ int, header http.Header) {
	if st, ok := req.Metadata[Name][metaKey].(headerState); ok {
		writeXRateLimit(header, st)
	}
}

func writeXRateLimit(h http.Header, st headerState) {
	h.Set("X-Ratelimit-Limit", strconv.FormatUint(st.limit, 10))
	h.Set("X-Ratelimit-Remaining", strconv.FormatUint(st.remaining, 10))
	h.Set("X-Ratelimit-Reset", strconv.FormatUint(ceilSeconds(st.reset), 10))
}

func ceilSeconds(d time.Duration) uint64 {
	if d <= 0 {
		return 0
	}
	return uint64((d + time.Second - 1) / time.Second)
}

// limiterFor picks the route's per-filter config when it has one: Envoy
// keys typed_per_filter_config by filter name; the canonical name is
// looked up first, then any entry of this filter's type.
func (f *filter) limiterFor(req *filters.Request) *limiter {
	if req.Route == nil || len(req.Route.FilterConfig) == 0 {
		return f.limiter
	}
	if l, ok := req.Route.FilterConfig[Name].(*limiter); ok {
		return l
	}
	for _, v := range req.Route.FilterConfig {
		if l, ok := v.(*limiter); ok {
			return l
		}
	}
	return f.limiter
}

// applyHeaders adds configured headers with Envoy's append_action
// semantics.
func applyHeaders(h http.Header, opts []*corev3.HeaderValueOption) {
	for _, o := range opts {
		k, v := o.GetHeader().GetKey(), o.GetHeader().GetValue()
		if v == "" && !o.GetKeepEmptyValue() {
			continue
		}
		switch o.GetAppendAction() {
		case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
			h.Add(k, v)
		case corev3.HeaderValueOption_ADD_IF_ABSENT:
			if _, ok := h[http.CanonicalHeaderKey(k)]; !ok {
				h.Set(k, v)
			}
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
			h.Set(k, v)
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
			if _, ok := h[http.CanonicalHeaderKey(k)]; ok {
				h.Set(k, v)
			}
		}
	}
}
