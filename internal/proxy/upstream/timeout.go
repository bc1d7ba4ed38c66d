package upstream

import (
	"context"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/skein-mesh/skein/internal/proxy/router"
)

// routeTimeout is the route timeout, overridden by the grpc-timeout header
// when max_stream_duration.grpc_timeout_header_max says so, and capped by
// max_stream_duration.
func routeTimeout(d *router.Decision, r *http.Request) time.Duration {
	timeout := d.Timeout
	sd := d.StreamDuration
	if sd == nil {
		return timeout
	}
	if sd.GRPCHeader {
		if t, ok := parseGRPCTimeout(r.Header.Get("Grpc-Timeout")); ok {
			if sd.GRPCHeaderMax > 0 && t > sd.GRPCHeaderMax {
				t = sd.GRPCHeaderMax
			}
			if off := sd.GRPCHeaderOffset; off > 0 && t > off {
				t -= off
			}
			timeout = t
		}
	}
	if sd.Max > 0 && (timeout == 0 || sd.Max < timeout) {
		timeout = sd.Max
	}
	return timeout
}

// parseGRPCTimeout reads gRPC's "<digits><unit>" timeout header.
func parseGRPCTimeout(v string) (time.Duration, bool) {
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	n, err := strconv.ParseInt(v[:len(v)-1], 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, false
	}
	return time.Duration(n) * unit, true
}

// jitteredBackoff sleeps before retry n like Envoy: a random time up to
// base*2^(n-1), capped at max.
func jitteredBackoff(ctx context.Context, base, max time.Duration, n int) {
	limit := base << min(n-1, 10)
	if limit > max || limit <= 0 {
		limit = max
	}
	t := time.NewTimer(rand.N(limit) + 1)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
