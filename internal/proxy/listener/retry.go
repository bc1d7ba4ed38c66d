package listener

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/skein-mesh/skein/internal/proxy/internal/protocheck"
)

// Envoy's retry defaults.
const (
	defaultRetryBase = 25 * time.Millisecond
	previousHosts    = "envoy.retry_host_predicates.previous_hosts"
)

var (
	retryPolicyFields = protocheck.Fields(&routev3.RetryPolicy{}, "retry_on", "num_retries",
		"per_try_timeout", "retriable_status_codes", "retry_host_predicate",
		"host_selection_retry_max_attempts", "retry_back_off")
	retryBackOffFields = protocheck.Fields(&routev3.RetryPolicy_RetryBackOff{}, "base_interval", "max_interval")
	hostPredicateField = protocheck.Fields(&routev3.RetryPolicy_RetryHostPredicate{}, "name", "typed_config")
)

// grpcRetryOn maps gRPC retry_on conditions to grpc-status codes.
var grpcRetryOn = map[string]string{
	"cancelled": "1", "deadline-exceeded": "4", "resource-exhausted": "8",
	"internal": "13", "unavailable": "14",
}

// retryPolicy is a route's RetryPolicy in the form the forwarder uses.
type retryPolicy struct {
	numRetries   int
	conditions   map[string]bool
	statusCodes  map[int]bool
	perTry       time.Duration
	hostAttempts int // picks per attempt to avoid previous hosts
	base, max    time.Duration
}

// retryPolicies memoises parseRetryPolicy by proto: routes keep their
// RetryPolicy message for the life of a route table, so each is parsed
// once rather than per request. Emptied when it grows past a bound, as
// config updates leave old messages behind.
var (
	retryPolicies     sync.Map // *routev3.RetryPolicy → retryPolicy
	retryPolicyCount  atomic.Int32
	maxRetryPolicySet = int32(4096)
)

func retryPolicyOf(p *routev3.RetryPolicy) retryPolicy {
	if p == nil {
		return retryPolicy{}
	}
	if rp, ok := retryPolicies.Load(p); ok {
		return rp.(retryPolicy)
	}
	rp := parseRetryPolicy(p)
	if retryPolicyCount.Add(1) > maxRetryPolicySet {
		retryPolicies.Clear()
		retryPolicyCount.Store(1)
	}
	retryPolicies.Store(p, rp)
	return rp
}

func parseRetryPolicy(p *routev3.RetryPolicy) retryPolicy {
	if p == nil || p.GetRetryOn() == "" {
		return retryPolicy{}
	}
	rp := retryPolicy{numRetries: 1, conditions: map[string]bool{}, statusCodes: map[int]bool{}, base: defaultRetryBase}
	if n := p.GetNumRetries(); n != nil {
		rp.numRetries = int(n.GetValue())
	}
	for _, c := range strings.Split(p.GetRetryOn(), ",") {
		rp.conditions[strings.TrimSpace(c)] = true
	}
	for _, c := range p.GetRetriableStatusCodes() {
		rp.statusCodes[int(c)] = true
	}
	rp.perTry = p.GetPerTryTimeout().AsDuration()
	for _, hp := range p.GetRetryHostPredicate() {
		if hp.GetName() == previousHosts {
			rp.hostAttempts = int(max(p.GetHostSelectionRetryMaxAttempts(), 1))
		}
	}
	if b := p.GetRetryBackOff(); b != nil {
		rp.base = b.GetBaseInterval().AsDuration()
		rp.max = b.GetMaxInterval().AsDuration()
	}
	if rp.max <= 0 {
		rp.max = 10 * rp.base
	}
	return rp
}

// on reports whether a failure of the given kind is retried.
func (p retryPolicy) on(kind string) bool {
	c := p.conditions
	switch kind {
	case "connect-failure":
		return c["connect-failure"] || c["5xx"] || c["gateway-error"] || c["reset"]
	case "refused-stream":
		return c["refused-stream"] || c["5xx"] || c["reset"]
	case "reset":
		return c["reset"] || c["5xx"]
	case "per-try-timeout":
		return c["5xx"] || c["gateway-error"] || c["reset"]
	}
	return false
}

// retriableResponse reports whether the response asks for a retry.
func (p retryPolicy) retriableResponse(resp *http.Response) bool {
	if p.numRetries == 0 {
		return false
	}
	c, code := p.conditions, resp.StatusCode
	switch {
	case c["5xx"] && code >= 500:
		return true
	case c["gateway-error"] && (code == 502 || code == 503 || code == 504):
		return true
	case c["retriable-4xx"] && code == 409:
		return true
	case c["retriable-status-codes"] && p.statusCodes[code]:
		return true
	}
	if status := resp.Header.Get("Grpc-Status"); status != "" {
		for cond, want := range grpcRetryOn {
			if c[cond] && status == want {
				return true
			}
		}
	}
	return false
}

func (p retryPolicy) backoff(ctx context.Context, attempt int) {
	jitteredBackoff(ctx, p.base, p.max, attempt)
}

// checkRetryPolicy rejects retry settings the forwarder does not implement.
func checkRetryPolicy(p *routev3.RetryPolicy) error {
	if err := retryPolicyFields.Check(p); err != nil {
		return err
	}
	if err := retryBackOffFields.Check(p.GetRetryBackOff()); err != nil {
		return err
	}
	for _, hp := range p.GetRetryHostPredicate() {
		if err := hostPredicateField.Check(hp); err != nil {
			return err
		}
		if hp.GetName() != previousHosts {
			return errUnsupported("retry_host_predicate " + strconv.Quote(hp.GetName()))
		}
	}
	known := map[string]bool{"5xx": true, "gateway-error": true, "reset": true, "connect-failure": true,
		"retriable-4xx": true, "refused-stream": true, "retriable-status-codes": true}
	for c := range grpcRetryOn {
		known[c] = true
	}
	for _, c := range strings.Split(p.GetRetryOn(), ",") {
		if c = strings.TrimSpace(c); c != "" && !known[c] {
			return errUnsupported("retry_on condition " + strconv.Quote(c))
		}
	}
	return nil
}

type errUnsupported string

func (e errUnsupported) Error() string { return string(e) + " is not supported yet" }
