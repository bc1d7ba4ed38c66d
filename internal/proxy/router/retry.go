package router

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
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

// retryOn is a set of Envoy retry_on conditions.
type retryOn uint16

const (
	on5xx retryOn = 1 << iota
	onGatewayError
	onReset
	onConnectFailure
	onRetriable4xx
	onRefusedStream
	onRetriableStatusCodes
	onGRPCCancelled
	onGRPCDeadlineExceeded
	onGRPCResourceExhausted
	onGRPCInternal
	onGRPCUnavailable
)

var retryConditions = map[string]retryOn{
	"5xx": on5xx, "gateway-error": onGatewayError, "reset": onReset,
	"connect-failure": onConnectFailure, "retriable-4xx": onRetriable4xx,
	"refused-stream": onRefusedStream, "retriable-status-codes": onRetriableStatusCodes,
	"cancelled": onGRPCCancelled, "deadline-exceeded": onGRPCDeadlineExceeded,
	"resource-exhausted": onGRPCResourceExhausted, "internal": onGRPCInternal,
	"unavailable": onGRPCUnavailable,
}

// grpcRetryOn maps gRPC retry_on conditions to grpc-status values.
var grpcRetryOn = []struct {
	cond   retryOn
	status string
}{{onGRPCCancelled, "1"}, {onGRPCDeadlineExceeded, "4"}, {onGRPCResourceExhausted, "8"},
	{onGRPCInternal, "13"}, {onGRPCUnavailable, "14"}}

// RetryPolicy is a compiled retry_policy (the route's, else the virtual
// host's). A nil *RetryPolicy retries nothing.
type RetryPolicy struct {
	// NumRetries is the number of retries after the first attempt.
	NumRetries int
	// PerTryTimeout bounds each attempt; 0: only the route timeout.
	PerTryTimeout time.Duration
	// HostAttempts is how many picks an attempt makes to avoid hosts
	// already tried (previous_hosts); 0: no such predicate.
	HostAttempts int
	// BackOffBase and BackOffMax shape the jittered back-off.
	BackOffBase, BackOffMax time.Duration

	on          retryOn
	statusCodes []int
}

// Retries reports the number of retries allowed (0 for nil).
func (p *RetryPolicy) Retries() int {
	if p == nil {
		return 0
	}
	return p.NumRetries
}

// compileRetryPolicy validates and compiles p; nil or without retry_on it
// yields nil (no retries).
func compileRetryPolicy(p *routev3.RetryPolicy) (*RetryPolicy, error) {
	if p == nil {
		return nil, nil
	}
	if err := retryPolicyFields.Check(p); err != nil {
		return nil, err
	}
	if err := retryBackOffFields.Check(p.GetRetryBackOff()); err != nil {
		return nil, fmt.Errorf("retry_back_off: %v", err)
	}
	rp := &RetryPolicy{NumRetries: 1, BackOffBase: defaultRetryBase}
	for _, hp := range p.GetRetryHostPredicate() {
		if err := hostPredicateField.Check(hp); err != nil {
			return nil, err
		}
		if hp.GetName() != previousHosts {
			return nil, fmt.Errorf("retry_host_predicate %q is not supported yet", hp.GetName())
		}
		rp.HostAttempts = int(max(p.GetHostSelectionRetryMaxAttempts(), 1))
	}
	for _, c := range strings.Split(p.GetRetryOn(), ",") {
		if c = strings.TrimSpace(c); c == "" {
			continue
		}
		bit, ok := retryConditions[c]
		if !ok {
			return nil, fmt.Errorf("retry_on condition %q is not supported yet", c)
		}
		rp.on |= bit
	}
	if rp.on == 0 {
		return nil, nil
	}
	if n := p.GetNumRetries(); n != nil {
		rp.NumRetries = int(n.GetValue())
	}
	for _, c := range p.GetRetriableStatusCodes() {
		rp.statusCodes = append(rp.statusCodes, int(c))
	}
	if d := p.GetPerTryTimeout(); d != nil {
		if err := d.CheckValid(); err != nil || d.AsDuration() < 0 {
			return nil, errors.New("per_try_timeout: invalid duration")
		}
		rp.PerTryTimeout = d.AsDuration()
	}
	if b := p.GetRetryBackOff(); b != nil {
		rp.BackOffBase = b.GetBaseInterval().AsDuration()
		rp.BackOffMax = b.GetMaxInterval().AsDuration()
	}
	if rp.BackOffMax <= 0 {
		rp.BackOffMax = 10 * rp.BackOffBase
	}
	return rp, nil
}

// On reports whether a failure of the given kind ("connect-failure",
// "refused-stream", "reset", "per-try-timeout") is retried.
func (p *RetryPolicy) On(kind string) bool {
	if p == nil {
		return false
	}
	c := p.on
	switch kind {
	case "connect-failure":
		return c&(onConnectFailure|on5xx|onGatewayError|onReset) != 0
	case "refused-stream":
		return c&(onRefusedStream|on5xx|onReset) != 0
	case "reset":
		return c&(onReset|on5xx) != 0
	case "per-try-timeout":
		return c&(on5xx|onGatewayError|onReset) != 0
	}
	return false
}

// RetriableResponse reports whether the response asks for a retry.
func (p *RetryPolicy) RetriableResponse(resp *http.Response) bool {
	if p == nil || p.NumRetries == 0 {
		return false
	}
	c, code := p.on, resp.StatusCode
	switch {
	case c&on5xx != 0 && code >= 500:
		return true
	case c&onGatewayError != 0 && (code == 502 || code == 503 || code == 504):
		return true
	case c&onRetriable4xx != 0 && code == 409:
		return true
	case c&onRetriableStatusCodes != 0:
		for _, s := range p.statusCodes {
			if s == code {
				return true
			}
		}
	}
	if status := resp.Header.Get("Grpc-Status"); status != "" {
		for _, g := range grpcRetryOn {
			if c&g.cond != 0 && status == g.status {
				return true
			}
		}
	}
	return false
}

// String is for logs and tests.
func (p *RetryPolicy) String() string {
	if p == nil {
		return "none"
	}
	return "retries=" + strconv.Itoa(p.NumRetries)
}
